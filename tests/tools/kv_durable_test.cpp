// The store on disk, end to end: three real nodusd processes (cluster-configs/local-3 copied,
// nodusd_cluster.hpp) with kv.data_dir and kv.sync = always, driven through the real nodusctl
// while nodes are killed with SIGKILL during writes and restarted: every acknowledged write is
// read back after one node's kill and after all three were killed at once; a member restarted
// alone comes back with its ring; hints a fallback held survive its kill and reach the primary.
#include <atomic>
#include <mutex>

#include "nodusd_cluster.hpp"

namespace {

using namespace nodus::test;
using nodus::testing::numbered;

class KvDurableTest : public NodusdClusterTest {
 protected:
  void SetUp() override { copy_cluster("local-3", "720", "920"); }

  void durable(int replicas) {
    configure("data_dir", [](int i) { return node_file("data/n", i, ""); });
    configure("sync", [](int) { return std::string("always"); });
    configure("replicas", [replicas](int) { return std::to_string(replicas); });
    configure("durable_write_quorum", [](int) { return std::string("2"); });
  }

  // Writers: `threads` threads putting numbered keys through nodes 1..3 in turn (one nodusctl
  // per put), each at most `per_thread` puts, until stop; what was acknowledged is kept.
  struct Writers {
    std::mutex mu;
    std::map<std::string, std::string> acked;  // guarded by mu
    std::atomic<int> tried{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    void join() {
      stop = true;
      for (auto& t : threads) t.join();
    }
  };
  void start_writers(Writers& w, int threads, int per_thread, const std::string& prefix) {
    for (int t = 0; t < threads; ++t) {
      w.threads.emplace_back([this, &w, t, per_thread, prefix] {
        for (int i = 0; i < per_thread && !w.stop.load(); ++i) {
          const std::string key = prefix + numbered("", t) + numbered(":", i);
          const std::string value = numbered("value-", t * 100000 + i);
          const int via = 1 + (t + i) % 3;
          Outcome o = ctl(via, {"kv", "put", key, value, "--timeout", "3"});
          if (o.code == 0) {
            std::lock_guard<std::mutex> lock(w.mu);
            w.acked[key] = value;
          }
          ++w.tried;
        }
      });
    }
  }
};

TEST_F(KvDurableTest, EveryAcknowledgedWriteSurvivesAKill9OfOneNodeAndItsRestart) {
  durable(3);
  up();
  Writers w;
  start_writers(w, 4, 60, "one:");
  const bool going = eventually([&] { return w.tried.load() >= 40; }, 60s);
  const bool killed = kill9(3);
  // Writes go on against the two survivors for a while (those through n3 fail).
  const int at_kill = w.tried.load();
  eventually([&] { return w.tried.load() >= at_kill + 40; }, 60s);
  w.join();
  ASSERT_TRUE(going) << "the writers did not get going";
  ASSERT_TRUE(killed) << "n3 did not die";
  ASSERT_GT(w.acked.size(), 60u);
  up();  // n3 again, on its data
  for (const auto& [key, value] : w.acked) {
    EXPECT_EQ(value, value_on(3, key, "3")) << key << " read with R = 3 through the restarted n3";
  }
  // n3 counted what it kept at its restart (every key has a replica on every node: N = 3).
  EXPECT_TRUE(eventually([&] { return metric(3, "nodus_kv_keys") >= 40; }, 10s))
      << metric(3, "nodus_kv_keys");
}

TEST_F(KvDurableTest, EveryAcknowledgedWriteSurvivesAKill9OfAllNodesAtOnce) {
  durable(3);
  up();
  Writers w;
  start_writers(w, 4, 200, "all:");
  const bool going = eventually([&] { return w.tried.load() >= 60; }, 90s);
  // All three at once, while the writers run.
  const pid_t pids[3] = {pid_of(1), pid_of(2), pid_of(3)};
  int sent = 0;
  for (pid_t p : pids) sent += p > 1 && ::kill(p, SIGKILL) == 0;
  const bool dead = eventually(
      [&] {
        for (pid_t p : pids) {
          if (::kill(p, 0) == 0) return false;
        }
        return true;
      },
      10s);
  w.join();
  ASSERT_TRUE(going) << "the writers did not get going";
  ASSERT_EQ(3, sent);
  ASSERT_TRUE(dead);
  ASSERT_GT(w.acked.size(), 40u);

  // n2 alone comes back with its ring, from its data, with no peer up.
  const pid_t alone = start_direct(2, {});
  EXPECT_TRUE(eventually(
      [&] {
        Outcome r = ctl(2, {"ring", "--json"});
        if (r.code != 0) return false;
        json j = json::parse(r.out, nullptr, false);
        return j.is_object() && j.value("epoch", 0) >= 1 && j.value("partitions", 0) == 64;
      },
      20s))
      << ctl(2, {"ring", "--json"}).out;
  ASSERT_EQ(0, ::kill(alone, SIGKILL));
  int status = 0;
  ASSERT_EQ(alone, ::waitpid(alone, &status, 0));

  up();  // all three, on their data
  for (const auto& [key, value] : w.acked) {
    EXPECT_EQ(value, value_on(1, key, "3"))
        << key << " read with R = 3 after the whole cluster's kill";
  }
}

TEST_F(KvDurableTest, HintsAFallbackHeldSurviveItsKill9AndReachThePrimary) {
  configure("data_dir", [](int i) { return node_file("data/n", i, ""); });
  up();  // N = 2 as shipped: with n1 down the third node stands in as a fallback
  ASSERT_TRUE(kill9(1));
  ASSERT_TRUE(eventually([&] { return sees(2, 1, "down") && sees(3, 1, "down"); }, 15s));
  std::map<std::string, std::string> written;
  for (int i = 0; i < 24; ++i) {
    const std::string key = numbered("hinted:", i);
    Outcome r = ctl(2, {"kv", "put", key, numbered("v", i)});
    ASSERT_EQ(0, r.code) << key << ": " << r.err;
    written[key] = numbered("v", i);
  }
  // The fallbacks (n2, n3) die at once and come back (n1 still down): their hints are there.
  ASSERT_TRUE(kill9(2));
  ASSERT_TRUE(kill9(3));
  const pid_t n2 = start_direct(2, {});
  const pid_t n3 = start_direct(3, {});
  ASSERT_GT(n2, 1);
  ASSERT_GT(n3, 1);
  auto pending = [&] {
    const double a = metric(2, "nodus_kv_hints_pending"), b = metric(3, "nodus_kv_hints_pending");
    return a < 0 || b < 0 ? -1.0 : a + b;
  };
  ASSERT_TRUE(eventually([&] { return pending() > 0; }, 20s)) << "hints recovered at start";
  // n1 returns on its data; hand-off brings it every key it missed, and the hints go.
  start_direct(1, {});
  EXPECT_TRUE(eventually([&] { return pending() == 0; }, 30s)) << pending();
  int n1_primary = 0;  // keys n1 is a primary of: it missed them, hand-off brought them
  for (const auto& [key, value] : written) {
    EXPECT_EQ(value, value_on(1, key, "2")) << key;
    Outcome r = ctl(1, {"kv", "explain", key, "--json"});
    json e = json::parse(r.out, nullptr, false);
    ASSERT_TRUE(e.is_object()) << r.out << r.err;
    for (const json& rep : e["preflist"]) {
      if (rep["node"] != "n1") continue;
      ++n1_primary;
      EXPECT_TRUE(rep["role"] == "primary" && rep["digest"].is_string()) << key << ": " << e;
    }
  }
  EXPECT_GT(n1_primary, 0) << "n1 is a primary of none of the keys?";
}

}  // namespace
