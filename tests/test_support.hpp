// Helpers every test suite shares: readable failure output for Status, ASSERT_OK / EXPECT_OK
// for Status and Result (as leveldb's util/testutil.h), and polling with a deadline.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <ostream>
#include <string>
#include <thread>

#include "nodus/transport/status.hpp"

namespace nodus {

// Found by GoogleTest through argument-dependent lookup.
inline void PrintTo(const Status& s, std::ostream* os) { *os << s.to_string(); }

namespace testing_detail {

inline ::testing::AssertionResult IsOk(const Status& s) {
  if (s.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << s.to_string();
}
template <class T, class E>
::testing::AssertionResult IsOk(const Result<T, E>& r) {
  if (r.ok()) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << r.error().to_string();
}

}  // namespace testing_detail

namespace testing {

/// Polls `pred` every `interval` until it holds or `timeout` passes; true if it held. The one
/// way a test waits for something (never a bare sleep); a longer interval for a `pred` that is
/// costly (one that runs a program). An absence is asserted after a positive barrier: an event
/// that proves that what could have happened has happened (a reply that follows it on the same
/// link, a marker behind it in a mailbox), not after a wait.
inline bool eventually(const std::function<bool()>& pred,
                       std::chrono::milliseconds timeout = std::chrono::seconds(5),
                       std::chrono::milliseconds interval = std::chrono::milliseconds(1)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(interval);
  }
  return pred();
}

/// True in a build under AddressSanitizer or ThreadSanitizer, where a simulated seed costs some
/// 30 to 50 times more: seeded sweeps run fewer seeds there.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif

/// `prefix` and `i` in decimal: numbered("k", 7) is "k7". (Appended: `"k" + std::to_string(i)`
/// trips GCC 12's -Wrestrict.)
inline std::string numbered(const char* prefix, long long i) {
  std::string s = prefix;
  s += std::to_string(i);
  return s;
}

}  // namespace testing
}  // namespace nodus

#define ASSERT_OK(expr) ASSERT_TRUE(::nodus::testing_detail::IsOk(expr))
#define EXPECT_OK(expr) EXPECT_TRUE(::nodus::testing_detail::IsOk(expr))
