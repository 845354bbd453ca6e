// Global names across real node processes (nodus-testnode children, see nodus/testing/cluster.hpp):
// three nodes racing for one name (exactly one winner), a holder killed (its name gone everywhere),
// a node killed (its names gone), and a 2|1 partition with the name registered on both sides,
// then healed (one holder everywhere within 5 s, the loser told).
//
// The test's own node talks to every child but does not run the global name service, so it
// takes no part in the names and does not bridge the partition. Children run with a 100 ms
// heartbeat and declare a peer down after 1000 ms; every wait is a poll with a deadline.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

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
constexpr auto kLinkUpWithin = 20s;  // covers the transport's reconnect backoff (up to 5 s)

std::set<std::string> names_of(const Term& list) {
  std::set<std::string> out;
  if (!list.is_list()) return out;
  for (const Term& t : list.as_list()) out.emplace(t.as_atom().name());
  return out;
}

class GlobalClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto n = cluster_.start_tester(kHeartbeat, kDownAfter);
    ASSERT_OK(n);
    node_ = std::move(n.value());
    me_ = std::make_unique<Inbox>(*node_);
    std::vector<std::string> seeds;
    for (const char* name : {"c1", "c2", "c3"}) {
      testing::ChildSpec spec;
      spec.ready_line = true;  // nodus-testnode prints READY with its Echo pid
      spec.name = name;
      spec.seeds = seeds;
      spec.heartbeat = kHeartbeat;
      spec.down_after = kDownAfter;
      auto i = cluster_.start(std::move(spec));
      ASSERT_OK(i);
      seeds.push_back(cluster_.endpoint(*i));
      node_->connect(cluster_.endpoint(*i));
    }
    ASSERT_TRUE(eventually([&] { return global_mesh({0, 1, 2}); }, kLinkUpWithin));
  }
  void TearDown() override {
    me_.reset();
    if (node_) node_->shutdown();
  }

  Term ask(std::size_t i, Term request) {
    auto r = call(cluster_.echo(i), std::move(request), 2s);
    return r.ok() ? *r : tuple("call_failed", r.error().term());
  }
  /// True once each child in `group` has synced global names with exactly the others in it.
  bool global_mesh(const std::vector<std::size_t>& group) {
    for (std::size_t i : group) {
      std::set<std::string> want;
      for (std::size_t j : group) {
        if (j != i) want.emplace(cluster_.name(j).name());
      }
      if (names_of(ask(i, "global_nodes")) != want) return false;
    }
    return true;
  }
  Term whereis(std::size_t i, const std::string& name) {
    return ask(i, tuple("global_whereis", bin(name)));
  }
  /// True once every child in `group` says `holder` holds `name`.
  bool held_by(const std::vector<std::size_t>& group, const std::string& name, const Term& holder) {
    for (std::size_t i : group) {
      if (whereis(i, name) != holder) return false;
    }
    return true;
  }

  Cluster cluster_{testing::ClusterOptions{.program = NODUS_TESTNODE_PATH}};
  std::unique_ptr<Node> node_;
  std::unique_ptr<Inbox> me_;
};

TEST_F(GlobalClusterTest, RacingRegistrationFromThreeNodesHasExactlyOneWinner) {
  for (int round = 0; round < 10; ++round) {
    std::string name = "race";
    name += std::to_string(round);
    std::vector<RequestId> asks;
    for (std::size_t i = 0; i < 3; ++i) {
      asks.push_back(send_request(cluster_.echo(i), tuple("global_register", bin(name))));
    }
    int winners = 0;
    Term winner;
    for (const RequestId& id : asks) {
      auto r = wait_response(id, 10s);
      ASSERT_OK(r);
      if (auto m = r->match({"ok", _pid, _tuple})) {
        ++winners;
        winner = m[0];
      } else {
        ASSERT_TRUE(r->match({"error", _bin})) << r->to_string();
        EXPECT_NE((*r)[1].as_bin().find("already_started"), std::string::npos) << r->to_string();
      }
    }
    ASSERT_EQ(winners, 1) << name;
    EXPECT_TRUE(eventually([&] { return held_by({0, 1, 2}, name, winner); })) << name;
  }
}

