// multi_get / multi_put, compare-and-set and transactions on real nodes over loopback ZeroMQ:
// one result per key with some keys failing, create-only and version checks, two clients racing
// on one version (exactly one wins), transactions from many threads on several nodes losing no
// update and never seen half-applied, keys of different partitions refused, hash tags
// co-locating keys, and the term forms of all of them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "loopback_kv.hpp"
#include "nodus/kv/errors.hpp"
#include "nodus/node/gen_server.hpp"

namespace nodus::kv {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::numbered;

class TxnTest : public LoopbackKvTest {};

RequestOptions if_version(std::string v) {
  RequestOptions o;
  o.if_version = std::move(v);
  return o;
}
RequestOptions with_context(std::string c) {
  RequestOptions o;
  o.context = std::move(c);
  return o;
}
RequestOptions with_r(std::uint32_t r) {
  RequestOptions o;
  o.r = r;
  return o;
}

TEST_F(TxnTest, HashTagsPutKeysInOnePartition) {
  EXPECT_EQ(hash_tag("{user1}.name"), "user1");
  EXPECT_EQ(hash_tag("a{}b"), "a{}b");  // an empty tag: the whole key
  EXPECT_EQ(hash_tag("x{y"), "x{y");
  for (int i = 0; i < 50; ++i) {
    const std::string tag = numbered("{u", i) + "}";
    EXPECT_EQ(partition_of(tag + ".a", kPartitions), partition_of(tag + ".b", kPartitions));
    EXPECT_EQ(partition_of(tag + ".a", kPartitions), partition_of(numbered("u", i), kPartitions));
  }
}

TEST_F(TxnTest, MultiGetAndMultiPutAnswerOncePerKeyAndAFailingKeyFailsAlone) {
  start_cluster(3, 3, [](Options& o) { o.max_value_bytes = 1000; });
  std::vector<std::pair<std::string, std::string>> kvs;
  for (int i = 0; i < 40; ++i) kvs.emplace_back(numbered("m", i), numbered("v", i));
  kvs.emplace_back("big", std::string(2000, 'x'));  // above max_value_bytes
  kvs.emplace_back("", "empty key");
  auto put = client(1).multi_put(kvs);
  ASSERT_EQ(put.size(), kvs.size());
  std::set<std::uint32_t> parts;
  for (int i = 0; i < 40; ++i) {
    ASSERT_OK(put[i]);
    EXPECT_FALSE(put[i]->empty());
    parts.insert(partition_of(kvs[i].first, kPartitions));
  }
  EXPECT_GT(parts.size(), 8u);  // the batch spans most partitions
  EXPECT_EQ(put[40].error().code(), ErrorCode::kValueTooLarge);
  EXPECT_EQ(put[41].error().code(), ErrorCode::kBadArg);

  std::vector<std::string> keys;
  for (int i = 0; i < 40; ++i) keys.push_back(numbered("m", i));
  keys.push_back("missing");
  keys.push_back("big");
  // From every node, and from a node outside the ring through n2.
  auto outsider = testing::start_loopback_node("client", "kv-cookie", 1000ms);
  outsider->connect(node(2).endpoint());
  Client remote(*outsider, "n2");
  ASSERT_TRUE(eventually([&] { return remote.get("m0").ok(); }));
  for (Client* c : {&client(1), &client(2), &client(3), &remote}) {
    auto got = c->multi_get(keys);
    ASSERT_EQ(got.size(), keys.size());
    for (int i = 0; i < 40; ++i) {
      ASSERT_OK(got[i]);
      EXPECT_EQ(got[i]->values, std::vector<std::string>{numbered("v", i)});
      EXPECT_EQ(got[i]->context, *put[i]);
    }
    EXPECT_EQ(got[40].error().code(), ErrorCode::kNotFound);
    EXPECT_EQ(got[41].error().code(), ErrorCode::kNotFound);
  }
  // Compare-and-set and a transaction from the node outside the ring, on keys whose first
  // primary is not n2: n2 relays them there (that primary cannot reach the caller).
  std::string tag;
  for (int i = 0; i < 1000 && tag.empty(); ++i) {
    if (primaries(numbered("{r", i) + "}")[0] != 2) tag = numbered("{r", i) + "}";
  }
  ASSERT_FALSE(tag.empty());
  ASSERT_OK(remote.put(tag + "a", "1", if_version("")));
  EXPECT_EQ(remote.put(tag + "a", "2", if_version("")).error().code(), kVersionMismatch);
  auto tx = remote.transaction({tag + "a", tag + "b"}, [&](const TxnSnapshot& s) {
    return std::optional<TxnWrites>(TxnWrites{{tag + "b", s.at(tag + "a").at(0) + "+"}});
  });
  ASSERT_OK(tx);
  EXPECT_TRUE(tx->committed);
  EXPECT_EQ(client(3).get(tag + "b")->values, std::vector<std::string>{"1+"});
  // A quorum above N fails every key of the batch, each with its own error.
  auto bad = client(1).multi_get({"m0", "m1"}, with_r(4));
  ASSERT_EQ(bad.size(), 2u);
  EXPECT_EQ(bad[0].error().code(), ErrorCode::kBadArg);
  EXPECT_EQ(bad[1].error().code(), ErrorCode::kBadArg);
  EXPECT_TRUE(client(1).multi_get({}).empty());

  // The term forms.
  Inbox in(node(3));
  auto t = call(named("nodus_kv"),
                tuple("multi_get", Term(List{bin("m1"), bin("missing")}), map({{"r", 2}})));
  ASSERT_OK(t);
  auto m = t->match({"ok", _list});
  ASSERT_TRUE(m) << t->to_string();
  ASSERT_EQ(m[0].as_list().size(), 2u);
  EXPECT_TRUE(m[0].as_list()[0].match({"ok", Term(List{bin("v1")}), _bin}));
  EXPECT_EQ(m[0].as_list()[1], tuple("error", "not_found"));
  t = call(named("nodus_kv"),
           tuple("multi_put", Term(List{tuple(bin("t1"), bin("x")), tuple(bin("t2"), bin("y"))})));
  ASSERT_OK(t);
  m = t->match({"ok", _list});
  ASSERT_TRUE(m) << t->to_string();
  ASSERT_EQ(m[0].as_list().size(), 2u);
  EXPECT_TRUE(m[0].as_list()[1].match({"ok", _bin}));
  EXPECT_EQ(client(1).get("t2")->values, std::vector<std::string>{"y"});
  t = call(named("nodus_kv"), tuple("multi_put", Term(List{bin("t1")})));
  ASSERT_OK(t);
  EXPECT_TRUE(t->match({"error", {"badarg", _bin}})) << t->to_string();
}

TEST_F(TxnTest, CompareAndSetCreatesOnlyWhenAbsentAndWritesOnlyOverTheVersionGiven) {
  start_cluster(3);
  // Create-only: the first succeeds, the second is told what is there.
  auto c1 = client(1).put("cas", "one", if_version(""));
  ASSERT_OK(c1);
  GetResult current;
  auto again = client(2).put("cas", "other", if_version(""), &current);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code(), kVersionMismatch);
  EXPECT_EQ(current.values, std::vector<std::string>{"one"});
  EXPECT_EQ(current.context, *c1);
  // Over the version given: the context a put returned, then one a get returned.
  auto c2 = client(3).put("cas", "two", if_version(*c1));
  ASSERT_OK(c2);
  auto stale = client(1).put("cas", "stale", if_version(*c1), &current);
  EXPECT_EQ(stale.error().code(), kVersionMismatch);
  EXPECT_EQ(current.values, std::vector<std::string>{"two"});
  EXPECT_EQ(current.context, *c2);
  auto got = client(2).get("cas");
  ASSERT_OK(got);
  EXPECT_EQ(got->context, *c2);
  ASSERT_OK(client(2).put("cas", "three", if_version(got->context)));
  for (int i = 1; i <= 3; ++i) {
    EXPECT_TRUE(
        eventually([&] { return replica_values(i, "cas") == std::vector<std::string>{"three"}; }));
  }
  // A plain put between a read and the CAS makes the CAS fail.
  got = client(1).get("cas");
  ASSERT_OK(got);
  ASSERT_OK(client(1).put("cas", "blind", with_context(got->context)));
  EXPECT_EQ(client(3).put("cas", "late", if_version(got->context)).error().code(),
            kVersionMismatch);
  // Delete with a version, then create-only works again (a tombstone is absent).
  got = client(1).get("cas");
  ASSERT_OK(got);
  ASSERT_OK(client(2).del("cas", if_version(got->context)));
  EXPECT_EQ(client(3).get("cas").error().code(), ErrorCode::kNotFound);
  ASSERT_OK(client(3).put("cas", "reborn", if_version("")));
  EXPECT_EQ(client(1).get("cas")->values, std::vector<std::string>{"reborn"});
  // A context of another key is refused, not compared.
  auto other = client(1).put("other", "x");
  ASSERT_OK(other);
  EXPECT_EQ(client(1).put("cas", "y", if_version(*other)).error().code(), ErrorCode::kBadArg);
}

