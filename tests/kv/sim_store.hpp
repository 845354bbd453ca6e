// Starting the store on the simulated network (tests/sim/sim_cluster.hpp), the way every
// deterministic store test does: nodes n1..nN meshed through n1, the store on each with the
// options below (changed per test), and a wait until every node holds a ring of all the initial
// members. One place, so that a change to how the store starts changes every such test.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/kv/partition.hpp"
#include "sim/sim_cluster.hpp"

namespace nodus::kv::sim {

/// Adds nodes n1..n`count` to `sim`, each but n1 with n1 as its seed, `node_tweak` applied to
/// every node's options, and runs until they are meshed (10 s of virtual time). Returns their
/// names in order; the caller asserts `sim.meshed()` if it must (the names come back either way).
inline std::vector<std::string> add_meshed(
    testing::SimCluster& sim, int count, const std::function<void(NodeOptions&)>& node_tweak = {}) {
  using namespace std::chrono_literals;
  std::vector<std::string> names;
  for (int i = 1; i <= count; ++i) names.push_back(testing::numbered("n", i));
  for (const auto& name : names) {
    sim.add(name, name == "n1" ? std::vector<std::string>{} : std::vector<std::string>{"n1"},
            node_tweak);
  }
  sim.run_until([&] { return sim.meshed(); }, 10s);
  return names;
}

/// The options the store's sim tests start from: Q = 16, N = 3, `members` as the initial
/// members, the simulated clock, a 2 s request timeout, hinted hand-off tried every 100 ms.
inline Options base_options(testing::SimCluster& sim, const std::vector<std::string>& members) {
  using namespace std::chrono_literals;
  Options o;
  o.partitions = 16;
  o.replicas = 3;
  o.initial_members = members;
  o.context_secret = "sim";
  o.request_timeout = 2000ms;
  o.handoff_interval = 100ms;
  o.clock = sim.net().clock();
  return o;
}

/// Starts the store on each of `names` with base_options(`initial`) changed by `tweak` (given
/// the node's name), records each node's options in `*started` if not null, and runs until
/// every node's ring lists all of `initial` (10 s of virtual time). Fails naming the node whose
/// store did not start, or saying the ring did not form.
inline ::testing::AssertionResult start_store(
    testing::SimCluster& sim, const std::vector<std::string>& names,
    const std::vector<std::string>& initial,
    const std::function<void(const std::string&, Options&)>& tweak = {},
    std::map<std::string, Options>* started = nullptr) {
  using namespace std::chrono_literals;
  if (!sim.meshed()) return ::testing::AssertionFailure() << "the nodes did not mesh";
  for (const auto& name : names) {
    Options o = base_options(sim, initial);
    if (tweak) tweak(name, o);
    if (started) (*started)[name] = o;
    if (Status s = start(sim.node(name), o); !s.ok()) {
      return ::testing::AssertionFailure() << "the store on " << name << ": " << s.to_string();
    }
  }
  const bool formed = sim.run_until(
      [&] {
        for (const auto& name : names) {
          auto r = ring(sim.node(name));
          if (!r || r->members().size() != initial.size()) return false;
        }
        return true;
      },
      10s);
  if (!formed) return ::testing::AssertionFailure() << "the ring did not reach every node";
  return ::testing::AssertionSuccess();
}

/// The same with every node an initial member and one `tweak` for all.
inline ::testing::AssertionResult start_store(testing::SimCluster& sim,
                                              const std::vector<std::string>& names,
                                              const std::function<void(Options&)>& tweak,
                                              std::map<std::string, Options>* started = nullptr) {
  return start_store(
      sim, names, names,
      [&](const std::string&, Options& o) {
        if (tweak) tweak(o);
      },
      started);
}

/// The primaries of `key`, as node names, first first, by node `at`'s ring (Q = 16, as
/// base_options). REQUIRES: `at` holds a ring.
inline std::vector<std::string> primaries(testing::SimCluster& sim, const std::string& key,
                                          const std::string& at = "n1") {
  const Ring r = *ring(sim.node(at));
  std::vector<std::string> out;
  for (std::uint32_t m : r.preference_list(partition_of(key, 16), r.replicas())) {
    out.push_back(r.members()[m]);
  }
  return out;
}

}  // namespace nodus::kv::sim
