// Active anti-entropy end to end: three real nodusd processes (cluster-configs/local-3 copied,
// nodusd_cluster.hpp) on the memory engine with short exchange intervals; one is killed with
// SIGKILL and started again, empty, and gets every key back through exchanges alone: no client
// reads anything meanwhile (the cluster's get count stays 0) until its keys equal the others'.
#include <atomic>
#include <mutex>

#include "nodusd_cluster.hpp"

namespace {

using namespace nodus::test;
using nodus::testing::numbered;

class KvAaeTest : public NodusdClusterTest {
 protected:
  void SetUp() override { copy_cluster("local-3", "720", "920"); }

  double gets() {
    double sum = 0;
    for (int i = 1; i <= 3; ++i) sum += metric(i, "nodus_kv_requests_total", "op=\"get\"");
    return sum;
  }
};

TEST_F(KvAaeTest, ANodeRestartedEmptyConvergesByAntiEntropyWithNoClientReads) {
  configure("replicas", "3");
  configure("aae", "on");
  configure("aae_exchange_interval_ms", "300");
  configure("aae_concurrency", "2");
  configure("aae_repairs_per_second", "5000");
  up();
  // 120 keys through the three nodes (4 writers); with N = 3 of 3 nodes every node holds all.
  constexpr int kKeys = 120;
  std::atomic<int> failed{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (int i = t; i < kKeys; i += 4) {
        const std::string key = numbered("aae:", i);
        Outcome o = ctl(1 + i % 3, {"kv", "put", key, numbered("v", i), "--w", "3"});
        if (o.code != 0) ++failed;
      }
    });
  }
  for (auto& w : writers) w.join();
  ASSERT_EQ(failed.load(), 0);
  ASSERT_TRUE(eventually([&] { return metric(1, "nodus_kv_keys") == kKeys; }, 10s))
      << metric(1, "nodus_kv_keys");
  ASSERT_TRUE(kill9(3)) << "n3 did not die";
  up();  // n3 again: the memory engine, so empty
  ASSERT_TRUE(eventually([&] { return metric(3, "nodus_kv_keys") >= 0; }, 10s));
  EXPECT_LT(metric(3, "nodus_kv_keys"), kKeys) << "n3 came back with its keys: not empty";
  // Converged: n3 holds every key again, and equal trees (no exchange finds a difference).
  const bool converged = eventually([&] { return metric(3, "nodus_kv_keys") == kKeys; }, 60s);
  EXPECT_TRUE(converged) << "n3 holds " << metric(3, "nodus_kv_keys") << " of " << kKeys;
  EXPECT_EQ(gets(), 0) << "something read: the repair may have been read repair";
  double repaired = 0;
  for (int i = 1; i <= 3; ++i) repaired += metric(i, "nodus_kv_aae_keys_repaired_total");
  EXPECT_GE(repaired, kKeys);
  EXPECT_GT(metric(3, "nodus_kv_aae_seconds_total") + metric(1, "nodus_kv_aae_seconds_total"), 0);
  // What n3 got back reads back, every replica answering (R = 3).
  for (int i = 0; i < kKeys; i += 17) {
    Outcome o = ctl(3, {"kv", "get", numbered("aae:", i), "--r", "3"});
    EXPECT_EQ(o.code, 0) << o.err;
    EXPECT_NE(o.out.find(numbered("v", i)), std::string::npos) << o.out;
  }
}

// TTL across a partition heal: n3 is cut off (SIGSTOP: its peers see it down) while a key it
// holds as v1 is overwritten by v2 with a 1 s ttl; v2 expires and n1 and n2 sweep it into a
// tombstone. n3 comes back (SIGCONT) with v1, which v2's tombstone supersedes: once anti-entropy
// and read repair have reached n3, the key reads as absent through every node with one reply or
// all three, and stays so over further exchanges: v1 never comes back, nor does v2.
TEST_F(KvAaeTest, AnExpiredKeyStaysGoneOnEveryNodeAfterAPartitionHeals) {
  configure("replicas", "3");
  configure("aae", "on");
  configure("aae_exchange_interval_ms", "300");
  configure("aae_concurrency", "2");
  configure("ttl_sweep_interval_ms", "200");
  up();
  const std::string key = "ttl:heal";
  ASSERT_EQ(ctl(1, {"kv", "put", key, "v1", "--w", "3"}).code, 0);
  const pid_t n3 = pid_of(3);
  ASSERT_GT(n3, 1);
  ASSERT_EQ(0, ::kill(n3, SIGSTOP));
  struct Resume {  // n3 is never left stopped, whatever fails below
    pid_t pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{n3};
  ASSERT_TRUE(eventually([&] { return sees(1, 3, "down") && sees(2, 3, "down"); }, 20s))
      << "n1 and n2 did not see n3 go down";
  json v1 = ctl_json(1, {"kv", "get", key});
  ASSERT_EQ(v1.value("value", ""), "v1") << v1.dump();
  ASSERT_EQ(
      ctl(1, {"kv", "put", key, "v2", "--ttl", "1", "--context", v1.value("context", "")}).code, 0);
  ASSERT_TRUE(eventually(
      [&] {
        return ctl(1, {"kv", "get", key}).code == 1;
      },
      10s))
      << "v2 did not expire";
  ASSERT_TRUE(eventually(
      [&] {
        return metric(1, "nodus_kv_expired_total") >= 1 && metric(2, "nodus_kv_expired_total") >= 1;
      },
      10s))
      << "n1 and n2 did not sweep it";
  ASSERT_EQ(0, ::kill(n3, SIGCONT));
  ASSERT_TRUE(eventually([&] { return sees(1, 3, "up") && sees(3, 1, "up"); }, 30s))
      << "the partition did not heal";
  // Absent everywhere, read through each node with one reply (n3's own copy may answer first
  // until it is repaired) and with all three.
  const auto absent_everywhere = [&](std::string* what) {
    for (int i = 1; i <= 3; ++i) {
      for (const char* r : {"1", "3"}) {
        Outcome o = ctl(i, {"kv", "get", key, "--r", r});
        if (o.code != 1) {
          *what = numbered("n", i);
          what->append(" --r ").append(r).append(": exit ").append(std::to_string(o.code));
          what->append(" ").append(o.out).append(o.err);
          return false;
        }
      }
    }
    return true;
  };
  std::string what;
  ASSERT_TRUE(eventually([&] { return absent_everywhere(&what); }, 30s))
      << "never absent on every node: " << what;
  // And it stays so while anti-entropy goes on exchanging (every pair a few times).
  double exchanges = 0;
  for (int i = 1; i <= 3; ++i) exchanges += metric(i, "nodus_kv_aae_exchanges_total");
  const auto more = [&] {
    double now = 0;
    for (int i = 1; i <= 3; ++i) now += metric(i, "nodus_kv_aae_exchanges_total");
    return now >= exchanges + 30;
  };
  for (int round = 0; round < 200 && !more(); ++round) {
    ASSERT_TRUE(absent_everywhere(&what)) << "the key came back: " << what;
  }
  ASSERT_TRUE(more()) << "anti-entropy did not exchange";
  ASSERT_TRUE(absent_everywhere(&what)) << "the key came back: " << what;
}

}  // namespace