TEST_F(TxnTest, TwoClientsRacingOnOneVersionExactlyOneWins) {
  start_cluster(3);
  auto ctx = client(1).put("race", "0");
  ASSERT_OK(ctx);
  std::string version = *ctx;
  for (int round = 1; round <= 20; ++round) {
    std::atomic<int> wins{0}, losses{0};
    std::vector<std::thread> racers;
    for (int c = 1; c <= 2; ++c) {
      racers.emplace_back([&, c] {
        // Each racer through another node: n1 and n3 (which forward or coordinate).
        auto r = client(c == 1 ? 1 : 3).put("race", numbered("by", c), if_version(version));
        if (r.ok()) {
          ++wins;
        } else if (r.error().code() == kVersionMismatch) {
          ++losses;
        }
      });
    }
    for (auto& t : racers) t.join();
    ASSERT_EQ(wins.load(), 1) << "round " << round;
    ASSERT_EQ(losses.load(), 1) << "round " << round;
    auto got = client(2).get("race");
    ASSERT_OK(got);
    ASSERT_EQ(got->values.size(), 1u);  // no siblings: the loser wrote nothing
    version = got->context;
  }
}

// Moves one unit from {acct}.a to {acct}.b per transaction, from several threads on every
// node: no update is lost (a + b stays 0, and b counts every commit), and a reader running
// transactions at the same time never sees one half-applied.
TEST_F(TxnTest, TransactionsFromManyClientsAreAtomicAndLoseNoUpdate) {
  start_cluster(3);
  constexpr int kThreads = 4, kEach = 15;
  std::atomic<bool> stop{false};
  std::atomic<int> seen{0}, torn{0};
  auto as_int = [](const TxnSnapshot& s, const std::string& k) {
    auto it = s.find(k);
    return it == s.end() || it->second.empty() ? 0 : std::stoi(it->second[0]);
  };
  std::thread reader([&] {
    for (int n = 0; n < 100000 && !stop.load(); ++n) {
      auto r = client(2).transaction({"{acct}.a", "{acct}.b"}, [&](const TxnSnapshot& s) {
        ++seen;
        if (as_int(s, "{acct}.a") + as_int(s, "{acct}.b") != 0) ++torn;
        return std::optional<TxnWrites>();  // abort: a read only
      });
      if (r.ok()) {
        EXPECT_FALSE(r->committed);
      }
    }
  });
  std::vector<std::thread> writers;
  std::atomic<int> committed{0};
  std::atomic<int> failed{0}, attempts{0};
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        auto r = client(1 + t % 3).transaction(
            {"{acct}.a", "{acct}.b"},
            [&](const TxnSnapshot& s) {
              return std::optional<TxnWrites>(
                  TxnWrites{{"{acct}.a", std::to_string(as_int(s, "{acct}.a") - 1)},
                            {"{acct}.b", std::to_string(as_int(s, "{acct}.b") + 1)}});
            },
            {.max_attempts = 100});
        if (r.ok() && r->committed) {
          ++committed;
          attempts += static_cast<int>(r->attempts);
        } else {
          ++failed;
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  stop = true;
  reader.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(committed.load(), kThreads * kEach);
  EXPECT_GT(seen.load(), 0);
  EXPECT_EQ(torn.load(), 0);
  RecordProperty("attempts", attempts.load());  // above the commits when writers raced
  auto got = client(3).multi_get({"{acct}.a", "{acct}.b"});
  ASSERT_OK(got[0]);
  ASSERT_OK(got[1]);
  EXPECT_EQ(got[0]->values, std::vector<std::string>{std::to_string(-kThreads * kEach)});
  EXPECT_EQ(got[1]->values, std::vector<std::string>{std::to_string(kThreads * kEach)});
  // Every replica holds both keys' last write.
  for (int i = 1; i <= 3; ++i) {
    EXPECT_TRUE(eventually([&] {
      return replica_values(i, "{acct}.b") ==
             std::vector<std::string>{std::to_string(kThreads * kEach)};
    }));
  }
}

TEST_F(TxnTest, KeysOfDifferentPartitionsAreRefusedAndNothingIsWritten) {
  start_cluster(3);
  std::string a = "plain-a", b;
  for (int i = 0; i < 1000 && b.empty(); ++i) {
    if (partition_of(numbered("plain-", i), kPartitions) != partition_of(a, kPartitions)) {
      b = numbered("plain-", i);
    }
  }
  ASSERT_FALSE(b.empty());
  bool ran = false;
  auto r = client(1).transaction({a, b}, [&](const TxnSnapshot&) {
    ran = true;
    return std::optional<TxnWrites>(TxnWrites{{a, "x"}});
  });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kCrossPartition);
  EXPECT_FALSE(ran);
  EXPECT_EQ(client(1).get(a).error().code(), ErrorCode::kNotFound);
  // With one hash tag they go together; a delete and a put in one commit.
  RequestOptions all;
  all.w = 3;  // on every replica: the first primary reads its own (a plain put may lag there)
  ASSERT_OK(client(1).put("{t}.old", "1", all));
  auto ok = client(2).transaction({"{t}.old", "{t}.new"}, [](const TxnSnapshot& s) {
    return std::optional<TxnWrites>(
        TxnWrites{{"{t}.old", std::nullopt}, {"{t}.new", s.at("{t}.old").at(0)}});
  });
  ASSERT_OK(ok);
  EXPECT_TRUE(ok->committed);
  EXPECT_EQ(ok->attempts, 1u);
  EXPECT_EQ(client(3).get("{t}.old").error().code(), ErrorCode::kNotFound);
  EXPECT_EQ(client(3).get("{t}.new")->values, std::vector<std::string>{"1"});
  EXPECT_EQ(client(3).get("{t}.new")->context, ok->context.at("{t}.new"));
  // A function that writes a key it did not name is refused.
  auto stray = client(1).transaction({"{t}.new"}, [](const TxnSnapshot&) {
    return std::optional<TxnWrites>(TxnWrites{{"{t}.other", "x"}});
  });
  EXPECT_EQ(stray.error().code(), ErrorCode::kBadArg);
}

