// Global names on the simulated network (tests/sim/sim_cluster.hpp), step by step from a seed:
// 1,000 seeds of registrations racing for a few names while the cluster is partitioned and a
// node is paused (past down_after or not); then the network heals. After the heal, no two
// holders of a name ever coexist: every node names the same holder (or none) for every name,
// and that holder is the only registrant of the name still alive. And fencing holds through
// the split: no two registrations of a name were given one epoch, and a holder after the heal
// has an epoch at least every acknowledged registration's of its name. A failing seed replays
// exactly: run it alone (NODUS_SIM_SEED=N) with NODUS_SIM_TRACE=1 for its story
// (NODUS_SIM_FIRST / NODUS_SIM_LAST for a range, NODUS_SIM_ALL=1 to list every failure).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "nodus/node/process.hpp"
#include "nodus/registry/global.hpp"
#include "sim/sim_cluster.hpp"
#include "test_support.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using testing::SimCluster;

/// One registrant: a process that asks for `name` and, if it got it, holds it until killed.
struct Registrant {
  std::string node;
  std::string name;
  Pid pid;
  std::optional<Status> result;  // register_global's answer, once it came
  GlobalEpoch epoch;             // when it was ok
};

/// What every node's table says about `name` (nullopt: nobody).
std::map<std::string, std::optional<Pid>> tables(SimCluster& sim, const std::string& name) {
  std::map<std::string, std::optional<Pid>> out;
  for (const std::string& n : sim.names()) out[n] = whereis_global(sim[n], name);
  return out;
}

bool alive(SimCluster& sim, const Pid& pid) {
  for (const std::string& n : sim.names()) {
    for (const ProcessInfo& p : sim[n].processes()) {
      if (p.pid == pid) return true;
    }
  }
  return false;
}

/// After the heal: every node agrees on each name's holder, which is alive, and no other
/// registrant that was told it won is still alive. Empty if so, else what is wrong.
std::string holders_problem(SimCluster& sim, const std::vector<Registrant>& rs,
                            const std::vector<std::string>& names) {
  for (const std::string& name : names) {
    const auto t = tables(sim, name);
    std::set<std::optional<Pid>> distinct;
    for (const auto& [node, pid] : t) distinct.insert(pid);
    if (distinct.size() != 1) {
      std::string why = "nodes disagree on " + name + ":";
      for (const auto& [node, pid] : t) why += " " + node + "=" + (pid ? pid->to_string() : "-");
      return why;
    }
    const std::optional<Pid> holder = *distinct.begin();
    if (holder && !alive(sim, *holder)) return name + " is held by a dead process";
    std::map<GlobalEpoch, Pid> given;  // each acknowledged epoch of the name, and to whom
    for (const Registrant& r : rs) {
      if (r.name != name || !r.result || !r.result->ok()) continue;
      auto [it, fresh] = given.emplace(r.epoch, r.pid);
      if (!fresh && it->second != r.pid) {
        return "two holders of " + name + " at epoch " + r.epoch.to_string() + ": " +
               it->second.to_string() + " and " + r.pid.to_string();
      }
    }
    if (holder && !given.empty()) {
      for (const std::string& n : sim.names()) {
        const std::optional<GlobalEpoch> e = global_epoch(sim[n], name);
        if (!e || *e < given.rbegin()->first) {
          return n + " has " + name + " at epoch " + (e ? e->to_string() : "-") +
                 ", below the acknowledged " + given.rbegin()->first.to_string();
        }
      }
    }
    for (const Registrant& r : rs) {
      if (r.name != name || !r.result || !r.result->ok() || !alive(sim, r.pid)) continue;
      if (!holder || r.pid != *holder) {
        return "two holders of " + name + ": " + r.pid.to_string() + " won and lives, tables say " +
               (holder ? holder->to_string() : "nobody");
      }
    }
  }
  return {};
}

/// What the network does to the race.
enum class Faults {
  kPartitionOrPause,  ///< one node partitioned from the others, or paused
  kOverlapping,       ///< drops (a drop takes a link down at both ends), alone or with a
                      ///< partition; a partition and a pause at once
};

