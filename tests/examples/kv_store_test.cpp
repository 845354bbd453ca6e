// Replays the KVStore capstone's rubric on a real three-node store over loopback ZeroMQ: CRUD,
// TTL and expiry, replication (written through one node, read through another, surviving a
// node's loss), subscriptions (events arrive, a dead subscriber is dropped), transactions,
// multi_get / multi_put, stats, add_replica, bad requests, and concurrent access from many
// processes at once with the final state checked.
#include "kv_store.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../node/test_util.hpp"
#include "nodus/kv/errors.hpp"

namespace {

using namespace nodus;
using namespace std::chrono_literals;
using kv_store::KVStore;
using nodus::testing::eventually;
using nodus::testing::numbered;

using Value = std::optional<std::string>;

class KVStoreTest : public ::testing::Test {
 protected:
  void TearDown() override {
    inbox_.reset();
    for (auto& n : nodes_) n.reset();
  }

  // Nodes n1..n`count`, all linked; the ring is formed by n1..n`members` (the others are
  // candidates, for add_replica); N = 3, W = R = 2.
  void start_cluster(int count = 3, int members = 3) {
    std::vector<std::string> ring;
    for (int i = 1; i <= members; ++i) ring.push_back(numbered("n", i));
    for (int i = 1; i <= count; ++i) {
      nodes_.push_back(nodus::testing::start_loopback_node(numbered("n", i), "kv-cookie"));
      ASSERT_TRUE(nodes_.back());
      if (i > 1) nodes_.back()->connect(nodes_.front()->endpoint());
    }
    for (auto& n : nodes_) {
      kv::Options o;
      o.partitions = 16;
      o.initial_members = ring;
      o.context_secret = "kv-cookie";
      o.request_timeout = 2000ms;
      o.ttl_sweep_interval = 50ms;
      ASSERT_OK(kv::start(*n, o));
    }
    ASSERT_TRUE(eventually(
        [&] {
          for (auto& n : nodes_) {
            auto r = kv::ring(*n);
            if (!r || r->members().size() != ring.size()) return false;
            if (n->nodes().size() != nodes_.size() - 1) return false;
          }
          return true;
        },
        10s))
        << "the ring did not form, or the nodes are not all linked";
    inbox_ = std::make_unique<Inbox>(node(1));
  }

  Node& node(int i) { return *nodes_[i - 1]; }

  // A KVStore on node i, under the local name kv_store (not linked to the test).
  Pid store_on(int i) {
    Pid pid;
    std::thread([&] {
      Inbox starter(node(i));
      auto r = KVStore::start_link(node(i));
      EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
      if (r.ok()) {
        pid = *r;
        unlink(pid);
      }
    }).join();
    return pid;
  }