TEST_F(TxnTest, TheTermFormsOfCompareAndSetAndTransactions) {
  start_cluster(3);
  Inbox in(node(2));
  const Dest kv = named("nodus_kv");
  auto r = call(kv, tuple("put", bin("{x}.k"), bin("v1"), map({{"if_version", atom("absent")}})));
  ASSERT_OK(r);
  auto m = r->match({"ok", _bin});
  ASSERT_TRUE(m) << r->to_string();
  const std::string ctx = m[0].as_bin();
  r = call(kv, tuple("put", bin("{x}.k"), bin("v2"), map({{"if_version", atom("absent")}})));
  ASSERT_OK(r);
  auto mm = r->match({"error", {"version_mismatch", _bin, _list}});
  ASSERT_TRUE(mm) << r->to_string();
  EXPECT_EQ(mm[1].as_list().at(0), tuple(Term(List{bin("v1")}), bin(ctx)));
  r = call(kv, tuple("txn",
                     Term(List{tuple("put", bin("{x}.k"), bin("v3"), bin(ctx)),
                               tuple("put", bin("{x}.j"), bin("w"), atom("absent")),
                               tuple("read", bin("{x}.none"))}),
                     map({{"w", 3}})));
  ASSERT_OK(r);
  m = r->match({"ok", _list});
  ASSERT_TRUE(m) << r->to_string();
  ASSERT_EQ(m[0].as_list().size(), 3u);
  EXPECT_TRUE(m[0].as_list()[0].match({Term(List{bin("v3")}), _bin}));
  EXPECT_EQ(m[0].as_list()[2], tuple(Term(List{}), bin("")));
  // Bad input gets errors naming it.
  r = call(kv, tuple("txn", Term(List{tuple("put", bin("a"), bin("1")), tuple("read", bin("b"))})));
  ASSERT_OK(r);
  EXPECT_TRUE(r->match({"error", {"cross_partition", _bin}})) << r->to_string();
  r = call(kv, tuple("txn", Term(List{tuple("frob", bin("a"))})));
  ASSERT_OK(r);
  EXPECT_TRUE(r->match({"error", {"badarg", _bin}})) << r->to_string();
  r = call(kv, tuple("put", bin("k"), bin("v"), map({{"if_version", 7}})));
  ASSERT_OK(r);
  EXPECT_TRUE(r->match({"error", {"badarg", _bin}})) << r->to_string();
  r = call(kv, tuple("txn", Term(List{})));
  ASSERT_OK(r);
  EXPECT_TRUE(r->match({"error", {"badarg", _bin}})) << r->to_string();
}

