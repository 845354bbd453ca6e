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
// Integers are a term's: signed 64-bit. A JSON integer outside that range is refused, never
// read as a float.
//
// The views of nodusctl (status, procs ...) use the same mapping in its plain style, for
// people and scripts that do not read terms back: binaries are strings, lists arrays, pids and
// refs their text, and maps objects keyed by each key's text.
//
// Thread-safety: free functions on values.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "nodus/node/term.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::tools {

/// How a term is written as JSON.
enum class JsonStyle {
  kExact,  ///< reversible: json_to_term reads it back as the same term
  kPlain,  ///< readable: binaries, pids and refs as strings, lists as arrays, maps as objects
};

/// The term a JSON request stands for. Errors: kBadArg with one line saying what is wrong (an
/// atom too long, a malformed "$bin", nesting deeper than 64 ...). Never throws.
Result<Term> json_to_term(const nlohmann::json& j);

/// The term a JSON text stands for. Errors: kBadArg when it is not JSON, when an integer in it
/// does not fit in 64 signed bits (checked on the text, since a JSON parser reads such a number
/// as a float), or as json_to_term.
Result<Term> json_text_to_term(std::string_view text);

/// The JSON form of `t` in `style`.
nlohmann::json term_to_json(const Term& t, JsonStyle style = JsonStyle::kExact);

}  // namespace nodus::tools