  std::vector<std::unique_ptr<Node>> nodes_;
  std::unique_ptr<Inbox> inbox_;  // the test's own process, on n1
};

Term field(const Term& stats, const char* name) { return *stats.find(Term(name)); }

TEST_F(KVStoreTest, CrudPutGetDeleteKeys) {
  start_cluster();
  Pid s = store_on(1);
  EXPECT_EQ(*KVStore::get(s, "user:1"), Value()) << "never written: nil";
  ASSERT_OK(KVStore::put(s, "user:1", "alice"));
  EXPECT_EQ(*KVStore::get(s, "user:1"), Value("alice"));
  ASSERT_OK(KVStore::put(s, "user:1", "alice2"));
  EXPECT_EQ(*KVStore::get(s, "user:1"), Value("alice2")) << "a put overwrites, no sibling";
  ASSERT_OK(KVStore::put(s, "user:2", "bob"));
  ASSERT_OK(KVStore::put(s, "order:1", "book"));
  auto users = KVStore::keys(s, "user:*");
  ASSERT_OK(users);
  EXPECT_EQ(std::set<std::string>(users->begin(), users->end()),
            (std::set<std::string>{"user:1", "user:2"}));
  EXPECT_EQ(KVStore::keys(s)->size(), 3u);
  ASSERT_OK(KVStore::del(s, "user:1"));
  EXPECT_EQ(*KVStore::get(s, "user:1"), Value());
  ASSERT_OK(KVStore::del(s, "never-there")) << "deleting a missing key is ok, as Map.delete";
  EXPECT_EQ(KVStore::keys(s, "user:*")->size(), 1u);
}

TEST_F(KVStoreTest, TtlExpiresTheValueOnEveryNode) {
  start_cluster();
  Pid s1 = store_on(1), s2 = store_on(2);
  ASSERT_OK(KVStore::put(s1, "session", "token", {.ttl = 300ms}));
  ASSERT_OK(KVStore::put(s1, "forever", "stays"));
  EXPECT_EQ(*KVStore::get(s2, "session"), Value("token"));
  EXPECT_TRUE(eventually([&] { return *KVStore::get(s2, "session") == Value(); }, 5s));
  EXPECT_EQ(*KVStore::get(s1, "session"), Value());
  auto keys = KVStore::keys(s1);
  EXPECT_EQ(*keys, std::vector<std::string>{"forever"}) << "an expired key is not listed";
  EXPECT_EQ(*KVStore::get(s1, "forever"), Value("stays"));
}

TEST_F(KVStoreTest, ReplicationReadsThroughAnotherNodeAndSurvivesANodesLoss) {
  start_cluster();
  Pid s1 = store_on(1), s3 = store_on(3);
  for (int i = 0; i < 20; ++i) ASSERT_OK(KVStore::put(s1, numbered("k", i), numbered("v", i)));
  ASSERT_OK(KVStore::put(s1, "quick", "w1", {.replicate = false}));
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(*KVStore::get(s3, numbered("k", i)), Value(numbered("v", i)));
  }
  EXPECT_TRUE(eventually([&] { return *KVStore::get(s3, "quick") == Value("w1"); }))
      << "replicate: false is still copied, after the answer";
  // n2 goes away: N = 3 copies, R = 2 of n1 and n3 still answer.
  nodes_[1].reset();
  ASSERT_TRUE(eventually([&] { return node(1).nodes().size() == 1; }, 10s));
  for (int i = 0; i < 20; ++i) {
    auto got = KVStore::get(s3, numbered("k", i));
    ASSERT_OK(got);
    EXPECT_EQ(*got, Value(numbered("v", i)));
  }
  ASSERT_OK(KVStore::put(s3, "after", "loss"));
  EXPECT_EQ(*KVStore::get(s1, "after"), Value("loss"));
}

TEST_F(KVStoreTest, SubscribersHearOfChangesFromAnyNodeAndADeadOneIsDropped) {
  start_cluster();
  Pid s1 = store_on(1), s2 = store_on(2);
  ASSERT_OK(KVStore::subscribe(s1));
  // A second subscriber, a process that exits once it has seen one event.
  std::atomic<int> seen{0};
  Pid other = spawn(node(1), [&] {
    if (!KVStore::subscribe(s1).ok()) return;
    seen = 1;
    while (auto m = receive(10s)) {
      if (kv::watch_event(*m)) {
        seen = 2;
        return;
      }
    }
  });
  ASSERT_TRUE(eventually([&] { return seen.load() == 1; }));
  EXPECT_EQ(field(*KVStore::stats(s1), "subscribers"), Term(2));

  ASSERT_OK(KVStore::put(s2, "watched", "one"));  // through n2: the event comes all the same
  auto e = kv::watch_event(nodus::testing::next_message());
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind, kv::WatchKind::kPut);
  EXPECT_EQ(e->key, "watched");
  EXPECT_EQ(e->value, "one");
  ASSERT_TRUE(eventually([&] { return seen.load() == 2; }));
  ASSERT_TRUE(eventually([&] { return !node(1).is_process_alive(other); }));
  EXPECT_TRUE(eventually([&] { return field(*KVStore::stats(s1), "subscribers") == Term(1); }))
      << "the subscriber that exited is dropped";

  ASSERT_OK(KVStore::del(s1, "watched"));
  e = kv::watch_event(nodus::testing::next_message());
  ASSERT_TRUE(e);
  EXPECT_EQ(e->kind, kv::WatchKind::kDelete);
  EXPECT_EQ(e->key, "watched");
}

