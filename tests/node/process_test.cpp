// Processes: spawn, send/receive, call, ordering, monitors, links, exits, timers, mailboxes.
#include "nodus/node/process.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "nodus/node/node.hpp"
#include "test_util.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using testing::eventually;

class ProcessTest : public ::testing::Test {
 protected:
  Node node{NodeOptions{.name = "t1", .schedulers = 2}};
  Inbox me{node};

  Message next(Timeout t = 5s) { return testing::next_message(t); }

  // A process that answers {echo, From, X} calls with X, and dies on `crash`.
  Pid echo_server() {
    return spawn(node, [] {
      for (;;) {
        Message m = receive();
        if (m == "crash") throw std::runtime_error("asked to crash");
        if (auto x = m.match({"echo", _pid, _})) send(x[0].as_pid(), x[1]);
      }
    });
  }
};

TEST_F(ProcessTest, SpawnedProcessReceivesAndAnswers) {
  Pid p = echo_server();
  send(p, tuple("echo", me.pid(), 42));
  EXPECT_EQ(next(), Term(42));
}

TEST_F(ProcessTest, MessagesBetweenAPairArriveInOrder) {
  const int kCount = 20000;
  Pid sink = me.pid();
  spawn(node, [sink] {
    for (int i = 0; i < kCount; ++i) send(sink, i);
  });
  for (int i = 0; i < kCount; ++i) {
    Message m = next();
    ASSERT_TRUE(m == Term(i)) << "got " << m.to_string() << " expected " << i;
  }
}

struct Blob {
  std::unique_ptr<std::vector<int>> data;
};

TEST_F(ProcessTest, LocalMessagesAreMovedNotCopied) {
  auto data = std::make_unique<std::vector<int>>(1000, 7);
  const std::vector<int>* address = data.get();
  Pid sink = me.pid();
  Pid relay = spawn(node, [sink] {
    Message m = receive();
    send(sink, std::move(m));
  });
  send(relay, Blob{std::move(data)});
  Message m = next();
  const Blob* b = m.get<Blob>();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->data.get(), address);  // the same heap object travelled through
}

TEST_F(ProcessTest, ThrowingProcessEndsAloneWithReasonNamingTheException) {
  Pid p = echo_server();
  Pid q = echo_server();
  Ref r = monitor(p);
  send(p, "crash");
  Message m = next();
  const Down* d = m.get<Down>();
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->ref, r);
  EXPECT_EQ(d->pid, p);
  ASSERT_TRUE(d->reason.is_tuple());
  EXPECT_TRUE(d->reason[0].is_atom("exception"));
  EXPECT_NE(d->reason[1].as_bin().find("std::runtime_error: asked to crash"), std::string::npos)
      << d->reason.to_string();
  send(q, tuple("echo", me.pid(), "still_here"));
  EXPECT_EQ(next(), Term("still_here"));
}

TEST_F(ProcessTest, NonStdExceptionIsNamedByType) {
  Pid p = spawn(node, [] {
    receive();  // throw only once the monitor is in place, or DOWN would say noproc
    throw 42;
  });
  Ref r = monitor(p);
  send(p, "go");
  Message m = next();
  const Down* d = m.get<Down>();
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->ref, r);
  EXPECT_EQ(d->reason.to_string(), "{exception,\"int\"}");
}

TEST_F(ProcessTest, MonitorOfDeadProcessGivesNoproc) {
  Pid p = spawn(node, [] {});
  ASSERT_TRUE(eventually([&] { return node.process_count() == 1; }));  // only the inbox
  monitor(p);
  Message m = next();
  ASSERT_NE(m.get<Down>(), nullptr);
  EXPECT_EQ(m.get<Down>()->reason, "noproc");
}

TEST_F(ProcessTest, DemonitorDropsAQueuedDown) {
  Pid p = spawn(node, [] { receive(); });
  Ref r = monitor(p);
  send(p, "go");
  // Wait until the process is gone, so its Down is already on its way or queued.
  ASSERT_TRUE(eventually([&] { return node.process_count() == 1; }));
  EXPECT_TRUE(demonitor(r));
  send(me.pid(), "marker");
  EXPECT_EQ(next(), Term("marker"));  // no Down before the marker
  // The exit queued its Down before the process left the table (count 1 above): none after.
  EXPECT_FALSE(receive(0ms).has_value());
}

TEST_F(ProcessTest, LinkedCrashKillsTheOtherUnlessTrapping) {
  Node& n = node;
  Pid victim = spawn(n, [&n] {
    Pid crasher = spawn_link(n, [] {
      receive();
      throw std::runtime_error("boom");
    });
    send(crasher, "go");
    receive();  // never returns: the link kills us
  });
  Ref r = monitor(victim);
  Message m = next();
  ASSERT_NE(m.get<Down>(), nullptr);
  EXPECT_EQ(m.get<Down>()->ref, r);
  EXPECT_TRUE(m.get<Down>()->reason[0].is_atom("exception"));
}