TEST_F(GlobalClusterTest, NameOfAKilledHolderIsGoneEverywhere) {
  Term r = ask(0, tuple("global_register", bin("db")));
  ASSERT_TRUE(r.match({"ok", _pid, _tuple})) << r.to_string();
  const Pid holder = r[1].as_pid();
  ASSERT_TRUE(eventually([&] { return held_by({0, 1, 2}, "db", holder); }));
  (void)call(holder, "crash", 2s);  // the holder dies (the call fails with its exit reason)
  EXPECT_TRUE(eventually([&] { return held_by({0, 1, 2}, "db", Term()); }));
}

TEST_F(GlobalClusterTest, NamesOfAKilledNodeAreGone) {
  Term r = ask(2, tuple("global_register", bin("worker")));
  ASSERT_TRUE(r.match({"ok", _pid, _tuple})) << r.to_string();
  ASSERT_TRUE(eventually([&] { return held_by({0, 1, 2}, "worker", r[1]); }));
  const auto killed = Clock::now();
  cluster_.kill_9(2);
  ASSERT_TRUE(eventually([&] { return held_by({0, 1}, "worker", Term()); }, 5s));
  // Within the failure-detection window (down_after), plus scheduling slack.
  EXPECT_LT(Clock::now() - killed, kDownAfter + 1500ms);
}

TEST_F(GlobalClusterTest, PartitionWithTheNameOnBothSidesHealsToOneHolderAndTellsTheLoser) {
  // c1, c2 | c3: each side cuts the other.
  for (std::size_t i : {0, 1}) {
    ASSERT_EQ(ask(i, tuple("block", atom("c3"))), Term("ok"));
    ASSERT_EQ(ask(2, tuple("block", cluster_.name(i))), Term("ok"));
  }
  ASSERT_TRUE(eventually([&] { return global_mesh({0, 1}) && global_mesh({2}); }, 10s));

  Term minority = ask(2, tuple("global_register", bin("leader")));
  ASSERT_TRUE(minority.match({"ok", _pid, _tuple})) << minority.to_string();
  Term majority = ask(0, tuple("global_register", bin("leader")));
  ASSERT_TRUE(majority.match({"ok", _pid, _tuple})) << majority.to_string();
  ASSERT_TRUE(eventually([&] { return held_by({0, 1}, "leader", majority[1]); }));
  ASSERT_TRUE(held_by({2}, "leader", minority[1]));

  for (std::size_t i : {0, 1}) {
    ASSERT_EQ(ask(i, tuple("unblock", atom("c3"))), Term("ok"));
    ASSERT_EQ(ask(2, tuple("unblock", cluster_.name(i))), Term("ok"));
  }
  ASSERT_TRUE(eventually([&] { return global_mesh({0, 1, 2}); }, kLinkUpWithin));
  const auto healed = Clock::now();
  Term holder;
  ASSERT_TRUE(eventually(
      [&] {
        holder = whereis(0, "leader");
        return holder.is_pid() && held_by({0, 1, 2}, "leader", holder);
      },
      5s))
      << "after the heal: " << whereis(0, "leader").to_string() << " "
      << whereis(1, "leader").to_string() << " " << whereis(2, "leader").to_string();
  EXPECT_LT(Clock::now() - healed, 5s);
  ASSERT_TRUE(holder == majority[1] || holder == minority[1]) << holder.to_string();
  const Term& loser = holder == majority[1] ? minority[1] : majority[1];
  // The loser is told, naming the winner.
  EXPECT_TRUE(eventually([&] {
    auto c = call(loser.as_pid(), "conflicts", 2s);
    return c.ok() && *c == list(tuple("global_name_conflict", bin("leader"), holder));
  })) << call(loser.as_pid(), "conflicts", 2s).value_or(Term()).to_string();
  // The winner was not told. The two sides' epochs differ (the same counter, 1, from c1 and
  // from c3), and the winner's, the higher, is every node's.
  EXPECT_EQ(call(holder.as_pid(), "conflicts", 2s).value_or(Term("failed")), Term(List{}));
  auto epoch = [](const Term& t) {
    return std::pair(t[0].as_int(), std::string(t[1].as_atom().name()));
  };
  const Term& winner = holder == majority[1] ? majority : minority;
  const Term& other = holder == majority[1] ? minority : majority;
  EXPECT_GT(epoch(winner[2]), epoch(other[2]));
  for (std::size_t i : {0, 1, 2}) {
    Term e = ask(i, tuple("global_epoch", bin("leader")));
    ASSERT_TRUE(e.match({_int, _atom})) << e.to_string();
    EXPECT_EQ(e, winner[2]);
  }
}

}  // namespace
}  // namespace nodus
