// The GenServer behaviour: start and init results, call/cast/info/continue, replies later,
// timeouts, stop and terminate, chains of calls on one scheduler thread.
#include "nodus/node/gen_server.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using testing::eventually;

// A server that records how it ends by sending {terminated, Reason} to a watcher.
class Recorder : public GenServer {
 public:
  Action init(Pid watcher) {
    watcher_ = watcher;
    return ok();
  }
  Action handle_call(Message& req, From from) override {
    if (req == "ping") return reply("pong");
    if (auto m = req.match({"add", _int, _int})) return reply(m[0].as_int() + m[1].as_int());
    if (req == "later") {
      pending_ = from;
      return noreply();
    }
    if (req == "answer_pending") {
      reply(*pending_, "answered");
      return reply("done");
    }
    if (auto m = req.match({"sleep", _int})) {
      std::this_thread::sleep_for(std::chrono::milliseconds(m[0].as_int()));
      return reply("slept");
    }
    if (req == "crash") throw std::logic_error("bad state");
    if (req == "stop_with_reply") return stop_and_reply("normal", "bye");
    if (req == "stop_no_reply") return stop("my_reason");
    if (req == "continue") return reply("first", Continue{"step"});
    if (req == "count") return reply(static_cast<std::int64_t>(casts_));
    if (req == "who_calls") return reply(tuple("sent_by", sender()));
    return GenServer::handle_call(req, from);
  }
  Action handle_cast(Message& req) override {
    if (req == "inc") ++casts_;
    if (req == "die") throw 7;
    return noreply();
  }
  Action handle_info(Message& msg) override {
    if (auto m = msg.match({"tell", _pid})) send(m[0].as_pid(), tuple("info_seen", casts_));
    if (msg == "who_sent") send(watcher_, tuple("sent_by", sender()));
    if (msg == "timeout") send(watcher_, "idle_timeout");
    if (msg == "go_idle") return noreply(30ms);
    return noreply();
  }
  Action handle_continue(Term& arg) override {
    send(watcher_, tuple("continued", arg));
    return noreply();
  }
  void terminate(const Reason& reason) override {
    send(watcher_, tuple("terminated", reason.term()));
  }
  Term format_status() override { return map({{"casts", casts_}}); }

 private:
  Pid watcher_;
  std::optional<From> pending_;
  std::int64_t casts_ = 0;
};

class GenServerTest : public ::testing::Test {
 protected:
  Node node{NodeOptions{.name = "g1", .schedulers = 2}};
  Inbox me{node};

  Message next(Timeout t = 5s) { return testing::next_message(t); }
  Pid start_recorder() {
    auto r = start<Recorder>(node, me.pid());
    EXPECT_TRUE(r.ok());
    return r.value();
  }
};

TEST_F(GenServerTest, CallReplies) {
  Pid p = start_recorder();
  EXPECT_EQ(call(p, "ping").value(), Term("pong"));
  EXPECT_EQ(call(p, tuple("add", 2, 3)).value(), Term(5));
}

TEST_F(GenServerTest, CastsAreHandledInOrderBeforeALaterCall) {
  Pid p = start_recorder();
  for (int i = 0; i < 1000; ++i) cast(p, "inc");
  EXPECT_EQ(call(p, "count").value(), Term(1000));
}

TEST_F(GenServerTest, PlainMessagesGoToHandleInfo) {
  Pid p = start_recorder();
  cast(p, "inc");
  send(p, tuple("tell", me.pid()));
  EXPECT_EQ(next(), tuple("info_seen", 1));
}

TEST_F(GenServerTest, SenderIsTheProcessWhoseMessageIsHandled) {
  Pid p = start_recorder();
  EXPECT_EQ(call(p, "who_calls").value(), tuple("sent_by", me.pid()));
  send(p, "who_sent");
  EXPECT_EQ(next(), tuple("sent_by", me.pid()));
  Pid other = spawn(node, [p] { send(p, "who_sent"); });
  EXPECT_EQ(next(), tuple("sent_by", other));
  send_after(p, "who_sent", 1ms);  // a timer has no sender
  EXPECT_EQ(next(), tuple("sent_by", Pid{}));
}

