// Watches on the simulated network (tests/sim/sim_cluster.hpp): three nodes, N = 3, in one thread
// on virtual time, so "exactly one event per change" and "nothing else arrives" can be checked
// after the cluster went quiet, and a watcher can be made slow without racing the machine.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "nodus/kv/client.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/kv/partition.hpp"
#include "nodus/kv/watch.hpp"
#include "sim/sim_cluster.hpp"
#include "sim_store.hpp"
#include "state.hpp"
#include "watch.hpp"

namespace nodus::kv {
namespace {

using namespace std::chrono_literals;
using testing::numbered;
using testing::SimCluster;

// What one watcher process saw.
struct Seen {
  std::optional<Status> watch;  // the watch call's outcome
  Ref ref;
  std::vector<WatchEvent> events;
  std::vector<Term> lost;
  bool stop = false;  // set by the test: the watcher process returns (exits normally)
  bool ended = false;
};

class KvWatchTest : public ::testing::Test {
 protected:
  void start_cluster(int count, const std::function<void(Options&)>& tweak = {}) {
    sim_ = std::make_unique<SimCluster>(seed_);
    ASSERT_TRUE(sim::start_store(*sim_, sim::add_meshed(*sim_, count), tweak));
  }
  Node& node(const std::string& name) { return sim_->node(name); }

  // A process on `at` that watches `pattern` and records what arrives; `slow`: it takes nothing
  // from its mailbox after the watch, as a watcher that cannot keep up.
  std::shared_ptr<Seen> watcher(const std::string& at, const std::string& pattern,
                                WatchMatch match = WatchMatch::kGlob, bool slow = false) {
    auto seen = std::make_shared<Seen>();
    const Client c(node(at));
    sim_->spawn(at, [c, pattern, match, slow, seen] {
      auto r = c.watch(pattern, match);
      seen->watch = r.ok() ? Status() : r.error();
      if (!r) return;
      seen->ref = *r;
      if (slow) sleep_for(30s);
      for (int i = 0; i < 100000 && !seen->stop; ++i) {
        auto msg = receive(std::chrono::milliseconds(100));
        if (!msg) continue;
        if (auto e = watch_event(*msg)) seen->events.push_back(std::move(*e));
        if (auto l = watch_lost(*msg)) {
          seen->lost.push_back(*l);
          break;
        }
      }
      seen->ended = true;
    });
    EXPECT_TRUE(sim_->run_until([&] { return seen->watch.has_value(); }, 10s));
    EXPECT_OK(*seen->watch);
    return seen;
  }

  // A put (or delete) from a process on `at`, run to its end.
  Status put(const std::string& at, const std::string& key, const std::string& value) {
    auto out = std::make_shared<std::optional<Status>>();
    const Client c(node(at));
    sim_->spawn(at, [c, key, value, out] {
      auto r = c.put(key, value);
      *out = r.ok() ? Status() : r.error();
    });
    if (!sim_->run_until([&] { return out->has_value(); }, 10s)) {
      return Status(ErrorCode::kTimeout, "the put did not end");
    }
    return **out;
  }
  Status del(const std::string& at, const std::string& key) {
    auto out = std::make_shared<std::optional<Status>>();
    const Client c(node(at));
    sim_->spawn(at, [c, key, out] {
      auto r = c.del(key);
      *out = r.ok() ? Status() : r.error();
    });
    if (!sim_->run_until([&] { return out->has_value(); }, 10s)) {
      return Status(ErrorCode::kTimeout, "the delete did not end");
    }
    return **out;
  }
  Status get(const std::string& at, const std::string& key) {
    auto out = std::make_shared<std::optional<Status>>();
    const Client c(node(at));
    sim_->spawn(at, [c, key, out] {
      auto r = c.get(key);
      *out = r.ok() ? Status() : r.error();
    });
    if (!sim_->run_until([&] { return out->has_value(); }, 10s)) {
      return Status(ErrorCode::kTimeout, "the get did not end");
    }
    return **out;
  }

  static std::vector<std::string> values(const Seen& s) {
    std::vector<std::string> out;
    for (const auto& e : s.events) out.push_back(e.value);
    return out;
  }
  static std::vector<std::string> keys(const Seen& s) {
    std::vector<std::string> out;
    for (const auto& e : s.events) out.push_back(e.key);
    return out;
  }
  std::uint64_t watchers_on(const std::string& at) { return watch_stats(node(at))->watchers; }

