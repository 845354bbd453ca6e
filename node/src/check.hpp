// NODUS_CHECK: a broken invariant aborts with the expression, file and line. Never used on
// network or user input: bad input is an error value, not a crash.
#pragma once

#include <cstdio>
#include <cstdlib>

#define NODUS_CHECK(expr)                                                                       \
  do {                                                                                          \
    if (!(expr)) {                                                                              \
      std::fprintf(stderr, "nodus: invariant failed: %s (%s:%d)\n", #expr, __FILE__, __LINE__); \
      std::abort();                                                                             \
    }                                                                                           \
  } while (0)
