// A user's multi-process test of their own two-node application (app_node.cpp) with the cluster
// harness, nodus::testing::Cluster: real processes on loopback, a partition, a kill -9.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "nodus/testing/cluster.hpp"

using namespace std::chrono_literals;
using nodus::Term;

// Calls `tally` on node i with `request`: its reply, or the error as text.
std::string ask(nodus::testing::Cluster& cluster, std::size_t i, const char* request) {
  auto r = cluster.call(i, "tally", Term(request));
  return r.ok() ? r->to_string() : "error: " + r.error().to_string();
}

// Polls `total` on node i until it is `want` (or 10 s pass).
bool total_becomes(nodus::testing::Cluster& cluster, std::size_t i, std::int64_t want) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = cluster.call(i, "tally", Term("total"));
    if (r.ok() && *r == Term(want)) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

class TallyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.start({.name = "a"}).ok());
    ASSERT_TRUE(cluster_.start({.name = "b"}).ok());  // seeded with a
    ASSERT_TRUE(cluster_.wait_meshed().ok());
  }
  // Every child is killed when the test ends, even after a failed assertion.
  nodus::testing::Cluster cluster_{nodus::testing::ClusterOptions{.program = APP_NODE_PATH}};
};

TEST_F(TallyTest, AnIncrementOnOneNodeReachesTheOther) {
  ASSERT_EQ("ok", ask(cluster_, 0, "increment"));
  EXPECT_TRUE(total_becomes(cluster_, 1, 1));
}

TEST_F(TallyTest, APartitionKeepsIncrementsApartAndARestartedNodeStartsFromZero) {
  ASSERT_TRUE(cluster_.partition({0}, {1}).ok());
  ASSERT_EQ("ok", ask(cluster_, 1, "increment"));
  EXPECT_TRUE(total_becomes(cluster_, 1, 1));
  EXPECT_TRUE(total_becomes(cluster_, 0, 0));  // not replicated across the cut
  ASSERT_TRUE(cluster_.heal().ok());
  ASSERT_TRUE(cluster_.wait_meshed().ok());

  cluster_.kill_9(1);
  ASSERT_TRUE(cluster_.restart(1).ok());
  ASSERT_TRUE(cluster_.wait_meshed().ok());
  EXPECT_TRUE(total_becomes(cluster_, 1, 0)) << cluster_.log_tail(1);
}
