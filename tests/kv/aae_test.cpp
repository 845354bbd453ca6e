// The anti-entropy tree (kv/src/aae.hpp): XOR segments updated in O(1), the comparison of two
// trees, and the property that matters: a tree kept current through a vnode's writes equals a
// tree rebuilt from the engine from scratch, after any sequence of writes and erases.
#include <gtest/gtest.h>

#include <map>
#include <random>
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

}  // namespace
}  // namespace nodus::kv