TEST_F(GenServerTest, DeferredReplyReachesTheCaller) {
  Pid p = start_recorder();
  Pid sink = me.pid();
  spawn(node, [p, sink] { send(sink, tuple("late_reply", call(p, "later").value())); });
  ASSERT_TRUE(eventually([&] {
    for (auto& i : node.processes()) {
      if (i.pid == p) return i.messages_handled == 1;
    }
    return false;
  }));
  EXPECT_EQ(call(p, "answer_pending").value(), Term("done"));
  EXPECT_EQ(next(), tuple("late_reply", "answered"));
}

TEST_F(GenServerTest, CallTimesOutAndTheLateReplyIsDropped) {
  Pid p = start_recorder();
  auto r = call(p, tuple("sleep", 100), 20ms);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "timeout");
  // The server still answers after the caller gave up; that reply must not surface. The pong
  // follows it, so once the pong is here, so is the late reply, had it been kept.
  EXPECT_EQ(call(p, "ping").value(), Term("pong"));
  EXPECT_FALSE(receive(0ms).has_value());
}

TEST_F(GenServerTest, CallInsideAProcessTimesOutToo) {
  Pid p = start_recorder();
  Pid sink = me.pid();
  spawn(node, [p, sink] {
    auto r = call(p, tuple("sleep", 100), 20ms);
    send(sink, r.ok() ? Term("replied") : r.error().term());
    (void)call(p, "ping");  // answered after the late reply
    send(sink, receive(0ms) ? "stray" : "clean");
  });
  EXPECT_EQ(next(), Term("timeout"));
  EXPECT_EQ(next(), Term("clean"));
}

TEST_F(GenServerTest, InfiniteTimeoutWaits) {
  Pid p = start_recorder();
  EXPECT_EQ(call(p, tuple("sleep", 30), infinity).value(), Term("slept"));
}

TEST_F(GenServerTest, CallToDeadProcessFailsAtOnce) {
  Pid p = start_recorder();
  ASSERT_OK(stop(p));
  next();  // terminated
  auto t0 = std::chrono::steady_clock::now();
  auto r = call(p, "ping", 10s);
  EXPECT_EQ(r.error(), "noproc");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
}

TEST_F(GenServerTest, CallerGetsTheExitReasonWhenTheServerCrashes) {
  Pid p = start_recorder();
  auto r = call(p, "crash");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().to_string(), "{exception,\"std::logic_error: bad state\"}");
  // terminate ran with the same reason
  EXPECT_EQ(next(), tuple("terminated", r.error().term()));
}

TEST_F(GenServerTest, StopWithReplyAnswersFirst) {
  Pid p = start_recorder();
  EXPECT_EQ(call(p, "stop_with_reply").value(), Term("bye"));
  EXPECT_EQ(next(), tuple("terminated", "normal"));
}

TEST_F(GenServerTest, StopWithoutReplyGivesTheCallerTheReason) {
  Pid p = start_recorder();
  Ref r = monitor(p);
  auto res = call(p, "stop_no_reply");
  EXPECT_EQ(res.error(), "my_reason");
  EXPECT_EQ(next(), tuple("terminated", "my_reason"));
  Message m = next();
  ASSERT_NE(m.get<Down>(), nullptr);
  EXPECT_EQ(m.get<Down>()->ref, r);
  EXPECT_EQ(m.get<Down>()->reason, "my_reason");
}

TEST_F(GenServerTest, CallingSelfIsAnError) {
  class Selfish : public GenServer {
    Action handle_call(Message&, From) override {
      return reply(call(self(), "again").error().term());
    }
  };
  Pid p = start<Selfish>(node).value();
  EXPECT_EQ(call(p, "go").value(), Term("calling_self"));
}

TEST_F(GenServerTest, HandleContinueRunsBeforeTheNextMessage) {
  Pid p = start_recorder();
  EXPECT_EQ(call(p, "continue").value(), Term("first"));
  EXPECT_EQ(next(), tuple("continued", "step"));
}

