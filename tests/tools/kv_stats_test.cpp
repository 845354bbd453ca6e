// `nodusctl kv stats` and LRU eviction end to end: three real nodusd processes from a copy of
// cluster-configs/local-3 (N = 2), inspected through the real nodusctl and /metrics. The
// cluster-wide figures are the sums of the per-node ones; keys count replica objects (N per
// key); hits and misses count client gets once, at their coordinator; a killed node is listed
// as down and the rest still answer; with kv.max_keys every node comes down to its bound by
// deleting keys cluster-wide, counted as evictions.
#include "nodusd_cluster.hpp"

namespace {

using namespace nodus::test;
using nodus::testing::numbered;

class KvStatsTest : public NodusdClusterTest {
 protected:
  void SetUp() override { copy_cluster("local-3", "720", "920"); }

  json stats(int i, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"kv", "stats"};
    args.insert(args.end(), extra.begin(), extra.end());
    return ctl_json(i, args);
  }
  // The sum over the up nodes of `field`.
  static std::uint64_t node_sum(const json& all, const char* field) {
    std::uint64_t sum = 0;
    for (const json& n : all["nodes"]) {
      if (n.value("state", "") == "up") sum += n[field].get<std::uint64_t>();
    }
    return sum;
  }
  // kv mput of keys PREFIX0..PREFIX(n-1), one nodusctl call per 100.
  void put_keys(const std::string& prefix, int n) {
    for (int from = 0; from < n; from += 100) {
      std::vector<std::string> args = {"kv", "mput"};
      for (int i = from; i < std::min(n, from + 100); ++i) {
        args.push_back(numbered(prefix.c_str(), i));
        args.push_back(numbered("v", i));
      }
      Outcome o = ctl(1 + (from / 100) % 3, args);
      ASSERT_EQ(o.code, 0) << o.out << o.err;
    }
  }
};

TEST_F(KvStatsTest, ClusterFiguresAreThePerNodeSumsAndADownNodeIsListed) {
  up();
  constexpr int kKeys = 40;
  put_keys("s:", kKeys);
  // N = 2 of 3 nodes: every key on two of them.
  json all;
  ASSERT_TRUE(eventually(
      [&] {
        all = stats(1);
        return all.value("keys", 0) == 2 * kKeys;
      },
      10s))
      << all.dump();
  EXPECT_EQ(all["replicas"], 2);
  EXPECT_EQ(all["nodes_up"], 3);
  EXPECT_EQ(all["nodes_down"], 0);
  for (const char* f : {"keys", "memory_bytes", "hits", "misses", "evictions", "expired"}) {
    EXPECT_EQ(all[f].get<std::uint64_t>(), node_sum(all, f)) << f;
  }
  std::uint64_t part_keys = 0, part_bytes = 0;
  for (const json& p : all["partitions"]) {
    part_keys += p["keys"].get<std::uint64_t>();
    part_bytes += p["bytes"].get<std::uint64_t>();
  }
  EXPECT_EQ(part_keys, 2u * kKeys);
  EXPECT_EQ(part_bytes, all["data_bytes"].get<std::uint64_t>());
  EXPECT_GT(all["memory_bytes"].get<std::uint64_t>(), 0u);

  // Gets: 5 found, 3 not: counted once each, at their coordinator, whichever node took them.
  const std::uint64_t hits = all["hits"], misses = all["misses"];
  for (int i = 0; i < 5; ++i) {
    Outcome o = ctl(1 + i % 3, {"kv", "get", numbered("s:", i)});
    EXPECT_EQ(o.code, 0) << o.err;
  }
  for (int i = 0; i < 3; ++i) {
    Outcome o = ctl(1 + i % 3, {"kv", "get", numbered("missing:", i)});
    EXPECT_EQ(o.code, 1) << o.out << o.err;
  }
  all = stats(2);
  EXPECT_EQ(all["hits"].get<std::uint64_t>(), hits + 5);
  EXPECT_EQ(all["misses"].get<std::uint64_t>(), misses + 3);

  // One node's figures: the same as its entry in the cluster's; /metrics agrees.
  json n2 = stats(1, {"--node", "n2"});
  EXPECT_EQ(n2["node"], "n2");
  EXPECT_EQ(n2["keys"], metric(2, "nodus_kv_keys"));
  EXPECT_EQ(n2["keys"], metric(2, "nodus_kv_partition_keys"));
  EXPECT_EQ(metric(2, "nodus_kv_evictions_total"), 0);
  EXPECT_EQ(metric(2, "nodus_kv_replicas"), 2);
  Outcome people = ctl(1, {"kv", "stats"});
  EXPECT_EQ(people.code, 0) << people.err;
  EXPECT_NE(people.out.find("EVICTIONS"), std::string::npos) << people.out;
  Outcome nobody = ctl(1, {"kv", "stats", "--node", "n9"});
  EXPECT_EQ(nobody.code, 2) << nobody.out;
  EXPECT_NE(nobody.err.find("n9"), std::string::npos) << nobody.err;

  // n3 killed: still an answer, n3 listed as down, the sums over the nodes up.
  const pid_t n3 = pid_of(3);
  ASSERT_GT(n3, 1);
  ASSERT_EQ(::kill(n3, SIGKILL), 0);
  ASSERT_TRUE(eventually(
      [&] {
        Outcome o = ctl(1, {"kv", "stats", "--json"});
        if (o.code != 0) return false;
        all = json::parse(o.out, nullptr, false);
        return all.is_object() && all.value("nodes_down", 0) == 1;
      },
      15s))
      << all.dump();
  for (const json& n : all["nodes"]) {
    if (n["node"] == "n3") {
      EXPECT_EQ(n["state"], "down");
    }
  }
  EXPECT_EQ(all["keys"].get<std::uint64_t>(), node_sum(all, "keys"));
  Outcome down = ctl(1, {"kv", "stats", "--node", "n3"});
  EXPECT_EQ(down.code, 1) << down.out;
  EXPECT_NE(down.err.find("down"), std::string::npos) << down.err;
}

