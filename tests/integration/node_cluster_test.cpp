// Nodes as separate OS processes (nodus-testnode children, see nodus/testing/cluster.hpp) and a
// Node in the test process itself, talking over ZeroMQ on loopback: linking up, remote call, cast,
// monitor and link, a kill -9 noticed within the detection window, a restart as a new
// incarnation, garbage on the wire, and a wrong cookie.
//
// Children run with a 100 ms heartbeat and declare a peer down after 1000 ms of silence, so
// the suite stays fast; every wait is a poll with a deadline.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "node/test_util.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "nodus/testing/cluster.hpp"

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

/// A connection written by hand to a node's listener: plain TCP that speaks as much ZeroMQ
/// (ZMTP 3.0, NULL mechanism) as a test needs, and none of nodus's handshake. Closed on
/// destruction. Sends never raise SIGPIPE and never block for long.
class RawZmtp {
 public:
  explicit RawZmtp(const std::string& endpoint) {
    const auto colon = endpoint.rfind(':');
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(std::stoi(endpoint.substr(colon + 1))));
    ::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval t{2, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &t, sizeof(t));
    if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawZmtp() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawZmtp(const RawZmtp&) = delete;
  RawZmtp& operator=(const RawZmtp&) = delete;
  bool connected() const { return fd_ >= 0; }

  /// The 64-byte greeting (signature, version 3.0, mechanism NULL, not as server), in two
  /// steps as ZeroMQ peers send it: signature and major version, then (once the node's have
  /// come) the rest. False if the node closed the connection first.
  bool greet() {
    std::string g(64, '\0');
    g[0] = '\xff';
    g[9] = '\x7f';
    g[10] = 3;
    g.replace(12, 4, "NULL");
    if (!send(g.substr(0, 11))) return false;
    std::size_t got = 0;
    char buf[64];
    while (got < 11) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 2000) <= 0) return false;
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return false;
      got += static_cast<std::size_t>(n);
    }
    return send(g.substr(11));
  }
  /// The NULL mechanism's READY command, as a DEALER.
  bool ready() {
    std::string body = "\x05READY";
    body += "\x0bSocket-Type";
    body += std::string("\0\0\0\x06", 4) + "DEALER";
    return send(std::string(1, '\x04') + static_cast<char>(body.size()) + body);
  }
  /// A one-part message's header (long form), announcing `size` bytes.
  bool message_header(std::uint64_t size) {
    std::string h(1, '\x02');
    for (int i = 7; i >= 0; --i) h += static_cast<char>(size >> (8 * i));
    return send(h);
  }
  /// A whole one-part message (short form). REQUIRES: bytes.size() < 256.
  bool message(const std::string& bytes) {
    return send(std::string(1, '\0') + static_cast<char>(bytes.size()) + bytes);
  }
  bool send(const std::string& bytes) {
    std::size_t at = 0;
    while (at < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
      if (n <= 0) return false;
      at += static_cast<std::size_t>(n);
    }
    return true;
  }
  /// True once the node has closed the connection (reads what it sent meanwhile).
  bool closed_by_peer() {
    char buf[512];
    for (;;) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 0) <= 0) return false;
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
    }
  }

 private:
  int fd_ = -1;
};

