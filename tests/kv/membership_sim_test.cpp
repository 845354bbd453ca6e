// Membership changes on the simulated network (tests/sim/sim_cluster.hpp): a node started with
// the cluster's seeds is a candidate until staged changes at the claimant make it a member
// ({cluster, join|leave|remove, Node}, plan, commit, clear: docs/protocol.md 12), and every node
// converges on the ring the claimant commits. Virtual time, one thread: each seed replays.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "nodus/kv/client.hpp"
#include "nodus/kv/kv.hpp"
#include "sim/sim_cluster.hpp"
#include "state.hpp"

namespace nodus::kv {
namespace {

using namespace std::chrono_literals;
using testing::numbered;
using testing::SimCluster;

class KvMembershipTest : public ::testing::TestWithParam<std::uint64_t> {
 protected:
  // Nodes n1..n`count`, meshed, the store on each; n1..n`members` are the initial members, the
  // others start with the same options (candidates). Waits until every node holds the ring.
  void start(int count, int members) {
    sim_ = std::make_unique<SimCluster>(GetParam());
    for (int i = 1; i <= count; ++i) {
      const std::string name = numbered("n", i);
      sim_->add(name, i == 1 ? std::vector<std::string>{} : std::vector<std::string>{"n1"});
      names_.push_back(name);
    }
    ASSERT_TRUE(sim_->run_until([&] { return sim_->meshed(); }, 10s));
    std::vector<std::string> initial(names_.begin(), names_.begin() + members);
    for (const auto& name : names_) {
      Options o;
      o.partitions = 16;
      o.replicas = 3;
      o.initial_members = initial;
      o.context_secret = "sim";
      o.request_timeout = 2000ms;
      o.handoff_interval = 100ms;
      o.clock = sim_->net().clock();
      ASSERT_OK(kv::start(sim_->node(name), o));
    }
    ASSERT_TRUE(sim_->run_until(
        [&] {
          for (const auto& name : names_) {
            auto r = ring(sim_->node(name));
            if (!r || r->members().size() != initial.size()) return false;
          }
          return true;
        },
        10s))
        << "the ring did not reach every node";
  }

  // The answer of `nodus_kv` on node `at` to `request`, asked from a process there.
  Term ask(const std::string& at, Term request) {
    auto out = std::make_shared<std::optional<Term>>();
    sim_->spawn(at, [at, request, out] {
      auto r = call(named("nodus_kv", at), request, 5000ms);
      *out = r ? *r : tuple("call_failed", bin(r.error().to_string()));
    });
    EXPECT_TRUE(sim_->run_until([&] { return out->has_value(); }, 10s)) << request.to_string();
    return out->value_or(Term("no_answer"));
  }
  static Term cluster(const char* op, const std::string& node) {
    return tuple("cluster", op, bin(node));
  }

  // True once every live node in `at` holds the same ring, of epoch `epoch` at least.
  bool converged(const std::vector<std::string>& at, std::uint64_t epoch) {
    std::optional<Ring> first;
    for (const auto& name : at) {
      auto r = ring(sim_->node(name));
      if (!r || r->epoch() < epoch) return false;
      if (!first) {
        first = *r;
      } else if (!(*r == *first)) {
        return false;
      }
    }
    return true;
  }

