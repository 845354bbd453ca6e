// What every storage engine must do (kv/include/nodus/kv/engine.hpp), as checks a test of one
// engine calls on an engine it opened: partitions kept apart, put/get/erase/fold and the counts,
// and the same contents as a std::map after a seeded random churn.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "nodus/kv/engine.hpp"

namespace nodus::kv::contract {

/// Puts, gets, erases (twice: erasing nothing is ok) and folds across partitions 1 to 3 of a
/// fresh engine of 4 partitions.
inline void expect_partitions_apart(Engine& e) {
  ASSERT_OK(e.put(1, "k", "one"));
  ASSERT_OK(e.put(2, "k", "two"));
  std::string v;
  ASSERT_OK(e.get(1, "k", &v));
  EXPECT_EQ(v, "one");
  ASSERT_OK(e.get(2, "k", &v));
  EXPECT_EQ(v, "two");
  EXPECT_EQ(e.get(3, "k", &v).code(), ErrorCode::kNotFound);
  EXPECT_EQ(e.keys(1), 1u);
  EXPECT_EQ(e.data_bytes(1), 4u);
  ASSERT_OK(e.erase(1, "k"));
  ASSERT_OK(e.erase(1, "k"));
  EXPECT_EQ(e.get(1, "k", &v).code(), ErrorCode::kNotFound);
  EXPECT_EQ(e.stats().keys, 1u);
  // A fold sees its own partition only.
  std::vector<std::string> seen;
  e.fold(2, [&](std::string_view k, std::string_view val) {
    seen.push_back(std::string(k) + "=" + std::string(val));
    return true;
  });
  EXPECT_EQ(seen, std::vector<std::string>{"k=two"});
  // put_batch: every entry stored, counted as puts would count them (one replaced, two new).
  ASSERT_OK(e.put_batch(2, {{"k", "2"}, {"a", "xy"}, {"b", ""}}));
  ASSERT_OK(e.get(2, "k", &v));
  EXPECT_EQ(v, "2");
  ASSERT_OK(e.get(2, "a", &v));
  EXPECT_EQ(v, "xy");
  ASSERT_OK(e.get(2, "b", &v));
  EXPECT_EQ(v, "");
  EXPECT_EQ(e.keys(2), 3u);
  EXPECT_EQ(e.data_bytes(2), 1u + 1u + 1u + 2u + 1u);
  EXPECT_EQ(e.get(1, "a", &v).code(), ErrorCode::kNotFound);
}

/// 20,000 random puts and erases over 3,000 keys of `partition`, mirrored in `model`.
inline void churn(Engine& e, std::uint32_t partition, std::uint32_t seed,
                  std::map<std::string, std::string>& model) {
  std::mt19937 rng(seed);
  for (int i = 0; i < 20000; ++i) {
    const std::string key = nodus::testing::numbered("key", rng() % 3000);
    if (rng() % 3 == 0) {
      ASSERT_OK(e.erase(partition, key));
      model.erase(key);
    } else {
      const std::string value(rng() % 40, static_cast<char>('a' + rng() % 26));
      ASSERT_OK(e.put(partition, key, value));
      model[key] = value;
    }
  }
}

/// `partition` holds exactly `model`: every get, the counts, a full fold, and a fold that stops.
inline void expect_holds(const Engine& e, std::uint32_t partition,
                         const std::map<std::string, std::string>& model) {
  std::uint64_t bytes = 0;
  for (const auto& [k, v] : model) {
    std::string got;
    ASSERT_OK(e.get(partition, k, &got));
    ASSERT_EQ(got, v);
    bytes += k.size() + v.size();
  }
  EXPECT_EQ(e.keys(partition), model.size());
  EXPECT_EQ(e.data_bytes(partition), bytes);
  std::size_t folded = 0;
  e.fold(partition, [&](std::string_view k, std::string_view v) {
    EXPECT_EQ(model.at(std::string(k)), v);
    ++folded;
    return true;
  });
  EXPECT_EQ(folded, model.size());
  if (model.size() >= 3) {
    std::size_t stopped = 0;
    e.fold(partition, [&](std::string_view, std::string_view) { return ++stopped < 3; });
    EXPECT_EQ(stopped, 3u);
  }
}

}  // namespace nodus::kv::contract
