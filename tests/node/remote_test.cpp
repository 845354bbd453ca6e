// Processes on two nodes linked over real ZeroMQ sockets on loopback (two Nodes in one OS
// process; the multi-process tests start separate node processes). The same API as local:
// call, cast, send, monitor, link, and what happens when the other node goes away.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "nodus/node/gen_server.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "nodus/node/wire.hpp"
#include "test_util.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using testing::eventually;

struct Greeting {
  std::string text;
  std::int64_t times = 0;
  NODUS_MESSAGE(Greeting, 1001, text, times);
};
struct Unregistered {
  std::int64_t x = 0;
  NODUS_MESSAGE(Unregistered, 1002, x);
};

class Echo : public GenServer {
 public:
  Action handle_call(Message& req, From) override {
    if (const Greeting* g = req.get<Greeting>()) {
      return reply(Greeting{g->text + "!", g->times + 1});
    }
    if (req == "crash") throw std::runtime_error("remote boom");
    if (auto m = req.match({"sleep", _int})) {
      sleep_for(std::chrono::milliseconds(m[0].as_int()));
      return reply("slept");
    }
    if (req == "mark") return reply(++marks_);
    if (req == "marks") return reply(marks_);
    return reply(tuple("echo", req.term()));
  }
  Action handle_cast(Message& req) override {
    last_ = req.is_term() ? req.term() : Term("typed");
    if (last_.is_int()) {  // numbered casts: count those that did not follow the one before
      if (last_.as_int() != next_) ++out_of_order_;
      next_ = last_.as_int() + 1;
    }
    return noreply();
  }
  Action handle_info(Message& msg) override {
    if (auto m = msg.match({"tell", _pid})) send(m[0].as_pid(), tuple("last", last_));
    if (auto m = msg.match({"who_sent", _pid})) send(m[0].as_pid(), tuple("sent_by", sender()));
    if (auto m = msg.match({"order", _pid}))
      send(m[0].as_pid(), tuple("out_of_order", out_of_order_));
    return noreply();
  }

 private:
  Term last_;
  std::int64_t next_ = 0;
  std::int64_t out_of_order_ = 0;
  std::int64_t marks_ = 0;
};

class RemoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(register_message<Greeting>().ok());
    a_ = testing::start_loopback_node("a");
    b_ = testing::start_loopback_node("b");
    a_->connect(b_->endpoint());
    ASSERT_TRUE(eventually([&] { return linked(*a_, "b") && linked(*b_, "a"); }));
    me_ = std::make_unique<Inbox>(*a_);
  }
  void TearDown() override {
    me_.reset();
    b_.reset();
    a_.reset();
  }

  static bool linked(Node& n, const char* peer) {
    for (Atom a : n.nodes()) {
      if (a == atom(peer)) return true;
    }
    return false;
  }
  Message next(Timeout t = 5s) { return testing::next_message(t); }

  std::unique_ptr<Node> a_, b_;
  std::unique_ptr<Inbox> me_;  // a plain thread's mailbox on node a
};

TEST_F(RemoteTest, CallReachesAProcessOnAnotherNode) {
  Pid echo = start<Echo>(*b_).value();
  EXPECT_EQ(echo.node, atom("b"));
  EXPECT_EQ(call(echo, tuple(1, "two", bin("three"))).value(),
            tuple("echo", tuple(1, "two", bin("three"))));
}

TEST_F(RemoteTest, TypedMessagesCrossTheWire) {
  Pid echo = start<Echo>(*b_).value();
  auto r = call_as<Greeting>(echo, Greeting{"hi", 1});
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->text, "hi!");
  EXPECT_EQ(r->times, 2);
}

TEST_F(RemoteTest, UnknownTagIsABadargReplyNotACrash) {
  Pid echo = start<Echo>(*b_).value();
  auto r = call(echo, Unregistered{5});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error()[0].is_atom("badarg")) << r.error().to_string();
  EXPECT_EQ(call(echo, "still").value(), tuple("echo", "still"));
}

TEST_F(RemoteTest, TheSenderOfARemoteMessageIsAPidOfTheLinkedPeer) {
  Pid echo = start<Echo>(*b_).value();
  send(echo, tuple("who_sent", me_->pid()));
  const Message m = next();
  ASSERT_TRUE(m.match({"sent_by", _pid})) << m.to_string();
  EXPECT_EQ(m.term()[1].as_pid(), me_->pid());
  EXPECT_EQ(m.term()[1].as_pid().node, atom("a"));
}

