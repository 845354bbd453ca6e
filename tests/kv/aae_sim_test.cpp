// Active anti-entropy on the simulated network (tests/sim/sim_cluster.hpp), seeded: replicas
// made to differ behind the store's back (keys removed from an engine, stale objects put back,
// a node restarted empty) converge through exchanges alone, with no client read; a tombstone
// stays a tombstone, a newer version is never overwritten, and repairs keep to
// kv.aae_repairs_per_second.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "aae.hpp"
#include "nodus/kv/client.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/kv/partition.hpp"
#include "sim/sim_cluster.hpp"
#include "sim_store.hpp"
#include "state.hpp"

namespace nodus::kv {
namespace {

using namespace std::chrono_literals;
using testing::numbered;
using testing::SimCluster;

constexpr std::uint32_t kQ = 16;

class KvAaeSimTest : public ::testing::Test {
 protected:
  void start_cluster(const std::function<void(Options&)>& tweak = {}) {
    sim_ = std::make_unique<SimCluster>(seed_);
    names_ = sim::add_meshed(*sim_, 3);
    ASSERT_TRUE(sim::start_store(
        *sim_, names_,
        [&](Options& o) {
          o.partitions = kQ;
          o.tombstone_ttl = 3600s;  // no reaping during a test: tombstones must stay
          o.aae_exchange_interval = 500ms;
          o.aae_repairs_per_second = 100000;
          if (tweak) tweak(o);
        },
        &options_));
  }
  Node& node(const std::string& name) { return sim_->node(name); }
  KvState& st(const std::string& name) { return *state_of(node(name)); }

  // A put (or a delete) through node n1 with W = 3, run to its end; returns its context.
  std::string write(const std::string& key, const std::string& value, std::string context = {},
                    bool del = false) {
    auto out = std::make_shared<std::optional<Result<std::string>>>();
    const Client c(node("n1"));
    sim_->spawn("n1", [c, key, value, context, del, out] {
      RequestOptions o;
      o.w = 3;
      o.context = context;
      *out = del ? c.del(key, o) : c.put(key, value, o);
    });
    EXPECT_TRUE(sim_->run_until([&] { return out->has_value(); }, 10s));
    EXPECT_TRUE(out->has_value() && (*out)->ok()) << key;
    if (!out->has_value() || !(*out)->ok()) return {};
    return ***out;
  }

