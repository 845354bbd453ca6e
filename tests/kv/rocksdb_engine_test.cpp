// The RocksDB engine: the memory engine's contract (partitions apart, put/get/erase, folds,
// counts, checked against std::map under random churn), what it keeps across a reopen, its
// refusals (a partition-count mismatch, a directory it cannot create), group commit, the
// counts kept from the read before a write, and what a kill -9 after a sync leaves.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../test_support.hpp"
#include "engine_contract.hpp"
#include "nodus/kv/engine.hpp"

namespace nodus::kv {
namespace {

namespace fs = std::filesystem;

// A fresh directory under the system's temp dir, removed at the end.
class RocksdbEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("nodus-rocksdb-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<Engine> open(std::uint32_t partitions, SyncMode mode = SyncMode::kAlways) {
    auto e = new_rocksdb_engine(dir_.string(), partitions, mode);
    EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().to_string());
    return e.ok() ? std::move(*e) : nullptr;
  }

  fs::path dir_;
};

TEST_F(RocksdbEngineTest, PartitionsAreSeparate) {
  auto e = open(4);
  ASSERT_TRUE(e);
  contract::expect_partitions_apart(*e);
  EXPECT_TRUE(e->durable());
  EXPECT_TRUE(e->acks_after_sync());
}

TEST_F(RocksdbEngineTest, MatchesAMapUnderRandomChurnAndAfterReopen) {
  std::map<std::string, std::string> model;
  {
    auto e = open(2);
    ASSERT_TRUE(e);
    contract::churn(*e, 1, 7, model);
    ASSERT_OK(e->put(0, "other", "x"));
  }
  for (int round = 0; round < 2; ++round) {  // a reopen, and the one after it
    auto e = open(2);
    ASSERT_TRUE(e);
    contract::expect_holds(*e, 1, model);
    EXPECT_EQ(e->keys(0), 1u);
    EXPECT_EQ(e->stats().keys, model.size() + 1);
  }
}

TEST_F(RocksdbEngineTest, KeepsTheStoresRecordsApartFromThePartitions) {
  {
    auto e = open(1);
    ASSERT_TRUE(e);
    std::string v;
    EXPECT_EQ(e->get_meta("ring", &v).code(), ErrorCode::kNotFound);
    ASSERT_OK(e->put_meta("ring", "r1"));
    EXPECT_EQ(e->keys(0), 0u);
  }
  auto e = open(1);
  ASSERT_TRUE(e);
  std::string v;
  ASSERT_OK(e->get_meta("ring", &v));
  EXPECT_EQ(v, "r1");
  EXPECT_EQ(e->stats().keys, 0u);
}

TEST_F(RocksdbEngineTest, RefusesADatabaseOfAnotherPartitionCount) {
  { ASSERT_TRUE(open(64)); }
  auto e = new_rocksdb_engine(dir_.string(), 128, SyncMode::kAlways);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code(), ErrorCode::kBadConfig);
  EXPECT_NE(e.error().message().find("64 partitions"), std::string::npos) << e.error().message();
  EXPECT_NE(e.error().message().find("128"), std::string::npos) << e.error().message();
  EXPECT_TRUE(open(64));  // and the data is still there for the right count
}

TEST_F(RocksdbEngineTest, RefusesADirectoryItCannotCreate) {
  fs::create_directories(dir_);
  std::ofstream(dir_ / "file") << "x";
  auto e = new_rocksdb_engine((dir_ / "file" / "db").string(), 4, SyncMode::kAlways);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code(), ErrorCode::kBadConfig);
  EXPECT_NE(e.error().message().find("file/db"), std::string::npos) << e.error().message();
}

TEST_F(RocksdbEngineTest, RefusesADatabaseAnotherEngineHasOpen) {
  auto first = open(4);
  ASSERT_TRUE(first);
  auto second = new_rocksdb_engine(dir_.string(), 4, SyncMode::kAlways);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code(), ErrorCode::kBadConfig);
}

