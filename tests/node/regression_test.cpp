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

// -- idle timeouts ----------------------------------------------------------------------

// Arms idle timeouts on request and counts the ones that fire.
class Idler : public GenServer {
 public:
  Action init(std::atomic<int>* timeouts, std::chrono::milliseconds idle) {
    timeouts_ = timeouts;
    return idle.count() ? ok(idle) : ok();
  }
  Action handle_cast(Message& req) override {
    if (auto m = req.match({"idle", _int}))
      return noreply(std::chrono::milliseconds(m[0].as_int()));
    return noreply();
  }
  Action handle_info(Message& msg) override {
    if (msg == "timeout") timeouts_->fetch_add(1);
    return noreply();
  }

 private:
  std::atomic<int>* timeouts_ = nullptr;
};

std::size_t mailbox_length(Node& node, const Pid& pid) {
  for (const ProcessInfo& info : node.processes()) {
    if (info.pid == pid) return info.mailbox_length;
  }
  return 0;
}

TEST(IdleTimeoutTest, AStaleTimeoutDoesNotCancelTheNextOne) {
  // Manual scheduling holds the server still while its first timeout fires behind a message.
  Node node{NodeOptions{.name = "r2", .manual_scheduling = true}};
  Inbox me{node};
  std::atomic<int> timeouts{0};
  auto server = start<Idler>(node, &timeouts, 0ms);
  ASSERT_OK(server);
  cast(*server, tuple("idle", 20));
  node.run_until_idle();  // the first idle timeout is armed
  cast(*server, tuple("idle", 40));
  // The first timeout fires before the server runs: it queues behind the second cast. A later
  // timer to the Inbox says when it has (timers fire in deadline order).
  send_after(me.pid(), "probe", 30ms);
  ASSERT_TRUE(eventually([&] { return mailbox_length(node, me.pid()) == 1; }));
  EXPECT_TRUE(eventually(
      [&] {
        node.run_until_idle();
        return timeouts.load() == 1;
      },
      2s));
}

TEST(IdleTimeoutTest, ProcessInfoDoesNotDisarmTheIdleTimeout) {
  Node node{NodeOptions{.name = "r3", .schedulers = 2}};
  std::atomic<int> timeouts{0};
  auto server = start<Idler>(node, &timeouts, 200ms);
  ASSERT_OK(server);
  ASSERT_OK(node.process_info(*server));
  EXPECT_TRUE(eventually([&] { return timeouts.load() == 1; }, 2s));
}

// -- bounded mailboxes --------------------------------------------------------------------

class Sink : public GenServer {
 public:
  Action handle_cast(Message&) override { return noreply(); }
};

TEST(BoundedMailboxTest, DropOldestKeepsAStopRequest) {
  Node node{NodeOptions{.name = "r4", .manual_scheduling = true}};
  auto server =
      start<Sink>(node, SpawnOptions{.max_mailbox = 2, .overflow = Overflow::kDropOldest});
  ASSERT_OK(server);
  std::optional<Status> stopped;  // written by the stopper, which runs on this thread
  spawn(node, [&] { stopped = stop(*server, reasons::normal(), 1s); });
  ASSERT_TRUE(node.step());  // the stopper sends the stop request and waits
  for (int i = 0; i < 3; ++i) cast(*server, "work");  // the mailbox overflows behind it
  ASSERT_TRUE(eventually([&] {
    node.run_until_idle();
    return stopped.has_value();
  }));
  EXPECT_OK(*stopped);
}

// -- introspection ------------------------------------------------------------------------

TEST(IntrospectionTest, ANewProcessIsListedWithItsPid) {
  Node node{NodeOptions{.name = "r5", .schedulers = 2}};
  std::atomic<bool> done{false};
  std::thread spawner([&] {
    for (int i = 0; i < 2000; ++i) spawn(node, [] {});
    done = true;
  });
  bool all_valid = true;
  while (!done.load()) {
    for (const ProcessInfo& info : node.processes()) all_valid = all_valid && info.pid.valid();
  }
  spawner.join();
  EXPECT_TRUE(all_valid);
}

// -- Inbox ----------------------------------------------------------------------------------

TEST(InboxTest, ClosingInboxesOutOfOrderLeavesNoCurrentProcess) {
  Node node{NodeOptions{.name = "r6", .schedulers = 1}};
  auto first = std::make_unique<Inbox>(node);
  auto second = std::make_unique<Inbox>(node);
  EXPECT_EQ(self(), second->pid());
  first.reset();
  EXPECT_EQ(self(), second->pid());
  second.reset();
  EXPECT_FALSE(has_self());  // not the first Inbox, which is gone
}

class ReturnsOk : public GenServer {
 public:
  Action handle_call(Message&, From) override { return ok(); }
};

TEST(CallWhenServerMisbehavesTest, HandleCallReturningOkCrashesWithBadReturnValue) {
  Node node(NodeOptions{.name = "badret", .schedulers = 1});
  Inbox me(node);
  Pid p = start<ReturnsOk>(node).value();
  auto r = call(p, "hi", 2s);
  EXPECT_EQ(r.error(), tuple("bad_return_value", "ok"));
}

TEST(InboxTest, KillArrivesAsAnExitMessageOnAPlainThread) {
  Node node(NodeOptions{.name = "killinbox", .schedulers = 1});
  Inbox me(node);
  exit(me.pid(), "kill");
  auto m = receive(2s);
  ASSERT_TRUE(m.has_value());
  ASSERT_NE(m->get<Exit>(), nullptr);
  EXPECT_EQ(m->get<Exit>()->reason, "kill");
  EXPECT_TRUE(has_self());
}

}  // namespace
}  // namespace nodus
