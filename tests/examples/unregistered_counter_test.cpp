// Replays the UnregisteredCounter exercise: increments by pid, each returning the count.
#include "unregistered_counter.hpp"

#include <gtest/gtest.h>

#include "../node/test_util.hpp"

namespace {

using namespace nodus;
using unregistered_counter::UnregisteredCounter;

class UnregisteredCounterTest : public ::testing::Test {
 protected:
  Node node{NodeOptions{.name = "unregistered_counter_test", .schedulers = 2}};
  Inbox me{node};
};

TEST_F(UnregisteredCounterTest, IncrementReturnsTheNewCount) {
  Pid pid = UnregisteredCounter::start_link(node).value();
  EXPECT_EQ(UnregisteredCounter::increment(pid).value(), Term(1));
  EXPECT_EQ(UnregisteredCounter::increment(pid).value(), Term(2));
}

TEST_F(UnregisteredCounterTest, TwoCountersAreReachedByTheirOwnPids) {
  Pid a = UnregisteredCounter::start_link(node).value();
  Pid b = UnregisteredCounter::start_link(node).value();
  UnregisteredCounter::increment(a).value();
  EXPECT_EQ(UnregisteredCounter::increment(a).value(), Term(2));
  EXPECT_EQ(UnregisteredCounter::increment(b).value(), Term(1));
}

TEST_F(UnregisteredCounterTest, ADeadCounterAnswersNoproc) {
  Pid pid = UnregisteredCounter::start_link(node).value();
  ASSERT_OK(stop(pid));
  EXPECT_EQ(UnregisteredCounter::increment(pid).error(), "noproc");
}

}  // namespace