  // A put with a ttl from a process on `at`, run to its end.
  Status put_ttl(const std::string& at, const std::string& key, const std::string& value,
                 std::chrono::milliseconds ttl) {
    auto out = std::make_shared<std::optional<Status>>();
    const Client c(node(at));
    sim_->spawn(at, [c, key, value, ttl, out] {
      RequestOptions o;
      o.ttl = ttl;
      auto r = c.put(key, value, o);
      *out = r.ok() ? Status() : r.error();
    });
    if (!sim_->run_until([&] { return out->has_value(); }, 10s)) {
      return Status(ErrorCode::kTimeout, "the put did not end");
    }
    return **out;
  }
  // The key's primaries, first first.
  std::vector<std::string> primaries(const std::string& key) { return sim::primaries(*sim_, key); }
  // A key whose primaries are `want`, in that order.
  std::string key_with_primaries(const std::string& prefix, const std::vector<std::string>& want) {
    for (int i = 0; i < 10000; ++i) {
      std::string k = numbered(prefix.c_str(), i);
      if (primaries(k) == want) return k;
    }
    ADD_FAILURE() << "no key with those primaries";
    return prefix;
  }
  // True when node `at`'s store sees `other` as up (`up`) or down.
  bool sees(const std::string& at, const std::string& other, bool up) {
    auto v = state_of(node(at))->view();
    const int i = v && v->ring ? v->ring->member_index(other) : -1;
    return i >= 0 && v->up[i] == up;
  }
  static std::size_t count(const Seen& s, WatchKind kind) {
    return static_cast<std::size_t>(std::count_if(
        s.events.begin(), s.events.end(), [&](const WatchEvent& e) { return e.kind == kind; }));
  }