TEST_F(GenServerTest, IdleTimeoutArrivesAsTimeoutInfo) {
  Pid p = start_recorder();
  send(p, "go_idle");
  EXPECT_EQ(next(), Term("idle_timeout"));
}

TEST_F(GenServerTest, CastCrashTerminatesWithExceptionReason) {
  Pid p = start_recorder();
  cast(p, "die");
  Message m = next();
  EXPECT_EQ(m.term(), tuple("terminated", tuple("exception", bin("int"))));
}

TEST_F(GenServerTest, StopRunsTerminateAndWaits) {
  Pid p = start_recorder();
  Status s = stop(p, "shutdown", 1s);
  ASSERT_OK(s);
  EXPECT_EQ(next(), tuple("terminated", "shutdown"));
  EXPECT_EQ(stop(p).code(), ErrorCode::kNoProc);
}

TEST_F(GenServerTest, FormatStatusIsShownByProcessInfo) {
  Pid p = start_recorder();
  cast(p, "inc");
  auto info = node.process_info(p);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->behaviour, "gen_server");
  EXPECT_NE(info->type.find("Recorder"), std::string::npos) << info->type;
  ASSERT_TRUE(info->status.has_value());
  EXPECT_EQ(*info->status, map({{"casts", 1}}));
}

TEST_F(GenServerTest, SendRequestAndWaitResponse) {
  Pid p = start_recorder();
  RequestId a = send_request(p, tuple("add", 1, 1));
  RequestId b = send_request(p, "ping");
  EXPECT_EQ(wait_response(b).value(), Term("pong"));
  EXPECT_EQ(wait_response(a).value(), Term(2));
  RequestId slow = send_request(p, tuple("sleep", 60));
  EXPECT_EQ(wait_response(slow, 5ms).error(), "timeout");
  EXPECT_EQ(wait_response(slow, 5s).value(), Term("slept"));  // still outstanding
}

std::atomic<int> g_shutdown_terminations{0};

class ShutdownProbe : public GenServer {
 public:
  void terminate(const Reason& reason) override {
    if (reason == "shutdown") g_shutdown_terminations.fetch_add(1);
  }
};

TEST_F(GenServerTest, NodeShutdownRunsTerminate) {
  Node other(NodeOptions{.name = "g2", .schedulers = 1});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(start<ShutdownProbe>(other).ok());
  g_shutdown_terminations = 0;
  other.shutdown();
  EXPECT_EQ(g_shutdown_terminations.load(), 3);
  EXPECT_EQ(other.process_count(), 0u);
}

// Waits in a handler (handle_continue right after init) when the node shuts down.
class WaitingProbe : public ShutdownProbe {
 public:
  Action init() { return ok(Continue{"wait"}); }
  Action handle_continue(Term&) override {
    (void)receive(10s);
    return noreply();
  }
};

TEST_F(GenServerTest, NodeShutdownRunsTerminateEvenWhileAHandlerWaits) {
  Node other(NodeOptions{.name = "g3", .schedulers = 1});
  Pid p = start<WaitingProbe>(other).value();
  ASSERT_TRUE(eventually([&] {
    for (auto& i : other.processes()) {
      if (i.pid == p) return i.waiting;
    }
    return false;
  }));
  g_shutdown_terminations = 0;
  other.shutdown();
  EXPECT_EQ(g_shutdown_terminations.load(), 1);
}

// -- typed messages --------------------------------------------------------------------

struct Deposit {
  std::int64_t amount;
};
struct Withdraw {
  std::int64_t amount;
};
struct Balance {
  std::int64_t value;
};

class Account : public GenServer {
 public:
  Action handle_call(Message& req, From) override {
    return req.visit(
        [&](const Deposit& d) {
          balance_ += d.amount;
          return reply(Balance{balance_});
        },
        [&](const Withdraw& w) {
          if (w.amount > balance_) return reply(tuple("error", "insufficient_funds"));
          balance_ -= w.amount;
          return reply(Balance{balance_});
        },
        [&](const Term& t) { return reply(tuple("error", tuple("unknown", t))); });
  }

 private:
  std::int64_t balance_ = 0;
};