// The server's watch is lost (a ring member goes down) and its re-watch is refused: here the
// node's watch server is out of its name for a while, so nodus_kv answers the watch unavailable,
// as it does while that server restarts. The server retries with backoff until the store takes
// the watch again, and its subscriber hears of changes from then on.
TEST_F(KVStoreTest, ARefusedRewatchIsRetriedUntilSubscribersHearOfChangesAgain) {
  start_cluster();
  Pid s1 = store_on(1);
  ASSERT_OK(KVStore::subscribe(s1));
  EXPECT_EQ(field(*KVStore::stats(s1), "watching"), Term(true));
  const Pid watch_server = node(1).whereis("nodus_kv_watch");
  ASSERT_TRUE(watch_server.valid());
  ASSERT_TRUE(node(1).unregister_name("nodus_kv_watch"));
  nodes_[2].reset();  // n3 stops: every watch n1 holds is lost
  auto lost = nodus::testing::next_message(10s);
  ASSERT_TRUE(kv::watch_lost(lost)) << "expected kv_watch_lost";
  // Refused meanwhile, and still retried: the server holds no watch for a while.
  ASSERT_TRUE(eventually([&] { return field(*KVStore::stats(s1), "watching") == Term(false); }));
  ASSERT_TRUE(eventually(
      [&] { return field(*KVStore::stats(s1), "rewatches_refused").as_int() >= 3; }, 10s))
      << "the re-watch was not retried";
  ASSERT_OK(node(1).register_name("nodus_kv_watch", watch_server).status());
  ASSERT_TRUE(eventually([&] { return field(*KVStore::stats(s1), "watching") == Term(true); }, 15s))
      << "the server never watched again";
  ASSERT_OK(KVStore::put(s1, "after", "back"));
  auto e = kv::watch_event(nodus::testing::next_message(10s));
  ASSERT_TRUE(e) << "no event after the re-watch";
  EXPECT_EQ(e->key, "after");
  EXPECT_EQ(e->value, "back");
}

TEST_F(KVStoreTest, TransactionCommitsAtomicallyOrAbortsOrRefusesTwoPartitions) {
  start_cluster();
  Pid s = store_on(1);  // the caller's node: a transaction's function does not cross nodes
  ASSERT_OK(KVStore::multi_put(s, {{"{acct}.alice", "100"}, {"{acct}.bob", "50"}}));
  auto transfer = [&](int amount) {
    return KVStore::transaction(s, {"{acct}.alice", "{acct}.bob"},
                                [amount](const kv::TxnSnapshot& v) -> std::optional<kv::TxnWrites> {
                                  const int alice = std::stoi(v.at("{acct}.alice").at(0));
                                  const int bob = std::stoi(v.at("{acct}.bob").at(0));
                                  if (alice < amount) return std::nullopt;
                                  return kv::TxnWrites{
                                      {"{acct}.alice", std::to_string(alice - amount)},
                                      {"{acct}.bob", std::to_string(bob + amount)}};
                                });
  };
  auto r = transfer(30);
  ASSERT_OK(r);
  EXPECT_TRUE(r->committed);
  EXPECT_EQ(*KVStore::multi_get(s, {"{acct}.alice", "{acct}.bob"}),
            (std::vector<Value>{"70", "80"}));
  r = transfer(500);
  ASSERT_OK(r);
  EXPECT_FALSE(r->committed) << "the function aborted: nothing written";
  EXPECT_EQ(*KVStore::get(s, "{acct}.alice"), Value("70"));

  auto cross = KVStore::transaction(s, {"alice", "bob"}, [](const kv::TxnSnapshot&) {
    return std::optional<kv::TxnWrites>(kv::TxnWrites{});
  });
  ASSERT_FALSE(cross.ok());
  EXPECT_EQ(cross.error().code(), ErrorCode::kCrossPartition);

  auto remote = KVStore::transaction(store_on(2), {"{acct}.alice"}, [](const kv::TxnSnapshot&) {
    return std::optional<kv::TxnWrites>(kv::TxnWrites{});
  });
  ASSERT_FALSE(remote.ok()) << "a function cannot be sent to another node";
  EXPECT_EQ(remote.error().code(), ErrorCode::kBadArg) << remote.error().to_string();
}

