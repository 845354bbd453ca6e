// The anti-entropy tree (kv/src/aae.hpp): XOR segments updated in O(1), the comparison of two
// trees, and the property that matters: a tree kept current through a vnode's writes equals a
// tree rebuilt from the engine from scratch, after any sequence of writes and erases; and so
// does one rebuilt a chunk at a time with writes between the chunks. The key index by segment,
// and the CPU budget's arithmetic on a clock the test drives.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>

#include "../test_support.hpp"
#include "aae.hpp"
#include "nodus/kv/engine.hpp"

namespace nodus::kv {
namespace {

using testing::numbered;

TEST(TictacTree, AnEmptyTreeIsAllZeroAndAddThenRemoveRestoresIt) {
  TictacTree t;
  EXPECT_EQ(t.root(), 0u);
  t.add("k", 42);
  EXPECT_NE(t.root(), 0u);
  EXPECT_NE(t.segment(TictacTree::segment_of("k")), 0u);
  EXPECT_EQ(t.branch(TictacTree::segment_of("k") / TictacTree::kSegmentsPerBranch), t.root());
  t.remove("k", 42);
  EXPECT_EQ(t, TictacTree());
}

TEST(TictacTree, TheOrderOfWritesDoesNotMatterAndTheVersionDoes) {
  TictacTree a, b, c;
  for (int i = 0; i < 100; ++i) a.add(numbered("key", i), static_cast<std::uint64_t>(i));
  for (int i = 99; i >= 0; --i) b.add(numbered("key", i), static_cast<std::uint64_t>(i));
  EXPECT_EQ(a, b);
  for (int i = 0; i < 100; ++i) c.add(numbered("key", i), i == 7 ? 1000u : i);
  EXPECT_NE(a.root(), c.root());
  // Exactly the segment of key7 differs.
  std::vector<std::uint64_t> ta, tc;
  std::vector<std::uint32_t> all;
  for (std::uint32_t br = 0; br < TictacTree::kBranches; ++br) {
    ta.push_back(a.branch(br));
    tc.push_back(c.branch(br));
    all.push_back(br);
  }
  const auto branches = differing_branches(ta, tc);
  ASSERT_EQ(branches.size(), 1u);
  EXPECT_EQ(branches[0], TictacTree::segment_of("key7") / TictacTree::kSegmentsPerBranch);
  std::vector<std::uint64_t> sa, sc;
  for (std::uint32_t s = 0; s < TictacTree::kSegments; ++s) {
    sa.push_back(a.segment(s));
    sc.push_back(c.segment(s));
  }
  EXPECT_EQ(differing_segments(all, sa, sc),
            std::vector<std::uint32_t>{TictacTree::segment_of("key7")});
}

TEST(TictacTree, KeysOfOnePartitionSpreadOverTheSegments) {
  // Keys with one hash tag share a partition; their segments must still spread.
  std::map<std::uint32_t, int> seen;
  for (int i = 0; i < 4096; ++i) ++seen[TictacTree::segment_of(numbered("{user}:", i))];
  EXPECT_GT(seen.size(), TictacTree::kSegments * 9 / 10);
}

// Writes through a TreeHook as the vnode makes them: read first (sometimes), then a put or an
// erase; now and then a read of another key between the read and the write.
TEST(PartitionTree, KeptCurrentEqualsRebuiltFromScratchAfterRandomWrites) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE(numbered("seed ", static_cast<long long>(seed)));
    std::mt19937_64 rnd(seed);
    auto engine = new_memory_engine(4);
    const std::uint32_t p = 2;
    // Some data before the tree is built (a restarted vnode finds the engine full).
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE(engine->put(p, numbered("pre", i), numbered("v", i)).ok());
    }
    PartitionTree tree;
    EXPECT_FALSE(tree.copy().has_value()) << "ready before it was built";
    EXPECT_EQ(tree.rebuild(*engine, p), 50u);
    TreeHook hook(&tree, engine.get(), p);
    auto key = [&] {
      const char* prefix = rnd() % 3 ? "k" : "pre";
      return numbered(prefix, static_cast<long long>(rnd() % 80));
    };
    for (int step = 0; step < 2000; ++step) {
      const std::string k = key();
      if (rnd() % 2) {  // a read first, as apply() and coordinate_put() do
        std::string bytes;
        const bool found = engine->get(p, k, &bytes).ok();
        hook.read(k, found ? &bytes : nullptr);
      }
      if (rnd() % 5 == 0) {  // a read of another key between (a get coordinated meanwhile)
        const std::string other = key();
        std::string bytes;
        const bool found = engine->get(p, other, &bytes).ok();
        hook.read(other, found ? &bytes : nullptr);
      }
      std::string old;
      const bool had = engine->get(p, k, &old).ok();
      if (rnd() % 4 == 0) {
        if (had && engine->erase(p, k).ok()) hook.erased(k, old);
      } else {
        const std::string value =
            numbered("value", static_cast<long long>(rnd() % 7));  // repeats: same digest
        hook.before_write(k);
        ASSERT_TRUE(engine->put(p, k, value).ok());
        hook.stored(k, value);
      }
    }
    PartitionTree fresh;
    fresh.rebuild(*engine, p);
    ASSERT_TRUE(tree.copy().has_value());
    EXPECT_TRUE(*tree.copy() == *fresh.copy()) << "the kept tree drifted from the engine";
    // And a tree of another partition (empty) is all zero.
    PartitionTree other;
    other.rebuild(*engine, 1);
    EXPECT_EQ(other.copy()->root(), 0u);
  }
}