/// Lines of `text` that contain `fragment`.
std::size_t lines_with(const std::string& text, const std::string& fragment) {
  std::size_t n = 0, at = 0;
  while ((at = text.find(fragment, at)) != std::string::npos) {
    ++n;
    at += fragment.size();
  }
  return n;
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
    spec.ready_line = true;  // nodus-testnode prints READY with its Echo pid
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

  /// Child i's whole log so far.
  std::string log_of(std::size_t i) const {
    std::ifstream in(cluster_.dir() + "/" + std::string(cluster_.name(i).name()) + ".log");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  Message next(Timeout t = 5s) { return testing::next_message(t); }

  static constexpr std::size_t kNoChild = static_cast<std::size_t>(-1);

  Cluster cluster_{testing::ClusterOptions{
      .program = NODUS_TESTNODE_PATH}};  // declared first: its children are killed last, after the
                                         // node stopped
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

// -- issue 10: what hostile peers and careless operators cost a node ---------------------------

// A careless copy of c1's config with another port: refused by everyone it reaches, each side
// saying why; the real c1 is never down anywhere, and is still up after the copy is gone.
TEST_F(NodeClusterTest, ASecondNodeUnderATakenNameIsRefusedAndTheFirstIsUndisturbed) {
  ASSERT_NO_FATAL_FAILURE(start_mesh(2));
  ASSERT_TRUE(eventually([&] { return full_mesh(); }, kLinkUpWithin));
  const auto downs = node_->network_stats().node_down_events;
  const std::size_t copy = start_child("c1", {cluster_.endpoint(1), node_->endpoint()});
  ASSERT_NE(copy, kNoChild);
  auto undisturbed = [&] {
    return nodes_seen_by(1) == everyone_but("c2") && nodes_seen_by_tester().count("c1") > 0 &&
           node_->network_stats().node_down_events == downs &&
           call(cluster_.echo(0), "hi", 1s).ok();
  };
  for (int i = 0; i < 15; ++i) {  // 3 s: three detection windows
    ASSERT_TRUE(undisturbed()) << "after " << i * 200 << " ms";
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_TRUE(eventually([&] {
    return lines_with(log_of(1), "refused node c1 at") >= 1 &&
           lines_with(log_of(copy), "name in use") >= 1;
  }));
  cluster_.kill_9(copy);
  for (int i = 0; i < 15; ++i) {
    ASSERT_TRUE(undisturbed()) << "after the copy died, " << i * 200 << " ms";
    std::this_thread::sleep_for(200ms);
  }
}

// ulimit -n 1024 and 1,000 connections that greet and say nothing more: the node closes those
// beyond what may wait for a handshake at once and the rest after down_after, logs it, and keeps
// serving; a ZeroMQ or system error on the way (out of descriptors) ends nothing. Its seed is
// an endpoint nobody listens on, so it keeps making sockets of its own meanwhile.
TEST_F(NodeClusterTest, AThousandGreetingOnlyConnectionsUnderUlimit1024LeaveTheNodeServing) {
  testing::ChildSpec spec;
  spec.ready_line = true;  // nodus-testnode prints READY with its Echo pid
  spec.name = "c1";
  spec.seeds = std::vector<std::string>{"tcp://127.0.0.1:1"};
  spec.heartbeat = kHeartbeat;
  spec.down_after = down_after_;
  spec.max_open_files = 1024;
  auto c = cluster_.start(std::move(spec));
  ASSERT_OK(c);
  node_->connect(cluster_.endpoint(*c));
  ASSERT_TRUE(eventually([&] { return nodes_seen_by_tester() == std::set<std::string>{"c1"}; },
                         kLinkUpWithin));
  const std::int64_t files_before = cluster_.open_files(*c);
  std::vector<std::unique_ptr<RawZmtp>> conns;
  for (int i = 0; i < 1000; ++i) {
    auto r = std::make_unique<RawZmtp>(cluster_.endpoint(*c));
    if (r->connected()) (void)r->greet();
    conns.push_back(std::move(r));
  }
  const auto until = Clock::now() + 3 * down_after_;
  int calls = 0;
  while (Clock::now() < until) {  // held for three detection windows; the node answers
    ASSERT_TRUE(cluster_.alive(*c));
    auto r = call(cluster_.echo(*c), "hi", 2s);
    ASSERT_TRUE(r.ok()) << "call " << calls << ": " << r.error().to_string();
    ++calls;
    std::this_thread::sleep_for(100ms);
  }
  std::size_t closed = 0;
  for (auto& r : conns) closed += r->connected() && r->closed_by_peer();
  EXPECT_GE(closed, 900u);
  const std::string log = log_of(*c);
  EXPECT_GE(lines_with(log, "closed a connection from 127.0.0.1"), 1u) << log;
  conns.clear();
  std::this_thread::sleep_for(down_after_);
  EXPECT_TRUE(cluster_.alive(*c));
  EXPECT_EQ(call(cluster_.echo(*c), "still_there", 2s).value(), tuple("echo", "still_there"));
  EXPECT_LT(cluster_.open_files(*c), files_before + 20);
  EXPECT_EQ(nodes_seen_by(*c), std::set<std::string>{"tester"});
}

// Issue 10: 16 unauthenticated connections each sending one 64 MiB - 1 message grew the node by
// 64 MiB each. Now a message part before the handshake is at most 64 KiB: libzmq drops the
// connection at the header, and the node holds nothing for it.
TEST_F(NodeClusterTest, SixteenHugeMessagesBeforeTheHandshakeCostTheNodeNoMemory) {
  ASSERT_NO_FATAL_FAILURE(start_mesh(1));
  ASSERT_TRUE(eventually([&] { return full_mesh(); }, kLinkUpWithin));
  const std::int64_t rss_before = cluster_.rss_bytes(0);
  ASSERT_GT(rss_before, 0);
  const std::string chunk(1 << 20, 'x');
  std::vector<std::unique_ptr<RawZmtp>> conns;
  for (int i = 0; i < 16; ++i) {
    auto r = std::make_unique<RawZmtp>(cluster_.endpoint(0));
    ASSERT_TRUE(r->connected());
    if (r->greet() && r->ready() && r->message_header((64u << 20) - 1)) {
      for (int mib = 0; mib < 8 && r->send(chunk); ++mib) {
      }
    }
    conns.push_back(std::move(r));
  }
  ASSERT_TRUE(eventually(
      [&] {
        for (auto& r : conns) {
          if (!r->closed_by_peer()) return false;
        }
        return true;
      },
      2 * down_after_));
  const std::int64_t growth = cluster_.rss_bytes(0) - rss_before;
  EXPECT_LT(growth, 32 << 20) << "the node grew by " << growth << " bytes";
  EXPECT_EQ(call(cluster_.echo(0), "hi", 2s).value(), tuple("echo", "hi"));
}

// Issue 10: 30,000 connections each sending one bad byte made a log line each and left state
// behind per source. Here 10,000 (the client's ephemeral ports bound a test): a line per 10 s
// with the count of the rest, and the node serving throughout.
TEST_F(NodeClusterTest, OneBadByteFromEachOfTenThousandConnectionsIsLoggedInAFewLines) {
  ASSERT_NO_FATAL_FAILURE(start_mesh(1));
  ASSERT_TRUE(eventually([&] { return full_mesh(); }, kLinkUpWithin));
  const std::int64_t rejected_before = child_stat(0, "frames_rejected");
  const auto start = Clock::now();
  constexpr int kSources = 10000;
  std::vector<std::unique_ptr<RawZmtp>> open;  // a few hundred at a time
  for (int i = 0; i < kSources; ++i) {
    auto r = std::make_unique<RawZmtp>(cluster_.endpoint(0));
    ASSERT_TRUE(r->connected()) << i;
    ASSERT_TRUE(r->greet() && r->ready() && r->message(std::string(1, '\xc1'))) << i;
    open.push_back(std::move(r));
    if (open.size() == 200) {
      // Each has been read once the node counted it; then it may go.
      ASSERT_TRUE(eventually(
          [&] { return child_stat(0, "frames_rejected") >= rejected_before + i + 1 - 20; }, 10s))
          << i << ": " << child_stat(0, "frames_rejected") - rejected_before << " rejected";
      open.clear();
    }
  }
  ASSERT_TRUE(eventually(
      [&] { return child_stat(0, "frames_rejected") >= rejected_before + kSources - 20; }, 20s));
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start);
  const std::string log = log_of(0);
  const std::size_t lines = lines_with(log, "dropped a frame from") +
                            lines_with(log, "more problems with unauthenticated connections");
  EXPECT_LE(lines, static_cast<std::size_t>(seconds.count() / 10 + 3)) << log;
  EXPECT_GE(lines, 1u);
  EXPECT_EQ(call(cluster_.echo(0), "hi", 2s).value(), tuple("echo", "hi"));
}

}  // namespace
}  // namespace nodus
