// Global names across three nodes in this OS process, linked over ZeroMQ on loopback:
// registration seen everywhere, already_started naming the holder, unregister, re_register,
// names gone with their process and with their node, sends, calls and monitors by global name,
// a GenServer started under a global name, racing registrations, fencing epochs, the
// default conflict resolver, majority rounds, and commits that arrive out of order.
#include "nodus/registry/global.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "global_protocol.hpp"
#include "node/test_util.hpp"
#include "nodus/node/codec.hpp"
#include "nodus/node/gen_server.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using testing::eventually;

class Echo : public GenServer {
 public:
  Action handle_call(Message& req, From) override {
    return reply(tuple("echo", req.is_term() ? req.term() : Term()));
  }
};

using Nodes = std::vector<std::unique_ptr<Node>>;

/// True once every node counts every other one as a global peer.
bool meshed(const Nodes& nodes) {
  for (const auto& n : nodes) {
    if (global_nodes(*n).size() != nodes.size() - 1) return false;
  }
  return true;
}

/// True once every node's table says `name` is held by `pid` (or by nobody).
bool held_everywhere(const Nodes& nodes, const std::string& name, std::optional<Pid> pid) {
  for (const auto& n : nodes) {
    if (whereis_global(*n, name) != pid) return false;
  }
  return true;
}

class GlobalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nodes_ = testing::start_loopback_star({"g1", "g2", "g3"}, "global-cookie", 1000ms);
    ASSERT_EQ(nodes_.size(), 3u);
    for (auto& n : nodes_) ASSERT_OK(start_global(*n));
    ASSERT_TRUE(eventually([&] { return meshed(nodes_); }, 10s));
  }
  void TearDown() override {
    for (auto& n : nodes_) n->shutdown();
  }

  Node& node(std::size_t i) { return *nodes_.at(i); }
  /// A process on node i that waits until told to stop (or killed).
  Pid idle(std::size_t i) {
    return spawn(node(i), [] {
      for (;;) {
        Message m = receive();
        if (m == "stop") return;
      }
    });
  }
  bool everywhere(const std::string& name, std::optional<Pid> pid) {
    return held_everywhere(nodes_, name, pid);
  }

  Nodes nodes_;
};

TEST_F(GlobalTest, RegisteredNameIsSeenOnEveryNode) {
  Pid p = idle(0);
  auto epoch = register_global(node(0), "db", p);
  ASSERT_OK(epoch);
  EXPECT_EQ(*epoch, (GlobalEpoch{1, Atom("g1")}));
  EXPECT_EQ(whereis_global(node(0), "db"), p);  // at once where it was registered
  EXPECT_TRUE(eventually([&] { return everywhere("db", p); }));
  auto names = global_names(node(2));
  ASSERT_EQ(names.size(), 1u);
  EXPECT_EQ(names[0].name, "db");
  EXPECT_EQ(names[0].pid, p);
  EXPECT_EQ(names[0].node, Atom("g1"));
  EXPECT_EQ(names[0].epoch, (GlobalEpoch{1, Atom("g1")}));
  EXPECT_EQ(global_epoch(node(1), "db"), (GlobalEpoch{1, Atom("g1")}));
}

TEST_F(GlobalTest, TakenNameIsAlreadyStartedNamingTheHolder) {
  Pid p = idle(0);
  ASSERT_OK(register_global(node(0), "db", p));
  auto again = register_global(node(1), "db", idle(1));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), ErrorCode::kAlreadyStarted);
  EXPECT_EQ(again.error().message(), p.to_string());
  // The holder registering again is no error.
  EXPECT_OK(register_global(node(2), "db", p));
}

TEST_F(GlobalTest, UnregisterRemovesTheNameEverywhere) {
  Pid p = idle(1);
  ASSERT_OK(register_global(node(1), "db", p));
  ASSERT_TRUE(eventually([&] { return everywhere("db", p); }));
  ASSERT_OK(unregister_global(node(2), "db"));
  EXPECT_TRUE(eventually([&] { return everywhere("db", std::nullopt); }));
  EXPECT_EQ(unregister_global(node(0), "db").code(), ErrorCode::kNotFound);
}

