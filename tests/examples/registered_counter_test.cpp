// Replays the RegisteredCounter exercise: increments by name, and from another node.
#include "registered_counter.hpp"

#include <gtest/gtest.h>

#include "../node/test_util.hpp"

namespace {

using namespace nodus;
using namespace std::chrono_literals;
using registered_counter::RegisteredCounter;

TEST(RegisteredCounterTest, IncrementsByName) {
  Node node(NodeOptions{.name = "rc", .schedulers = 2});
  Inbox me(node);
  ASSERT_TRUE(RegisteredCounter::start_link(node).ok());
  EXPECT_EQ(RegisteredCounter::increment().value(), Term(1));
  EXPECT_EQ(RegisteredCounter::increment().value(), Term(2));
}

TEST(RegisteredCounterTest, IsReachedFromAnotherNodeByNameAndNode) {
  auto n1 = nodus::testing::start_loopback_node("rc1", "rc-test");
  auto n2 = nodus::testing::start_loopback_node("rc2", "rc-test");
  ASSERT_TRUE(n1 && n2);
  n2->connect(n1->endpoint());
  ASSERT_TRUE(nodus::testing::eventually([&] { return !n2->nodes().empty(); }));
  {
    Inbox on_n1(*n1);
    ASSERT_TRUE(RegisteredCounter::start_link(*n1).ok());
    EXPECT_EQ(RegisteredCounter::increment().value(), Term(1));
  }
  Inbox on_n2(*n2);
  EXPECT_EQ(RegisteredCounter::increment("rc1").value(), Term(2));
  EXPECT_EQ(RegisteredCounter::increment("rc2").error(), "noproc");  // not started there
}

TEST(RegisteredCounterTest, GlobalNameReachesItFromAnyNodeAndIsStartedOnce) {
  auto n1 = nodus::testing::start_loopback_node("rg1", "rg-test");
  auto n2 = nodus::testing::start_loopback_node("rg2", "rg-test");
  ASSERT_TRUE(n1 && n2);
  n2->connect(n1->endpoint());
  ASSERT_OK(start_global(*n1));
  ASSERT_OK(start_global(*n2));
  ASSERT_TRUE(nodus::testing::eventually([&] { return global_nodes(*n2).size() == 1; }));
  Pid counter;
  {
    Inbox on_n1(*n1);
    auto started = RegisteredCounter::start_link_global(*n1);
    ASSERT_TRUE(started.ok());
    counter = *started;
    EXPECT_EQ(RegisteredCounter::increment_global().value(), Term(1));
  }
  ASSERT_TRUE(nodus::testing::eventually(
      [&] { return whereis_global(*n2, "registered_counter").has_value(); }));
  Inbox on_n2(*n2);
  EXPECT_EQ(RegisteredCounter::increment_global().value(), Term(2));
  EXPECT_EQ(RegisteredCounter::start_link_global(*n2).error(), tuple("already_started", counter));
}

}  // namespace