  std::uint64_t seed_ = 1;
  std::unique_ptr<SimCluster> sim_;
};

// Every put and delete, coordinated on any of the three nodes (each key on all three replicas),
// reaches a watcher on another node once: not once per replica. Reads (and their repairs) are
// no change and make no event.
TEST_F(KvWatchTest, EachChangeIsOneEventWithThreeReplicas) {
  start_cluster(3);
  auto seen = watcher("n2", "user:*");
  int changes = 0;
  for (int i = 0; i < 12; ++i) {
    const std::string at = numbered("n", 1 + i % 3);
    ASSERT_OK(put(at, "user:" + std::to_string(i), "v" + std::to_string(i)));
    ++changes;
    ASSERT_OK(get(numbered("n", 1 + (i + 1) % 3), "user:" + std::to_string(i)));
  }
  ASSERT_OK(del("n3", "user:0"));
  ++changes;
  ASSERT_OK(put("n1", "other", "x"));  // matches no pattern
  sim_->run_for(3s);                   // anything late would be in by now
  ASSERT_EQ(seen->events.size(), static_cast<std::size_t>(changes))
      << ::testing::PrintToString(keys(*seen));
  std::map<std::string, int> per_key;
  for (const auto& e : seen->events)
    ++per_key[e.key + (e.kind == WatchKind::kDelete ? "/del" : "")];
  for (const auto& [k, n] : per_key) EXPECT_EQ(n, 1) << k;
  EXPECT_EQ(seen->events.back().kind, WatchKind::kDelete);
  EXPECT_EQ(seen->events.back().key, "user:0");
  EXPECT_EQ(seen->events.back().value, "");
  EXPECT_EQ(seen->events[1].value, "v1");
  EXPECT_TRUE(seen->lost.empty());
  EXPECT_EQ(watch_stats(node("n2"))->events, static_cast<std::uint64_t>(changes));
}

// Successive writes of one key, each coordinated by another node with the context the one
// before returned, reach the watcher in the order they were made, though the coordinators' events
// travel over different links (an event whose writer had seen one not passed on yet waits for
// it); the context an event carries is the key's.
TEST_F(KvWatchTest, EventsOfAKeyArriveInVersionOrder) {
  for (std::uint64_t seed : {1, 2, 3, 4, 5}) {
    seed_ = seed;
    start_cluster(3);
    auto seen = watcher("n3", "k", WatchMatch::kKey);
    std::vector<std::string> written;
    std::string context;
    for (int i = 0; i < 9; ++i) {
      written.push_back(numbered("v", i));
      auto out = std::make_shared<std::optional<Result<std::string>>>();
      const Client c(node(numbered("n", 1 + i % 3)));
      RequestOptions o;
      o.context = context;
      const std::string value = written.back();
      sim_->spawn(numbered("n", 1 + i % 3), [c, o, value, out] { *out = c.put("k", value, o); });
      ASSERT_TRUE(sim_->run_until([&] { return out->has_value(); }, 10s));
      ASSERT_TRUE((*out)->ok()) << (*out)->error().to_string();
      context = (*out)->value();
    }
    ASSERT_TRUE(sim_->run_until([&] { return seen->events.size() >= written.size(); }, 5s))
        << "seed " << seed << ": " << ::testing::PrintToString(values(*seen));
    sim_->run_for(2s);
    EXPECT_EQ(values(*seen), written) << "seed " << seed;
    EXPECT_TRUE(seen->lost.empty()) << "seed " << seed;
    EXPECT_EQ(seen->events.back().context, context) << "seed " << seed;
  }
}

// A watch by key, by prefix and by glob each see their keys only; a key's bytes that look like
// a glob are taken as they are by a key watch.
TEST_F(KvWatchTest, KeyPrefixAndGlobMatchTheirKeys) {
  start_cluster(3);
  auto by_key = watcher("n1", "a*", WatchMatch::kKey);
  auto by_prefix = watcher("n2", "a", WatchMatch::kPrefix);
  auto by_glob = watcher("n3", "a?[0-9]");
  for (const char* k : {"a*", "ab1", "abc", "b1", "ax9", "a"}) ASSERT_OK(put("n1", k, k));
  sim_->run_for(2s);
  EXPECT_EQ(keys(*by_key), (std::vector<std::string>{"a*"}));
  auto sorted = [](std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(sorted(keys(*by_prefix)), (std::vector<std::string>{"a", "a*", "ab1", "abc", "ax9"}));
  EXPECT_EQ(sorted(keys(*by_glob)), (std::vector<std::string>{"ab1", "ax9"}));
}

// A watcher that exits is dropped (its watch server monitors it), and once no node watches, no
// node routes events any more (the vnodes' fast path is back).
TEST_F(KvWatchTest, AWatcherThatExitsIsDropped) {
  start_cluster(3);
  auto seen = watcher("n2", "*");
  ASSERT_OK(put("n1", "k1", "v"));
  ASSERT_TRUE(sim_->run_until([&] { return seen->events.size() == 1; }, 5s));
  EXPECT_EQ(watchers_on("n2"), 1u);
  for (const char* n : {"n1", "n2", "n3"}) EXPECT_TRUE(watch_state_of(node(n))->any()) << n;
  seen->stop = true;
  ASSERT_TRUE(sim_->run_until([&] { return seen->ended; }, 5s));
  ASSERT_TRUE(sim_->run_until(
      [&] {
        return watchers_on("n2") == 0 && !watch_state_of(node("n1"))->any() &&
               !watch_state_of(node("n2"))->any() && !watch_state_of(node("n3"))->any();
      },
      5s));
  ASSERT_OK(put("n3", "k2", "v"));
  sim_->run_for(1s);
  EXPECT_EQ(watch_stats(node("n2"))->events, 1u);
}

// A watcher that takes nothing while more than kv.watch_queue events come is sent
// {kv_watch_lost, Pattern} after the events it was given (none missing before it) and dropped.
TEST_F(KvWatchTest, ASlowWatcherIsToldItLostEventsAndDropped) {
  start_cluster(3, [](Options& o) { o.watch_queue = 5; });
  auto seen = watcher("n1", "s:", WatchMatch::kPrefix, /*slow=*/true);
  for (int i = 0; i < 12; ++i)
    ASSERT_OK(put(numbered("n", 1 + i % 3), "s:" + std::to_string(i), "v"));
  ASSERT_TRUE(sim_->run_until([&] { return seen->ended; }, 60s));
  ASSERT_EQ(seen->lost.size(), 1u);
  EXPECT_EQ(seen->lost[0], watch_pattern("s:", WatchMatch::kPrefix));
  // What it got before the notice is every change from the first on, in order: no gap.
  ASSERT_GE(seen->events.size(), 5u);
  ASSERT_LE(seen->events.size(), 6u);
  for (std::size_t i = 0; i < seen->events.size(); ++i) {
    EXPECT_EQ(seen->events[i].key, "s:" + std::to_string(i));
  }
  EXPECT_EQ(watchers_on("n1"), 0u);
  EXPECT_EQ(watch_stats(node("n1"))->lost, 1u);
}

// An event that arrives after a newer version of its key was passed on (two coordinators, two
// links) cannot be delivered in order: the watcher is told it lost events instead.
TEST_F(KvWatchTest, AnOlderVersionAfterANewerOneEndsTheWatch) {
  start_cluster(3);
  auto seen = watcher("n2", "k", WatchMatch::kKey);
  // Two events as coordinators send them, from a process on n1: the newer first.
  const Actor a{7, 1};
  KvWatchEvent older{1, "k", Bin("old"), "", {a.vnode, a.epoch, 1}, {}};
  KvWatchEvent newer{1, "k", Bin("new"), "", {a.vnode, a.epoch, 2}, {}};
  sim_->spawn("n1", [older, newer] {
    send(named(kWatchName, "n2"), newer);
    send(named(kWatchName, "n2"), older);
  });
  ASSERT_TRUE(sim_->run_until([&] { return seen->ended; }, 5s));
  EXPECT_EQ(values(*seen), std::vector<std::string>{"new"});
  ASSERT_EQ(seen->lost.size(), 1u);
  EXPECT_EQ(watch_stats(node("n2"))->out_of_order, 1u);
}

// The TTL sweep's hook: notify_expired sends an expire event with the value that expired.
TEST_F(KvWatchTest, NotifyExpiredSendsAnExpireEvent) {
  start_cluster(3);
  auto seen = watcher("n3", "t*");
  ASSERT_OK(put("n1", "t1", "gone-soon"));
  ASSERT_TRUE(sim_->run_until([&] { return seen->events.size() == 1; }, 5s));
  sim_->run_for(1s);  // every replica has it
  // What n1 stores for t1, reported as expired by a process on n1 (as the sweep would be).
  KvState* st = state_of(node("n1"));
  const std::uint32_t p = partition_of("t1", 16);
  std::string bytes;
  ASSERT_OK(st->engine->get(p, "t1", &bytes));
  Object object = *decode_object(bytes);
  sim_->spawn("n1", [st, p, object] { notify_expired(*st, p, "t1", object); });
  ASSERT_TRUE(sim_->run_until([&] { return seen->events.size() == 2; }, 5s))
      << "lost " << seen->lost.size();
  EXPECT_EQ(seen->events[1].kind, WatchKind::kExpire);
  EXPECT_EQ(seen->events[1].key, "t1");
  EXPECT_EQ(seen->events[1].value, "gone-soon");
  EXPECT_EQ(seen->events[1].context, seen->events[0].context);
}

// The TTL sweep runs on every replica, and only the partition's first primary that is up tells
// the watchers: one expire event per expired key, with the value that expired.
TEST_F(KvWatchTest, AKeyTheSweepExpiresIsOneExpireEvent) {
  start_cluster(3, [](Options& o) { o.ttl_sweep_interval = 100ms; });
  auto seen = watcher("n2", "e*");
  auto done = std::make_shared<std::optional<Status>>();
  const Client c(node("n3"));
  sim_->spawn("n3", [c, done] {
    RequestOptions o;
    o.ttl = 300ms;
    auto r = c.put("e1", "short-lived", o);
    *done = r.ok() ? Status() : r.error();
  });
  ASSERT_TRUE(sim_->run_until([&] { return done->has_value(); }, 10s));
  ASSERT_OK(**done);
  ASSERT_TRUE(sim_->run_until([&] { return seen->events.size() >= 2; }, 10s))
      << "events " << seen->events.size() << ", lost " << seen->lost.size();
  sim_->run_for(2s);  // every replica has swept it by now: still one expire event
  ASSERT_EQ(2u, seen->events.size());
  EXPECT_EQ(WatchKind::kPut, seen->events[0].kind);
  EXPECT_EQ(WatchKind::kExpire, seen->events[1].kind);
  EXPECT_EQ("e1", seen->events[1].key);
  EXPECT_EQ("short-lived", seen->events[1].value);
}

// Compare-and-set and transactions are changes too: one event each. And a key whose value
// expired but is not swept yet reads as absent to them (create-only succeeds).
TEST_F(KvWatchTest, CompareAndSetWritesAreEventsAndExpiredValuesAreAbsentToThem) {
  start_cluster(3, [](Options& o) { o.ttl_sweep_interval = std::chrono::hours(1); });
  auto seen = watcher("n1", "c*");
  auto out = std::make_shared<std::vector<Status>>();
  const Client c(node("n2"));
  sim_->spawn("n2", [c, out] {
    RequestOptions ttl;
    ttl.ttl = 100ms;
    auto r = c.put("c1", "old", ttl);
    out->push_back(r.ok() ? Status() : r.error());
    sleep_for(300ms);  // expired, and no sweep for an hour
    RequestOptions create;
    create.if_version = "";
    r = c.put("c1", "new", create);
    out->push_back(r.ok() ? Status() : r.error());
  });
  ASSERT_TRUE(sim_->run_until([&] { return out->size() == 2; }, 10s));
  ASSERT_OK((*out)[0]);
  ASSERT_OK((*out)[1]);
  ASSERT_TRUE(sim_->run_until([&] { return seen->events.size() >= 2; }, 10s))
      << "events " << seen->events.size();
  sim_->run_for(1s);
  ASSERT_EQ(2u, seen->events.size());
  EXPECT_EQ("old", seen->events[0].value);
  EXPECT_EQ(WatchKind::kPut, seen->events[1].kind);
  EXPECT_EQ("new", seen->events[1].value);
}

// Bad patterns are refused with a message naming what is wrong; beyond kv.max_watches a node
// refuses more (too_many_watches) and keeps serving the ones it has.
TEST_F(KvWatchTest, BadPatternsAndTooManyWatchesAreRefused) {
  start_cluster(3, [](Options& o) { o.max_watches = 2; });
  auto out = std::make_shared<std::vector<Status>>();
  const Client c(node("n1"));
  sim_->spawn("n1", [c, out] {
    auto r = c.watch("");
    out->push_back(r.ok() ? Status() : r.error());
    r = c.watch(std::string(kMaxKeyBytes + 1, 'x'));
    out->push_back(r.ok() ? Status() : r.error());
    auto term = call(named("nodus_kv"), tuple("watch", Term(42)), 5s);
    out->push_back(term && term->match({"error", {"badarg", _bin}})
                       ? Status()
                       : Status(ErrorCode::kInternal, "not badarg"));
  });
  ASSERT_TRUE(sim_->run_until([&] { return out->size() == 3; }, 10s));
  EXPECT_EQ((*out)[0].code(), ErrorCode::kBadArg);
  EXPECT_NE((*out)[0].message().find("empty"), std::string::npos) << (*out)[0].to_string();
  EXPECT_EQ((*out)[1].code(), ErrorCode::kBadArg);
  EXPECT_OK((*out)[2]);
  auto w1 = watcher("n1", "a");
  auto w2 = watcher("n1", "b");
  auto refused = std::make_shared<std::optional<Status>>();
  sim_->spawn("n1", [c, refused] {
    auto r = c.watch("c");
    *refused = r.ok() ? Status() : r.error();
  });
  ASSERT_TRUE(sim_->run_until([&] { return refused->has_value(); }, 10s));
  EXPECT_EQ((*refused)->code(), kTooManyWatches) << (*refused)->to_string();
  ASSERT_OK(put("n2", "a", "1"));
  ASSERT_TRUE(sim_->run_until([&] { return w1->events.size() == 1; }, 5s));
}

// unwatch ends a watch at once; the watcher hears of no later change.
TEST_F(KvWatchTest, UnwatchEndsTheWatch) {
  start_cluster(3);
  auto seen = watcher("n1", "u");
  ASSERT_OK(put("n2", "u", "1"));
  ASSERT_TRUE(sim_->run_until([&] { return seen->events.size() == 1; }, 5s));
  auto done = std::make_shared<std::optional<Status>>();
  const Client c(node("n1"));
  const Ref ref = seen->ref;
  sim_->spawn("n1", [c, ref, done] { *done = c.unwatch(ref); });
  ASSERT_TRUE(sim_->run_until([&] { return done->has_value(); }, 5s));
  ASSERT_OK(**done);
  EXPECT_EQ(watchers_on("n1"), 0u);
  ASSERT_OK(put("n3", "u", "2"));
  sim_->run_for(1s);
  EXPECT_EQ(seen->events.size(), 1u);
}

// A partition ends the watches of the watcher's side with kv_watch_lost: what the other side
// coordinates meanwhile reaches no watcher (the fault suite's watch workload saw such changes
// missed in silence). After the heal a new watch sees every change again, and a node that
// restarts (back with no patterns) ends the watches too.
TEST_F(KvWatchTest, APartitionOrARestartEndsTheWatchesItCouldHaveHidden) {
  start_cluster(3);
  auto seen = watcher("n1", "p*");
  ASSERT_OK(put("n2", "p1", "before"));
  ASSERT_TRUE(sim_->run_until([&] { return seen->events.size() == 1; }, 5s));
  sim_->partition({"n1"}, {"n2", "n3"});
  (void)put("n2", "p2", "during");  // its outcome does not matter: the watch cannot see it
  ASSERT_TRUE(sim_->run_until([&] { return !seen->lost.empty(); }, 20s))
      << "a change on the other side of a partition went unseen and the watch did not end";
  EXPECT_EQ(seen->events.size(), 1u);
  EXPECT_EQ(watchers_on("n1"), 0u);
  sim_->heal();
  ASSERT_TRUE(sim_->run_until([&] { return sim_->meshed(); }, 20s));
  auto again = watcher("n1", "p*");
  ASSERT_OK(put("n3", "p3", "after"));
  ASSERT_TRUE(sim_->run_until([&] { return again->events.size() == 1; }, 5s));
  EXPECT_EQ(again->events[0].value, "after");
  EXPECT_TRUE(again->lost.empty());
  sim_->crash("n3");
  ASSERT_TRUE(sim_->run_until([&] { return !again->lost.empty(); }, 20s))
      << "a member went down and the watch did not end";
}

// LRU eviction (kv.max_keys) is a real delete coordinated through the store, so a watcher sees
// each evicted key as a delete event: as many delete events as the nodes counted evictions, one
// for each key that is gone, none for a key that is still there.
TEST_F(KvWatchTest, AnLruEvictionIsADeleteEvent) {
  start_cluster(3, [](Options& o) { o.max_keys = 20; });
  auto seen = watcher("n2", "ev:", WatchMatch::kPrefix);
  constexpr int kKeys = 40;  // each node holds every key (N = 3 of 3): 20 over its bound
  for (int i = 0; i < kKeys; ++i) ASSERT_OK(put(numbered("n", 1 + i % 3), numbered("ev:", i), "v"));
  const auto evictions = [&] {
    std::uint64_t n = 0;
    for (const char* at : {"n1", "n2", "n3"}) n += stats(node(at))->evictions;
    return n;
  };
  ASSERT_TRUE(sim_->run_until(
      [&] {
        for (const char* at : {"n1", "n2", "n3"}) {
          if (stats(node(at))->live_keys > 20) return false;
        }
        return count(*seen, WatchKind::kDelete) >= 20;
      },
      30s))
      << "deletes seen " << count(*seen, WatchKind::kDelete) << ", evictions " << evictions();
  sim_->run_for(3s);  // eviction rounds and events in flight are done by now
  ASSERT_TRUE(seen->lost.empty());
  EXPECT_EQ(count(*seen, WatchKind::kPut), static_cast<std::size_t>(kKeys));
  EXPECT_EQ(count(*seen, WatchKind::kDelete), evictions());
  std::set<std::string> deleted;
  for (const auto& e : seen->events) {
    if (e.kind == WatchKind::kDelete) deleted.insert(e.key);
  }
  for (int i = 0; i < kKeys; ++i) {
    const std::string k = numbered("ev:", i);
    const Status s = get("n1", k);
    if (s.code() == ErrorCode::kNotFound) {
      EXPECT_EQ(deleted.count(k), 1u) << k << " was evicted without a delete event";
    } else {
      ASSERT_OK(s);
      EXPECT_EQ(deleted.count(k), 0u) << k << " has a delete event and is still there";
    }
  }
  EXPECT_GE(deleted.size(), 20u);
}

// With the key's first primary down, the next primary that is up sweeps the expiry and tells
// the watchers: still exactly one expire event, with the value that expired.
TEST_F(KvWatchTest, AnExpiryWithTheFirstPrimaryDownIsOneExpireEvent) {
  start_cluster(3, [](Options& o) { o.ttl_sweep_interval = 100ms; });
  const std::string key = key_with_primaries("fp", {"n3", "n1", "n2"});
  sim_->crash("n3");
  ASSERT_TRUE(
      sim_->run_until([&] { return sees("n1", "n3", false) && sees("n2", "n3", false); }, 20s));
  auto seen = watcher("n1", key, WatchMatch::kKey);  // after the crash, which ends watches
  ASSERT_OK(put_ttl("n2", key, "short-lived", 300ms));
  ASSERT_TRUE(sim_->run_until([&] { return count(*seen, WatchKind::kExpire) >= 1; }, 10s))
      << "events " << seen->events.size() << ", lost " << seen->lost.size();
  sim_->run_for(2s);  // both replicas up swept it long ago
  ASSERT_TRUE(seen->lost.empty());
  ASSERT_EQ(seen->events.size(), 2u);
  EXPECT_EQ(seen->events[0].kind, WatchKind::kPut);
  EXPECT_EQ(seen->events[1].kind, WatchKind::kExpire);
  EXPECT_EQ(seen->events[1].value, "short-lived");
  EXPECT_EQ(state_of(node("n1"))->counters.expired.load(), 1u);
  EXPECT_EQ(state_of(node("n2"))->counters.expired.load(), 1u);
}

// A split that lets both sides expire a key: n1 and n2 lose sight of each other while n3 (the
// watcher's node) still sees both, so n1 (the first primary) and n2 (the first primary n2 sees
// up) each sweep the expiry as its partition's first up primary and each send an expire event.
// The watcher is told once: its watch server passes on one expire per key and version.
TEST_F(KvWatchTest, AnExpiryBothSidesOfASplitSweepIsOneExpireEvent) {
  start_cluster(3, [](Options& o) { o.ttl_sweep_interval = 100ms; });
  const std::string key = key_with_primaries("sp", {"n1", "n2", "n3"});
  auto seen = watcher("n3", key, WatchMatch::kKey);
  ASSERT_OK(put_ttl("n3", key, "both-sides", 3s));
  ASSERT_TRUE(sim_->run_until([&] { return seen->events.size() == 1; }, 5s));
  sim_->partition({"n1"}, {"n2"});
  ASSERT_TRUE(
      sim_->run_until([&] { return sees("n1", "n2", false) && sees("n2", "n1", false); }, 20s));
  ASSERT_TRUE(sees("n3", "n1", true) && sees("n3", "n2", true));
  ASSERT_TRUE(sim_->run_until(
      [&] {
        return state_of(node("n1"))->counters.expired.load() == 1 &&
               state_of(node("n2"))->counters.expired.load() == 1;
      },
      10s))
      << "both sides did not sweep it";
  sim_->run_for(2s);  // both events are in by now
  ASSERT_TRUE(seen->lost.empty()) << "the watch ended: the split was not what the test needs";
  EXPECT_EQ(count(*seen, WatchKind::kExpire), 1u);
  EXPECT_EQ(seen->events.size(), 2u);
  EXPECT_EQ(watch_stats(node("n3"))->duplicates, 1u) << "both sides should have sent it";
  sim_->heal();
  ASSERT_TRUE(sim_->run_until([&] { return sim_->meshed(); }, 20s));
  sim_->run_for(2s);
  EXPECT_EQ(count(*seen, WatchKind::kExpire), 1u) << "the expiry came back after the heal";
}

}  // namespace
}  // namespace nodus::kv