TEST_F(GlobalTest, EpochGrowsWithEveryHolder) {
  Pid a = idle(0), b = idle(1), c = idle(2);
  auto first = register_global(node(0), "leader", a);
  ASSERT_OK(first);
  EXPECT_EQ(*first, (GlobalEpoch{1, Atom("g1")}));
  ASSERT_OK(unregister_global(node(0), "leader"));
  // A round locks a majority, so node 1 may hear of the removal only after unregister_global
  // returned (until then its register answers already_started with a): wait for it there.
  ASSERT_TRUE(eventually([&] { return everywhere("leader", std::nullopt); }));
  auto second = register_global(node(1), "leader", b);
  ASSERT_OK(second);
  EXPECT_EQ(*second, (GlobalEpoch{2, Atom("g2")}));
  auto moved = re_register_global(node(2), "leader", c);
  ASSERT_OK(moved);
  EXPECT_EQ(*moved, (GlobalEpoch{3, Atom("g3")}));
  EXPECT_TRUE(eventually([&] { return everywhere("leader", c); }));
  EXPECT_EQ(global_epoch(node(0), "leader"), (GlobalEpoch{3, Atom("g3")}));
}

TEST_F(GlobalTest, NameGoesWithItsProcess) {
  Pid p = idle(2);
  ASSERT_OK(register_global(node(0), "worker", p));  // registered from another node
  ASSERT_TRUE(eventually([&] { return everywhere("worker", p); }));
  send(p, "stop");
  EXPECT_TRUE(eventually([&] { return everywhere("worker", std::nullopt); }));
}

TEST_F(GlobalTest, NameGoesWithItsNode) {
  Pid p = idle(2);
  ASSERT_OK(register_global(node(2), "worker", p));
  ASSERT_TRUE(eventually([&] { return everywhere("worker", p); }));
  nodes_[2]->shutdown();
  EXPECT_TRUE(eventually(
      [&] { return !whereis_global(node(0), "worker") && !whereis_global(node(1), "worker"); }));
}

TEST_F(GlobalTest, SendCallAndMonitorByGlobalName) {
  Inbox me(node(1));
  auto echo = start<Echo>(node(0));
  ASSERT_OK(echo);
  ASSERT_OK(register_global(node(0), "echo", *echo));
  ASSERT_TRUE(eventually([&] { return everywhere("echo", *echo); }));
  auto r = call(global("echo"), "hi");
  ASSERT_OK(r);
  EXPECT_EQ(*r, tuple("echo", "hi"));
  EXPECT_EQ(global("echo").to_string(), "global(echo)");
  Ref ref = monitor(global("echo"));
  ASSERT_OK(stop(*echo));
  auto down = await_down(ref, 5s);
  ASSERT_TRUE(down.has_value());
  // Nobody holds it now: noproc at once.
  ASSERT_TRUE(eventually([&] { return !whereis_global(node(1), "echo"); }));
  auto none = call(global("echo"), "hi");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error(), "noproc");
  Ref ref2 = monitor(global("echo"));
  EXPECT_EQ(await_down(ref2, 5s), Reason("noproc"));
}

TEST_F(GlobalTest, GenServerStartsUnderAGlobalName) {
  SpawnOptions o;
  o.name = global("svc");
  auto first = start<Echo>(node(0), o);
  ASSERT_OK(first);
  ASSERT_TRUE(eventually([&] { return everywhere("svc", *first); }));
  auto second = start<Echo>(node(1), o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error(), tuple("already_started", *first));
}

TEST_F(GlobalTest, RacingRegistrationsHaveExactlyOneWinner) {
  for (int round = 0; round < 20; ++round) {
    const std::string name = "race" + std::to_string(round);
    std::vector<Pid> pids = {idle(0), idle(1), idle(2)};
    std::vector<Result<GlobalEpoch, NameStatus>> results(3,
                                                         NameStatus(Status(ErrorCode::kInternal)));
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < 3; ++i) {
      threads.emplace_back([&, i] { results[i] = register_global(node(i), name, pids[i]); });
    }
    for (auto& t : threads) t.join();
    int winners = 0;
    Pid winner;
    for (std::size_t i = 0; i < 3; ++i) {
      if (results[i].ok()) {
        ++winners;
        winner = pids[i];
      } else {
        EXPECT_EQ(results[i].error().code(), ErrorCode::kAlreadyStarted);
      }
    }
    ASSERT_EQ(winners, 1) << name;
    EXPECT_TRUE(eventually([&] { return everywhere(name, winner); })) << name;
  }
}