/// One seed's run; returns "" if the invariant held, else the story of what went wrong.
std::string run_seed(std::uint64_t seed, Faults mix, bool trace) {
  std::mt19937_64 rng(seed);  // the schedule; the simulation has its own generator
  transport::SimFaults faults;
  faults.max_latency = std::chrono::microseconds(50 + rng() % 3000);
  SimCluster sim(seed, faults);
  if (trace) sim.net().set_trace([](const std::string& l) { std::printf("net %s\n", l.c_str()); });
  const std::vector<std::string> nodes = {"a", "b", "c"};
  sim.add("a");
  sim.add("b", {"a"});
  sim.add("c", {"a"});
  if (!sim.run_until([&] { return sim.meshed(); }, 5s)) return "never meshed";
  GlobalOptions go;
  go.on_conflict = ConflictAction::kExit;  // a loser dies: two live winners are two holders
  for (const std::string& n : nodes) {
    if (Status s = start_global(sim[n], go); !s.ok()) return "start_global: " + s.to_string();
  }
  if (!sim.run_until(
          [&] {
            for (const std::string& n : nodes) {
              if (global_nodes(sim[n]).size() != 2) return false;
            }
            return true;
          },
          5s)) {
    return "global peers never met";
  }

  // Registrants: two per node, racing for two names after a random pause each.
  const std::vector<std::string> names = {"x", "y"};
  std::vector<Registrant> rs;
  for (const std::string& n : nodes) {
    for (int i = 0; i < 2; ++i)
      rs.push_back(Registrant{n, names[rng() % names.size()], {}, {}, {}});
  }
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const auto pause = std::chrono::milliseconds(rng() % 40);
    Node& node = sim[rs[i].node];
    rs[i].pid = sim.spawn(rs[i].node, [&rs, i, pause, &node] {
      sleep_for(pause);
      auto r = register_global(node, rs[i].name, self());
      if (r.ok()) rs[i].epoch = *r;
      rs[i].result = r.ok() ? Status::Ok() : r.error().status();
      if (!r.ok()) return;
      for (;;) (void)receive();  // hold the name until killed (a conflict's loser is)
    });
  }

  // Faults while they race (see Faults).
  enum Kind { kDrops, kPartition, kPause, kDropsAndPartition, kPartitionAndPause };
  static const Kind kOneAtATime[] = {kPartition, kPause};
  static const Kind kOverlapping[] = {kDrops, kDropsAndPartition, kPartitionAndPause};
  const Kind kind =
      mix == Faults::kPartitionOrPause ? kOneAtATime[rng() % 2] : kOverlapping[rng() % 3];
  if (kind == kDrops || kind == kDropsAndPartition) {
    transport::SimFaults f = faults;
    f.drop = 0.01 * static_cast<double>(1 + rng() % 5);
    sim.net().set_faults(f);
  }
  const std::string odd = nodes[rng() % nodes.size()];
  std::vector<std::string> rest;
  for (const std::string& n : nodes) {
    if (n != odd) rest.push_back(n);
  }
  sim.run_for(std::chrono::milliseconds(rng() % 30));
  if (kind == kPartition || kind == kDropsAndPartition || kind == kPartitionAndPause) {
    sim.partition({odd}, rest);
  }
  if (kind == kPause) sim.pause(odd);
  if (kind == kPartitionAndPause) sim.pause(rest[0]);
  sim.run_for(std::chrono::milliseconds(200 + rng() % 4000));

  // The heal.
  sim.heal();
  sim.net().set_faults(faults);
  for (const std::string& n : nodes) {
    if (sim.paused(n)) sim.resume(n);
  }
  const bool settled = sim.run_until(
      [&] {
        if (!sim.meshed()) return false;
        for (const Registrant& r : rs) {
          if (!r.result && alive(sim, r.pid)) return false;  // still registering
        }
        return holders_problem(sim, rs, names).empty();
      },
      20s);
  std::string problem;
  if (!settled) {
    problem = sim.meshed() ? holders_problem(sim, rs, names) : "not meshed";
    if (problem.empty()) problem = "a registration never finished";
  } else {
    // And it stays so.
    sim.run_for(5s);
    problem = holders_problem(sim, rs, names);
  }
  if (trace) {
    for (const std::string& l : sim.logs()) std::printf("log %s\n", l.c_str());
    for (const std::string& n : sim.names()) {
      std::string view;
      for (Atom peer : sim[n].nodes()) {
        view += ' ';  // (not " " + name: a false -Wrestrict of GCC 12)
        view += peer.name();
      }
      std::printf("node %s sees:%s\n", n.c_str(), view.c_str());
    }
    for (const Registrant& r : rs) {
      std::printf("registrant %s on %s for %s: %s, %s\n", r.pid.to_string().c_str(), r.node.c_str(),
                  r.name.c_str(), r.result ? r.result->to_string().c_str() : "no answer",
                  alive(sim, r.pid) ? "alive" : "dead");
    }
  }
  if (!problem.empty()) {
    static const char* const kKinds[] = {"drops", "partition", "pause", "drops+partition",
                                         "partition+pause"};
    problem = std::string("[") + kKinds[kind] + "] " + problem;
  }
  return problem;
}

