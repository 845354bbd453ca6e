// The store's counters and LRU eviction (kv/src/lru.hpp) on several real nodes in one test
// process over loopback ZeroMQ (loopback_kv.hpp): hits and misses once per client get, expired
// counted by the sweep, and with kv.max_keys / kv.max_memory each node brought down to its bound
// by cluster-wide deletes of its least recently used keys, which stay deleted on every replica
// through anti-entropy and read repair.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "loopback_kv.hpp"
#include "lru.hpp"

namespace nodus::kv {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::numbered;

RequestOptions all_replicas(std::chrono::milliseconds ttl = 0ms) {  // W = R = 3
  RequestOptions o;
  o.w = 3;
  o.r = 3;
  o.ttl = ttl;
  return o;
}

// True when `key` reads as not found through `c` (with `o`).
bool not_found(Client& c, const std::string& key, const RequestOptions& o = {}) {
  auto r = c.get(key, o);
  return !r.ok() && r.error().code() == ErrorCode::kNotFound;
}

TEST(NodeLru, TouchMovesAKeyToTheFrontAndOldestListsFromTheBack) {
  NodeLru lru(4);
  auto all = [](std::uint32_t) { return true; };
  auto none = [](std::uint32_t) { return false; };
  using Entries = std::vector<std::pair<std::uint32_t, std::string>>;
  lru.touch(0, "a");
  lru.touch(1, "b");
  lru.touch(2, "c");
  lru.touch(3, "a");  // another partition's "a": another key
  EXPECT_EQ(lru.size(), 4u);
  EXPECT_EQ(lru.keys(0), 1u);
  EXPECT_EQ(lru.oldest(2, all, none, 100), (Entries{{0, "a"}, {1, "b"}}));
  lru.touch(0, "a");                  // written or read again: the most recent
  lru.touch_if_present(1, "b");       // read
  lru.touch_if_present(1, "absent");  // a read of an absent key adds nothing
  EXPECT_EQ(lru.size(), 4u);
  EXPECT_EQ(lru.oldest(10, all, none, 100), (Entries{{2, "c"}, {3, "a"}, {0, "a"}, {1, "b"}}));
  lru.remove(3, "a");
  lru.remove(3, "never there");
  EXPECT_EQ(lru.keys(3), 0u);
  EXPECT_EQ(lru.oldest(10, all, none, 100), (Entries{{2, "c"}, {0, "a"}, {1, "b"}}));
}

TEST(NodeLru, OldestTakesTheFirstSelectionBeforeTheSecondAndScansABoundedTail) {
  NodeLru lru(4);
  using Entries = std::vector<std::pair<std::uint32_t, std::string>>;
  for (int i = 0; i < 8; ++i) lru.touch(static_cast<std::uint32_t>(i % 4), numbered("k", i));
  auto owned = [](std::uint32_t p) { return p == 1; };
  auto primary = [](std::uint32_t p) { return p != 3; };
  // Owned (partition 1) first, oldest first; then the other primaries' oldest.
  EXPECT_EQ(lru.oldest(3, owned, primary, 100), (Entries{{1, "k1"}, {1, "k5"}, {0, "k0"}}));
  EXPECT_EQ(lru.oldest(1, owned, primary, 100), (Entries{{1, "k1"}}));
  EXPECT_EQ(lru.oldest(5, owned, primary, 1), (Entries{{0, "k0"}}));  // one entry looked at
}

TEST(NodeLru, CountsItsBytesAtLeastEachKeysOwn) {
  NodeLru lru(4);
  EXPECT_EQ(lru.memory_bytes(), 0u);
  const std::string pad(100, 'x');
  for (int i = 0; i < 1000; ++i)
    lru.touch(static_cast<std::uint32_t>(i % 4), numbered(pad.c_str(), i));
  const std::uint64_t full = lru.memory_bytes();
  EXPECT_GE(full, 1000u * (100 + 24));  // each key's bytes and its links at least
  EXPECT_LE(full, 1000u * (100 + 24 + 80));
  lru.touch(0, numbered(pad.c_str(), 0));  // a touch of a tracked key adds nothing
  EXPECT_EQ(lru.memory_bytes(), full);
  for (int i = 0; i < 1000; ++i)
    lru.remove(static_cast<std::uint32_t>(i % 4), numbered(pad.c_str(), i));
  EXPECT_EQ(lru.size(), 0u);
  EXPECT_LT(lru.memory_bytes(), full / 4);  // the table's slots stay
  EXPECT_TRUE(lru.oldest(
                     10, [](std::uint32_t) { return true; }, {}, 100)
                  .empty());
}

TEST(EvictOptions, BadBoundsAreRefusedNamingTheKey) {
  Options o;
  o.context_secret = "x";
  o.max_memory = 1000;
  Status s = check_options(o);
  EXPECT_EQ(s.code(), ErrorCode::kBadConfig);
  EXPECT_EQ(s.message().rfind("kv.max_memory", 0), 0u) << s.message();
  o.max_memory = 1 << 20;
  o.max_keys = 5;
  EXPECT_OK(check_options(o));
}

class EvictTest : public LoopbackKvTest {
 protected:
  Stats stats_of(int i) { return *stats(node(i)); }
  std::uint64_t sum(std::uint64_t Stats::*field) {
    std::uint64_t total = 0;
    for (int i = 1; i <= static_cast<int>(nodes_.size()); ++i) total += stats_of(i).*field;
    return total;
  }
};

TEST_F(EvictTest, HitsAndMissesCountEachGetOnceAndTheSweepCountsExpired) {
  start_cluster(3, 3, [](Options& o) { o.ttl_sweep_interval = 50ms; });
  ASSERT_OK(client(1).put("here", "v", all_replicas()));
  const std::uint64_t hits = sum(&Stats::hits), misses = sum(&Stats::misses);
  ASSERT_OK(client(2).get("here", all_replicas()));
  EXPECT_TRUE(not_found(client(3), "absent"));
  // Every replica answered (R = 3), yet each get counts once, on its coordinator.
  EXPECT_EQ(sum(&Stats::hits), hits + 1);
  EXPECT_EQ(sum(&Stats::misses), misses + 1);
  EXPECT_EQ(sum(&Stats::evictions), 0u);  // no bound: no eviction, nothing tracked
  EXPECT_EQ(sum(&Stats::live_keys), 0u);
  // A value past its ttl: a miss at once, and each replica's sweep counts it as expired.
  ASSERT_OK(client(1).put("short", "v", all_replicas(100ms)));
  EXPECT_TRUE(eventually([&] { return not_found(client(1), "short"); }, 5s));
  EXPECT_EQ(sum(&Stats::misses), misses + 2);
  EXPECT_TRUE(eventually([&] { return sum(&Stats::expired) == 3; }, 10s)) << sum(&Stats::expired);
  EXPECT_EQ(stats_of(1).partition_bytes.size(), kPartitions);
}

TEST_F(EvictTest, MaxKeysEvictsTheLeastRecentlyUsedEverywhereAndTheyStayDeleted) {
  start_cluster(3, 3, [](Options& o) {
    o.max_keys = 100;
    o.aae_exchange_interval = 200ms;
    o.aae_repairs_per_second = 10000;
  });
  // 8 hot keys first, read again after every 5 other writes: always recently used.
  std::vector<std::string> hot;
  for (int i = 0; i < 8; ++i) {
    hot.push_back(numbered("hot:", i));
    ASSERT_OK(client(1).put(hot.back(), "h", all_replicas()));
  }
  for (int i = 0; i < 292; ++i) {
    ASSERT_OK(client(1 + i % 3).put(numbered("cold:", i), "c", all_replicas()));
    if (i % 5 == 4) {
      for (const auto& k : hot) ASSERT_OK(client(1 + i % 3).get(k));
    }
  }
  // Each node holds every key (N = 3 of 3): 300, until it comes down to its bound.
  const bool within = eventually(
      [&] {
        for (const auto& k : hot) (void)client(1).get(k);  // still in use
        for (int i = 1; i <= 3; ++i) {
          if (stats_of(i).live_keys > 100) return false;
        }
        return true;
      },
      20s);
  ASSERT_TRUE(within) << stats_of(1).live_keys << " " << stats_of(2).live_keys << " "
                      << stats_of(3).live_keys;
  for (const auto& k : hot) {
    auto r = client(2).get(k);
    EXPECT_TRUE(r.ok()) << k << " was evicted although read recently";
  }
  std::vector<std::string> gone;
  for (int i = 0; i < 292; ++i) {
    const std::string k = numbered("cold:", i);
    auto r = client(1).get(k, all_replicas());  // every replica answers: read repair would act
    if (!r.ok()) {
      EXPECT_EQ(r.error().code(), ErrorCode::kNotFound) << k;
      gone.push_back(k);
    }
  }
  ASSERT_GE(gone.size(), 200u);
  EXPECT_GE(sum(&Stats::evictions), gone.size());
  // Evicted on every replica: a tombstone (until reaped) or nothing, never the value.
  for (const auto& k : gone) {
    for (int i = 1; i <= 3; ++i) {
      for (const auto& v : replica_values(i, k)) EXPECT_EQ(v, "<tombstone>") << k << " on n" << i;
    }
  }
  // Anti-entropy exchanges and read repair bring none of them back.
  const std::uint64_t exchanges = sum(&Stats::aae_exchanges);
  ASSERT_TRUE(eventually([&] { return sum(&Stats::aae_exchanges) >= exchanges + 20; }, 20s));
  for (const auto& k : gone) {
    for (int i = 1; i <= 3; ++i) {
      EXPECT_TRUE(not_found(client(i), k, all_replicas())) << k << " came back on n" << i;
    }
  }
  for (int i = 1; i <= 3; ++i) EXPECT_LE(stats_of(i).live_keys, 100u);
}

TEST_F(EvictTest, MaxMemoryEvictsUntilTheEngineFitsIt) {
  start_cluster(3, 3, [](Options& o) { o.max_memory = 1 << 20; });
  const std::string value(4096, 'm');
  for (int i = 0; i < 400; ++i) {  // about 1.6 MiB per node
    ASSERT_OK(client(1 + i % 3).put(numbered("m:", i), value, all_replicas()));
  }
  // Memory holds tombstones too until they are reaped; the live keys' bytes come down.
  const bool within = eventually(
      [&] {
        for (int i = 1; i <= 3; ++i) {
          if (stats_of(i).data_bytes > (1u << 20)) return false;
        }
        return true;
      },
      20s);
  EXPECT_TRUE(within) << stats_of(1).memory_bytes << " " << stats_of(1).data_bytes;
  EXPECT_GT(sum(&Stats::evictions), 0u);
  EXPECT_TRUE(client(1).get(numbered("m:", 399)).ok()) << "the last key written was evicted";
}

// kv.max_memory counts what the node holds for a key beside the engine: the TTL index and the
// LRU list each keep the key (before, memory_bytes was the engine's alone, and a node with TTLs
// and LRU held ~2.6x its bound). The check is independent of the indexes' own accounting: the
// engine's key and value bytes, and per live key at least its bytes and two words in each index.
constexpr std::size_t kLongKey = 100;
std::string long_key(int i) {
  return numbered((std::string(kLongKey - 5, 'k') + ":").c_str(), 10000 + i);
}
std::uint64_t floor_of(const Stats& s) { return s.data_bytes + s.live_keys * 2 * (kLongKey + 16); }

TEST_F(EvictTest, MemoryBytesCountsTheTtlAndLruIndexes) {
  start_cluster(1, 1, [](Options& o) { o.max_keys = 1000000; });  // LRU on, nothing evicted
  const std::string value(300, 'v');
  RequestOptions o;
  o.ttl = 1h;
  for (int i = 0; i < 1000; ++i) ASSERT_OK(client(1).put(long_key(i), value, o));
  const Stats s = stats_of(1);
  EXPECT_EQ(s.live_keys, 1000u);
  EXPECT_GE(s.memory_bytes, floor_of(s)) << s.data_bytes;
}

TEST_F(EvictTest, MaxMemoryCountsTheTtlAndLruIndexes) {
  constexpr std::uint64_t kBound = 1 << 20;
  start_cluster(1, 1, [](Options& o) {
    o.max_memory = kBound;
    o.tombstone_ttl = 100ms;  // evicted keys' tombstones go soon: the live keys are what is left
    o.aae = false;  // its key index, counted too, holds tombstones' keys until they are reaped
  });
  const std::string value(300, 'v');
  RequestOptions o;
  o.ttl = 1h;
  for (int i = 0; i < 3000; ++i) ASSERT_OK(client(1).put(long_key(i), value, o));  // ~2.2 MiB
  const bool within = eventually(
      [&] {
        const Stats s = stats_of(1);
        return s.memory_bytes <= kBound && floor_of(s) <= kBound;
      },
      20s);
  const Stats s = stats_of(1);
  EXPECT_TRUE(within) << "memory_bytes " << s.memory_bytes << ", at least " << floor_of(s)
                      << " for " << s.live_keys << " live keys";
  EXPECT_GE(s.live_keys, 500u) << "evicted far past the bound";
  EXPECT_GT(s.evictions, 0u);
  EXPECT_TRUE(client(1).get(long_key(2999)).ok()) << "the last key written was evicted";
}

}  // namespace
}  // namespace nodus::kv