TEST_F(GlobalTest, APeerWhoseServerExitedIsNoLongerWaitedFor) {
  Pid server = node(2).whereis("nodus_global");
  ASSERT_TRUE(server);
  exit(server, reasons::kill());
  ASSERT_TRUE(eventually(
      [&] { return global_nodes(node(0)).size() == 1 && global_nodes(node(1)).size() == 1; }));
  auto r = register_global(node(0), "after", idle(0));
  ASSERT_OK(r);
  EXPECT_TRUE(eventually([&] { return whereis_global(node(1), "after").has_value(); }));
}

// A node that was not in the majority of two registrations in turn may get their commits in
// either order: the later registration (the higher epoch) stays, and an unregistration is not
// undone by the commit it removed arriving after it. The messages are the wire protocol's.
TEST_F(GlobalTest, ACommitOlderThanWhatANodeHasSeenIsIgnored) {
  const Pid server = node(0).whereis("nodus_global");
  ASSERT_TRUE(server);
  const Pid p1 = idle(1), p2 = idle(2);
  namespace proto = global_protocol;
  send(server, proto::Commit{"late", p2, 7, 1, 0, Atom("g3"), Pid{}, Atom("g3")});
  send(server, proto::Commit{"late", p1, 5, 1, 0, Atom("g2"), Pid{}, Atom("g2")});
  send(server, proto::Unregister{"gone", p1, 4, 0, Atom("g2"), Atom("g2")});
  send(server, proto::Commit{"gone", p1, 4, 1, 0, Atom("g2"), Pid{}, Atom("g2")});
  // A call from this thread to the same server is handled after the messages above.
  ASSERT_OK(register_global(node(0), "sync", idle(0)));
  EXPECT_EQ(whereis_global(node(0), "late"), p2);
  EXPECT_EQ(global_epoch(node(0), "late"), (GlobalEpoch{7, Atom("g3")}));
  EXPECT_FALSE(whereis_global(node(0), "gone").has_value());
}

// A node applies another registrar's commit of a higher epoch over its own process's claim (two
// registrars won apart): its process is told it lost, as the loser of a merge is. The commit is
// injected as the wire protocol's message; the notice is sent in the step that changes the
// table, so once the table names the winner, the notice is in the loser's mailbox.
TEST_F(GlobalTest, ACommitOverALocalHoldersClaimTellsItItLost) {
  Inbox holder(node(0));
  ASSERT_OK(register_global(node(0), "x", holder.pid()));
  const Pid server = node(0).whereis("nodus_global");
  const Pid winner = idle(1);
  namespace proto = global_protocol;
  send(server, proto::Commit{"x", winner, 5, 1, 0, Atom("g2"), Pid{}, Atom("g2")});
  ASSERT_TRUE(eventually([&] { return whereis_global(node(0), "x") == winner; }));
  auto told = receive(0ms);
  ASSERT_TRUE(told.has_value());
  EXPECT_EQ(*told, tuple("global_name_conflict", bin("x"), winner));
}

// One epoch claimed by two processes (its registrar restarted and handed the counter out
// again; here injected as the wire protocol's commits): the resolver picks (the earlier
// clock), the loser is told, and the winner is raised to an epoch of its own node's above it.
TEST_F(GlobalTest, OneEpochClaimedTwiceGoesToTheResolversChoiceRaised) {
  Inbox loser(node(0));
  const Pid winner = idle(0);
  const Pid server = node(0).whereis("nodus_global");
  namespace proto = global_protocol;
  send(server, proto::Commit{"tie", loser.pid(), 5, 2, 0, Atom("g2"), Pid{}, Atom("g2")});
  send(server, proto::Commit{"tie", winner, 5, 1, 0, Atom("g2"), Pid{}, Atom("g2")});
  EXPECT_TRUE(eventually([&] {
    return everywhere("tie", winner) && global_epoch(node(1), "tie") == GlobalEpoch{6, Atom("g1")};
  }));
  auto told = receive(5s);
  ASSERT_TRUE(told.has_value());
  EXPECT_EQ(*told, tuple("global_name_conflict", bin("tie"), winner));
}

// A re-registration takes the name on purpose: the holder it took it from is not told.
TEST_F(GlobalTest, AReRegistrationDoesNotTellTheHolderItTookTheNameFrom) {
  Inbox holder(node(0));
  ASSERT_OK(register_global(node(0), "x", holder.pid()));
  const Pid next = idle(1);
  ASSERT_OK(re_register_global(node(1), "x", next));
  ASSERT_TRUE(eventually([&] { return whereis_global(node(0), "x") == next; }));
  EXPECT_FALSE(receive(0ms).has_value());
}

