// Versions: the dotted version vector set's laws over random histories (seeded) in which
// replicas lose their copies, the epochs that keep dots unique (ActorSource), the hybrid
// logical clock, and the encodings of objects and signed causal contexts.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "dvv.hpp"
#include "hlc.hpp"
#include "object.hpp"

namespace nodus::kv {
namespace {

using Set = DvvSet<int>;

// Actor `v` in its first epoch: the tests of the merge write under fixed actors.
constexpr Actor A(std::uint64_t v) { return Actor{v, 1}; }

std::set<int> live(const Set& s) {
  auto v = s.values();
  return {v.begin(), v.end()};
}

TEST(DvvTest, APutWithContextSupersedesWhatItSaw) {
  Set a = Set().update({}, 1, A(10));
  EXPECT_EQ(live(a), (std::set<int>{1}));
  Set b = a.update(a.join(), 2, A(10));
  EXPECT_EQ(live(b), (std::set<int>{2}));
  EXPECT_TRUE(a.less(b));
}

TEST(DvvTest, ConcurrentPutsBecomeSiblingsAndAMergedContextResolvesThem) {
  Set base = Set().update({}, 1, A(10));
  const VersionVector ctx = base.join();
  Set x = base.update(ctx, 2, A(10));  // two clients read {1}, then write via different replicas
  Set y = base.update(ctx, 3, A(20));
  Set both = Set::sync(x, y);
  EXPECT_EQ(live(both), (std::set<int>{2, 3}));
  Set resolved = both.update(both.join(), 4, A(20));
  EXPECT_EQ(live(resolved), (std::set<int>{4}));
  // A blind write (no context) is concurrent with everything.
  EXPECT_EQ(live(resolved.update({}, 5, A(10))), (std::set<int>{4, 5}));
}

TEST(DvvTest, AStaleContextKeepsTheNewerValue) {
  Set s = Set().update({}, 1, A(10));
  const VersionVector old = s.join();
  s = s.update(s.join(), 2, A(10));
  s = s.update(old, 3, A(10));  // saw only 1: 2 stays as a sibling
  EXPECT_EQ(live(s), (std::set<int>{2, 3}));
}

TEST(DvvTest, KeepMaxAndResolveKeepTheHistory) {
  Set s = Set::sync(Set().update({}, 1, A(10)), Set().update({}, 7, A(20)));
  Set l = s;
  l.keep_max([](int a, int b) { return a < b; });
  EXPECT_EQ(live(l), (std::set<int>{7}));
  EXPECT_EQ(l.join(), s.join());
  Set r = s;
  r.resolve(9, A(10));
  EXPECT_EQ(live(r), (std::set<int>{9}));
  EXPECT_TRUE(s.less(r));
  EXPECT_EQ(live(Set::sync(r, s)), (std::set<int>{9}));
}

// Random histories: three replicas (vnodes with their own ActorSource) take writes from
// clients that read a random subset of them first (or write blind), exchange state at random,
// and hand their copy to another replica and drop it (a fallback after hand-off; a reaped
// tombstone is the same loss), after which they take writes again and may be patched from a
// replica that lags. The laws must hold at every step; no dot may ever name two values (the
// merge keeps the first value it saw under a dot: kv679); and once every replica has synced,
// the live values are exactly the writes whose dots no later write's context covered.
TEST(DvvTest, LawsHoldOverRandomHistoriesWithLostCopies) {
  std::size_t erasures = 0, epochs = 0, write_count = 0;
  for (std::uint32_t seed = 1; seed <= 300; ++seed) {
    std::mt19937 rng(seed);
    std::vector<Set> replica(3);
    std::vector<ActorSource> source{ActorSource(1), ActorSource(2), ActorSource(3)};
    struct Write {
      int value;
      Actor actor;
      std::uint64_t counter;
    };
    std::vector<Write> writes;
    std::map<std::pair<Actor, std::uint64_t>, int> dots;
    std::vector<VersionVector> contexts;
    int next_value = 1;
    for (int step = 0; step < 60; ++step) {
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
        const Actor actor = source[r].for_write("k", replica[r], ctx);
        replica[r] = replica[r].update(ctx, v, actor);
        // The write is live where it was made, and nothing it saw is.
        const std::set<int> after = live(replica[r]);
        ASSERT_TRUE(after.count(v)) << "seed " << seed;
        for (int x : seen_values) ASSERT_FALSE(after.count(x)) << "seed " << seed;
        const auto& e = *std::find_if(replica[r].entries().begin(), replica[r].entries().end(),
                                      [&](const auto& en) { return en.id == actor; });
        const auto [it, fresh] = dots.emplace(std::make_pair(actor, e.counter), v);
        ASSERT_TRUE(fresh) << "seed " << seed << ": value " << v << " reuses the dot of value "
                           << it->second;
        writes.push_back({v, actor, e.counter});
        ++write_count;
        contexts.push_back(ctx);
      } else if (op < 9) {
        const std::size_t i = rng() % 3;
        const std::size_t j = rng() % 3;
        source[i].on_merge("k", replica[i], replica[j]);
        replica[i] = Set::sync(replica[i], replica[j]);
      } else {  // replica r hands its copy to j and drops it
        const std::size_t r = rng() % 3;
        const std::size_t j = (r + 1 + rng() % 2) % 3;
        source[j].on_merge("k", replica[j], replica[r]);
        replica[j] = Set::sync(replica[j], replica[r]);
        replica[r] = Set();
        ++erasures;
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
        for (const auto& [a, n] : ctx) {
          if (a == w.actor && n >= w.counter) covered = true;
        }
      }
      if (!covered) expected.insert(w.value);
    }
    ASSERT_EQ(live(all), expected) << "seed " << seed;
    for (const ActorSource& src : source) epochs += src.epochs();
  }
  EXPECT_GT(erasures, 1000u) << "the histories must lose copies often";
  EXPECT_LT(epochs, write_count / 2) << "new epochs after a lost copy, not per write";
}

// A dot names one value forever, but a replica may hold it in a form of its own: the TTL sweep
// turns an expired value into a tombstone under the same dot (ttl.hpp). A merge with an incoming
// copy that holds the same dot in the other form keeps the local form, whether the incoming
// entry is as far as the local one or further on (a later write of the same actor that kept
// the dot as a sibling); were the live form taken back, the sweep would expire the value (and
// report the expiry to the watchers) a second time.
TEST(DvvTest, AMergeOfTheSameDotKeepsTheLocalForm) {
  const Sibling live{"v1", 10, false, 5000};
  Sibling swept = live;  // as expire_values leaves it
  swept.tombstone = true;
  swept.value.clear();
  const Object written = Object().update({}, live, A(7));  // dot A(7):1
  Object local = written;
  local.mutable_entries()[0].values[0] = swept;

  // The same entry: the local form stays, both ways round.
  EXPECT_EQ(Object::sync(local, written), local);
  EXPECT_EQ(Object::sync(written, local), written);

  // The incoming entry is further on: a blind write of the same actor made dot A(7):2 a
  // sibling of A(7):1, which it still holds live.
  const Object further = written.update({}, Sibling{"v2", 11, false, 0}, A(7));
  ASSERT_EQ(further.entries()[0].values.size(), 2u);
  const Object merged = Object::sync(local, further);
  ASSERT_EQ(merged.entries().size(), 1u);
  EXPECT_EQ(merged.entries()[0].counter, 2u);
  ASSERT_EQ(merged.entries()[0].values.size(), 2u);
  EXPECT_EQ(merged.entries()[0].values[0].value, "v2");  // the new dot, as it came
  EXPECT_EQ(merged.entries()[0].values[1], swept);       // the local form of A(7):1
  // The other way round (the local copy is the one further on) keeps its own forms too.
  Object ahead = further;
  ahead.mutable_entries()[0].values[1] = swept;
  EXPECT_EQ(Object::sync(ahead, written), ahead);
  EXPECT_EQ(Object::sync(further, local), further);

  // And where the incoming side superseded the dot, it is gone whatever its local form.
  const Object superseded = written.update(written.join(), Sibling{"v3", 12, false, 0}, A(7));
  const Object after = Object::sync(local, superseded);
  ASSERT_EQ(after.value_count(), 1u);
  EXPECT_EQ(after.values()[0].value, "v3");
}

TEST(ActorSourceTest, AVnodeKeepsItsEpochWhileItsCopyIsWhole) {
  ActorSource src(7);
  Set s;
  const Actor first = src.for_write("k", s, {});
  EXPECT_EQ(first, (Actor{7, 1}));
  s = s.update({}, 1, first);
  EXPECT_EQ(src.for_write("k", s, s.join()), first);
  s = s.update(s.join(), 2, first);
  EXPECT_EQ(src.for_write("k", s, {}), first) << "a blind write on a whole copy";
  EXPECT_EQ(src.epochs(), 1u);
}

TEST(ActorSourceTest, ALostCopyOrAContextThatKnowsMoreStartsANewEpoch) {
  ActorSource src(7);
  Set s = Set().update({}, 1, src.for_write("k", Set(), {}));
  s = s.update(s.join(), 2, src.for_write("k", s, s.join()));  // 7/1 at counter 2
  // The copy is gone: a write from nothing must not make 7/1:1 again.
  EXPECT_EQ(src.for_write("k", Set(), {}), (Actor{7, 2}));
  // The copy is older than what a client read (7/1:2): the next write takes a new epoch.
  const Set old = Set().update({}, 1, Actor{7, 1});
  EXPECT_EQ(src.for_write("k", old, s.join()), (Actor{7, 3}));
  // The copy was re-created from a replica that lags (7/1:1 while this vnode made 7/1:2).
  src.on_merge("k", Set(), old);
  EXPECT_EQ(src.marked(), 1u);
  EXPECT_EQ(src.for_write("k", old, {}), (Actor{7, 4}));
  EXPECT_EQ(src.marked(), 0u);
  // Entries of other vnodes never mark.
  src.on_merge("k", Set(), Set().update({}, 1, Actor{8, 1}));
  EXPECT_EQ(src.marked(), 0u);
}

TEST(ActorSourceTest, TooManyMarkedKeysRetireEveryEpoch) {
  ActorSource src(7);
  const Set whole = Set().update({}, 1, src.for_write("k", Set(), {}));
  const Set lagging = whole;
  for (std::size_t i = 0; i < ActorSource::kMaxMarked; ++i) {
    std::string key = "m";
    key += std::to_string(i);
    src.on_merge(key, Set(), lagging);
  }
  EXPECT_EQ(src.marked(), ActorSource::kMaxMarked);
  src.on_merge("one-more", Set(), lagging);
  EXPECT_EQ(src.marked(), 0u);
  EXPECT_EQ(src.for_write("k", whole, {}), (Actor{7, 2})) << "epoch 1 was retired";
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
  Object o = Object().update({}, Sibling{"v1", 42, false}, A(7));
  o = Object::sync(o, Object().update({}, Sibling{"", 43, true}, A(9)));
  auto back = decode_object(encode_object(o));
  ASSERT_OK(back);
  EXPECT_EQ(*back, o);
  EXPECT_FALSE(all_tombstones(o));
  EXPECT_TRUE(all_tombstones(Object().update({}, Sibling{"", 1, true}, A(1))));
  EXPECT_EQ(decode_object("\x93\x01").error().code(), ErrorCode::kProtocol);
  EXPECT_EQ(decode_object("").error().code(), ErrorCode::kProtocol);
  std::string bytes = encode_object(o);
  bytes[0] = '\x92';
  bytes.pop_back();
  EXPECT_FALSE(decode_object(bytes).ok());
}

TEST(ObjectTest, ContextsAreSignedForTheirKey) {
  ContextSigner signer("cookie");
  const VersionVector vv{{Actor{7, 1}, 3}, {Actor{7, 2}, 1}, {Actor{9, 1}, 1}};
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