// On RocksDB with sync = always, a commit is one WriteBatch per replica and is acknowledged once
// synced (the vnode's group commit): every replica holds every key of it.
TEST_F(TxnTest, CommitsOnDurableEnginesReachEveryReplica) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("nodus-kv-txn-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  int n = 0;
  start_cluster(3, 3, [&](Options& o) {
    o.data_dir = (dir / numbered("n", ++n)).string();
    o.sync = SyncMode::kAlways;
  });
  auto r = client(1).transaction({"{d}.a", "{d}.b", "{d}.c"}, [](const TxnSnapshot&) {
    return std::optional<TxnWrites>(TxnWrites{{"{d}.a", "1"}, {"{d}.b", "2"}, {"{d}.c", "3"}});
  });
  ASSERT_OK(r);
  EXPECT_TRUE(r->committed);
  ASSERT_OK(client(2).put("{d}.a", "4", if_version(r->context.at("{d}.a"))));
  for (int i = 1; i <= 3; ++i) {
    EXPECT_TRUE(eventually([&] {
      return replica_values(i, "{d}.a") == std::vector<std::string>{"4"} &&
             replica_values(i, "{d}.b") == std::vector<std::string>{"2"} &&
             replica_values(i, "{d}.c") == std::vector<std::string>{"3"};
    })) << "n"
        << i;
  }
  clients_.clear();
  for (auto& node : nodes_) node.reset();
  std::filesystem::remove_all(dir);
}