TEST_F(KvStatsTest, MaxKeysEvictsDownToTheBoundCountedAsEvictions) {
  configure("max_keys", "100");
  configure("tombstone_ttl", "0");  // the evicted keys' tombstones go soon: keys falls too
  up();
  put_keys("e:", 300);
  json all;
  // Each node holds 2/3 of 300 keys (N = 2): 200, over its bound of 100 until it evicts.
  const bool within = eventually(
      [&] {
        all = stats(1);
        if (!all.is_object() || all.value("nodes_up", 0) != 3) return false;
        for (const json& n : all["nodes"]) {
          if (n["live_keys"].get<std::uint64_t>() > 100 || n["keys"].get<std::uint64_t>() > 100) {
            return false;
          }
        }
        return true;
      },
      30s);
  EXPECT_TRUE(within) << all.dump();
  EXPECT_GT(all["evictions"].get<std::uint64_t>(), 0u);
  EXPECT_EQ(all["evictions"].get<std::uint64_t>(), node_sum(all, "evictions"));
  EXPECT_EQ(metric(1, "nodus_kv_evictions_total") + metric(2, "nodus_kv_evictions_total") +
                metric(3, "nodus_kv_evictions_total"),
            all["evictions"].get<double>());
  // Not everything went: what is left reads (at least one of the last keys written).
  int found = 0;
  for (int i = 290; i < 300; ++i) found += ctl(1, {"kv", "get", numbered("e:", i)}).code == 0;
  EXPECT_GT(found, 0);
}

TEST_F(KvStatsTest, BadEvictionConfigIsRefusedAtStart) {
  configure("max_memory", "1000");
  Outcome o = run({kNodusd, "--config", conf(1)});
  EXPECT_EQ(o.code, 2) << o.out << o.err;
  EXPECT_NE((o.out + o.err).find("kv.max_memory"), std::string::npos) << o.out << o.err;
  Outcome k = run({kNodusd, "--config", conf(1), "--kv.max_keys", "-5"});
  EXPECT_EQ(k.code, 2) << k.out << k.err;
  EXPECT_NE((k.out + k.err).find("kv.max_keys"), std::string::npos) << k.out << k.err;
}

}  // namespace
