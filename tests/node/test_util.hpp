// Test helpers for the node layer: the shared ones (tests/test_support.hpp) and readable
// failure output for terms.
#pragma once

#include <ostream>

#include "../test_support.hpp"
#include "nodus/node/term.hpp"

namespace nodus {

// Found by GoogleTest through argument-dependent lookup.
inline void PrintTo(const Term& t, std::ostream* os) { *os << t.to_string(); }

}  // namespace nodus