TEST_F(KVStoreTest, MultiGetAndMultiPutAnswerPerKey) {
  start_cluster();
  Pid s = store_on(3);
  std::vector<std::pair<std::string, std::string>> kvs;
  std::vector<std::string> keys;
  for (int i = 0; i < 30; ++i) {
    kvs.emplace_back(numbered("m", i), numbered("v", i));
    keys.push_back(numbered("m", i));
  }
  ASSERT_OK(KVStore::multi_put(s, kvs));
  keys.push_back("missing");
  auto got = KVStore::multi_get(s, keys);
  ASSERT_OK(got);
  ASSERT_EQ(got->size(), 31u);
  for (int i = 0; i < 30; ++i) EXPECT_EQ((*got)[i], Value(numbered("v", i)));
  EXPECT_EQ((*got)[30], Value());
  kvs.resize(2);
  kvs[0].second = "new";
  ASSERT_OK(KVStore::multi_put(s, kvs, {.ttl = 60s}));
  EXPECT_EQ(*KVStore::get(s, "m0"), Value("new")) << "multi_put overwrites as put does";
}

TEST_F(KVStoreTest, StatsCountKeysHitsMissesAndReplicas) {
  start_cluster();
  Pid s = store_on(1);
  for (int i = 0; i < 10; ++i) ASSERT_OK(KVStore::put(s, numbered("s", i), "x"));
  auto before = KVStore::stats(s);
  ASSERT_OK(before);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(KVStore::get(s, numbered("s", i)).ok());
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(KVStore::get(s, numbered("absent", i)).ok());
  auto after = KVStore::stats(s);
  ASSERT_OK(after);
  EXPECT_EQ(field(*after, "replicas"), Term(3));
  EXPECT_EQ(field(*after, "nodes"), Term(3));
  EXPECT_EQ(field(*after, "keys"), Term(10)) << after->to_string();
  EXPECT_GT(field(*after, "memory").as_int(), 0);
  // Each put read the key first (a miss, or a hit for none here); 10 hits, 4 misses since.
  EXPECT_EQ(field(*after, "hits").as_int() - field(*before, "hits").as_int(), 10);
  EXPECT_EQ(field(*after, "misses").as_int() - field(*before, "misses").as_int(), 4);
}

TEST_F(KVStoreTest, AddReplicaMakesACandidateNodeAMemberOfTheRing) {
  start_cluster(4, 3);  // n4 runs the store as a candidate
  Pid s = store_on(1);
  for (int i = 0; i < 20; ++i) ASSERT_OK(KVStore::put(s, numbered("r", i), "v"));
  ASSERT_EQ(kv::ring(node(1))->member_index("n4"), -1);
  ASSERT_OK(KVStore::add_replica(s, "n4"));
  EXPECT_TRUE(eventually([&] { return kv::ring(node(4))->member_index("n4") >= 0; }, 10s));
  EXPECT_TRUE(eventually(
      [&] {
        auto r = kv::ring(node(1));
        return !r->has_transfers() && r->owned_counts()[r->member_index("n4")] > 0;
      },
      30s))
      << "n4 takes its share of the partitions";
  for (int i = 0; i < 20; ++i) EXPECT_EQ(*KVStore::get(s, numbered("r", i)), Value("v"));
  Status again = KVStore::add_replica(s, "n4");
  EXPECT_EQ(again.code(), ErrorCode::kBadArg) << "already a member: " << again.to_string();
}

