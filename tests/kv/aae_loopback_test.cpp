// Active anti-entropy on real nodes in one test process (loopback ZeroMQ): an exchange still
// completes under a CPU cap of 1% (kv.aae_cpu_percent), waiting for its budget; and a vnode
// whose big partition's tree is rebuilt answers requests meanwhile (the rebuild goes a chunk at
// a time through the vnode's mailbox, riak_kv#1039).
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "aae.hpp"
#include "loopback_kv.hpp"
#include "nodus/node/gen_server.hpp"

namespace nodus::kv {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::numbered;

// The memory engine with reads that take at least `delay` while `slow` is set: a disk's cost,
// so a tree rebuild (one read per key) takes long enough to see what runs meanwhile.
class SlowReads final : public Engine {
 public:
  SlowReads(std::unique_ptr<Engine> e, std::shared_ptr<std::atomic<bool>> slow,
            std::chrono::microseconds delay)
      : e_(std::move(e)), slow_(std::move(slow)), delay_(delay) {}
  Status put(std::uint32_t p, std::string_view k, std::string_view v) override {
    return e_->put(p, k, v);
  }
  Status get(std::uint32_t p, std::string_view k, std::string* v) const override {
    if (slow_->load()) std::this_thread::sleep_for(delay_);
    return e_->get(p, k, v);
  }
  Status erase(std::uint32_t p, std::string_view k) override { return e_->erase(p, k); }
  void fold(std::uint32_t p,
            const std::function<bool(std::string_view, std::string_view)>& fn) const override {
    e_->fold(p, fn);
  }
  std::uint64_t keys(std::uint32_t p) const override { return e_->keys(p); }
  std::uint64_t data_bytes(std::uint32_t p) const override { return e_->data_bytes(p); }
  EngineStats stats() const override { return e_->stats(); }
  bool durable() const override { return false; }

 private:
  std::unique_ptr<Engine> e_;
  std::shared_ptr<std::atomic<bool>> slow_;
  std::chrono::microseconds delay_;
};

class AaeLoopbackTest : public LoopbackKvTest {
 protected:
  // The engine of every node of the cluster: reads slow (by `delay`) once slow_ is set.
  std::function<void(Options&)> slow_engine(std::chrono::microseconds delay,
                                            const std::function<void(Options&)>& more) {
    return [this, delay, more](Options& o) {
      auto slow = slow_;
      o.engine = [slow, delay](std::uint32_t q) {
        return std::make_unique<SlowReads>(new_memory_engine(q), slow, delay);
      };
      if (more) more(o);
    };
  }
  // Kills node i's vnode of partition p and waits for its restart.
  void restart_vnode(int i, std::uint32_t p) {
    const Pid old = node(i).whereis(vnode_name(p));
    exit(old, reasons::kill());
    ASSERT_TRUE(eventually([&] {
      const Pid now = node(i).whereis(vnode_name(p));
      return now.valid() && now != old;
    })) << "vnode "
        << p << " of n" << i << " was not restarted";
  }
  std::shared_ptr<std::atomic<bool>> slow_ = std::make_shared<std::atomic<bool>>(false);
};

// n2 loses its copy of 1,000 keys (behind the store's back) and its vnodes rebuild their
// trees, every read taking 10 us or more: the rebuilds and the repairs take more than 1% of a core
// for a while, so the work waits for its budget (counted), and the exchanges still repair every
// key, with no client read.
TEST_F(AaeLoopbackTest, AnExchangeCompletesUnderACpuCapOfOnePercent) {
  start_cluster(3, 3, slow_engine(10us, [](Options& o) {
                  o.aae_cpu_percent = 1;
                  o.aae_exchange_interval = 200ms;
                  o.aae_repairs_per_second = 100000;
                }));
  RequestOptions all;
  all.w = 3;
  std::vector<std::string> keys;
  for (int i = 0; i < 1000; ++i) {
    keys.push_back(numbered("cap:", i));
    ASSERT_OK(client(1 + i % 3).put(keys.back(), std::string(200, 'v'), all));
  }
  KvState& n2 = *state_of(node(2));
  for (const auto& k : keys) ASSERT_OK(n2.engine->erase(partition_of(k, kPartitions), k));
  slow_->store(true);
  for (std::uint32_t p = 0; p < kPartitions; ++p) restart_vnode(2, p);
  std::uint64_t gets_before = 0;
  for (int i = 1; i <= 3; ++i) gets_before += stats(node(i))->gets;
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& k : keys) {
          if (!holds(2, k)) return false;
        }
        return true;
      },
      120s))
      << "n2 holds " << n2.engine->stats().keys << " of " << keys.size() << " keys";
  std::uint64_t throttled = 0, repaired = 0, gets = 0;
  for (int i = 1; i <= 3; ++i) {
    const Stats s = *stats(node(i));
    throttled += s.aae_throttled;
    repaired += s.aae_keys_repaired;
    gets += s.gets;
  }
  EXPECT_GT(throttled, 0u) << "the work never waited for its 1%";
  EXPECT_GE(repaired, keys.size());
  EXPECT_EQ(gets, gets_before) << "repaired through client reads, not anti-entropy";
  for (const auto& k : keys) {
    EXPECT_EQ(replica_values(2, k), std::vector<std::string>{std::string(200, 'v')}) << k;
  }
}

// One partition holds 10,000 keys and every read takes 100 us: its tree's rebuild after the
// vnode restarts takes a second or more. Gets of its keys are answered while it runs (the tree
// not built yet when they return), and the rebuild then ends with the tree the engine holds.
TEST_F(AaeLoopbackTest, AVnodeAnswersRequestsWhileItsBigPartitionsTreeIsRebuilt) {
  start_cluster(1, 1, slow_engine(100us, [](Options& o) { o.aae_cpu_percent = 100; }));
  constexpr int kKeys = 10000;
  for (int i = 0; i < kKeys; ++i) ASSERT_OK(client(1).put(numbered("{big}:", i), "v"));
  const std::uint32_t p = partition_of("{big}:0", kPartitions);
  KvState& st = *state_of(node(1));
  ASSERT_EQ(st.engine->keys(p), static_cast<std::uint64_t>(kKeys));
  slow_->store(true);
  const std::uint64_t steps_before = st.aae->rebuild_steps.load();
  restart_vnode(1, p);
  int answered_while_rebuilding = 0;
  for (int i = 0; i < 20; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = client(1).get(numbered("{big}:", i * 37));
    const auto took = std::chrono::steady_clock::now() - t0;
    ASSERT_OK(r);
    if (!st.aae->trees[p]->copy().has_value()) {
      ++answered_while_rebuilding;
      // A chunk (2,000 reads of 100 us and more) at most before it; not the whole rebuild.
      EXPECT_LT(took, 1500ms) << "get " << i;
    }
  }
  EXPECT_GE(answered_while_rebuilding, 1) << "the rebuild ended before the first get returned";
  ASSERT_TRUE(eventually([&] { return st.aae->trees[p]->copy().has_value(); }, 60s));
  EXPECT_GE(st.aae->rebuild_steps.load() - steps_before, 5u) << "not in chunks";
  slow_->store(false);
  PartitionTree fresh;
  fresh.rebuild(*st.engine, p);
  EXPECT_TRUE(*st.aae->trees[p]->copy() == *fresh.copy());
}

}  // namespace
}  // namespace nodus::kv