// With the first primary cut off, the next primary up coordinates (the first is down from
// its point of view), so transactions go on; a node that alone is primary-less answers
// unavailable rather than running one on a fallback.
TEST_F(TxnTest, WithTheFirstPrimaryDownTheNextOneCoordinates) {
  start_cluster(4, 2);
  std::string key;
  for (int i = 0; i < 1000 && key.empty(); ++i) {
    const auto prim = primaries(numbered("{p", i) + "}.k");
    if (prim[0] != 1 && prim[1] != 1) key = numbered("{p", i) + "}.k";
  }
  ASSERT_FALSE(key.empty());
  const auto prim = primaries(key);
  ASSERT_OK(client(1).put(key, "1", if_version("")));
  ASSERT_TRUE(isolate(prim[0]));
  auto r = client(1).transaction({key}, [](const TxnSnapshot& s) {
    return std::optional<TxnWrites>(TxnWrites{{s.begin()->first, "2"}});
  });
  ASSERT_OK(r);
  EXPECT_TRUE(r->committed);
  EXPECT_TRUE(
      eventually([&] { return replica_values(prim[1], key) == std::vector<std::string>{"2"}; }));
  ASSERT_TRUE(isolate(prim[1]));  // both primaries away from n1 (and the rest)
  auto none = client(1).put(key, "3", if_version(""));
  EXPECT_EQ(none.error().code(), ErrorCode::kUnavailable);
}

