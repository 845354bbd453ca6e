// Nodes as separate OS processes (nodus-testnode children, see cluster.hpp) and a Node in the
// test process itself, talking over ZeroMQ on loopback: linking up, remote call, cast,
// monitor and link, a kill -9 noticed within the detection window, a restart as a new
// incarnation, garbage on the wire, and a wrong cookie.
//
// Children run with a 100 ms heartbeat and declare a peer down after 1000 ms of silence, so
// the suite stays fast; every wait is a poll with a deadline.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "cluster.hpp"
#include "node/test_util.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::Cluster;
using testing::eventually;

constexpr auto kHeartbeat = 100ms;
constexpr auto kDownAfter = 1000ms;
constexpr auto kLinkUpWithin = 15s;  // covers the transport's reconnect backoff

std::set<std::string> names_of(const Term& list) {
  std::set<std::string> out;
  for (const Term& t : list.as_list()) out.emplace(t.as_atom().name());
  return out;
}

class NodeClusterTest : public ::testing::Test {
 protected:
  /// Every node's failure-detection window; a test that tells "at once" from "after the
  /// window" by time sets a long one, so a loaded machine cannot blur the two.
  std::chrono::milliseconds down_after_ = kDownAfter;

  void SetUp() override {
    auto n = cluster_.start_tester(kHeartbeat, down_after_);
    ASSERT_OK(n);
    node_ = std::move(n.value());
    me_ = std::make_unique<Inbox>(*node_);
  }
  void TearDown() override {
    me_.reset();
    if (node_) node_->shutdown();
  }

  /// Starts child `name` seeded with `seeds`; its index.
  std::size_t start_child(const std::string& name, std::vector<std::string> seeds = {},
                          std::string cookie = {}) {
    testing::ChildSpec spec;
    spec.name = name;
    spec.seeds = std::move(seeds);
    spec.cookie = std::move(cookie);
    spec.heartbeat = kHeartbeat;
    spec.down_after = down_after_;
    auto i = cluster_.start(std::move(spec));
    EXPECT_OK(i);
    return i.ok() ? *i : kNoChild;
  }

  /// Starts `n` children c1..cn, each seeded with every earlier one, and links the test's node
  /// to all of them.
  void start_mesh(std::size_t n) {
    std::vector<std::string> seeds;
    for (std::size_t i = 0; i < n; ++i) {
      std::string name = "c";
      name += std::to_string(i + 1);  // (not "c" + ...: GCC 12 warns falsely there)
      std::size_t c = start_child(name, seeds);
      ASSERT_NE(c, kNoChild);
      seeds.push_back(cluster_.endpoint(c));
      node_->connect(cluster_.endpoint(c));
    }
  }

  /// What child i's node says it is linked to (via its Echo), or {} when it does not answer.
  std::set<std::string> nodes_seen_by(std::size_t i) {
    auto r = call(cluster_.echo(i), "nodes", 1s);
    return r.ok() ? names_of(*r) : std::set<std::string>{};
  }
  std::set<std::string> nodes_seen_by_tester() {
    std::set<std::string> out;
    for (Atom a : node_->nodes()) out.emplace(a.name());
    return out;
  }
  /// Every node but `self` among the children and the tester.
  std::set<std::string> everyone_but(const std::string& self) {
    std::set<std::string> out{"tester"};
    for (std::size_t i = 0; i < cluster_.size(); ++i) out.emplace(cluster_.name(i).name());
    out.erase(self);
    return out;
  }
  /// True once every child and the tester see all the others.
  bool full_mesh() {
    if (nodes_seen_by_tester() != everyone_but("tester")) return false;
    for (std::size_t i = 0; i < cluster_.size(); ++i) {
      if (nodes_seen_by(i) != everyone_but(std::string(cluster_.name(i).name()))) return false;
    }
    return true;
  }
  /// Every child calls every other child's Echo (through its own Echo's relay): the empty
  /// string, or the pairs that failed.
  std::string calls_between_children() {
    std::string failed;
    for (std::size_t from = 0; from < cluster_.size(); ++from) {
      for (std::size_t to = 0; to < cluster_.size(); ++to) {
        if (from == to) continue;
        auto r = call(cluster_.echo(from), tuple("relay", cluster_.echo(to), "ping"), 3s);
        if (!r.ok() || *r != tuple("ok", tuple("echo", "ping"))) {
          failed += std::string(cluster_.name(from).name()) + "->" +
                    std::string(cluster_.name(to).name()) + ": " +
                    (r.ok() ? r->to_string() : r.error().to_string()) + "; ";
        }
      }
    }
    return failed;
  }
  std::int64_t child_stat(std::size_t i, const char* counter) {
    auto r = call(cluster_.echo(i), "stats", 1s);
    if (!r.ok()) return -1;
    const Term* v = r->find(Term(counter));
    return v ? v->as_int() : -1;
  }