TEST_F(GenServerTest, TypedMessagesDispatchByType) {
  Pid p = start<Account>(node).value();
  EXPECT_EQ(call_as<Balance>(p, Deposit{100}).value().value, 100);
  EXPECT_EQ(call_as<Balance>(p, Withdraw{30}).value().value, 70);
  EXPECT_EQ(call(p, Withdraw{500}).value(), tuple("error", "insufficient_funds"));
  EXPECT_EQ(call(p, "what").value(), tuple("error", tuple("unknown", "what")));
  // A typed reply read as a term is a clear error, not a crash.
  EXPECT_TRUE(call(p, Deposit{1}).error()[0].is_atom("badarg"));
  // A reply of another type than the one asked for is the callee's protocol's fault.
  auto other = call_as<Balance>(p, "what");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(reasons::to_status(other.error()).code(), ErrorCode::kProtocol);
}

TEST_F(GenServerTest, TypedRepliesToManyRequestsAreGatheredAndATimedOutOneIsAbandoned) {
  Pid p = start<Account>(node).value();
  std::vector<RequestId> ids;
  for (int i = 1; i <= 5; ++i) ids.push_back(send_request(p, Deposit{i}));
  std::int64_t expect = 0;
  for (int i = 1; i <= 5; ++i) {
    expect += i;
    auto r = receive_response_as<Balance>(ids[static_cast<std::size_t>(i - 1)], 5s);
    ASSERT_TRUE(r.ok()) << r.error();
    EXPECT_EQ(r->value, expect);
  }
  // Another type than the one asked for: the protocol's fault, named.
  auto other = receive_response_as<Balance>(send_request(p, "what"), 5s);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(reasons::to_status(other.error()).code(), ErrorCode::kProtocol);
  EXPECT_TRUE(receive_response_as<Term>(send_request(p, Withdraw{500}), 5s)
                  .value()
                  .match({"error", "insufficient_funds"}));
  // Timed out: abandoned, so the reply that comes later is dropped (wait_response would have
  // kept it), and never shows up as a message.
  Pid slow = start_recorder();
  RequestId late = send_request(slow, tuple("sleep", 60));
  EXPECT_EQ(receive_response_as<Term>(late, 5ms).error(), "timeout");
  EXPECT_EQ(call(slow, "ping").value(), Term("pong"));  // answered after the sleep's reply
  EXPECT_EQ(wait_response(late, 50ms).error(), "timeout");
  EXPECT_FALSE(receive(50ms).has_value());
}

class SlowToStop : public GenServer {
 public:
  void terminate(const Reason&) override { receive(200ms); }
};

TEST_F(GenServerTest, StopTimesOutWhenTerminateOutlastsTheTimeout) {
  Pid p = start<SlowToStop>(node).value();
  Status s = stop(p, "normal", 20ms);
  EXPECT_EQ(s.code(), ErrorCode::kTimeout);
  EXPECT_TRUE(eventually([&] { return node.process_count() == 1; }));  // it does stop later
}

// -- init results -------------------------------------------------------------------

class Init : public GenServer {
 public:
  Action init(int value) {
    if (value < 0) return stop("invalid_initial_value");
    if (value == 0) return ignore();
    if (value == 1) throw std::runtime_error("init blew up");
    value_ = value;
    if (value == 99) return ok(Continue{"load"});
    return ok();
  }
  Action handle_continue(Term&) override {
    loaded_ = true;
    return noreply();
  }
  Action handle_call(Message&, From) override { return reply(tuple(value_, loaded_)); }

 private:
  int value_ = 0;
  bool loaded_ = false;
};

TEST_F(GenServerTest, InitWithParams) {
  auto r = start<Init>(node, 42);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(call(*r, "get").value(), tuple(42, false));
}

TEST_F(GenServerTest, InitStopMakesStartReturnTheReason) {
  auto r = start<Init>(node, -5);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "invalid_initial_value");
  EXPECT_TRUE(eventually([&] { return node.process_count() == 1; }));
}

