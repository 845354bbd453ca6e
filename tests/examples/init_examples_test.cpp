// Replays the InitExamples exercise: simple, params, failed validation, deferred.
#include "init_examples.hpp"

#include <gtest/gtest.h>

#include "../node/test_util.hpp"

namespace {

using namespace nodus;
using init_examples::InitExamples;
using namespace std::chrono_literals;

class InitExamplesTest : public ::testing::Test {
 protected:
  Node node{NodeOptions{.name = "init_examples_test", .schedulers = 2}};
  Inbox me{node};
};

TEST_F(InitExamplesTest, SimpleStartsWithZero) {
  auto pid = InitExamples::start_simple(node);
  ASSERT_OK(pid);
  EXPECT_EQ(InitExamples::state(*pid).value(), map({{"type", "simple"}, {"value", 0}}));
}

TEST_F(InitExamplesTest, ParamsBecomeTheState) {
  auto pid = InitExamples::start_with_params(node, 42);
  ASSERT_OK(pid);
  EXPECT_EQ(InitExamples::state(*pid).value(), map({{"type", "params"}, {"value", 42}}));
}

TEST_F(InitExamplesTest, ValidationFailureIsTheStartError) {
  auto pid = InitExamples::start_with_validation(node, -5);
  ASSERT_FALSE(pid.ok());
  EXPECT_EQ(pid.error(), "invalid_initial_value");
  ASSERT_OK(InitExamples::start_with_validation(node, 5));
}

TEST_F(InitExamplesTest, DeferredReturnsAtOnceAndLoadsBeforeTheNextCall) {
  constexpr auto kLoadTime = 300ms;
  auto t0 = std::chrono::steady_clock::now();
  auto pid = InitExamples::start_deferred(node, {kLoadTime});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, kLoadTime);  // init did not wait for the load
  ASSERT_OK(pid);
  // handle_continue runs before any message, so the first call already sees the data.
  EXPECT_EQ(InitExamples::state(*pid).value(),
            map({{"type", "deferred"}, {"value", bin("expensive data")}}));
}

}  // namespace
