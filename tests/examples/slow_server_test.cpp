// Replays the SlowServer exercise with the default timeout shortened from 5 s to 200 ms (and
// the delays scaled alike), so that each case keeps its shape and the suite stays fast.
#include "slow_server.hpp"

#include <gtest/gtest.h>

#include "../node/test_util.hpp"

namespace {

using namespace nodus;
using namespace std::chrono_literals;
using slow_server::SlowServer;

class SlowServerTest : public ::testing::Test {
 protected:
  void SetUp() override { SlowServer::default_timeout = 200ms; }
  void TearDown() override { SlowServer::default_timeout = kDefaultCallTimeout; }

  Node node{NodeOptions{.name = "slow_server_test", .schedulers = 2}};
  Inbox me{node};
  Pid s = SlowServer::start_link(node).value();
};

TEST_F(SlowServerTest, FastOperationIsDone) {
  EXPECT_EQ(SlowServer::fast_operation(s).value(), Term("done"));
}

TEST_F(SlowServerTest, SlowWithinTheDefaultTimeoutIsDone) {
  EXPECT_EQ(SlowServer::slow_operation(s, 50ms).value(), Term("done"));
}

TEST_F(SlowServerTest, SlowPastTheDefaultTimeoutFailsWithTimeout) {
  auto r = SlowServer::slow_operation(s, 400ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "timeout");
  // The late reply is dropped: once the server is free again, nothing stray is in our mailbox.
  EXPECT_EQ(SlowServer::slow_operation_with_timeout(s, 0ms, 5s).value(), Term("done"));
  EXPECT_FALSE(receive(0ms).has_value());
}

TEST_F(SlowServerTest, CustomTimeoutWaitsLonger) {
  EXPECT_EQ(SlowServer::slow_operation_with_timeout(s, 400ms, 5s).value(), Term("done"));
}

TEST_F(SlowServerTest, InfinityWaitsAsLongAsItTakes) {
  EXPECT_EQ(SlowServer::infinite_wait(s, 400ms).value(), Term("done"));
}

}  // namespace