  Message next(Timeout t = 5s) { return testing::next_message(t); }

  static constexpr std::size_t kNoChild = static_cast<std::size_t>(-1);

  Cluster cluster_;  // declared first: its children are killed last, after the node stopped
  std::unique_ptr<Node> node_;
  std::unique_ptr<Inbox> me_;  // the test thread's mailbox on the tester node
};

TEST_F(NodeClusterTest, ThreeNodesAndTheTestNodeLinkUp) {
  ASSERT_NO_FATAL_FAILURE(start_mesh(3));
  ASSERT_TRUE(eventually([&] { return full_mesh(); }, kLinkUpWithin))
      << "tester sees " << ::testing::PrintToString(nodes_seen_by_tester()) << "; c1 sees "
      << ::testing::PrintToString(nodes_seen_by(0)) << "; c2 sees "
      << ::testing::PrintToString(nodes_seen_by(1)) << "; c3 sees "
      << ::testing::PrintToString(nodes_seen_by(2));
  EXPECT_EQ(calls_between_children(), "");
  for (std::size_t i = 0; i < 3; ++i) EXPECT_TRUE(cluster_.alive(i));
}

// Membership gossip: a node that links to one seed learns the seed's peers and links to them.
TEST_F(NodeClusterTest, ANodeJoiningThroughOneSeedLearnsTheRest) {
  std::size_t c1 = start_child("c1");
  ASSERT_NE(c1, kNoChild);
  ASSERT_NE(start_child("c2", {cluster_.endpoint(c1)}), kNoChild);
  ASSERT_NE(start_child("c3", {cluster_.endpoint(c1)}), kNoChild);
  node_->connect(cluster_.endpoint(c1));
  ASSERT_TRUE(eventually([&] { return full_mesh(); }, kLinkUpWithin))
      << "tester sees " << ::testing::PrintToString(nodes_seen_by_tester()) << "; c2 sees "
      << ::testing::PrintToString(nodes_seen_by(1)) << "; c3 sees "
      << ::testing::PrintToString(nodes_seen_by(2));
}

TEST_F(NodeClusterTest, RemoteCallCastMonitorLinkAcrossProcesses) {
  ASSERT_NO_FATAL_FAILURE(start_mesh(1));
  ASSERT_TRUE(eventually([&] { return full_mesh(); }, kLinkUpWithin));
  const Pid echo = cluster_.echo(0);

  // call: terms of every kind survive the trip.
  Term request = tuple(1, "two", bin("three"), 4.5, list(me_->pid(), map({{"k", -7}})));
  EXPECT_EQ(call(echo, request).value(), tuple("echo", request));

  // cast: at most once, in order per pair; a plain send after them comes after them too.
  for (int i = 0; i < 1000; ++i) cast(echo, i);
  send(echo, tuple("tell", me_->pid()));
  EXPECT_EQ(next(), tuple("last", 999));

  // A call with a budget shorter than the work times out, and its late reply is dropped.
  EXPECT_EQ(call(echo, tuple("sleep", 300), 50ms).error(), "timeout");
  // Its answer follows the late reply over the link: once it is here, so is that.
  EXPECT_EQ(call(echo, "after_sleep", 2s).value(), tuple("echo", "after_sleep"));
  EXPECT_FALSE(receive(0ms).has_value()) << "a late reply arrived as a stray message";

  // monitor and link: a crash on the other process reaches both, with its reason.
  Ref mon = monitor(echo);
  link(echo);
  auto crashed = call(echo, "crash");
  ASSERT_FALSE(crashed.ok());
  const Term reason = tuple("exception", bin("std::runtime_error: crash requested"));
  EXPECT_EQ(crashed.error(), reason);
  bool down_seen = false, exit_seen = false;
  for (int i = 0; i < 2; ++i) {
    Message m = next();
    if (const Down* d = m.get<Down>()) {
      down_seen = d->ref == mon && d->pid == echo && d->reason == reason;
    } else if (const Exit* x = m.get<Exit>()) {
      exit_seen = x->from == echo && x->reason == reason;
    } else {
      ADD_FAILURE() << "unexpected " << m.to_string();
    }
  }
  EXPECT_TRUE(down_seen);
  EXPECT_TRUE(exit_seen);

  // The server is gone; its node is not.
  EXPECT_EQ(call(echo, "hi", 1s).error(), "noproc");
  Ref late = monitor(echo);
  EXPECT_EQ(await_down(late, 2s).value_or("no_down"), "noproc");
  EXPECT_TRUE(cluster_.alive(0));
  EXPECT_EQ(nodes_seen_by_tester(), std::set<std::string>{"c1"});
}