TEST_F(ProcessTest, TrappingProcessGetsExitMessage) {
  Pid p = spawn(node, [] { receive(); });
  link(p);  // the Inbox traps exits
  exit(p, "custom");
  Message m = next();
  const Exit* x = m.get<Exit>();
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->from, p);
  EXPECT_EQ(x->reason, "custom");
}

TEST_F(ProcessTest, NormalExitSignalIsIgnoredAndKillIsNot) {
  Pid p = echo_server();
  Ref r = monitor(p);
  exit(p, "normal");
  send(p, tuple("echo", me.pid(), "alive"));
  EXPECT_EQ(next(), Term("alive"));
  exit(p, "kill");
  Message m = next();
  ASSERT_NE(m.get<Down>(), nullptr);
  EXPECT_EQ(m.get<Down>()->ref, r);
  EXPECT_EQ(m.get<Down>()->reason, "killed");
}

TEST_F(ProcessTest, KillIsNotTrappable) {
  Pid p = spawn(node, [] {
    trap_exit(true);
    for (;;) receive();
  });
  Ref r = monitor(p);
  exit(p, "kill");
  Message m = next();
  ASSERT_NE(m.get<Down>(), nullptr);
  EXPECT_EQ(m.get<Down>()->ref, r);
  EXPECT_EQ(m.get<Down>()->reason, "killed");
}

TEST_F(ProcessTest, LinkToDeadProcessSendsNoproc) {
  Pid p = spawn(node, [] {});
  ASSERT_TRUE(eventually([&] { return node.process_count() == 1; }));
  link(p);
  Message m = next();
  ASSERT_NE(m.get<Exit>(), nullptr);
  EXPECT_EQ(m.get<Exit>()->reason, "noproc");
}

TEST_F(ProcessTest, UnlinkStopsPropagation) {
  Pid p = echo_server();
  link(p);
  unlink(p);
  Ref r = monitor(p);
  send(p, "crash");
  Message m = next();
  EXPECT_NE(m.get<Down>(), nullptr) << "expected only the Down, got " << m.to_string();
  EXPECT_EQ(m.get<Down>()->ref, r);
  // An exit tells its links before its monitors, in one step: an Exit would have come first.
  EXPECT_FALSE(receive(0ms).has_value());
}

TEST_F(ProcessTest, SendAfterDeliversAndCancelStopsIt) {
  auto start = std::chrono::steady_clock::now();
  send_after(me.pid(), "late", 30ms);
  // Far enough out that a loaded machine cannot reach it before the cancel below.
  Ref cancelled = send_after(me.pid(), "never", 10s);
  auto left = cancel_timer(cancelled);
  ASSERT_TRUE(left.has_value());
  EXPECT_LE(left->count(), 10000);
  EXPECT_GT(left->count(), 0);
  EXPECT_EQ(next(), Term("late"));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 30ms);
  send(me.pid(), "marker");
  EXPECT_EQ(next(), Term("marker"));  // nothing else came
  EXPECT_FALSE(cancel_timer(cancelled).has_value());
}

