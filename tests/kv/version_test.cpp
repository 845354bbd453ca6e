// Versions: the dotted version vector set's laws over random histories (seeded), the hybrid
// logical clock, and the encodings of objects and signed causal contexts.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <vector>

#include "../test_support.hpp"
#include "dvv.hpp"
#include "hlc.hpp"
#include "object.hpp"

namespace nodus::kv {
namespace {

using Set = DvvSet<int>;

std::set<int> live(const Set& s) {
  auto v = s.values();
  return {v.begin(), v.end()};
}

TEST(DvvTest, APutWithContextSupersedesWhatItSaw) {
  Set a = Set().update({}, 1, /*id=*/10);
  EXPECT_EQ(live(a), (std::set<int>{1}));
  Set b = a.update(a.join(), 2, 10);
  EXPECT_EQ(live(b), (std::set<int>{2}));
  EXPECT_TRUE(a.less(b));
}

TEST(DvvTest, ConcurrentPutsBecomeSiblingsAndAMergedContextResolvesThem) {
  Set base = Set().update({}, 1, 10);
  const VersionVector ctx = base.join();
  Set x = base.update(ctx, 2, 10);  // two clients read {1}, then write via different replicas
  Set y = base.update(ctx, 3, 20);
  Set both = Set::sync(x, y);
  EXPECT_EQ(live(both), (std::set<int>{2, 3}));
  Set resolved = both.update(both.join(), 4, 20);
  EXPECT_EQ(live(resolved), (std::set<int>{4}));
  // A blind write (no context) is concurrent with everything.
  EXPECT_EQ(live(resolved.update({}, 5, 10)), (std::set<int>{4, 5}));
}

TEST(DvvTest, AStaleContextKeepsTheNewerValue) {
  Set s = Set().update({}, 1, 10);
  const VersionVector old = s.join();
  s = s.update(s.join(), 2, 10);
  s = s.update(old, 3, 10);  // saw only 1: 2 stays as a sibling
  EXPECT_EQ(live(s), (std::set<int>{2, 3}));
}

TEST(DvvTest, KeepMaxAndResolveKeepTheHistory) {
  Set s = Set::sync(Set().update({}, 1, 10), Set().update({}, 7, 20));
  Set l = s;
  l.keep_max([](int a, int b) { return a < b; });
  EXPECT_EQ(live(l), (std::set<int>{7}));
  EXPECT_EQ(l.join(), s.join());
  Set r = s;
  r.resolve(9, 10);
  EXPECT_EQ(live(r), (std::set<int>{9}));
  EXPECT_TRUE(s.less(r));
  EXPECT_EQ(live(Set::sync(r, s)), (std::set<int>{9}));
}

// Random histories: replicas (actors 1..3) take writes from clients that read a random
// subset of them first (or write blind), and exchange state at random. The laws must hold at
// every step, and once every replica has synced, the live values are exactly the writes whose
// dots no later write's context covered.
TEST(DvvTest, LawsHoldOverRandomHistories) {
  for (std::uint32_t seed = 1; seed <= 200; ++seed) {
    std::mt19937 rng(seed);
    std::vector<Set> replica(3);
    struct Write {
      int value;
      std::uint64_t actor;
      std::uint64_t counter;
    };
    std::vector<Write> writes;
    std::vector<VersionVector> contexts;
    int next_value = 1;
    for (int step = 0; step < 40; ++step) {
      const std::uint32_t op = rng() % 10;
      if (op < 6) {
        Set seen;
        std::set<int> seen_values;
        if (rng() % 4 != 0) {  // read from a random non-empty subset; else a blind write
          for (std::size_t i = 0; i < 3; ++i) {
            if (rng() % 2 == 0 || (i == 2 && seen.empty())) seen = Set::sync(seen, replica[i]);
          }
          seen_values = live(seen);
        }
        const std::size_t r = rng() % 3;
        const int v = next_value++;
        const VersionVector ctx = seen.join();
        replica[r] = replica[r].update(ctx, v, r + 1);
        // The write is live where it was made, and nothing it saw is.
        const std::set<int> after = live(replica[r]);
        ASSERT_TRUE(after.count(v)) << "seed " << seed;
        for (int s : seen_values) ASSERT_FALSE(after.count(s)) << "seed " << seed;
        const auto& e = *std::find_if(replica[r].entries().begin(), replica[r].entries().end(),
                                      [&](const auto& en) { return en.id == r + 1; });
        writes.push_back({v, r + 1, e.counter});
        contexts.push_back(ctx);
      } else {
        const std::size_t i = rng() % 3;
        const std::size_t j = rng() % 3;
        replica[i] = Set::sync(replica[i], replica[j]);
      }
      const Set& a = replica[rng() % 3];
      const Set& b = replica[rng() % 3];
      const Set& c = replica[rng() % 3];
      ASSERT_EQ(Set::sync(a, b), Set::sync(b, a)) << "seed " << seed << ": not commutative";
      ASSERT_EQ(Set::sync(a, a), a) << "seed " << seed << ": not idempotent";
      ASSERT_EQ(Set::sync(Set::sync(a, b), c), Set::sync(a, Set::sync(b, c)))
          << "seed " << seed << ": not associative";
    }
    Set all = Set::sync(Set::sync(replica[0], replica[1]), replica[2]);
    std::set<int> expected;
    for (const Write& w : writes) {
      bool covered = false;
      for (const VersionVector& ctx : contexts) {
        for (const auto& [id, n] : ctx) {
          if (id == w.actor && n >= w.counter) covered = true;
        }
      }
      if (!covered) expected.insert(w.value);
    }
    ASSERT_EQ(live(all), expected) << "seed " << seed;
  }
}

TEST(HybridClockTest, NeverGoesBackwardsAndPassesWhatItSaw) {
  static std::uint64_t wall = 1000;
  HybridClock c([] { return wall; });
  const std::uint64_t t1 = c.now();
  const std::uint64_t t2 = c.now();
  EXPECT_GT(t2, t1);
  EXPECT_EQ(HybridClock::millis(t1), 1000u);
  wall = 900;  // the wall clock steps back
  EXPECT_GT(c.now(), t2);
  c.observe((5000ull << 16) + 3);  // a timestamp from a node whose clock runs ahead
  EXPECT_GT(c.now(), (5000ull << 16) + 3);
  wall = 6000;
  EXPECT_EQ(c.now(), 6000ull << 16);
}

TEST(ObjectTest, EncodingRoundTripsAndRejectsGarbage) {
  Object o = Object().update({}, Sibling{"v1", 42, false}, 7);
  o = Object::sync(o, Object().update({}, Sibling{"", 43, true}, 9));
  auto back = decode_object(encode_object(o));
  ASSERT_OK(back);
  EXPECT_EQ(*back, o);
  EXPECT_FALSE(all_tombstones(o));
  EXPECT_TRUE(all_tombstones(Object().update({}, Sibling{"", 1, true}, 1)));
  EXPECT_EQ(decode_object("\x93\x01").error().code(), ErrorCode::kProtocol);
  EXPECT_EQ(decode_object("").error().code(), ErrorCode::kProtocol);
  std::string bytes = encode_object(o);
  bytes[0] = '\x92';
  bytes.pop_back();
  EXPECT_FALSE(decode_object(bytes).ok());
}

TEST(ObjectTest, ContextsAreSignedForTheirKey) {
  ContextSigner signer("cookie");
  const VersionVector vv{{7, 3}, {9, 1}};
  const std::string ctx = signer.encode("k", vv);
  auto back = signer.decode("k", ctx);
  ASSERT_OK(back);
  EXPECT_EQ(*back, vv);
  EXPECT_TRUE(signer.decode("k", "")->empty());
  EXPECT_EQ(signer.decode("other", ctx).error().code(), ErrorCode::kBadArg);
  std::string forged = ctx;
  forged[3] ^= 1;
  EXPECT_EQ(signer.decode("k", forged).error().message(),
            "causal context forged, altered, or of another key");
  EXPECT_EQ(signer.decode("k", "junk").error().message(), "malformed causal context");
  EXPECT_FALSE(ContextSigner("other-cookie").decode("k", ctx).ok());
}

}  // namespace
}  // namespace nodus::kv