TEST_F(NodeClusterTest, KillNineIsNoticedWithinTheDetectionWindow) {
  ASSERT_NO_FATAL_FAILURE(start_mesh(2));
  ASSERT_TRUE(eventually([&] { return full_mesh(); }, kLinkUpWithin));
  const Pid victim = cluster_.echo(1);
  Ref mon = monitor(victim);
  monitor_node(cluster_.name(1));
  // A call in flight when the node dies.
  const Pid sink = me_->pid();
  spawn(*node_, [victim, sink] {
    auto t0 = Clock::now();
    auto r = call(victim, tuple("sleep", 60000), 30s);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    send(sink, tuple("in_flight", r.ok() ? r.value() : r.error().term(), ms));
  });
  // Positive signal that it is being handled: a quick probe behind it times out.
  ASSERT_TRUE(eventually([&] {
    auto r = call(victim, "stats", 200ms);
    return !r.ok() && r.error() == "timeout";
  }));

  const auto killed_at = Clock::now();
  cluster_.kill_9(1);
  std::chrono::milliseconds down_after{-1}, nodedown_after{-1};
  Term in_flight;
  for (int i = 0; i < 3; ++i) {
    Message m = next(10s);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed_at);
    if (const Down* d = m.get<Down>()) {
      EXPECT_EQ(d->ref, mon);
      EXPECT_EQ(d->reason, "noconnection");
      down_after = ms;
    } else if (const NodeDown* n = m.get<NodeDown>()) {
      EXPECT_EQ(n->node, cluster_.name(1));
      nodedown_after = ms;
    } else if (auto f = m.match({"in_flight", _, _int})) {
      in_flight = f[0];
    } else {
      ADD_FAILURE() << "unexpected " << m.to_string();
    }
  }
  std::printf("kill -9 detected: Down after %lld ms, NodeDown after %lld ms (down_after %lld ms)\n",
              static_cast<long long>(down_after.count()),
              static_cast<long long>(nodedown_after.count()),
              static_cast<long long>(kDownAfter.count()));
  EXPECT_GE(down_after.count(), 0) << "no Down";
  EXPECT_LT(down_after, 3s);
  EXPECT_GE(nodedown_after.count(), 0) << "no NodeDown";
  EXPECT_LT(nodedown_after, 3s);
  EXPECT_EQ(in_flight, Term("nodedown"));

  // From now on a call fails at once, not after its 10 s timeout (the bound leaves room for a
  // loaded machine).
  const auto t0 = Clock::now();
  EXPECT_EQ(call(victim, "hi", 10s).error(), "nodedown");
  EXPECT_LT(Clock::now() - t0, 5s);

  // The surviving child noticed too, and is still linked to the tester.
  EXPECT_TRUE(eventually([&] { return nodes_seen_by(0) == std::set<std::string>{"tester"}; }, 3s))
      << "c1 sees " << ::testing::PrintToString(nodes_seen_by(0));
  EXPECT_EQ(nodes_seen_by_tester(), std::set<std::string>{"c1"});
}

class NodeClusterSlowDetectionTest : public NodeClusterTest {
 protected:
  void SetUp() override {
    down_after_ = 10s;
    NodeClusterTest::SetUp();
  }
};