// A Hello carries ended claims as well as live ones: a claim a peer knows ended is removed
// here, and a claim this node knows ended is not revived by a peer that has not heard yet.
TEST_F(GlobalTest, AHelloCarriesEndedClaimsBothWays) {
  const Pid server = node(0).whereis("nodus_global");
  const Pid peer_server = node(1).whereis("nodus_global");
  const Pid p1 = idle(1);
  namespace proto = global_protocol;
  send(server, proto::Commit{"ended-there", p1, 3, 1, 0, Atom("g2"), Pid{}, Atom("g2")});
  send(server, proto::Unregister{"ended-here", p1, 4, 0, Atom("g2"), Atom("g2")});
  send(server, proto::Hello{Atom("g2"),
                            {{"ended-there", p1, 3, 1, true, Pid{}, Atom("g2")},
                             {"ended-here", p1, 4, 1, false, Pid{}, Atom("g2")}},
                            1,
                            false,
                            peer_server,
                            {}});
  // A call from this thread to the same server is handled after the messages above.
  ASSERT_OK(register_global(node(0), "sync", idle(0)));
  EXPECT_FALSE(whereis_global(node(0), "ended-there").has_value());
  EXPECT_FALSE(whereis_global(node(0), "ended-here").has_value());
  EXPECT_EQ(global_epoch(node(0), "ended-there"), std::nullopt);
}

// The node of a process answers for its claims: a commit of its process that reached it from
// another node (whose registrar may have failed before telling everyone) is told to its peers.
TEST_F(GlobalTest, AClaimOfALocalProcessLearntFromAPeerIsToldToEveryPeer) {
  const Pid server = node(0).whereis("nodus_global");
  const Pid p0 = idle(0);
  namespace proto = global_protocol;
  send(server, proto::Commit{"relayed", p0, 1, 1, 0, Atom("g2"), Pid{}, Atom("g2")});
  EXPECT_TRUE(eventually([&] { return everywhere("relayed", p0); }));
}

// What docs/protocol.md section 9 says a client in another language sends and receives: the
// tag, and the fields as one MessagePack array in the order listed there.
TEST(GlobalProtocolTest, MessagesAreTheFieldListsOfTheProtocolDocument) {
  namespace proto = global_protocol;
  auto wire = [](const Message& m) {
    std::string bytes;
    EXPECT_TRUE(m.encode(bytes));
    return decode_term(bytes).value_or(Term("undecodable"));
  };
  const Pid p{Atom("n2"), 3, 9};
  Message lock = proto::Lock{"db", 7, Atom("n1")};
  EXPECT_EQ(lock.wire_tag(), 101u);
  EXPECT_EQ(wire(lock), tuple(bin("db"), 7, "n1"));
  Message reply = proto::LockReply{"db", 7, Atom("n2"), true, p, 4};
  EXPECT_EQ(reply.wire_tag(), 102u);
  EXPECT_EQ(wire(reply), tuple(bin("db"), 7, "n2", true, p, 4));
  Message hello = proto::Hello{Atom("n1"), {{"db", p, 4, 11, true, Pid{}, Atom("n3")}}, 12, true, p,
                               {{"db", 6}}};
  EXPECT_EQ(hello.wire_tag(), 100u);
  EXPECT_EQ(wire(hello), tuple("n1", tuple(tuple(bin("db"), p, 4, 11, true, Term(), "n3")), 12,
                               true, p, tuple(tuple(bin("db"), 6))));
  Message commit = proto::Commit{"db", p, 5, 13, 7, Atom("n1"), Pid{}, Atom("n1")};
  EXPECT_EQ(commit.wire_tag(), 103u);
  EXPECT_EQ(wire(commit), tuple(bin("db"), p, 5, 13, 7, "n1", Term(), "n1"));
  Message gone = proto::Unregister{"db", p, 5, 0, Atom("n2"), Atom("n1")};
  EXPECT_EQ(gone.wire_tag(), 105u);
  EXPECT_EQ(wire(gone), tuple(bin("db"), p, 5, 0, "n2", "n1"));
  Message taken = proto::Reply{Status(ErrorCode::kAlreadyStarted, "x"), 0, p, Atom{}};
  EXPECT_EQ(taken.wire_tag(), 112u);
  EXPECT_EQ(wire(taken), tuple(tuple(1006, "x"), 0, p, "undefined"));
}