TEST_F(RemoteTest, CastsAndSendsArriveInOrder) {
  Pid echo = start<Echo>(*b_).value();
  for (int i = 0; i < 1000; ++i) cast(echo, i);
  send(echo, tuple("tell", me_->pid()));
  EXPECT_EQ(next(), tuple("last", 999));
  send(echo, tuple("order", me_->pid()));
  EXPECT_EQ(next(), tuple("out_of_order", 0));
}

TEST_F(RemoteTest, ABurstFromAProcessArrivesInOrderAcrossItsSlices) {
  // A process's remote sends leave in batches when its slice ends; 5,000 casts span several
  // slices (a process yields every 2,000 sends) and may resume on another scheduler thread.
  Pid echo = start<Echo>(*b_).value();
  Pid me = me_->pid();
  spawn(*a_, [echo, me] {
    for (int i = 0; i < 5000; ++i) {
      cast(echo, i);
      if (i % 1000 == 999) (void)call(echo, "mark");  // a round trip mid-burst
    }
    send(echo, tuple("tell", me));
    send(echo, tuple("order", me));
  });
  EXPECT_EQ(next(), tuple("last", 4999));
  EXPECT_EQ(next(), tuple("out_of_order", 0));
  EXPECT_EQ(call(echo, "marks").value(), Term(5));
}

TEST_F(RemoteTest, ProcessesThatChangeThreadsKeepTheirRemoteOrder) {
  // A scheduler thread's remote sends wait in its batch across slices (of any process), so a
  // process whose casts wait in one thread's batch may resume on the other thread before that
  // batch leaves. Here eight processes cast one number per slice, each to its own process on
  // b, and between casts wait for a call to a local server, whose reply resumes them wherever
  // the server ran: their casts must still arrive in order.
  constexpr int kSenders = 8;
  constexpr int kCasts = 2000;
  Pid local = start<Echo>(*a_).value();
  Pid me = me_->pid();
  std::vector<Pid> echoes;
  for (int s = 0; s < kSenders; ++s) {
    Pid echo = start<Echo>(*b_).value();
    echoes.push_back(echo);
    spawn(*a_, [echo, local, me] {
      for (int i = 0; i < kCasts; ++i) {
        cast(echo, i);
        (void)call(local, "mark");
      }
      send(echo, tuple("tell", me));
    });
  }
  for (int s = 0; s < kSenders; ++s) EXPECT_EQ(next(), tuple("last", kCasts - 1));
  for (const Pid& echo : echoes) {
    send(echo, tuple("order", me));
    EXPECT_EQ(next(), tuple("out_of_order", 0));
  }
  EXPECT_EQ(call(local, "marks").value(), Term(kSenders * kCasts));
}

// Enough casts to keep the link busy for well over a second (down_after) in each build.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(NDEBUG)
constexpr int kFloodCasts = 300'000;
#else
constexpr int kFloodCasts = 1'500'000;
#endif

TEST_F(RemoteTest, AFloodOfCastsDoesNotStarveHeartbeats) {
  // The receiving side reads a sender that never pauses in bounded chunks, so heartbeats
  // still go out and neither node declares the other down mid-flood (down_after is 1 s here).
  Pid echo = start<Echo>(*b_).value();
  Pid me = me_->pid();
  monitor_node(atom("b"));
  spawn(*a_, [echo, me] {
    for (int i = 0; i < kFloodCasts; ++i) cast(echo, i);
    send(echo, tuple("order", me));
  });
  Message m = next(60s);
  EXPECT_EQ(m, tuple("out_of_order", 0)) << m.to_string();
  EXPECT_EQ(call(echo, "marks").value_or(Term("failed")), Term(0));
  // No NodeDown arrived meanwhile (it would have come before the reply).
  EXPECT_TRUE(linked(*a_, "b") && linked(*b_, "a"));
}

TEST_F(RemoteTest, RemoteCrashGivesTheCallerTheReason) {
  Pid echo = start<Echo>(*b_).value();
  auto r = call(echo, "crash");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().to_string(), "{exception,\"std::runtime_error: remote boom\"}");
}

