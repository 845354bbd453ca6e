// The store's own error codes, 6000-6999 (the range transport's error_definitions.hpp gives
// kv/). They print, parse and cross the wire like transport's codes in any program that starts
// the store or makes a kv::Client (the table registers itself at static initialisation, in
// kv/src/errors.cpp, which both pull in). The store also
// answers with transport's shared codes: not_found, no_quorum, unavailable, overloaded,
// timeout, value_too_large, cross_partition, badarg.
#pragma once

#include "nodus/transport/status.hpp"

// X(Enumerator, number, "name", "message")
#define NODUS_KV_ERRORS(X)                                                                \
  X(kTooManySiblings, 6000, "too_many_siblings",                                          \
    "the key holds too many concurrent values: write with the context of a read")         \
  X(kTooManyWatches, 6020, "too_many_watches",                                            \
    "the node holds kv.max_watches watches: unwatch some, or watch through another node") \
  X(kVersionMismatch, 6030, "version_mismatch",                                           \
    "the key changed since the version given (if_version): read it again and retry")

namespace nodus::kv {
NODUS_DECLARE_ERRORS(NODUS_KV_ERRORS)

namespace detail {
/// Whether the table above is registered; calling it links kv/src/errors.cpp into a program.
bool errors_registered();
}  // namespace detail
}  // namespace nodus::kv