class EagerContinue : public GenServer {
 public:
  Action init(Pid watcher) {
    watcher_ = watcher;
    return ok(Continue{"go"});
  }
  Action handle_continue(Term& arg) override {
    send(watcher_, tuple("continued", arg));
    return noreply();
  }

 private:
  Pid watcher_;
};

TEST_F(GenServerTest, InitContinueRunsWithoutWaitingForAMessage) {
  ASSERT_TRUE(start<EagerContinue>(node, me.pid()).ok());
  EXPECT_EQ(next(), tuple("continued", "go"));
}

TEST_F(GenServerTest, InitIgnore) {
  auto r = start<Init>(node, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "ignore");
}

TEST_F(GenServerTest, InitThrowing) {
  auto r = start<Init>(node, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().to_string(), "{exception,\"std::runtime_error: init blew up\"}");
}

TEST_F(GenServerTest, InitContinueRunsBeforeFirstCall) {
  auto r = start<Init>(node, 99);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(call(*r, "get").value(), tuple(99, true));
}

TEST_F(GenServerTest, StartLinkFailureDoesNotKillTheCaller) {
  const std::size_t before = node.process_count();
  auto r = start_link<Init>(node, -1);
  EXPECT_EQ(r.error(), "invalid_initial_value");
  // An exit tells its links before the process leaves the table: no Exit either (OTP 26).
  ASSERT_TRUE(eventually([&] { return node.process_count() == before; }));
  EXPECT_FALSE(receive(0ms).has_value());
}

TEST_F(GenServerTest, StartLinkCrashReachesTheLinkedCaller) {
  auto r = start_link<Recorder>(node, me.pid());
  ASSERT_TRUE(r.ok());
  cast(*r, "die");
  bool saw_exit = false;
  for (int i = 0; i < 2; ++i) {
    Message m = next();
    if (const Exit* x = m.get<Exit>()) {
      saw_exit = true;
      EXPECT_EQ(x->from, *r);
    }
  }
  EXPECT_TRUE(saw_exit);
}

// -- call chains without blocking threads --------------------------------------------

class Forwarder : public GenServer {
 public:
  Action init(Pid next) {
    next_ = next;
    return ok();
  }
  Action handle_call(Message& req, From) override {
    if (!next_) return reply(req.term());
    auto r = call(next_, req.term(), 10s);
    return reply(r.ok() ? r.value() : r.error().term());
  }

 private:
  Pid next_;
};

TEST(GenServerChainTest, ThousandChainsCompleteOnOneSchedulerThread) {
  Node node(NodeOptions{.name = "chain", .schedulers = 1});
  Inbox me(node);
  // 1,000 independent A -> B -> C chains, plus 1,000 callers sharing one B -> C pair.
  const int kChains = 1000;
  std::vector<Pid> heads;
  for (int i = 0; i < kChains; ++i) {
    Pid c = start<Forwarder>(node, Pid{}).value();
    Pid b = start<Forwarder>(node, c).value();
    heads.push_back(start<Forwarder>(node, b).value());
  }
  Pid shared_c = start<Forwarder>(node, Pid{}).value();
  Pid shared_b = start<Forwarder>(node, shared_c).value();
  for (int i = 0; i < kChains; ++i) heads.push_back(start<Forwarder>(node, shared_b).value());

  // Every head is called at once by its own requester process.
  Pid sink = me.pid();
  for (int i = 0; i < 2 * kChains; ++i) {
    Pid head = heads[i];
    spawn(node,
          [head, i, sink] { send(sink, tuple(i, call(head, i, 30s).value_or(Term("error")))); });
  }
  std::vector<bool> seen(2 * kChains, false);
  for (int i = 0; i < 2 * kChains; ++i) {
    auto m = receive(30s);
    ASSERT_TRUE(m.has_value()) << "chain stalled after " << i << " replies";
    const Term& t = m->term();
    ASSERT_EQ(t[0], t[1]) << t.to_string();
    seen[t[0].as_int()] = true;
  }
  for (int i = 0; i < 2 * kChains; ++i) EXPECT_TRUE(seen[i]);
}

// -- a server that dies or misbehaves mid-call, idle timeouts, bounded mailboxes --------

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

}  // namespace
}  // namespace nodus