// sync = always: when_synced answers every ticket once synced, and concurrent writers share
// syncs (fewer syncs than writes), without any writer's thread waiting on the disk.
TEST_F(RocksdbEngineTest, GroupCommitAnswersEveryWriterAndSharesSyncs) {
  auto e = open(8);
  ASSERT_TRUE(e);
  constexpr int kThreads = 8, kWrites = 200;
  std::atomic<int> done{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kWrites; ++i) {
        ASSERT_OK(e->put(static_cast<std::uint32_t>(t), nodus::testing::numbered("k", i), "v"));
        e->when_synced(e->write_ticket(), [&](Status s) {
          if (!s.ok()) failed.fetch_add(1);
          done.fetch_add(1);
        });
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_TRUE(nodus::testing::eventually([&] { return done.load() == kThreads * kWrites; },
                                         std::chrono::seconds(20)));
  EXPECT_EQ(failed.load(), 0);
  const std::uint64_t syncs = e->stats().syncs;
  EXPECT_GE(syncs, 1u);
  EXPECT_LT(syncs, static_cast<std::uint64_t>(kThreads * kWrites) / 2) << "writers share syncs";
  // A ticket already synced is answered at once, on the caller's thread.
  bool at_once = false;
  e->when_synced(0, [&](Status s) { at_once = s.ok(); });
  EXPECT_TRUE(at_once);
}

TEST_F(RocksdbEngineTest, IntervalAndNoneAcknowledgeAtOnceAndKeepData) {
  for (SyncMode m : {SyncMode::kInterval, SyncMode::kNone}) {
    fs::remove_all(dir_);
    {
      auto e = open(2, m);
      ASSERT_TRUE(e);
      EXPECT_FALSE(e->durable());
      EXPECT_FALSE(e->acks_after_sync());
      ASSERT_OK(e->put(0, "k", "v"));
    }
    auto e = open(2, m);
    ASSERT_TRUE(e);
    std::string v;
    ASSERT_OK(e->get(0, "k", &v));
    EXPECT_EQ(v, "v");
  }
}

// The engine takes the size of what a write replaces from the partition's last read of that
// key: reads of other keys, of other partitions, misses, and writes in a row must all leave
// keys() and data_bytes() what a map says, and what a recount at open finds.
TEST_F(RocksdbEngineTest, CountsStayExactWithAReadBeforeEachWrite) {
  std::map<std::string, std::string> model;
  auto bytes_of = [&model] {
    std::uint64_t n = 0;
    for (const auto& [k, v] : model) n += k.size() + v.size();
    return n;
  };
  {
    auto e = open(2);
    ASSERT_TRUE(e);
    std::mt19937 rng(11);
    std::string v;
    for (int i = 0; i < 5000; ++i) {
      const std::string key = nodus::testing::numbered("key", rng() % 300);
      const std::string other = nodus::testing::numbered("key", rng() % 300);
      switch (rng() % 4) {  // what is read before the write
        case 0:
          (void)e->get(1, key, &v);
          break;
        case 1:
          (void)e->get(1, other, &v);
          break;
        case 2:
          (void)e->get(0, key, &v);
          break;  // the same key in another partition
        default:
          break;
      }
      if (rng() % 3 == 0) {
        ASSERT_OK(e->erase(1, key));
        model.erase(key);
      } else {
        const std::string value(rng() % 40, 'v');
        ASSERT_OK(e->put(1, key, value));
        model[key] = value;
      }
      ASSERT_EQ(e->keys(1), model.size()) << "after write " << i;
      ASSERT_EQ(e->data_bytes(1), bytes_of()) << "after write " << i;
    }
    // A batch between a read and a write of the same key.
    (void)e->get(1, "key1", &v);
    ASSERT_OK(e->put_batch(1, {{"key1", "batched"}, {"key2", "b"}}));
    model["key1"] = "batched";
    model["key2"] = "b";
    ASSERT_OK(e->put(1, "key1", "after"));
    model["key1"] = "after";
    EXPECT_EQ(e->keys(1), model.size());
    EXPECT_EQ(e->data_bytes(1), bytes_of());
  }
  auto e = open(2);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->keys(1), model.size());
  EXPECT_EQ(e->data_bytes(1), bytes_of());
  contract::expect_holds(*e, 1, model);
}

// sync = always keeps the log in the process until the syncer writes it out and syncs it: a
// process killed with SIGKILL (no destructor, nothing flushed at exit) right after when_synced
// said ok must still have every such write at the next open.
TEST_F(RocksdbEngineTest, EveryWriteSyncedBeforeAKillSurvivesIt) {
  constexpr int kWrites = 2000;
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(fds[0]);
    auto e = new_rocksdb_engine(dir_.string(), 4, SyncMode::kAlways);
    if (!e) ::_exit(3);
    std::atomic<int> synced{0};
    for (int i = 0; i < kWrites; ++i) {
      if (!(*e)->put(static_cast<std::uint32_t>(i % 4), nodus::testing::numbered("k", i), "v")
               .ok()) {
        ::_exit(4);
      }
      if (i % 100 == 99) {  // every hundredth waits, so most writes share a sync
        (*e)->when_synced((*e)->write_ticket(), [&synced](Status s) {
          if (s.ok()) synced.fetch_add(1);
        });
      }
    }
    for (int i = 0; i < 2000 && synced.load() < kWrites / 100; ++i) ::usleep(5000);
    if (synced.load() < kWrites / 100) ::_exit(5);
    (void)!::write(fds[1], "s", 1);  // all synced: kill me now
    for (;;) ::pause();
  }
  ::close(fds[1]);
  char c = 0;
  const ssize_t n = ::read(fds[0], &c, 1);
  ::close(fds[0]);
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_EQ(n, 1) << "the child failed before its writes were synced, status " << status;
  auto e = open(4);
  ASSERT_TRUE(e);
  std::string v;
  for (int i = 0; i < kWrites; ++i) {
    ASSERT_OK(e->get(static_cast<std::uint32_t>(i % 4), nodus::testing::numbered("k", i), &v));
  }
  EXPECT_EQ(e->stats().keys, static_cast<std::uint64_t>(kWrites));
}

}  // namespace
}  // namespace nodus::kv
