// Replays the ServerProcess exercise's expected results.
#include "server_process.hpp"

#include <gtest/gtest.h>

#include "../node/test_util.hpp"

namespace {

using namespace server_process;

class ServerProcessTest : public ::testing::Test {
 protected:
  Node node{NodeOptions{.name = "server_process_test", .schedulers = 2}};
  Inbox me{node};
};

TEST_F(ServerProcessTest, CounterIncrementsThenGets) {
  Pid pid = ServerProcess::start<Counter>(node);
  EXPECT_EQ(ServerProcess::call(pid, "increment"), Term("ok"));
  EXPECT_EQ(ServerProcess::call(pid, "get"), Term(1));
}

TEST_F(ServerProcessTest, KeepsStateAcrossCalls) {
  Pid pid = ServerProcess::start<Counter>(node);
  for (int i = 0; i < 3; ++i) ServerProcess::call(pid, "increment");
  EXPECT_EQ(ServerProcess::call(pid, "get"), Term(3));
}

TEST_F(ServerProcessTest, EachServerHasItsOwnState) {
  Pid a = ServerProcess::start<Counter>(node);
  Pid b = ServerProcess::start<Counter>(node);
  ServerProcess::call(a, "increment");
  EXPECT_EQ(ServerProcess::call(a, "get"), Term(1));
  EXPECT_EQ(ServerProcess::call(b, "get"), Term(0));
}

}  // namespace