  std::string bytes_at(const std::string& at, const std::string& key) {
    std::string bytes;
    (void)st(at).engine->get(partition_of(key, kQ), key, &bytes);
    return bytes;
  }
  // What node `at` holds for `key`, decoded ("<tombstone>" for one); empty: nothing.
  std::vector<std::string> values_at(const std::string& at, const std::string& key) {
    const std::string bytes = bytes_at(at, key);
    if (bytes.empty()) return {};
    std::vector<std::string> out;
    for (const Sibling& s : decode_object(bytes)->values()) {
      out.push_back(s.tombstone ? "<tombstone>" : s.value);
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  std::vector<std::string> primaries(const std::string& key) {
    const Ring r = *ring(node("n1"));
    std::vector<std::string> out;
    for (std::uint32_t m : r.preference_list(partition_of(key, kQ), r.replicas())) {
      out.push_back(r.members()[m]);
    }
    return out;
  }
  // Every primary of every key holds the same object (and holds one).
  bool converged(const std::vector<std::string>& keys) {
    for (const auto& k : keys) {
      const auto prim = primaries(k);
      const std::string first = bytes_at(prim[0], k);
      if (first.empty()) return false;
      for (const auto& n : prim) {
        if (bytes_at(n, k) != first) return false;
      }
    }
    return true;
  }
  std::uint64_t total(std::atomic<std::uint64_t> AaeState::*c) {
    std::uint64_t sum = 0;
    for (const auto& n : names_) sum += (st(n).aae.get()->*c).load();
    return sum;
  }
  std::uint64_t gets() {
    std::uint64_t sum = 0;
    for (const auto& n : names_) sum += st(n).counters.gets.load();
    return sum;
  }
  // Kills node `at`'s vnodes: restarted by their supervisor, each builds its tree again from
  // the engine (what the test changed behind the store's back is then in the trees).
  void restart_vnodes(const std::string& at) {
    for (std::uint32_t p = 0; p < kQ; ++p) {
      const Pid old = node(at).whereis(vnode_name(p));
      sim_->spawn(at, [old] { exit(old, reasons::kill()); });
      ASSERT_TRUE(sim_->run_until(
          [&] {
            const Pid now = node(at).whereis(vnode_name(p));
            return now.valid() && now != old;
          },
          5s));
    }
  }
  std::vector<std::string> keys(int n, const std::string& prefix = "key") {
    std::vector<std::string> out;
    for (int i = 0; i < n; ++i) out.push_back(numbered(prefix.c_str(), i));
    return out;
  }

  std::vector<std::string> names_{"n1", "n2", "n3"};
  std::map<std::string, Options> options_;
  std::uint64_t seed_ = 7;
  std::unique_ptr<SimCluster> sim_;
};

// Keys removed from one replica's engine, and others put back to an older version there, are
// repaired by exchanges alone; the replicas that held the newer version keep it (no sibling
// of the old value appears: the old version is in the new one's causal past).
TEST_F(KvAaeSimTest, RepairsAReplicaWhoseKeysWereRemovedOrMadeStale) {
  for (std::uint64_t seed : {7u, 8u, 9u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    seed_ = seed;
    start_cluster();
    const auto all = keys(120);
    std::map<std::string, std::string> context;
    for (const auto& k : all) context[k] = write(k, "v1");
    // Keys 60..119: n2's copy of v1 kept, then v2 written everywhere, then v1 put back on n2.
    std::map<std::string, std::string> old;
    for (int i = 60; i < 120; ++i) old[all[i]] = bytes_at("n2", all[i]);
    for (int i = 60; i < 120; ++i) write(all[i], "v2", context[all[i]]);
    KvState& n2 = st("n2");
    for (int i = 0; i < 120; ++i) {
      const std::uint32_t p = partition_of(all[i], kQ);
      if (i < 60) {
        ASSERT_OK(n2.engine->erase(p, all[i]));
      } else {
        ASSERT_OK(n2.engine->put(p, all[i], old[all[i]]));
      }
    }
    restart_vnodes("n2");
    ASSERT_FALSE(converged(all));
    const std::uint64_t gets_before = gets();
    ASSERT_TRUE(sim_->run_until([&] { return converged(all); }, 30s))
        << "exchanges " << total(&AaeState::exchanges) << ", repaired "
        << total(&AaeState::keys_repaired);
    EXPECT_EQ(gets(), gets_before) << "converged through client reads, not anti-entropy";
    for (int i = 0; i < 120; ++i) {
      for (const auto& n : names_) {
        EXPECT_EQ(values_at(n, all[i]), std::vector<std::string>{i < 60 ? "v1" : "v2"})
            << all[i] << " on " << n;
      }
    }
    EXPECT_GE(total(&AaeState::keys_repaired), 120u);
    EXPECT_GT(total(&AaeState::segments_differing), 0u);
    EXPECT_GT(total(&AaeState::exchanges), 0u);
    sim_.reset();
  }
}

// A key deleted everywhere but on one replica, which still holds the value (it missed the
// delete), or deleted on all but one that holds nothing: after the exchanges every replica
// holds the tombstone, and the key reads as not found.
TEST_F(KvAaeSimTest, LeavesATombstoneATombstone) {
  start_cluster();
  const auto all = keys(40, "gone");
  std::map<std::string, std::string> context, value_bytes;
  for (const auto& k : all) context[k] = write(k, "alive");
  for (const auto& k : all) value_bytes[k] = bytes_at("n3", k);
  for (const auto& k : all) write(k, "", context[k], /*del=*/true);
  KvState& n3 = st("n3");
  for (int i = 0; i < 40; ++i) {
    const std::uint32_t p = partition_of(all[i], kQ);
    if (i % 2 == 0) {
      ASSERT_OK(n3.engine->put(p, all[i], value_bytes[all[i]]));  // missed the delete
    } else {
      ASSERT_OK(n3.engine->erase(p, all[i]));  // holds nothing
    }
  }
  restart_vnodes("n3");
  ASSERT_TRUE(sim_->run_until([&] { return converged(all); }, 30s));
  for (const auto& k : all) {
    for (const auto& n : names_) {
      EXPECT_EQ(values_at(n, k), std::vector<std::string>{"<tombstone>"}) << k << " on " << n;
    }
  }
  auto out = std::make_shared<std::optional<Result<GetResult>>>();
  const Client c(node("n2"));
  sim_->spawn("n2", [c, k = all[0], out] { *out = c.get(k); });
  ASSERT_TRUE(sim_->run_until([&] { return out->has_value(); }, 10s));
  EXPECT_EQ((*out)->error().code(), ErrorCode::kNotFound);
}

// The newer version on one replica only, the older on the two others (they missed the
// write): the exchanges bring the newer to them and never the older back to it.
TEST_F(KvAaeSimTest, NeverOverwritesANewerVersion) {
  start_cluster();
  const auto all = keys(60, "newer");
  std::map<std::string, std::string> context;
  for (const auto& k : all) context[k] = write(k, "old");
  std::map<std::string, std::map<std::string, std::string>> old;  // node -> key -> bytes
  for (const auto& k : all) {
    for (const char* n : {"n1", "n3"}) old[n][k] = bytes_at(n, k);
  }
  for (const auto& k : all) write(k, "new", context[k]);
  for (const char* n : {"n1", "n3"}) {
    for (const auto& k : all) ASSERT_OK(st(n).engine->put(partition_of(k, kQ), k, old[n][k]));
    restart_vnodes(n);
  }
  ASSERT_TRUE(sim_->run_until([&] { return converged(all); }, 30s));
  for (const auto& k : all) {
    for (const auto& n : names_) {
      EXPECT_EQ(values_at(n, k), std::vector<std::string>{"new"}) << k << " on " << n;
    }
  }
}

// With kv.aae_repairs_per_second = 20, no node repairs faster, however many keys differ; and
// the repairs still end with the replicas converged.
TEST_F(KvAaeSimTest, RepairsKeepToTheConfiguredRate) {
  constexpr std::uint32_t kRate = 20;
  start_cluster([](Options& o) { o.aae_repairs_per_second = kRate; });
  const auto all = keys(150);
  for (const auto& k : all) write(k, "v");
  for (const auto& k : all) ASSERT_OK(st("n2").engine->erase(partition_of(k, kQ), k));
  restart_vnodes("n2");
  const auto t0 = sim_->now();
  std::map<std::string, std::uint64_t> before;
  for (const auto& n : names_) before[n] = st(n).aae->keys_repaired.load();
  bool done = false;
  for (int step = 0; step < 400 && !done; ++step) {
    sim_->run_for(100ms);
    const double secs = std::chrono::duration<double>(sim_->now() - t0).count();
    for (const auto& n : names_) {
      const std::uint64_t repaired = st(n).aae->keys_repaired.load() - before[n];
      // Tokens fill at kRate per second from empty, up to a second's worth.
      ASSERT_LE(repaired, static_cast<std::uint64_t>(kRate * (secs + 1.0)) + 1)
          << n << " after " << secs << " s";
    }
    done = converged(all);
  }
  EXPECT_TRUE(done) << "not converged after 40 s";
  const double took = std::chrono::duration<double>(sim_->now() - t0).count();
  // 150 keys at 20 per second per node, three nodes at most: not in under two seconds.
  EXPECT_GE(took, 150.0 / (3 * kRate) - 0.5);
}

// A node restarted empty (the memory engine: its data gone) gets every key of its partitions
// back through exchanges, with no client read.
TEST_F(KvAaeSimTest, ANodeRestartedEmptyConvergesWithNoClientReads) {
  start_cluster();
  const auto all = keys(200);
  for (const auto& k : all) write(k, "v" + k);
  sim_->crash("n3");
  ASSERT_TRUE(sim_->run_until(
      [&] {
        auto v = st("n1").view();
        const int i = v->ring ? v->ring->member_index("n3") : -1;
        return i >= 0 && !v->up[i];
      },
      10s));
  sim_->add("n3", {"n1", "n2"});
  ASSERT_OK(start(node("n3"), options_["n3"]));
  EXPECT_EQ(st("n3").engine->stats().keys, 0u);
  ASSERT_TRUE(sim_->run_until([&] { return converged(all); }, 60s))
      << "n3 holds " << st("n3").engine->stats().keys << " keys";
  EXPECT_EQ(gets(), 0u);
  EXPECT_GT(st("n3").engine->stats().keys, 100u);  // N = 3 of 3 nodes: every key
  EXPECT_EQ(st("n3").engine->stats().keys, st("n1").engine->stats().keys);
  EXPECT_GE(total(&AaeState::keys_repaired), 200u);
}

}  // namespace
}  // namespace nodus::kv