// A node whose messages end before the epoch's registrar (`by`, which came later) is still
// understood: the field reads as Atom's default, `undefined`.
TEST(GlobalProtocolTest, ACommitWithoutItsRegistrarDecodes) {
  namespace proto = global_protocol;
  const Pid p{Atom("n2"), 3, 9};
  const std::string bytes = encode_term(tuple(bin("db"), p, 5, 13, 7, "n1", Term()));
  auto commit = decode_message<proto::Commit>(bytes);
  ASSERT_OK(commit);
  EXPECT_EQ(commit->epoch, 5u);
  EXPECT_EQ(commit->node, Atom("n1"));
  EXPECT_EQ(commit->by, Atom());
}

// Two registrars cut off from each other each register the name at counter 1: the fencing
// epochs differ in the registrar, and the heal keeps the holder of the higher one, (1, "p3"),
// at that epoch on every node; the other holder is told it lost.
TEST(GlobalPartitionTest, TwoSidesRegisteringANameGetDistinctEpochsAndTheHealKeepsTheHigher) {
  auto nodes = testing::start_loopback_star({"p1", "p2", "p3"}, "twin-cookie", 400ms);
  ASSERT_EQ(nodes.size(), 3u);
  for (auto& n : nodes) ASSERT_OK(start_global(*n));
  auto synced = [&](std::size_t i, std::size_t peers) {
    return global_nodes(*nodes[i]).size() == peers;
  };
  ASSERT_TRUE(eventually([&] { return synced(0, 2) && synced(1, 2) && synced(2, 2); }, 10s));
  for (std::size_t i : {0, 1}) {  // p1, p2 | p3
    nodes[i]->block_peer("p3");
    nodes[2]->block_peer(std::string(nodes[i]->name().name()));
  }
  ASSERT_TRUE(eventually([&] { return synced(0, 1) && synced(1, 1) && synced(2, 0); }, 15s));
  auto c = register_global(*nodes[2], "x", spawn(*nodes[2], [] { (void)receive(); }));
  ASSERT_OK(c);
  // (Made after p3's registration: with an Inbox on p1, this thread's calls start from p1.)
  Inbox told(*nodes[0]);
  auto a = register_global(*nodes[0], "x", told.pid());
  ASSERT_OK(a);
  EXPECT_EQ(*a, (GlobalEpoch{1, Atom("p1")}));
  EXPECT_EQ(*c, (GlobalEpoch{1, Atom("p3")}));
  EXPECT_NE(*a, *c);
  EXPECT_LT(*a, *c);
  const Pid winner = *whereis_global(*nodes[2], "x");
  for (std::size_t i : {0, 1}) {
    nodes[i]->unblock_peer("p3");
    nodes[2]->unblock_peer(std::string(nodes[i]->name().name()));
  }
  EXPECT_TRUE(eventually([&] { return held_everywhere(nodes, "x", winner); }, 20s));
  for (auto& n : nodes) EXPECT_EQ(global_epoch(*n, "x"), *c) << n->name();
  auto lost = receive(10s);
  ASSERT_TRUE(lost.has_value());
  EXPECT_EQ(*lost, tuple("global_name_conflict", bin("x"), winner));
  // The next holder's epoch is above both.
  Pid next = spawn(*nodes[1], [] { (void)receive(); });
  auto moved = re_register_global(*nodes[1], "x", next);
  ASSERT_OK(moved);
  EXPECT_EQ(*moved, (GlobalEpoch{2, Atom("p2")}));
  for (auto& n : nodes) n->shutdown();
}

TEST_F(GlobalTest, DefaultResolverPrefersTheEarlierRegistrationThenTheNodeName) {
  GlobalEntry a{"x", Pid{Atom("n2"), 1, 5}, Atom("n2"), GlobalEpoch{1, Atom("n2")}, 10};
  GlobalEntry b{"x", Pid{Atom("n1"), 1, 7}, Atom("n1"), GlobalEpoch{4, Atom("n1")}, 12};
  EXPECT_EQ(resolve_earliest("x", a, b), a.pid);
  EXPECT_EQ(resolve_earliest("x", b, a), a.pid);
  b.clock = 10;  // a tie: the node whose name sorts first
  EXPECT_EQ(resolve_earliest("x", a, b), b.pid);
  EXPECT_EQ(resolve_earliest("x", b, a), b.pid);
}

