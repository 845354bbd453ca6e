// Test helpers for the node layer: readable failure output for terms and statuses, and
// ASSERT_OK / EXPECT_OK for Status and Result (as leveldb's util/testutil.h).
#pragma once

#include <gtest/gtest.h>

#include <ostream>

#include "nodus/node/term.hpp"
#include "nodus/transport/status.hpp"

namespace nodus {

// Found by GoogleTest through argument-dependent lookup.
inline void PrintTo(const Term& t, std::ostream* os) { *os << t.to_string(); }
inline void PrintTo(const Status& s, std::ostream* os) { *os << s.to_string(); }

namespace testing_detail {

inline ::testing::AssertionResult IsOk(const Status& s) {
  if (s.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << s.to_string();
}
template <class T>
::testing::AssertionResult IsOk(const Result<T>& r) {
  if (r.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << r.error().to_string();
}

}  // namespace testing_detail
}  // namespace nodus

#define ASSERT_OK(expr) ASSERT_TRUE(::nodus::testing_detail::IsOk(expr))
#define EXPECT_OK(expr) EXPECT_TRUE(::nodus::testing_detail::IsOk(expr))