TEST_F(NodeClusterSlowDetectionTest, SigtermLeavesCleanlyAndPeersHearAtOnce) {
  ASSERT_NO_FATAL_FAILURE(start_mesh(2));
  ASSERT_TRUE(eventually([&] { return full_mesh(); }, kLinkUpWithin));
  const Pid leaving = cluster_.echo(1);
  Ref mon = monitor(leaving);
  monitor_node(cluster_.name(1));
  // Signals are ordered per pair: once this call is answered, the monitor is in place (else
  // the Down could say noproc).
  ASSERT_EQ(call(leaving, "sync", 2s).value(), tuple("echo", "sync"));
  const auto t0 = Clock::now();
  ASSERT_OK(cluster_.terminate(1));  // exit status 0
  // Its processes stop first (Down shutdown), then it says BYE (NodeDown): no need to wait for
  // down_after.
  bool down_seen = false, nodedown_seen = false;
  for (int i = 0; i < 2; ++i) {
    Message m = next();
    if (const Down* d = m.get<Down>()) {
      EXPECT_EQ(d->ref, mon);
      EXPECT_TRUE(d->reason == "shutdown" || d->reason == "noconnection") << d->reason.to_string();
      down_seen = true;
    } else if (const NodeDown* n = m.get<NodeDown>()) {
      EXPECT_EQ(n->node, cluster_.name(1));
      nodedown_seen = true;
    } else {
      ADD_FAILURE() << "unexpected " << m.to_string();
    }
  }
  EXPECT_TRUE(down_seen);
  EXPECT_TRUE(nodedown_seen);
  // Told by BYE, well before the 10 s window would have said so.
  EXPECT_LT(Clock::now() - t0, down_after_ / 2);
  EXPECT_EQ(call(leaving, "hi", 2s).error(), "nodedown");
  EXPECT_TRUE(eventually([&] { return nodes_seen_by(0) == std::set<std::string>{"tester"}; },
                         down_after_ / 2));
}

TEST_F(NodeClusterTest, RestartedNodeIsANewIncarnation) {
  ASSERT_NO_FATAL_FAILURE(start_mesh(2));
  ASSERT_TRUE(eventually([&] { return full_mesh(); }, kLinkUpWithin));
  const Pid old_echo = cluster_.echo(1);
  const std::string old_endpoint = cluster_.endpoint(1);
  Ref mon = monitor(old_echo);
  cluster_.kill_9(1);
  ASSERT_EQ(await_down(mon, 5s).value_or("no_down"), "noconnection");
  ASSERT_TRUE(eventually([&] { return nodes_seen_by(0) == std::set<std::string>{"tester"}; }));

  ASSERT_OK(cluster_.restart(1));
  EXPECT_EQ(cluster_.endpoint(1), old_endpoint);
  EXPECT_NE(cluster_.creation(1), old_echo.creation);
  const auto restarted_at = Clock::now();
  ASSERT_TRUE(eventually([&] { return full_mesh(); }, kLinkUpWithin))
      << "tester sees " << ::testing::PrintToString(nodes_seen_by_tester()) << "; c1 sees "
      << ::testing::PrintToString(nodes_seen_by(0)) << "; c2 sees "
      << ::testing::PrintToString(nodes_seen_by(1));
  std::printf("restarted node linked up again after %lld ms\n",
              static_cast<long long>(
                  std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - restarted_at)
                      .count()));

  EXPECT_EQ(call(old_echo, "hi", 2s).error(), "noproc");
  Ref stale = monitor(old_echo);
  EXPECT_EQ(await_down(stale, 2s).value_or("no_down"), "noproc");
  EXPECT_EQ(call(cluster_.echo(1), "hi", 2s).value(), tuple("echo", "hi"));
  EXPECT_EQ(calls_between_children(), "");
}

// The new incarnation answers before the old one's silence is noticed: the link coming up
// with another creation ends the old incarnation's monitors at once.
TEST_F(NodeClusterTest, ARestartFasterThanTheDetectionWindowEndsTheOldIncarnation) {
  ASSERT_NO_FATAL_FAILURE(start_mesh(2));
  ASSERT_TRUE(eventually([&] { return full_mesh(); }, kLinkUpWithin));
  const Pid old_echo = cluster_.echo(1);
  Ref mon = monitor(old_echo);
  cluster_.kill_9(1);
  ASSERT_OK(cluster_.restart(1));
  ASSERT_NE(cluster_.creation(1), old_echo.creation);
  EXPECT_EQ(await_down(mon, 5s).value_or("no_down"), "noconnection");
  ASSERT_TRUE(eventually([&] { return full_mesh(); }, kLinkUpWithin))
      << "tester sees " << ::testing::PrintToString(nodes_seen_by_tester()) << "; c1 sees "
      << ::testing::PrintToString(nodes_seen_by(0)) << "; c2 sees "
      << ::testing::PrintToString(nodes_seen_by(1));
  EXPECT_EQ(call(old_echo, "hi", 2s).error(), "noproc");
  EXPECT_EQ(call(cluster_.echo(1), "hi", 2s).value(), tuple("echo", "hi"));
  // c1 still held a link to the old c2; the new c2's handshake must have replaced it.
  EXPECT_EQ(calls_between_children(), "");
}