TEST_F(KVStoreTest, BadRequestsAreRefusedAndTheServerKeepsServing) {
  start_cluster();
  Pid s = store_on(1);
  auto r = call(s, tuple("put", 1, 2));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->match({"error", {"badarg", _bin}})) << r->to_string();
  r = call(s, tuple("put", bin("k"), bin("v"), map({{"ttl", -5}})));
  EXPECT_TRUE(r->match({"error", {"badarg", _bin}})) << r->to_string();
  r = call(s, tuple("frobnicate", 1));
  EXPECT_TRUE(r->match({"error", {"badarg", _bin}})) << r->to_string();
  // Atoms are taken as their text (nodusctl's JSON strings are atoms).
  r = call(s, tuple("put", atom("greeting"), atom("hello")));
  EXPECT_EQ(*r, Term("ok"));
  EXPECT_EQ(*KVStore::get(s, "greeting"), Value("hello"));
}

TEST_F(KVStoreTest, StartIsRefusedWithoutTheStore) {
  auto lone = nodus::testing::start_loopback_node("lone");
  Inbox me(*lone);
  auto r = KVStore::start_link(*lone);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().to_string().find("needs the store"), std::string::npos)
      << r.error().to_string();
}

TEST_F(KVStoreTest, ConcurrentWritersOfDifferentAndTheSameKeysLoseNothing) {
  start_cluster();
  Pid s1 = store_on(1), s2 = store_on(2), s3 = store_on(3);
  const Pid servers[] = {s1, s2, s3};
  constexpr int kWriters = 6, kEach = 10;
  std::atomic<int> failures{0};
  std::vector<Pid> writers;
  std::atomic<int> done{0};
  for (int w = 0; w < kWriters; ++w) {
    const Pid s = servers[w % 3];
    writers.push_back(spawn(node(w % 3 + 1), [&, s, w] {
      for (int i = 0; i < kEach; ++i) {
        // Its own keys...
        if (!KVStore::put(s, numbered(numbered("w", w).append(":").c_str(), i), "x").ok()) {
          ++failures;
        }
        // ...the same key as every other writer...
        if (!KVStore::put(s, "shared", numbered("w", w)).ok()) ++failures;
        // ...and a counter every writer increments in a transaction.
        for (int attempt = 0;; ++attempt) {
          auto r = KVStore::transaction(
              s, {"{c}.count"}, [](const kv::TxnSnapshot& v) -> std::optional<kv::TxnWrites> {
                const auto& now = v.at("{c}.count");
                const int n = now.empty() ? 0 : std::stoi(now[0]);
                return kv::TxnWrites{{"{c}.count", std::to_string(n + 1)}};
              });
          if (r.ok() && r->committed) break;
          if (r.ok() || r.error().code() != kv::kVersionMismatch || attempt == 20) {
            ++failures;
            break;
          }
        }
      }
      ++done;
    }));
  }
  ASSERT_TRUE(eventually([&] { return done.load() == kWriters; }, 60s));
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(*KVStore::get(s1, "{c}.count"), Value(std::to_string(kWriters * kEach)))
      << "no increment lost";
  for (int w = 0; w < kWriters; ++w) {
    for (int i = 0; i < kEach; ++i) {
      EXPECT_EQ(*KVStore::get(s2, numbered(numbered("w", w).append(":").c_str(), i)), Value("x"));
    }
  }
  auto shared = KVStore::get(s3, "shared");
  ASSERT_OK(shared);
  ASSERT_TRUE(*shared);
  EXPECT_EQ(shared->value()[0], 'w') << "the shared key holds one writer's value";
  EXPECT_EQ(KVStore::keys(s1, "w*")->size(), static_cast<std::size_t>(kWriters * kEach));
}

}  // namespace