  std::unique_ptr<SimCluster> sim_;
  std::vector<std::string> names_;
};

TEST_P(KvMembershipTest, ACandidateJoinsThroughStagedChanges) {
  start(4, 3);
  ASSERT_EQ(ring(sim_->node("n4"))->member_index("n4"), -1) << "n4 holds the ring, as a candidate";
  // Keys written before the change are still read after it.
  const Client c4(sim_->node("n4"));
  for (int i = 0; i < 20; ++i) {
    auto done = std::make_shared<std::optional<bool>>();
    sim_->spawn("n4", [c4, i, done] { *done = c4.put(numbered("k", i), "v").ok(); });
    ASSERT_TRUE(sim_->run_until([&] { return done->has_value(); }, 10s));
    ASSERT_TRUE(**done) << "put through a candidate, forwarded to a primary";
  }

  // Staged at the claimant (n1) from any member; commit from another one.
  EXPECT_EQ(ask("n2", cluster("join", "n4")), Term("ok"));
  Term plan = ask("n3", tuple("cluster", "plan"));
  ASSERT_TRUE(plan.match({"ok", _map})) << plan.to_string();
  const Term& p = plan[1];
  EXPECT_EQ(*p.find(Term("claimant")), bin("n1"));
  ASSERT_TRUE(p.find(Term("moves"))) << plan.to_string();
  const List& moves = p.find(Term("moves"))->as_list();
  EXPECT_EQ(moves.size(), 4u) << "16 partitions, 3 -> 4 members: n4 takes 4";
  for (const Term& m : moves) {
    EXPECT_EQ(*m.find(Term("to")), bin("n4"));
    EXPECT_EQ(*m.find(Term("kind")), Term("transfer"));
  }
  EXPECT_EQ(ring(sim_->node("n1"))->epoch(), 1u) << "a plan changes nothing";

  Term commit = ask("n3", tuple("cluster", "commit"));
  ASSERT_TRUE(commit.match({"ok", _map})) << commit.to_string();
  ASSERT_TRUE(sim_->run_until([&] { return converged(names_, 2); }, 10s)) << "rings converge";
  const Ring r = *ring(sim_->node("n4"));
  EXPECT_EQ(r.epoch(), 2u);
  EXPECT_GE(r.member_index("n4"), 0);
  EXPECT_EQ(r.transfers().size(), 4u);
  EXPECT_EQ(r.owned_counts()[r.member_index("n4")], 0u)
      << "n4 owns nothing until the partitions are handed to it";
  // Nothing staged now; a new plan waits for the transfers.
  Term again = ask("n1", tuple("cluster", "commit"));
  EXPECT_TRUE(again.match({"error", {"badarg", _bin}})) << again.to_string();

  for (int i = 0; i < 20; ++i) {
    auto got = std::make_shared<std::optional<bool>>();
    const Client c(sim_->node(numbered("n", 1 + i % 4)));
    sim_->spawn(numbered("n", 1 + i % 4), [c, i, got] {
      auto g = c.get(numbered("k", i));
      *got = g.ok() && g->values.size() == 1 && g->values[0] == "v";
    });
    ASSERT_TRUE(sim_->run_until([&] { return got->has_value(); }, 10s));
    EXPECT_TRUE(**got) << numbered("k", i);
  }
}

TEST_P(KvMembershipTest, RefusesChangesThatCannotBeAndClearDropsStagedOnes) {
  start(4, 3);
  auto badarg = [](const Term& t) {
    return static_cast<bool>(t.match({"error", {"badarg", _bin}}));
  };
  EXPECT_TRUE(badarg(ask("n1", cluster("join", "n2")))) << "already a member";
  EXPECT_TRUE(badarg(ask("n1", cluster("join", "n9")))) << "not linked";
  EXPECT_TRUE(badarg(ask("n1", cluster("leave", "n4")))) << "not a member";
  EXPECT_TRUE(badarg(ask("n1", cluster("remove", "n2")))) << "up: leave it instead";
  EXPECT_TRUE(badarg(ask("n1", tuple("cluster", "frob"))));
  EXPECT_TRUE(badarg(ask("n1", tuple("cluster", "join", 7))));
  EXPECT_TRUE(badarg(ask("n1", tuple("cluster", "commit")))) << "nothing staged";
  EXPECT_EQ(ask("n1", cluster("leave", "n2")), Term("ok"));
  EXPECT_TRUE(badarg(ask("n3", cluster("join", "n2")))) << "one change per node";
  EXPECT_EQ(ask("n1", cluster("leave", "n3")), Term("ok"));
  EXPECT_TRUE(badarg(ask("n1", cluster("leave", "n1")))) << "no member would be left";
  Term plan = ask("n2", tuple("cluster", "plan"));
  ASSERT_TRUE(plan.match({"ok", _map})) << plan.to_string();
  EXPECT_EQ(plan[1].find(Term("staged"))->size(), 2u);
  EXPECT_EQ(ask("n2", tuple("cluster", "clear")), Term("ok"));
  plan = ask("n1", tuple("cluster", "plan"));
  EXPECT_EQ(plan[1].find(Term("staged"))->size(), 0u) << plan.to_string();
  sim_->run_for(3s);
  EXPECT_TRUE(converged(names_, 1));
  EXPECT_EQ(ring(sim_->node("n1"))->epoch(), 1u) << "nothing committed";
}

TEST_P(KvMembershipTest, ADeadMemberIsRemovedEvenWhenItWasTheClaimant) {
  start(4, 4);
  const Ring before = *ring(sim_->node("n1"));
  sim_->crash("n1");
  const std::vector<std::string> alive{"n2", "n3", "n4"};
  ASSERT_TRUE(sim_->run_until(
      [&] {
        for (const auto& n : alive) {
          auto v = state_of(sim_->node(n))->view();
          if (v->up[v->ring->member_index("n1")]) return false;
        }
        return true;
      },
      30s));
  // n2, the lowest member up, acts as the claimant.
  Term leave = ask("n3", cluster("leave", "n1"));
  EXPECT_TRUE(leave.match({"error", {"badarg", _bin}})) << "a dead node cannot hand off";
  EXPECT_EQ(ask("n3", cluster("remove", "n1")), Term("ok"));
  Term plan = ask("n4", tuple("cluster", "plan"));
  ASSERT_TRUE(plan.match({"ok", _map})) << plan.to_string();
  EXPECT_EQ(*plan[1].find(Term("claimant")), bin("n2"));
  int rebuilt = 0;
  for (const Term& m : plan[1].find(Term("moves"))->as_list()) {
    const bool from_n1 = *m.find(Term("from")) == bin("n1");
    EXPECT_EQ(*m.find(Term("kind")), Term(from_n1 ? "rebuild" : "transfer")) << m.to_string();
    rebuilt += from_n1;
  }
  EXPECT_EQ(rebuilt, 4) << "n1 owned 4 of 16";
  ASSERT_TRUE(ask("n4", tuple("cluster", "commit")).match({"ok", _map}));
  ASSERT_TRUE(sim_->run_until([&] { return converged(alive, 2); }, 10s));
  const Ring r = *ring(sim_->node("n3"));
  EXPECT_EQ(r.members(), (std::vector<std::string>{"n2", "n3", "n4"}));
  for (std::uint32_t p = 0; p < 16; ++p) {
    if (before.members()[before.owner(p)] == "n1") {
      EXPECT_EQ(r.owner(p), r.next_owner(p)) << "partition " << p << " goes to its new owner now";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, KvMembershipTest, ::testing::Values(1, 2, 3));

}  // namespace
}  // namespace nodus::kv
