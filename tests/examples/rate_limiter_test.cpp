// Replays the RateLimiter exercise: 10 tokens, refilled 2 per interval.
#include "rate_limiter.hpp"

#include <gtest/gtest.h>

#include "../node/test_util.hpp"

namespace {

using namespace rate_limiter;
using namespace std::chrono_literals;

Term status(Term tokens, Term max) { return map({{"tokens", tokens}, {"max", max}}); }

class RateLimiterTest : public ::testing::Test {
 protected:
  Node node{NodeOptions{.name = "rate_limiter_test", .schedulers = 2}};
  Inbox me{node};
};

TEST_F(RateLimiterTest, SpendsTokensUntilTheBucketIsShort) {
  // An hour between refills: nothing comes back during the test.
  Pid limiter =
      RateLimiter::start_link(node, {.max_tokens = 10, .refill_rate = 2, .refill_every = 1h})
          .value();
  EXPECT_TRUE(RateLimiter::allow(limiter, 5));
  EXPECT_EQ(RateLimiter::status(limiter).value(), status(5, 10));
  EXPECT_FALSE(RateLimiter::allow(limiter, 10));
  EXPECT_EQ(RateLimiter::status(limiter).value(), status(5, 10));
  EXPECT_TRUE(RateLimiter::allow(limiter));  // cost 1 by default
  EXPECT_EQ(RateLimiter::status(limiter).value(), status(4, 10));
}

TEST_F(RateLimiterTest, RefillsUpToTheMaximum) {
  // The chapter's 2 tokens per second, with 20 ms standing in for the second.
  Pid limiter =
      RateLimiter::start_link(node, {.max_tokens = 10, .refill_rate = 2, .refill_every = 20ms})
          .value();
  EXPECT_TRUE(RateLimiter::allow(limiter, 5));
  EXPECT_TRUE(nodus::testing::eventually(
      [&] { return RateLimiter::status(limiter).value() == status(10, 10); }));
  EXPECT_TRUE(RateLimiter::allow(limiter, 10));
}

}  // namespace