TEST_F(RemoteTest, MonitorOfARemoteProcessGetsDown) {
  Pid echo = start<Echo>(*b_).value();
  Ref r = monitor(echo);
  ASSERT_TRUE(stop(echo, "bye_now").ok());
  Message m = next();
  ASSERT_NE(m.get<Down>(), nullptr) << m.to_string();
  EXPECT_EQ(m.get<Down>()->ref, r);
  EXPECT_EQ(m.get<Down>()->reason, "bye_now");
}

TEST_F(RemoteTest, LinkToARemoteProcessCarriesItsExit) {
  Pid echo = start<Echo>(*b_).value();
  link(echo);
  exit(echo, "kill");
  Message m = next();
  ASSERT_NE(m.get<Exit>(), nullptr) << m.to_string();
  EXPECT_EQ(m.get<Exit>()->from, echo);
  EXPECT_EQ(m.get<Exit>()->reason, "killed");
}

TEST_F(RemoteTest, RemoteTimeoutDropsTheLateReply) {
  Pid echo = start<Echo>(*b_).value();
  auto r = call(echo, tuple("sleep", 100), 20ms);
  EXPECT_EQ(r.error(), "timeout");
  // The next answer follows the late reply over the link: once it is here, so is that.
  EXPECT_EQ(call(echo, "after", 2s).value(), tuple("echo", "after"));
  EXPECT_FALSE(receive(0ms).has_value());
}

TEST_F(RemoteTest, ARequestWhoseCallerGaveUpIsSkipped) {
  Pid echo = start<Echo>(*b_).value();
  Pid sink = me_->pid();
  // The server is busy for 200 ms; a call with a 20 ms budget waits behind it and is never
  // handled: its deadline travelled with it.
  spawn(*a_, [echo, sink] { send(sink, call(echo, tuple("sleep", 200)).value_or("failed")); });
  ASSERT_TRUE(eventually([&] {
    for (auto& p : b_->processes()) {
      if (p.pid == echo) return p.messages_handled >= 1;
    }
    return false;
  }));
  EXPECT_EQ(call(echo, "mark", 20ms).error(), "timeout");
  EXPECT_EQ(next(), Term("slept"));
  EXPECT_EQ(call(echo, "marks").value_or(Term("failed")), Term(0));
}

TEST_F(RemoteTest, CallToAnUnknownNodeFailsAtOnce) {
  Pid ghost{atom("nowhere"), 1, 42};
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(call(ghost, "hi", 10s).error(), "nodedown");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  Ref r = monitor(ghost);
  Message m = next();
  ASSERT_NE(m.get<Down>(), nullptr);
  EXPECT_EQ(m.get<Down>()->ref, r);
  EXPECT_EQ(m.get<Down>()->reason, "noconnection");
}

TEST_F(RemoteTest, APidOfAnEarlierIncarnationIsNoproc) {
  Pid echo = start<Echo>(*b_).value();
  Pid stale{echo.node, echo.creation + 1, echo.id};
  EXPECT_EQ(call(stale, "hi").error(), "noproc");
}

TEST_F(RemoteTest, NodeGoingAwayEndsMonitorsLinksAndCalls) {
  Pid echo = start<Echo>(*b_).value();
  Ref mon = monitor(echo);
  link(echo);
  monitor_node(atom("b"));
  Pid sink = me_->pid();
  // A call that will still be waiting when b goes.
  spawn(*a_, [echo, sink] {
    send(sink, tuple("call", call(echo, tuple("sleep", 5000), 10s).error().term()));
  });
  ASSERT_TRUE(eventually([&] {
    for (auto& p : b_->processes()) {
      if (p.pid == echo) return p.messages_handled >= 1;
    }
    return false;
  }));
  b_.reset();  // b shuts down: BYE
  bool down = false, exit_seen = false, nodedown = false, call_failed = false;
  for (int i = 0; i < 4; ++i) {
    Message m = next();
    if (const Down* d = m.get<Down>()) {
      down = d->ref == mon && (d->reason == "noconnection" || d->reason == "shutdown");
    } else if (const Exit* x = m.get<Exit>()) {
      exit_seen = x->from == echo;
    } else if (const NodeDown* n = m.get<NodeDown>()) {
      nodedown = n->node == atom("b");
    } else if (auto c = m.match({"call", _})) {
      call_failed = c[0] == Term("nodedown") || c[0] == Term("shutdown");
    }
  }
  EXPECT_TRUE(down);
  EXPECT_TRUE(exit_seen);
  EXPECT_TRUE(nodedown);
  EXPECT_TRUE(call_failed);
  EXPECT_FALSE(linked(*a_, "b"));
}