// Under a sanitizer a seed costs some 30 times more (every node maps and clears its process
// table's first megabyte, and TSan shadows it): fewer seeds there, all 1,000 elsewhere.
constexpr std::uint64_t kSeeds = testing::kSanitized ? 100 : 1000;

/// Runs seeds 1..kSeeds (or as the environment says) of `mix`; a failure per failing seed.
void run_seeds(Faults mix) {
  std::uint64_t first = 1, last = kSeeds;
  if (const char* one = std::getenv("NODUS_SIM_SEED"))
    first = last = std::strtoull(one, nullptr, 10);
  if (const char* from = std::getenv("NODUS_SIM_FIRST")) first = std::strtoull(from, nullptr, 10);
  if (const char* to = std::getenv("NODUS_SIM_LAST")) last = std::strtoull(to, nullptr, 10);
  const bool trace = std::getenv("NODUS_SIM_TRACE") != nullptr;
  const int max_failures = std::getenv("NODUS_SIM_ALL") ? 1000000 : 5;
  int failures = 0;
  for (std::uint64_t seed = first; seed <= last; ++seed) {
    const std::string problem = run_seed(seed, mix, trace && seed == last);
    if (!problem.empty()) {
      ADD_FAILURE() << "seed " << seed << ": " << problem;
      if (++failures == max_failures) break;
    }
  }
}

TEST(GlobalSimTest, RacingRegistrationsUnderAPartitionOrAPauseLeaveOneHolderAfterHeal) {
  run_seeds(Faults::kPartitionOrPause);
}

// In these schedules two nodes that race for a name can lose each other mid-round -- a dropped
// message takes their link down at both ends (as a lost Erlang connection does), or a partition
// and a pause leave each alone -- so each wins a round alone (a majority of the voters it still
// has), and the merge after the heal must settle it: a holder displaced by another registrar's
// commit is told, and a claim whose holder died meanwhile does not come back through a third
// node's Hello (docs/protocol.md section 9, "The record of a name").
TEST(GlobalSimTest, RacingRegistrationsUnderDropsAndOverlappingFaultsLeaveOneHolderAfterHeal) {
  run_seeds(Faults::kOverlapping);
}