TEST_F(GlobalTest, NotStartedIsNotFound) {
  Node plain(NodeOptions{.name = "plain", .schedulers = 1});
  EXPECT_EQ(register_global(plain, "x", Pid{Atom("plain"), 1, 1}).error().code(),
            ErrorCode::kNotFound);
  EXPECT_FALSE(whereis_global(plain, "x").has_value());
  EXPECT_TRUE(global_names(plain).empty());
}

// A registration needs the locks of a majority of the nodes (its own included), not all of
// them: with one peer's lock held by a registrar that will never commit or release it, it wins
// with the other peer's at once, and the peer whose lock was held still learns the name.
TEST(GlobalMajorityTest, AMajorityOfTheLocksIsEnough) {
  auto nodes = testing::start_loopback_star({"m1", "m2", "m3"}, "majority-cookie", 1000ms);
  ASSERT_EQ(nodes.size(), 3u);
  GlobalOptions o;
  o.lock_timeout = 60s;  // the held lock outlives the test: waiting for every lock cannot win
  for (auto& n : nodes) ASSERT_OK(start_global(*n, o));
  ASSERT_TRUE(eventually([&] { return meshed(nodes); }, 10s));
  // m3 grants its lock on "held" to a request that m2 never made (m2 ignores the answer). The
  // call after it, from this thread to the same server, is handled after it.
  send(nodes[2]->whereis("nodus_global"), global_protocol::Lock{"held", 999999, Atom("m2")});
  ASSERT_OK(register_global(*nodes[2], "sync", spawn(*nodes[2], [] { (void)receive(); })));
  Pid holder = spawn(*nodes[0], [] { (void)receive(); });
  auto epoch = register_global(*nodes[0], "held", holder);
  ASSERT_OK(epoch);
  EXPECT_EQ(epoch->counter, 1u);
  EXPECT_TRUE(eventually([&] { return held_everywhere(nodes, "held", holder); }));
  ASSERT_OK(unregister_global(*nodes[0], "held"));
  EXPECT_TRUE(eventually([&] { return held_everywhere(nodes, "held", std::nullopt); }));
  for (auto& n : nodes) n->shutdown();
}

// Rounds that cannot win (both peers' locks held by a registrar that never commits) end in
// no_quorum, not in a timeout; an unregistration whose name goes while its rounds are lost and
// retried is done, not not_found.
class GlobalContendedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nodes_ = testing::start_loopback_star({"c1", "c2", "c3"}, "contended-cookie", 1000ms);
    ASSERT_EQ(nodes_.size(), 3u);
    GlobalOptions o;
    o.lock_timeout = 60s;  // the held locks outlive the test
    for (auto& n : nodes_) ASSERT_OK(start_global(*n, o));
    ASSERT_TRUE(eventually([&] { return meshed(nodes_); }, 10s));
  }
  void TearDown() override {
    for (auto& n : nodes_) n->shutdown();
  }
  // c2 and c3 grant their locks on `name` to a round of c1's that c1 never ran.
  void hold_peer_locks(const std::string& name) {
    for (std::size_t i : {1, 2}) {
      send(nodes_[i]->whereis("nodus_global"), global_protocol::Lock{name, 999999, Atom("c1")});
      // A call from this thread to the same server is handled after the message above.
      ASSERT_OK(register_global(*nodes_[i], "sync" + std::to_string(i),
                                spawn(*nodes_[i], [] { (void)receive(); })));
    }
  }
  Nodes nodes_;
};

TEST_F(GlobalContendedTest, ARoundThatCannotWinIsNoQuorum) {
  hold_peer_locks("stuck");
  auto r = register_global(*nodes_[0], "stuck", spawn(*nodes_[0], [] { (void)receive(); }));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kNoQuorum) << r.error().to_string();
  EXPECT_GE(global_stats(*nodes_[0]).rounds_lost, 2u);
  EXPECT_FALSE(whereis_global(*nodes_[0], "stuck").has_value());
}