// Compare-and-set with a ttl: the ttl applies to the new value, counted at the first primary;
// once it expired the key is absent again, so a create-only put succeeds. A delete refuses one.
TEST_F(TxnTest, CompareAndSetWithATtlExpiresTheNewValue) {
  start_cluster(3);
  RequestOptions create = if_version("");
  create.ttl = 60s;
  auto ctx = client(1).put("cas:t", "v1", create);
  ASSERT_OK(ctx);
  auto got = client(2).get("cas:t");
  ASSERT_OK(got);
  EXPECT_EQ(got->values, std::vector<std::string>{"v1"});
  ASSERT_TRUE(got->ttl.has_value()) << "the value carries its expiry";
  EXPECT_GT(*got->ttl, 50s);
  EXPECT_LE(*got->ttl, 60s);

  RequestOptions over = if_version(*ctx);
  over.ttl = 300ms;
  ASSERT_OK(client(3).put("cas:t", "v2", over));
  EXPECT_TRUE(eventually([&] {
    auto g = client(2).get("cas:t");
    return !g.ok() && g.error().code() == ErrorCode::kNotFound;
  })) << "the new value expires after its own ttl";
  ASSERT_OK(client(1).put("cas:t", "v3", if_version(""))) << "expired reads as absent";
  got = client(3).get("cas:t");
  ASSERT_OK(got);
  EXPECT_EQ(got->values, std::vector<std::string>{"v3"});
  EXPECT_FALSE(got->ttl.has_value()) << "a put without a ttl never expires";

  RequestOptions del = if_version("");
  del.ttl = 1000ms;
  auto refused = client(1).del("cas:u", del);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code(), ErrorCode::kBadArg);
}