TEST_F(RemoteTest, NodesJoiningThroughOneSeedFormAFullMesh) {
  // c and d know only a; they must find b, and each other, through a.
  NodeOptions oc;
  oc.name = "c";
  oc.listen = "tcp://127.0.0.1:*";
  oc.cookie = "test-cookie";
  oc.seeds = {a_->endpoint()};
  NodeOptions od = oc;
  od.name = "d";
  auto c = Node::start(oc);
  auto d = Node::start(od);
  ASSERT_TRUE(c.ok() && d.ok());
  auto meshed = [&](Node& n, std::vector<const char*> others) {
    for (const char* o : others) {
      if (!linked(n, o)) return false;
    }
    return true;
  };
  ASSERT_TRUE(eventually([&] {
    return meshed(*a_, {"b", "c", "d"}) && meshed(*b_, {"a", "c", "d"}) &&
           meshed(**c, {"a", "b", "d"}) && meshed(**d, {"a", "b", "c"});
  })) << "a: "
      << a_->nodes().size() << " b: " << b_->nodes().size() << " c: " << (*c)->nodes().size()
      << " d: " << (*d)->nodes().size();
  // And traffic flows between the two that never named each other.
  Pid echo = start<Echo>(**d).value();
  Inbox from_c(**c);
  EXPECT_EQ(call(echo, "via_mesh").value(), tuple("echo", "via_mesh"));
}

TEST_F(RemoteTest, WrongCookieNodesNeverLink) {
  NodeOptions o;
  o.name = "intruder";
  o.listen = "tcp://127.0.0.1:*";
  o.cookie = "not-the-cookie";
  auto intruder = Node::start(std::move(o));
  ASSERT_TRUE(intruder.ok());
  (*intruder)->connect(a_->endpoint());
  Pid echo = start<Echo>(*a_).value();
  ASSERT_TRUE(eventually([&] {
    return a_->network_stats().auth_failures > 0 && (*intruder)->network_stats().auth_failures > 0;
  }));
  EXPECT_FALSE(linked(*a_, "intruder"));
  EXPECT_FALSE(linked(**intruder, "a"));
  Inbox other(**intruder);
  EXPECT_EQ(call(echo, "hi", 1s).error(), "nodedown");
}

TEST_F(RemoteTest, CurveNodesLinkThroughASeedWithItsKeyAndRefuseOthers) {
  auto ka = transport::generate_curve_keys();
  auto kb = transport::generate_curve_keys();
  ASSERT_TRUE(ka.ok() && kb.ok());
  auto curve_node = [](const char* name, const transport::CurveKeys& own,
                       const transport::CurveKeys& other) {
    NodeOptions o = testing::loopback_options(name, "test-cookie", 2000ms);
    o.curve = own;
    o.curve_allowed = {other.public_key};
    return o;
  };
  auto x = Node::start(curve_node("x", *ka, *kb));
  ASSERT_TRUE(x.ok());
  NodeOptions oy = curve_node("y", *kb, *ka);
  oy.seeds = {(*x)->endpoint() + "#" + ka->public_key};
  auto y = Node::start(std::move(oy));
  ASSERT_TRUE(y.ok());
  ASSERT_TRUE(eventually([&] { return linked(**x, "y") && linked(**y, "x"); }));
  Pid echo = start<Echo>(**x).value();
  {
    Inbox from_y(**y);
    EXPECT_EQ(call(echo, "sealed").value(), tuple("echo", "sealed"));
  }
  // A plaintext node with the right cookie is refused by CURVE.
  a_->connect((*x)->endpoint());
  ASSERT_TRUE(eventually([&] { return (*x)->network_stats().curve_refused > 0; }));
  EXPECT_FALSE(linked(**x, "a"));
}

}  // namespace
}  // namespace nodus