// A peer counts as up (nodes(), NodeUp) only once both directions are authenticated, so a
// call made the moment it appears is answered. (Before that rule, 7 calls in 10 timed out.)
TEST_F(NodeClusterTest, ACallRightAfterTheLinkComesUpIsAnswered) {
  for (int round = 1; round <= 5; ++round) {
    std::string name = "p";
    name += std::to_string(round);  // (not "p" + ...: GCC 12 warns falsely there)
    std::size_t c = start_child(name);
    ASSERT_NE(c, kNoChild);
    node_->connect(cluster_.endpoint(c));
    ASSERT_TRUE(eventually([&] { return nodes_seen_by_tester().count(name) > 0; }));
    auto r = call(cluster_.echo(c), "hi", 2s);
    ASSERT_TRUE(r.ok()) << "round " << round << ": " << r.error().to_string();
  }
}

TEST_F(NodeClusterTest, TenThousandGarbageFramesLeaveTheNodeServing) {
  constexpr int kFrames = 10000;
  ASSERT_NO_FATAL_FAILURE(start_mesh(1));
  ASSERT_TRUE(eventually([&] { return full_mesh(); }, kLinkUpWithin));
  const std::int64_t rejected_before = child_stat(0, "frames_rejected");
  ASSERT_GE(rejected_before, 0);

  zmq::context_t ctx;
  zmq::socket_t raw(ctx, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.set(zmq::sockopt::sndtimeo, 5000);
  raw.connect(cluster_.endpoint(0));
  std::mt19937 rng(20240601);  // fixed: the same garbage every run
  std::uniform_int_distribution<int> length(0, 300), byte(0, 255);
  for (int i = 0; i < kFrames; ++i) {
    std::string junk(static_cast<std::size_t>(length(rng)), '\0');
    for (char& ch : junk) ch = static_cast<char>(byte(rng));
    ASSERT_TRUE(raw.send(zmq::buffer(junk), zmq::send_flags::none)) << "send " << i << " timed out";
  }

  // Positive signal: the child counted every frame as rejected.
  ASSERT_TRUE(eventually(
      [&] { return child_stat(0, "frames_rejected") >= rejected_before + kFrames; }, 30s))
      << "the child rejected " << child_stat(0, "frames_rejected") - rejected_before << " of "
      << kFrames;
  EXPECT_TRUE(cluster_.alive(0));
  EXPECT_EQ(call(cluster_.echo(0), "still_there", 2s).value(), tuple("echo", "still_there"));
  EXPECT_EQ(nodes_seen_by_tester(), std::set<std::string>{"c1"});
  EXPECT_EQ(nodes_seen_by(0), std::set<std::string>{"tester"});
}

TEST_F(NodeClusterTest, WrongCookieIsRefused) {
  ASSERT_NO_FATAL_FAILURE(start_mesh(1));
  ASSERT_TRUE(eventually([&] { return full_mesh(); }, kLinkUpWithin));
  std::size_t intruder =
      start_child("intruder", {cluster_.endpoint(0), node_->endpoint()}, "not-the-cookie");
  ASSERT_NE(intruder, kNoChild);
  node_->connect(cluster_.endpoint(intruder));

  // Positive signal: both the tester and c1 refuse it, repeatedly (it retries with backoff),
  // and at no point while that happens does either link to it.
  bool ever_linked = false;
  auto refused_enough = [&] {
    ever_linked = ever_linked || nodes_seen_by_tester().count("intruder") > 0 ||
                  nodes_seen_by(0).count("intruder") > 0;
    return node_->network_stats().auth_failures >= 3 && child_stat(0, "auth_failures") >= 3;
  };
  ASSERT_TRUE(eventually(refused_enough, 10s))
      << "tester auth failures " << node_->network_stats().auth_failures << ", c1's "
      << child_stat(0, "auth_failures");
  EXPECT_FALSE(ever_linked);
  EXPECT_EQ(nodes_seen_by_tester(), std::set<std::string>{"c1"});
  EXPECT_EQ(nodes_seen_by(0), std::set<std::string>{"tester"});
  EXPECT_EQ(call(cluster_.echo(intruder), "hi", 1s).error(), "nodedown");
  EXPECT_TRUE(cluster_.alive(intruder));
}

}  // namespace
}  // namespace nodus