// keep_ttl (what the Redis endpoint's INCR asks for): the new value expires when the one it
// replaces would have; without it, a compare-and-set's value has only its own ttl. The term
// forms: a put's options map, and a transaction's put with an options map.
TEST_F(TxnTest, KeepTtlGivesTheNewValueTheExpiryOfTheOneItReplaces) {
  start_cluster(3);
  Inbox in(node(1));
  const Dest kv = named("nodus_kv");
  RequestOptions with_ttl;
  with_ttl.ttl = 60s;
  ASSERT_OK(client(1).put("{k}.a", "1", with_ttl));
  auto before = client(1).get("{k}.a");
  ASSERT_OK(before);
  ASSERT_TRUE(before->ttl.has_value());
  auto r = call(kv, tuple("put", bin("{k}.a"), bin("2"),
                          map({{"if_version", bin(before->context)}, {"keep_ttl", true}})));
  ASSERT_OK(r);
  ASSERT_TRUE(r->match({"ok", _bin})) << r->to_string();
  auto after = client(2).get("{k}.a");
  ASSERT_OK(after);
  EXPECT_EQ(after->values, std::vector<std::string>{"2"});
  ASSERT_TRUE(after->ttl.has_value()) << "the ttl was kept";
  EXPECT_LE(*after->ttl, *before->ttl);
  EXPECT_GT(*after->ttl, 50s);

  r = call(kv, tuple("put", bin("{k}.a"), bin("3"), map({{"if_version", bin(after->context)}})));
  ASSERT_OK(r);
  ASSERT_TRUE(r->match({"ok", _bin})) << r->to_string();
  after = client(2).get("{k}.a");
  ASSERT_OK(after);
  EXPECT_FALSE(after->ttl.has_value()) << "without keep_ttl the ttl is gone";

  r = call(kv, tuple("txn",
                     Term(List{tuple("put", bin("{k}.b"), bin("x"),
                                     map({{"if_version", atom("absent")}, {"ttl", 30000}})),
                               tuple("put", bin("{k}.a"), bin("4"), map({{"keep_ttl", true}}))})));
  ASSERT_OK(r);
  ASSERT_TRUE(r->match({"ok", _list})) << r->to_string();
  auto b = client(3).get("{k}.b");
  ASSERT_OK(b);
  ASSERT_TRUE(b->ttl.has_value());
  EXPECT_LE(*b->ttl, 30s);
  auto a = client(3).get("{k}.a");
  ASSERT_OK(a);
  EXPECT_EQ(a->values, std::vector<std::string>{"4"});
  EXPECT_FALSE(a->ttl.has_value()) << "kept: the value it replaced never expired";

  // Bad options are refused, naming what is wrong.
  for (const Term& bad :
       {tuple("put", bin("{k}.a"), bin("5"),
              map({{"if_version", atom("absent")}, {"ttl", 10}, {"keep_ttl", true}})),
        tuple("put", bin("{k}.a"), bin("5"), map({{"if_version", atom("absent")}, {"ttl", 0}})),
        tuple("put", bin("{k}.a"), bin("5"),
              map({{"if_version", atom("absent")}, {"keep_ttl", 1}})),
        tuple("delete", bin("{k}.a"), map({{"if_version", atom("absent")}, {"ttl", 10}})),
        tuple("txn", Term(List{tuple("put", bin("{k}.a"), bin("5"), map({{"frob", 1}}))}))}) {
    r = call(kv, bad);
    ASSERT_OK(r);
    EXPECT_TRUE(r->match({"error", {"badarg", _bin}}))
        << bad.to_string() << " -> " << r->to_string();
  }
  EXPECT_EQ(client(1).get("{k}.a")->values, std::vector<std::string>{"4"}) << "nothing written";
}

// A node that sees the first primary down sends a transaction to the second; the second, which
// sees the first up, must not run it (the first may be running one on the same keys: two
// coordinators would both accept one if_version) but sends it on to the first.
TEST_F(TxnTest, ATransactionSentToAPrimaryThatSeesAnEarlierOneUpGoesOnToIt) {
  start_cluster(3);
  const std::string key = "{fw}.k";
  const auto prim = primaries(key);
  const int first = prim[0], second = prim[1], third = prim[2];
  cut(third, first);
  ASSERT_TRUE(
      eventually([&] { return sees(third, first, false) && sees(first, third, false); }, 10s));
  ASSERT_TRUE(sees(second, first) && sees(third, second) && sees(first, second));
  auto puts = [&](int i) { return stats(node(i))->puts; };
  auto forwarded = [&](int i) { return stats(node(i))->forwarded; };
  const auto puts1 = puts(first), puts2 = puts(second), fwd2 = forwarded(second);
  const auto fwd3 = forwarded(third);
  ASSERT_OK(client(third).put(key, "v", if_version("")));
  EXPECT_EQ(forwarded(third) - fwd3, 1u) << "the third sent it to the second";
  EXPECT_EQ(forwarded(second) - fwd2, 1u) << "the second sent it on";
  EXPECT_EQ(puts(second) - puts2, 0u) << "the second did not coordinate it";
  EXPECT_EQ(puts(first) - puts1, 1u) << "the first primary coordinated it";
  EXPECT_EQ(client(second).put(key, "w", if_version("")).error().code(), kVersionMismatch);
  cut(third, first, false);
}

}  // namespace
}  // namespace nodus::kv
