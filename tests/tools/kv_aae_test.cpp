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

}  // namespace