TEST(PartitionTree, ServesTopAndSegmentsOnlyOnceBuilt) {
  PartitionTree tree;
  std::vector<std::uint64_t> out;
  EXPECT_FALSE(tree.top(&out));
  EXPECT_FALSE(tree.segments({0}, &out));
  auto engine = new_memory_engine(1);
  ASSERT_TRUE(engine->put(0, "a", "1").ok());
  tree.rebuild(*engine, 0);
  ASSERT_TRUE(tree.top(&out));
  ASSERT_EQ(out.size(), 1u + TictacTree::kBranches);
  ASSERT_TRUE(tree.segments({1, 3}, &out));
  EXPECT_EQ(out.size(), 2u * TictacTree::kSegmentsPerBranch);
}

// The budget on a clock the test moves: 10% of a core, 10 ms of burst.
TEST(AaeBudget, WorkWaitsOnceItTookMoreThanItsShareAndCreditIsCappedByTheBurst) {
  using namespace std::chrono_literals;
  const auto t0 = std::chrono::steady_clock::time_point() + 1h;
  AaeBudget b(0.1, 10ms, t0);
  EXPECT_EQ(b.wait(t0), 0us) << "starts with its burst";
  b.spend(10ms, t0);
  EXPECT_EQ(b.wait(t0), 0us) << "credit exactly spent: not below zero";
  b.spend(5ms, t0);  // 5 ms in debt: 50 ms at 10% pays it back
  EXPECT_NEAR(static_cast<double>(b.wait(t0).count()), 50000.0, 2.0);
  EXPECT_NEAR(static_cast<double>(b.wait(t0 + 20ms).count()), 30000.0, 2.0);
  EXPECT_EQ(b.wait(t0 + 51ms), 0us);
  // Idle for an hour earns no more than the burst: 10 ms of work, then 1 ms over it waits.
  const auto t1 = t0 + 1h;
  EXPECT_EQ(b.wait(t1), 0us);
  b.spend(11ms, t1);
  EXPECT_NEAR(static_cast<double>(b.wait(t1).count()), 10000.0, 2.0);
  // A clock that goes back changes nothing.
  EXPECT_NEAR(static_cast<double>(b.wait(t1 - 1s).count()), 10000.0, 2.0);
  // Over a long run, work done never exceeds share * time + burst.
  AaeBudget c(0.05, 10ms, t0);
  std::chrono::microseconds done{0};
  auto now = t0;
  for (int i = 0; i < 10000; ++i) {
    now += 1ms;
    if (c.wait(now) == 0us) {
      c.spend(3ms, now);
      done += 3ms;
    }
  }
  const double allowed = 0.05 * 10000 * 1000 + 10000 + 3000;  // us: share, burst, one piece
  EXPECT_LE(static_cast<double>(done.count()), allowed);
  EXPECT_GE(static_cast<double>(done.count()), 0.05 * 10000 * 1000 - 3000);
}

// The keys of every segment, as the engine says and as the index says.
std::map<std::uint32_t, std::set<std::string>> by_segment_from_engine(const Engine& e,
                                                                      std::uint32_t p) {
  std::map<std::uint32_t, std::set<std::string>> out;
  e.fold(p, [&](std::string_view k, std::string_view) {
    out[TictacTree::segment_of(k)].emplace(k);
    return true;
  });
  return out;
}
std::map<std::uint32_t, std::set<std::string>> by_segment_from_index(const PartitionTree& t) {
  std::map<std::uint32_t, std::set<std::string>> out;
  for (std::uint32_t s = 0; s < TictacTree::kSegments; ++s) {
    std::vector<std::string> keys;
    EXPECT_TRUE(t.keys(s, &keys));
    for (auto& k : keys) out[s].insert(std::move(k));
    EXPECT_EQ(out.count(s) ? out[s].size() : 0u, keys.size()) << "a key twice in segment " << s;
  }
  return out;
}

