// The store on several real nodes in one test process, linked over loopback ZeroMQ: the
// fixture the cluster and query tests share. Nodes n1..nCount are meshed, the store runs on
// each with them all as initial members (Q = 16), and the helpers read what a node's own
// engine and view hold, cut links both ways, and name a key's primaries.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../node/test_util.hpp"
#include "../test_support.hpp"
#include "nodus/kv/client.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/kv/partition.hpp"
#include "state.hpp"

namespace nodus::kv {

class LoopbackKvTest : public ::testing::Test {
 protected:
  static constexpr std::uint32_t kPartitions = 16;

  void TearDown() override {
    clients_.clear();
    for (auto& n : nodes_) n.reset();
  }

  // Starts `count` nodes n1..nCount meshed, the store on each (N = `replicas`, W = R = 2 or N
  // when less, then `tweak`), a Client per node, and waits for the ring on all.
  void start_cluster(int count, std::uint32_t replicas = 3,
                     const std::function<void(Options&)>& tweak = {}) {
    using namespace std::chrono_literals;
    std::vector<std::string> names;
    for (int i = 1; i <= count; ++i) names.push_back(testing::numbered("n", i));
    for (const auto& name : names) {
      nodes_.push_back(testing::start_loopback_node(name, "kv-cookie", 1000ms));
      ASSERT_TRUE(nodes_.back());
      if (nodes_.size() > 1) nodes_.back()->connect(nodes_.front()->endpoint());
    }
    for (auto& n : nodes_) {
      Options o;
      o.partitions = kPartitions;
      o.replicas = replicas;
      o.write_quorum = std::min<std::uint32_t>(2, replicas);
      o.read_quorum = std::min<std::uint32_t>(2, replicas);
      o.initial_members = names;
      o.context_secret = "kv-cookie";
      o.request_timeout = 2000ms;
      o.handoff_interval = 100ms;
      if (tweak) tweak(o);
      ASSERT_OK(start(*n, o));
      clients_.push_back(std::make_unique<Client>(*n));
    }
    ASSERT_TRUE(testing::eventually(
        [&] {
          for (auto& n : nodes_) {
            auto r = ring(*n);
            if (!r || r->members().size() != names.size()) return false;
            // Meshed too: a node that does not see a primary up yet routes around it (to the
            // next primary, or a fallback), which tests of "the first up primary" must not meet.
            if (n->nodes().size() != names.size() - 1) return false;
          }
          return true;
        },
        10s))
        << "the ring did not form on every node, or they are not all linked";
  }

  Node& node(int i) { return *nodes_[i - 1]; }
  Client& client(int i) { return *clients_[i - 1]; }

  // Cuts (or restores) traffic between node i and node j both ways.
  void cut(int i, int j, bool on = true) {
    const std::string a = testing::numbered("n", i), b = testing::numbered("n", j);
    if (on) {
      node(i).block_peer(b);
      node(j).block_peer(a);
    } else {
      node(i).unblock_peer(b);
      node(j).unblock_peer(a);
    }
  }
  // Cuts node i off from every other node (or heals it, with on = false) and waits until it
  // and they see each other down (or up) in their stores. False when they did not in 10 s.
  bool isolate(int i, bool on = true) {
    const int count = static_cast<int>(nodes_.size());
    for (int j = 1; j <= count; ++j) {
      if (j != i) cut(i, j, on);
    }
    return testing::eventually(
        [&] {
          for (int j = 1; j <= count; ++j) {
            if (j != i && (!sees(i, j, !on) || !sees(j, i, !on))) return false;
          }
          return true;
        },
        std::chrono::seconds(10));
  }
  // True when node i's store sees node j as up (or down, with up = false).
  bool sees(int i, int j, bool up = true) {
    auto v = state_of(node(i))->view();
    const int idx = v->ring->member_index(testing::numbered("n", j));
    return idx >= 0 && v->up[idx] == up;
  }
  // What node i's engine holds for `key` (its replica), decoded; empty when nothing.
  std::vector<std::string> replica_values(int i, const std::string& key) {
    std::string bytes;
    if (!state_of(node(i))->engine->get(partition_of(key, kPartitions), key, &bytes).ok()) {
      return {};
    }
    std::vector<std::string> out;
    for (const Sibling& s : decode_object(bytes)->values()) {
      out.push_back(s.tombstone ? "<tombstone>" : s.value);
    }
    return out;
  }
  bool holds(int i, const std::string& key) {
    std::string bytes;
    return state_of(node(i))->engine->get(partition_of(key, kPartitions), key, &bytes).ok();
  }
  // The primaries of `key`, as node numbers.
  std::vector<int> primaries(const std::string& key) {
    Ring r = *ring(node(1));
    std::vector<int> out;
    for (std::uint32_t m : r.preference_list(partition_of(key, kPartitions), r.replicas())) {
      out.push_back(std::stoi(r.members()[m].substr(1)));
    }
    return out;
  }

  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<std::unique_ptr<Client>> clients_;
};

}  // namespace nodus::kv