TEST_F(GlobalContendedTest, UnregisterOfANameThatWentDuringLostRoundsIsDone) {
  Pid p = spawn(*nodes_[0], [] { (void)receive(); });
  ASSERT_OK(register_global(*nodes_[0], "going", p));
  // Its commit (which frees the peers' locks of that round) has reached them.
  ASSERT_TRUE(eventually([&] { return held_everywhere(nodes_, "going", p); }));
  hold_peer_locks("going");
  const std::uint64_t lost_before = global_stats(*nodes_[0]).rounds_lost;
  Status unregistered(ErrorCode::kInternal);
  std::thread t([&] { unregistered = unregister_global(*nodes_[0], "going"); });
  // Once a round of it was lost, the holder exits: the retry finds the name gone.
  EXPECT_TRUE(eventually([&] { return global_stats(*nodes_[0]).rounds_lost > lost_before; }));
  exit(p, reasons::kill());
  t.join();
  EXPECT_OK(unregistered);
  EXPECT_FALSE(whereis_global(*nodes_[0], "going").has_value());
}

TEST_F(GlobalTest, TakenNameCarriesItsHolderAsAPid) {
  Pid p = idle(0);
  ASSERT_OK(register_global(node(0), "db", p));
  auto again = register_global(node(1), "db", idle(1));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().holder(), p);
}

// A partition inside this process (Node::block_peer), with losers that exit: the two sides'
// registrations have distinct epochs, (1, h1) and (1, h3); after the heal every node has the
// higher one's holder (whatever the resolver says: it only settles one epoch claimed twice),
// and the loser is gone.
TEST(GlobalPartitionTest, HealKeepsTheHigherEpochAndTheLoserExits) {
  auto nodes = testing::start_loopback_star({"h1", "h2", "h3"}, "heal-cookie", 400ms);
  ASSERT_EQ(nodes.size(), 3u);
  GlobalOptions o;
  // Ours, the opposite of the epochs' order: not asked, as no epoch is claimed twice.
  o.resolver = [](const std::string&, const GlobalEntry& a, const GlobalEntry& b) {
    return a.node < b.node ? a.pid : b.pid;
  };
  o.on_conflict = ConflictAction::kExit;
  for (auto& n : nodes) ASSERT_OK(start_global(*n, o));
  auto synced = [&](std::size_t i, std::size_t peers) {
    return global_nodes(*nodes[i]).size() == peers;
  };
  ASSERT_TRUE(eventually([&] { return synced(0, 2) && synced(1, 2) && synced(2, 2); }, 10s));
  // h1, h2 | h3
  for (std::size_t i : {0, 1}) {
    nodes[i]->block_peer("h3");
    nodes[2]->block_peer(std::string(nodes[i]->name().name()));
  }
  ASSERT_TRUE(eventually([&] { return synced(0, 1) && synced(1, 1) && synced(2, 0); }, 15s));
  auto idle = [](Node& n) { return spawn(n, [] { (void)receive(); }); };
  Pid a = idle(*nodes[0]), c = idle(*nodes[2]);
  ASSERT_OK(register_global(*nodes[0], "x", a));
  ASSERT_OK(register_global(*nodes[2], "x", c));
  // (Made after the registrations: with an Inbox on h1, this thread's calls start from h1.)
  Inbox me(*nodes[0]);
  Ref watch = monitor(a);
  for (std::size_t i : {0, 1}) {
    nodes[i]->unblock_peer("h3");
    nodes[2]->unblock_peer(std::string(nodes[i]->name().name()));
  }
  EXPECT_TRUE(eventually([&] { return held_everywhere(nodes, "x", c); }, 20s));
  auto down = await_down(watch, 15s);
  ASSERT_TRUE(down.has_value());
  EXPECT_EQ(*down, Reason(tuple("global_name_conflict", bin("x"), c)));
  for (auto& n : nodes) EXPECT_EQ(global_epoch(*n, "x"), (GlobalEpoch{1, Atom("h3")}));
  for (auto& n : nodes) n->shutdown();
}