// Issue 10: a second node started under a name already in the cluster (a careless copy of
// n1.conf with another port). It is refused everywhere; the real node is never down anywhere
// (no flapping), a global name it holds is answered by its holder alone, each side logs why, and
// after the copy stops the others still see the real node up.
TEST(GlobalSimTest, ACopyOfANodeUnderItsNameLeavesTheRealOneAndItsNamesAlone) {
  SimCluster sim(11);
  sim.add("a");
  sim.add("b", {"a"});
  sim.add("c", {"a"});
  ASSERT_TRUE(sim.run_until([&] { return sim.meshed(); }, 5s));
  for (const char* n : {"a", "b", "c"}) ASSERT_OK(start_global(sim[n]));
  std::optional<Status> registered;
  const Pid holder = sim.spawn("a", [&] {
    auto r = register_global(sim["a"], "hits", self());
    registered = r.ok() ? Status::Ok() : r.error().status();
    for (;;) (void)receive();
  });
  auto answered_by_holder = [&] {
    for (const char* n : {"a", "b", "c"}) {
      if (whereis_global(sim[n], "hits") != std::optional<Pid>(holder)) return false;
    }
    return true;
  };
  ASSERT_TRUE(sim.run_until(answered_by_holder, 5s));
  ASSERT_OK(*registered);

  // The copy, with a global name service and a "hits" of its own, seeded like the original.
  // (std::string(1, 'a'), not "a": a false -Wrestrict of GCC 12 there)
  Node& copy = sim.add("a-copy", {"b", "c"}, [](NodeOptions& o) { o.name = std::string(1, 'a'); });
  ASSERT_OK(start_global(copy));
  sim.spawn("a-copy", [&] {
    (void)register_global(copy, "hits", self());
    for (;;) (void)receive();
  });
  auto undisturbed = [&] {
    for (const char* n : {"b", "c"}) {
      const auto nodes = sim[n].nodes();
      if (std::find(nodes.begin(), nodes.end(), Atom("a")) == nodes.end()) return false;
      if (sim[n].network_stats().node_down_events != 0) return false;
    }
    return answered_by_holder();
  };
  for (int i = 0; i < 30; ++i) {  // 30 s, checked every second
    sim.run_for(1s);
    ASSERT_TRUE(undisturbed()) << "after " << i + 1 << " s";
  }
  EXPECT_TRUE(copy.nodes().empty());
  std::size_t refused_at_b = 0, refused_at_copy = 0;
  for (const std::string& l : sim.logs()) {
    refused_at_b += l.rfind("b: refused node a at sim://a-copy: the name a is in use", 0) == 0;
    refused_at_copy += l.rfind("a-copy: node at sim://", 0) == 0 &&
                       l.find("refused us: name in use") != std::string::npos;
  }
  EXPECT_GE(refused_at_b, 1u);
  EXPECT_LE(refused_at_b, 4u);  // one line per 10 s
  EXPECT_GE(refused_at_copy, 1u);

  // The copy stops: the real a stays up everywhere, its name with it.
  sim.stop("a-copy");
  for (int i = 0; i < 30; ++i) {
    sim.run_for(1s);
    ASSERT_TRUE(undisturbed()) << "after the copy stopped, " << i + 1 << " s";
  }
}

// A node that crashes and comes back at once, as a new incarnation, before its peers declared
// it down: its old processes are dead, and the name one of them held goes everywhere (its
// peers drop the claims of the old incarnation when the new one links). Then the name is free
// again.
TEST(GlobalSimTest, ANameOfAProcessOfACrashedAndRestartedNodeGoesEverywhere) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    SimCluster sim(seed);
    sim.add("a");
    sim.add("b", {"a"});
    sim.add("c", {"a"});
    ASSERT_TRUE(sim.run_until([&] { return sim.meshed(); }, 5s));
    for (const std::string& n : sim.names()) ASSERT_OK(start_global(sim[n]));
    auto synced = [&] {
      for (const std::string& n : sim.names()) {
        if (global_nodes(sim[n]).size() != 2) return false;
      }
      return true;
    };
    ASSERT_TRUE(sim.run_until(synced, 5s));
    Node& b = sim["b"];
    const Pid old = sim.spawn("b", [&b] {
      if (register_global(b, "x", self()).ok()) {
        for (;;) (void)receive();
      }
    });
    auto everywhere = [&](std::optional<Pid> pid) {
      for (const std::string& n : sim.names()) {
        if (whereis_global(sim[n], "x") != pid) return false;
      }
      return true;
    };
    ASSERT_TRUE(sim.run_until([&] { return everywhere(old); }, 5s));
    sim.crash("b");
    ASSERT_OK(start_global(sim.add("b", {"a"})));
    ASSERT_TRUE(sim.run_until([&] { return sim.meshed() && synced(); }, 20s));
    EXPECT_TRUE(sim.run_until([&] { return everywhere(std::nullopt); }, 10s))
        << "a=" << whereis_global(sim["a"], "x").value_or(Pid{}).to_string()
        << " c=" << whereis_global(sim["c"], "x").value_or(Pid{}).to_string();
    Node& c = sim["c"];
    std::optional<bool> won;
    sim.spawn("c", [&c, &won] {
      won = register_global(c, "x", self()).ok();
      if (*won) {
        for (;;) (void)receive();
      }
    });
    ASSERT_TRUE(sim.run_until([&] { return won.has_value(); }, 10s));
    EXPECT_TRUE(*won);
  }
}

}  // namespace
}  // namespace nodus
