// The in-memory engine: put/get/erase per partition, folds, counts, and its table under churn
// (checked against std::map with a seeded random workload).
#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdlib>
#include <map>
#include <random>
#include <string>

#include "../test_support.hpp"
#include "engine_contract.hpp"
#include "nodus/kv/engine.hpp"

namespace nodus::kv {
namespace {

using testing::numbered;

TEST(MemoryEngineTest, PartitionsAreSeparate) {
  auto e = new_memory_engine(4);
  contract::expect_partitions_apart(*e);
  EXPECT_FALSE(e->durable());
}

TEST(MemoryEngineTest, MatchesAMapUnderRandomChurn) {
  for (std::uint32_t seed = 1; seed <= 5; ++seed) {
    auto e = new_memory_engine(2);
    std::map<std::string, std::string> model;
    contract::churn(*e, 1, seed, model);
    contract::expect_holds(*e, 1, model);
  }
}

// Bytes the process has allocated now (glibc's count: heap chunks in use plus mmapped blocks).
std::size_t allocated_bytes() {
  const struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

// Measured with the allocator's own count, not the engine's: the memory a key costs beside its
// key and value is small, and the engine's estimate (memory_bytes) is close to the truth.
TEST(MemoryEngineTest, KeepsOverheadPerKeySmallAndEstimatesItTruly) {
  {
    static void* volatile probe;  // volatile: the allocation cannot be optimised away
    const std::size_t base = allocated_bytes();
    probe = std::malloc(1 << 20);
    const bool counted = allocated_bytes() >= base + (1 << 20);
    std::free(probe);
    if (!counted) {
      GTEST_SKIP() << "this allocator does not count into mallinfo2 (a sanitizer's, not glibc's)";
    }
  }
  const std::size_t before = allocated_bytes();
  auto e = new_memory_engine(1);
  const int n = 100000;
  for (int i = 0; i < n; ++i) {
    ASSERT_OK(e->put(0, numbered("k", i), "v"));
  }
  const std::size_t used = allocated_bytes() - before;
  const EngineStats s = e->stats();
  EXPECT_EQ(s.keys, static_cast<std::uint64_t>(n));
  const double overhead = static_cast<double>(used - s.data_bytes) / n;
  // ~46 on glibc: 8 of header, malloc's word and rounding, ~21 of table (kept <= 3/4 full).
  EXPECT_LT(overhead, 64.0) << "bytes per key beside its key and value, as allocated";
  const double ratio = static_cast<double>(s.memory_bytes) / static_cast<double>(used);
  EXPECT_GT(ratio, 0.95) << "estimate " << s.memory_bytes << ", allocated " << used;
  EXPECT_LT(ratio, 1.05) << "estimate " << s.memory_bytes << ", allocated " << used;
}

}  // namespace
}  // namespace nodus::kv
