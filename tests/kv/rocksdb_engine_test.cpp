// The RocksDB engine: the memory engine's contract (partitions apart, put/get/erase, folds,
// counts, checked against std::map under random churn), what it keeps across a reopen, its
// refusals (a partition-count mismatch, a directory it cannot create), and group commit.
#include <gtest/gtest.h>
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

}  // namespace
}  // namespace nodus::kv