TEST_F(ProcessTest, ReceiveTimesOut) {
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(receive(20ms).has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
}

TEST_F(ProcessTest, ProcessReceiveTimeoutInsideFiber) {
  Pid sink = me.pid();
  spawn(node, [sink] {
    auto m = receive(20ms);
    send(sink, m.has_value() ? "got" : "timed_out");
  });
  EXPECT_EQ(next(), Term("timed_out"));
}

TEST_F(ProcessTest, BoundedMailboxRejectsWhenFull) {
  Pid sink = me.pid();
  std::atomic<bool> open{false};
  Pid slow = spawn(
      node,
      [sink, &open] {
        while (!open.load()) std::this_thread::yield();  // busy: the mailbox fills up
        int n = 0;
        while (receive(0ms)) ++n;  // every message was sent before `open`
        send(sink, n);
      },
      SpawnOptions{.max_mailbox = 5, .overflow = Overflow::kReject});
  for (int i = 0; i < 20; ++i) send(slow, i);
  auto dropped = [&] {
    for (auto& p : node.processes()) {
      if (p.pid == slow) return p.dropped;
    }
    return std::uint64_t{0};
  };
  EXPECT_EQ(dropped(), 15u);
  EXPECT_EQ(call(slow, "hello", 1s).error(), "overloaded");
  open = true;
  EXPECT_EQ(next(), Term(5));
}

TEST_F(ProcessTest, BoundedMailboxDropOldestKeepsNewest) {
  Pid sink = me.pid();
  std::atomic<bool> open{false};
  Pid slow = spawn(
      node,
      [sink, &open] {
        while (!open.load()) std::this_thread::yield();
        List seen;
        while (auto m = receive(0ms)) seen.push_back(m->term());  // all sent before `open`
        send(sink, Term(std::move(seen)));
      },
      SpawnOptions{.max_mailbox = 3, .overflow = Overflow::kDropOldest});
  for (int i = 0; i < 100; ++i) send(slow, i);
  open = true;
  Message m = next();
  EXPECT_EQ(m.term(), list(97, 98, 99));
}

TEST_F(ProcessTest, IntrospectionListsProcesses) {
  Pid p = echo_server();
  send(p, tuple("echo", me.pid(), 1));
  next();
  std::vector<ProcessInfo> all = node.processes();
  bool found = false;
  for (const auto& info : all) {
    if (info.pid != p) continue;
    found = true;
    EXPECT_EQ(info.behaviour, "process");
    EXPECT_EQ(info.messages_handled, 1u);
    EXPECT_EQ(info.mailbox_length, 0u);
    EXPECT_GT(info.memory_bytes, 0u);
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(all.size(), 2u);  // the server and the Inbox
}

TEST_F(ProcessTest, NodeUsesConfiguredSchedulerCount) {
  Node one(NodeOptions{.name = "single", .schedulers = 1});
  EXPECT_EQ(one.schedulers(), 1u);
  EXPECT_EQ(node.schedulers(), 2u);
}

TEST_F(ProcessTest, PidsPrintWithNodeName) {
  Pid p = echo_server();
  EXPECT_EQ(p.node, atom("t1"));
  EXPECT_EQ(p.creation, node.creation());
  EXPECT_EQ(p.to_string().rfind("<t1.", 0), 0u) << p.to_string();
}

// The words a caller matches are the error table's: a reason made from a code gives that code
// back, and any other reason (a callee's exit) reads as exited.
TEST(ReasonsTest, ReasonsForErrorCodesAreTheTablesNames) {
  EXPECT_EQ(reasons::of(ErrorCode::kNodeDown), Reason("nodedown"));
  EXPECT_EQ(reasons::noproc(), Reason("noproc"));
  EXPECT_EQ(reasons::of(ErrorCode::kAlreadyStarted, Pid{Atom("n1"), 1, 2}),
            Reason(tuple("already_started", Pid{Atom("n1"), 1, 2})));
  EXPECT_EQ(reasons::to_status(reasons::of(ErrorCode::kOverloaded)).code(), ErrorCode::kOverloaded);
  Status timeout = reasons::to_status(reasons::from_status(Status(ErrorCode::kTimeout, "5 s")));
  EXPECT_EQ(timeout.code(), ErrorCode::kTimeout);
  EXPECT_EQ(timeout.message(), "5 s");
  Status crashed = reasons::to_status(Reason(tuple("exception", bin("boom"))));
  EXPECT_EQ(crashed.code(), ErrorCode::kExited);
  EXPECT_EQ(reasons::to_status(reasons::normal()).code(), ErrorCode::kExited);
}

TEST_F(ProcessTest, CallingYourselfAndAFullMailboxAreTheTablesWords) {
  auto self_call = call(me.pid(), "ping", 100ms);
  ASSERT_FALSE(self_call.ok());
  EXPECT_EQ(reasons::to_status(self_call.error()).code(), ErrorCode::kCallingSelf);
  SpawnOptions o;
  o.max_mailbox = 1;
  Pid full = spawn(
      node, [] { sleep_for(30s); }, o);  // takes no message
  send(full, "first");
  auto r = call(full, "one more", 1s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(reasons::to_status(r.error()).code(), ErrorCode::kOverloaded);
  exit(full, reasons::kill());
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

// Erlang's erlang:send_after to a pid: a timer aimed at a dead process is no timer, and a
// process's timers go with it; cancel_timer then says there was nothing left to cancel.
TEST_F(ProcessTest, SendAfterToADeadProcessSetsNoTimer) {
  Pid p = spawn(node, [] {});
  Ref watch = monitor(p);
  ASSERT_TRUE(await_down(watch, 5s).has_value());
  Ref timer = send_after(p, "late", 10s);
  EXPECT_FALSE(cancel_timer(timer).has_value());
}

TEST_F(ProcessTest, AProcesssTimersAreCancelledWhenItExits) {
  Pid p = spawn(node, [] { (void)receive(); });
  Ref timer = send_after(p, "later", 10s);
  Ref other = send_after(me.pid(), "mine", 10s);
  Ref watch = monitor(p);
  exit(p, reasons::kill());
  ASSERT_TRUE(await_down(watch, 5s).has_value());  // its timers went before the Down was sent
  EXPECT_FALSE(cancel_timer(timer).has_value());
  EXPECT_TRUE(cancel_timer(other).has_value());  // another process's timer stays
}

TEST_F(ProcessTest, AFiredTimerIsForgotten) {
  Ref timer = send_after(me.pid(), "ring", 1ms);
  EXPECT_EQ(next(), "ring");
  EXPECT_FALSE(cancel_timer(timer).has_value());
}

}  // namespace
}  // namespace nodus