// A name registered again while its old epoch is known only elsewhere (here: across a partition,
// as after a restart whose node registers before it rejoins) is raised above that epoch when
// the two sides meet: a fencing epoch never comes round again.
TEST(GlobalPartitionTest, AnEpochSeenElsewhereIsNeverHandedOutAgain) {
  auto nodes = testing::start_loopback_star({"e1", "e2"}, "epoch-cookie", 400ms);
  ASSERT_EQ(nodes.size(), 2u);
  for (auto& n : nodes) ASSERT_OK(start_global(*n));
  auto synced = [&](std::size_t i, std::size_t peers) {
    return global_nodes(*nodes[i]).size() == peers;
  };
  ASSERT_TRUE(eventually([&] { return synced(0, 1) && synced(1, 1); }, 10s));
  nodes[0]->block_peer("e2");
  nodes[1]->block_peer("e1");
  ASSERT_TRUE(eventually([&] { return synced(0, 0) && synced(1, 0); }, 15s));
  // e1 alone: x is held at epoch 1 and its holder exits.
  Pid first = spawn(*nodes[0], [] { (void)receive(); });
  ASSERT_EQ(register_global(*nodes[0], "x", first).value_or(GlobalEpoch{}).counter, 1u);
  exit(first, "kill");
  ASSERT_TRUE(eventually([&] { return !whereis_global(*nodes[0], "x").has_value(); }, 15s));
  // e2 alone, knowing nothing of that: x is held at epoch 1 again.
  Pid second = spawn(*nodes[1], [] { (void)receive(); });
  ASSERT_EQ(register_global(*nodes[1], "x", second).value_or(GlobalEpoch{}).counter, 1u);
  nodes[0]->unblock_peer("e2");
  nodes[1]->unblock_peer("e1");
  // Its epoch (1, e2) is above the ended (1, e1): it stays, and the next counter is 2.
  EXPECT_TRUE(eventually(
      [&] {
        return whereis_global(*nodes[0], "x") == second &&
               global_epoch(*nodes[0], "x") == GlobalEpoch{1, Atom("e2")} &&
               global_epoch(*nodes[1], "x") == GlobalEpoch{1, Atom("e2")};
      },
      10s))
      << "epochs " << global_epoch(*nodes[0], "x").value_or(GlobalEpoch{}).to_string() << " and "
      << global_epoch(*nodes[1], "x").value_or(GlobalEpoch{}).to_string();
  // And the next holder's epoch is above that.
  exit(second, "kill");
  ASSERT_TRUE(eventually([&] { return !whereis_global(*nodes[0], "x").has_value(); }, 15s));
  Pid third = spawn(*nodes[0], [] { (void)receive(); });
  EXPECT_EQ(register_global(*nodes[0], "x", third).value_or(GlobalEpoch{}),
            (GlobalEpoch{2, Atom("e1")}));
  for (auto& n : nodes) n->shutdown();
}

// A global name whose holder (on this node) has exited is answered by nobody, even before the
// global server has handled the exit (manual scheduling holds it still).
TEST(GlobalLivenessTest, ANameOfAnExitedHolderIsNotAnswered) {
  Node node(NodeOptions{.name = "gl", .manual_scheduling = true});
  ASSERT_OK(start_global(node));
  Pid gone;
  {
    Inbox holder(node);
    gone = holder.pid();
    ASSERT_OK(register_global(node, "x", gone));
    ASSERT_EQ(whereis_global(node, "x"), gone);
  }
  EXPECT_FALSE(whereis_global(node, "x").has_value());
  EXPECT_TRUE(global_names(node).empty());
  EXPECT_FALSE(global_epoch(node, "x").has_value());
}

// A hidden node is no member (docs/protocol.md section 11): its global server's Hello is
// ignored and counted, so it never becomes a peer that votes in name locking.
TEST(GlobalHiddenTest, AHiddenNodesHelloIsIgnoredAndCounted) {
  auto member = testing::start_loopback_node("gm");
  NodeOptions o = testing::loopback_options("gh");
  o.hidden = true;
  auto hidden = Node::start(o);
  ASSERT_TRUE(member && hidden.ok());
  ASSERT_OK(start_global(*member));
  ASSERT_OK(start_global(**hidden));  // its server says Hello to the member when linked
  ASSERT_OK((*hidden)->connect(member->endpoint(), 10s));
  ASSERT_TRUE(eventually([&] { return global_stats(*member).ignored >= 1; }));
  EXPECT_TRUE(global_nodes(*member).empty());
  // And a registration on the member asks nobody: it wins alone.
  ASSERT_OK(register_global(*member, "solo", spawn(*member, [] { (void)receive(); })));
  EXPECT_EQ(global_stats(*member).rounds_lost, 0u);
  (*hidden)->shutdown();
  member->shutdown();
}

}  // namespace
}  // namespace nodus
