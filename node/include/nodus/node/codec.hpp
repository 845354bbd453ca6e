// The MessagePack form of a Term, and the limits applied when decoding untrusted bytes.
//
// Mapping (docs/protocol.md is the full specification): integer -> msgpack int, float ->
// float64, atom -> str, binary -> bin, tuple -> array, map -> map, list -> ext 1 holding the
// msgpack array of its elements, pid -> ext 2, ref -> ext 3 (node name, creation, id), the
// atoms true/false -> msgpack bool, msgpack nil -> the atom undefined.
//
// Thread-safety: free functions with no shared state (beyond the atom table).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "nodus/node/term.hpp"
#include "nodus/transport/status.hpp"

namespace nodus {

/// Bounds on what one decode may allocate; every decode of untrusted input applies them.
struct DecodeLimits {
  std::size_t max_array = 1 << 20;  ///< elements in one array/tuple/list
  std::size_t max_map = 1 << 20;    ///< pairs in one map
  std::size_t max_str = 1 << 20;    ///< bytes in one atom name (str); atoms over 255 are refused
  std::size_t max_bin = 64 << 20;   ///< bytes in one binary
  std::size_t max_ext = 1 << 20;    ///< bytes in one ext payload
  /// Nesting depth: a scalar is 0 deep, a tuple/map/list one more than its deepest element.
  /// Keep it modest: decoding, comparing, printing and destroying a term recurse per level.
  std::size_t max_depth = 64;
};

/// Appends the MessagePack encoding of `t` to `out`.
void encode_term(const Term& t, std::string& out);
/// The encoding of `t` as a new string.
std::string encode_term(const Term& t);

/// Decodes exactly one term from `bytes`. Errors (never throws, never aborts):
/// kProtocol with a message naming what was wrong (truncated, trailing bytes, a limit
/// exceeded, an unknown ext type, a malformed pid).
Result<Term> decode_term(std::string_view bytes, const DecodeLimits& limits = {});

}  // namespace nodus
