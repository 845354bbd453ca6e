// The JSON <-> term mapping of `nodusctl call` and `cast` (DESIGN.md "Admin CLI"):
//   JSON string            <-> atom (symbol)          "increment"
//   JSON array             <-> tuple                  ["push", 1]
//   JSON object            <-> map (keys are atoms)   {"a": 1}
//   number, true/false     <-> integer or float, the atoms true/false
//   null                   <-> the atom undefined
//   {"$bin": "text"}       <-> binary
//   {"$list": [...]}       <-> list
//   {"$pid": "<n1.4.0>"}   <-  pid (output only), {"$ref": "#Ref<n1.9>"} likewise
// A map whose keys are not all atoms is written as {"$map": [[key, value], ...]} (and read back).
//
// Thread-safety: free functions on values.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "nodus/node/term.hpp"

namespace nodus::tools {

/// The term a JSON request stands for, or nullopt with `why` set (an atom too long, a
/// malformed "$bin" ...). Never throws.
std::optional<Term> json_to_term(const nlohmann::json& j, std::string& why);

/// The exact JSON form of `t` (reversible, as above).
nlohmann::json term_to_json(const Term& t);

/// A readable JSON form for views (status, procs ...): atoms and binaries become strings,
/// tuples and lists arrays, maps objects keyed by the key's text, pids and refs their text.
nlohmann::json term_to_plain_json(const Term& t);

}  // namespace nodus::tools