// Writes (new keys, overwrites, erases) through the hook while the tree is rebuilt a chunk at
// a time: each chunk ends equal to a tree made from scratch, the index lists exactly the keys
// the engine holds, by segment, and it costs about a key's bytes plus a few per key.
TEST(PartitionTree, RebuiltInChunksWithWritesBetweenEqualsRebuiltFromScratch) {
  for (std::uint64_t seed = 1; seed <= 10; ++seed) {
    SCOPED_TRACE(numbered("seed ", static_cast<long long>(seed)));
    std::mt19937_64 rnd(seed);
    auto engine = new_memory_engine(2);
    const std::uint32_t p = 1;
    PartitionTree tree;
    std::vector<std::string> out;
    EXPECT_FALSE(tree.indexed());
    EXPECT_FALSE(tree.keys(0, &out)) << "an index before the first build";
    for (int i = 0; i < 3000; ++i) ASSERT_OK(engine->put(p, numbered("pre", i), "v"));
    EXPECT_EQ(tree.rebuild(*engine, p), 3000u);
    EXPECT_TRUE(tree.indexed());
    TreeHook hook(&tree, engine.get(), p);
    auto write = [&] {
      const std::string k =
          numbered(rnd() % 2 ? "pre" : "new", static_cast<long long>(rnd() % 4000));
      std::string old;
      if (engine->get(p, k, &old).ok() && rnd() % 3 == 0) {
        ASSERT_OK(engine->erase(p, k));
        hook.erased(k, old);
        return;
      }
      const std::string v = numbered("v", static_cast<long long>(rnd() % 5));
      hook.before_write(k);
      ASSERT_OK(engine->put(p, k, v));
      hook.stored(k, v);
    };
    for (int i = 0; i < 500; ++i) write();
    tree.begin_rebuild();
    EXPECT_FALSE(tree.copy().has_value()) << "served while rebuilt";
    int chunks = 0;
    while (!tree.rebuild_step(*engine, p, 300)) {
      ++chunks;
      ASSERT_LT(chunks, 1000);
      for (int i = 0; i < 50; ++i) write();
    }
    EXPECT_GE(chunks, 5) << "one chunk did it all";
    for (int i = 0; i < 200; ++i) write();
    PartitionTree fresh;
    fresh.rebuild(*engine, p);
    ASSERT_TRUE(tree.copy().has_value());
    EXPECT_TRUE(*tree.copy() == *fresh.copy()) << "the chunked rebuild drifted from the engine";
    EXPECT_EQ(by_segment_from_index(tree), by_segment_from_engine(*engine, p));
    std::uint64_t key_bytes = 0;
    engine->fold(p, [&](std::string_view k, std::string_view) {
      key_bytes += k.size();
      return true;
    });
    const std::uint64_t keys = engine->keys(p);
    // Keys, a length byte each, a quarter of slack, and the 1,024 buffers' handles.
    EXPECT_LE(tree.index_bytes(), (key_bytes + keys) * 5 / 4 + 1024 * (24 + 32 + 3));
    EXPECT_GE(tree.index_bytes(), key_bytes + keys);
  }
}

// Keys the engine lost behind the hook's back (what a rebuild exists for) leave the index and
// the tree when the tree is rebuilt from the index.
TEST(PartitionTree, ARebuildDropsKeysTheEngineNoLongerHolds) {
  auto engine = new_memory_engine(1);
  for (int i = 0; i < 100; ++i) ASSERT_OK(engine->put(0, numbered("k", i), "v"));
  PartitionTree tree;
  tree.rebuild(*engine, 0);
  for (int i = 0; i < 100; i += 2) ASSERT_OK(engine->erase(0, numbered("k", i)));
  tree.begin_rebuild();
  while (!tree.rebuild_step(*engine, 0, 10)) {
  }
  PartitionTree fresh;
  fresh.rebuild(*engine, 0);
  EXPECT_TRUE(*tree.copy() == *fresh.copy());
  EXPECT_EQ(by_segment_from_index(tree), by_segment_from_engine(*engine, 0));
}

}  // namespace
}  // namespace nodus::kv
