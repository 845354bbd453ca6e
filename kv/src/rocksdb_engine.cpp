// The durable engine: one RocksDB database per node (kv.data_dir) holding every partition, each
// partition a key prefix: its number as 4 bytes, big endian, so a partition's keys are one
// contiguous range (a fold is one seek and a scan; dropping a partition would be one
// DeleteRange). Prefixes rather than column families: every column family has its own memtables
// (64 MiB each by default), so 64 to 1024 of them would hold gigabytes of write buffers and
// flush many small files, while prefixes share one set of memtables, one write-ahead log and
// one sync. The store's own records (the partition count, the ring) live under the prefix
// 0xFFFFFFFF, which no partition has (there are at most 65536).
//
// Syncs (kv.sync): writes go to the write-ahead log without a sync, and one syncer thread
// syncs it: after writes, for `always` (group commit: whatever was written while the last sync
// ran goes into the next), or every interval for `interval`. With `always` the log stays in
// RocksDB's buffer until the syncer writes it out and syncs it (FlushWAL(true)), since nothing
// is acknowledged before that; with `interval` and `none` each write reaches the OS before put
// returns (a crash of the process loses nothing). keys() and data_bytes() are kept in memory,
// counted again at open by one scan; a write finds the size of what it replaces in a memo of
// the partition's last read (the vnode reads a key before it writes it) rather than reading
// it again.
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/slice.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "nodus/kv/engine.hpp"

namespace nodus::kv {

namespace {

constexpr std::uint32_t kMetaPrefix = 0xFFFFFFFFu;
constexpr std::size_t kPrefixBytes = 4;

void put_prefix(std::string& out, std::uint32_t p) {
  out.push_back(static_cast<char>(p >> 24));
  out.push_back(static_cast<char>(p >> 16));
  out.push_back(static_cast<char>(p >> 8));
  out.push_back(static_cast<char>(p));
}
std::uint32_t get_prefix(const char* s) {
  const auto* u = reinterpret_cast<const unsigned char*>(s);
  return (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) | (std::uint32_t{u[2]} << 8) |
         std::uint32_t{u[3]};
}
std::string prefixed(std::uint32_t p, std::string_view key) {
  std::string k;
  k.reserve(kPrefixBytes + key.size());
  put_prefix(k, p);
  k.append(key);
  return k;
}
rocksdb::Slice slice(std::string_view s) { return {s.data(), s.size()}; }

Status internal(const char* what, const rocksdb::Status& s) {
  return Status(ErrorCode::kInternal, std::string("rocksdb ") + what + ": " + s.ToString());
}

struct Partition {
  // Serialises the partition's vnode with folds and stats readers, and a put's read of the old
  // entry (for the counts) with its write.
  mutable std::mutex mu;
  std::atomic<std::uint64_t> keys{0};
  std::atomic<std::uint64_t> bytes{0};
  // What the partition holds under one key, as the last get() found it or the last write left
  // it: the vnode reads a key just before it writes it, so put and erase find the old entry's
  // size here instead of reading it again (a second memtable search per write). Guarded by
  // mu; every write of the partition updates or clears it.
  mutable std::string memo_key;
  mutable bool memo_valid = false;
  mutable bool memo_found = false;
  mutable std::uint64_t memo_size = 0;

  // True with `found` and `size` when the memo is about `key`.
  bool recall(std::string_view key, bool& found, std::uint64_t& size) const {
    if (!memo_valid || memo_key != key) return false;
    found = memo_found;
    size = memo_size;
    return true;
  }
  void remember(std::string_view key, bool found, std::uint64_t size) const {
    memo_key.assign(key);
    memo_valid = true;
    memo_found = found;
    memo_size = size;
  }
};

class RocksdbEngine final : public Engine {
 public:
  RocksdbEngine(std::unique_ptr<rocksdb::DB> db, std::uint32_t partitions, SyncMode mode,
                std::chrono::milliseconds interval)
      : db_(std::move(db)), parts_(partitions), mode_(mode), interval_(interval) {
    write_.sync = false;
    write_.disableWAL = false;
  }

  ~RocksdbEngine() override {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (syncer_.joinable()) syncer_.join();
    // A clean stop writes out and syncs the log, whatever the mode.
    (void)db_->FlushWAL(true);
    (void)db_->Close();
  }

  // Counts every entry at open (one scan). Returns the error of a broken database.
  Status recount() {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      const rocksdb::Slice k = it->key();
      if (k.size() < kPrefixBytes) continue;
      const std::uint32_t p = get_prefix(k.data());
      if (p >= parts_.size()) continue;  // the store's records
      parts_[p].keys.fetch_add(1, std::memory_order_relaxed);
      parts_[p].bytes.fetch_add(k.size() - kPrefixBytes + it->value().size(),
                                std::memory_order_relaxed);
    }
    if (!it->status().ok()) return internal("scan at open", it->status());
    return Status();
  }

  void start_syncer() {
    if (mode_ == SyncMode::kNone) return;
    syncer_ = std::thread([this] { mode_ == SyncMode::kAlways ? sync_on_demand() : sync_every(); });
  }

  Status put(std::uint32_t partition, std::string_view key, std::string_view value) override {
    Partition& p = parts_[partition];
    const std::string k = prefixed(partition, key);
    std::lock_guard lock(p.mu);
    bool found = false;
    std::uint64_t old_size = 0;
    if (!p.recall(key, found, old_size)) {
      if (Status g = read_old(k, found, old_size); !g.ok()) return g;
    }
    rocksdb::Status s = db_->Put(write_, slice(k), slice(value));
    if (!s.ok()) {
      p.memo_valid = false;
      return internal("put", s);
    }
    written_.fetch_add(1, std::memory_order_release);
    p.remember(key, true, value.size());
    if (!found) {
      p.keys.fetch_add(1, std::memory_order_relaxed);
      p.bytes.fetch_add(key.size() + value.size(), std::memory_order_relaxed);
    } else {
      p.bytes.fetch_add(value.size(), std::memory_order_relaxed);
      p.bytes.fetch_sub(old_size, std::memory_order_relaxed);
    }
    return Status();
  }

  // One WriteBatch: RocksDB's log holds all of it or none after a crash.
  Status put_batch(
      std::uint32_t partition,
      const std::vector<std::pair<std::string_view, std::string_view>>& entries) override {
    Partition& p = parts_[partition];
    std::lock_guard lock(p.mu);
    p.memo_valid = false;
    rocksdb::WriteBatch batch;
    std::int64_t keys = 0, bytes = 0;
    std::vector<std::string> seen;  // a key named twice is counted once
    for (const auto& [key, value] : entries) {
      const std::string k = prefixed(partition, key);
      const bool again = std::find(seen.begin(), seen.end(), k) != seen.end();
      rocksdb::PinnableSlice old;
      rocksdb::Status g =
          db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), slice(k), &old);
      if (!g.ok() && !g.IsNotFound()) return internal("get", g);
      if (!again) {
        if (g.IsNotFound()) {
          ++keys;
          bytes += static_cast<std::int64_t>(key.size());
        } else {
          bytes -= static_cast<std::int64_t>(old.size());
        }
        bytes += static_cast<std::int64_t>(value.size());
        seen.push_back(k);
      }
      if (rocksdb::Status s = batch.Put(slice(k), slice(value)); !s.ok()) return internal("put", s);
    }
    rocksdb::Status s = db_->Write(write_, &batch);
    if (!s.ok()) return internal("write", s);
    written_.fetch_add(1, std::memory_order_release);
    p.keys.fetch_add(static_cast<std::uint64_t>(keys), std::memory_order_relaxed);
    p.bytes.fetch_add(static_cast<std::uint64_t>(bytes), std::memory_order_relaxed);
    return Status();
  }

  Status get(std::uint32_t partition, std::string_view key, std::string* value) const override {
    const Partition& p = parts_[partition];
    const std::string k = prefixed(partition, key);
    std::lock_guard lock(p.mu);  // so that the memo is what the partition holds
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), slice(k), value);
    if (s.IsNotFound()) {
      p.remember(key, false, 0);
      return Status(ErrorCode::kNotFound);
    }
    if (!s.ok()) return internal("get", s);
    p.remember(key, true, value->size());
    return Status();
  }

  Status erase(std::uint32_t partition, std::string_view key) override {
    Partition& p = parts_[partition];
    const std::string k = prefixed(partition, key);
    std::lock_guard lock(p.mu);
    bool found = false;
    std::uint64_t old_size = 0;
    if (!p.recall(key, found, old_size)) {
      if (Status g = read_old(k, found, old_size); !g.ok()) return g;
    }
    if (!found) return Status();
    rocksdb::Status s = db_->Delete(write_, slice(k));
    if (!s.ok()) {
      p.memo_valid = false;
      return internal("delete", s);
    }
    written_.fetch_add(1, std::memory_order_release);
    p.remember(key, false, 0);
    p.keys.fetch_sub(1, std::memory_order_relaxed);
    p.bytes.fetch_sub(key.size() + old_size, std::memory_order_relaxed);
    return Status();
  }

  void fold(std::uint32_t partition,
            const std::function<bool(std::string_view, std::string_view)>& fn) const override {
    const Partition& p = parts_[partition];
    std::string lo;
    put_prefix(lo, partition);
    std::lock_guard lock(p.mu);
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(slice(lo)); it->Valid(); it->Next()) {
      const rocksdb::Slice k = it->key();
      if (k.size() < kPrefixBytes || !k.starts_with(slice(lo))) break;
      const rocksdb::Slice v = it->value();
      if (!fn(std::string_view(k.data() + kPrefixBytes, k.size() - kPrefixBytes),
              std::string_view(v.data(), v.size()))) {
        break;
      }
    }
  }

  std::uint64_t keys(std::uint32_t partition) const override {
    return parts_[partition].keys.load(std::memory_order_relaxed);
  }
  std::uint64_t data_bytes(std::uint32_t partition) const override {
    return parts_[partition].bytes.load(std::memory_order_relaxed);
  }

  EngineStats stats() const override {
    EngineStats s;
    for (const Partition& p : parts_) {
      s.keys += p.keys.load(std::memory_order_relaxed);
      s.data_bytes += p.bytes.load(std::memory_order_relaxed);
    }
    // Memory, not disk: memtables, table readers (indexes, filters) and the block cache.
    for (const char* prop : {"rocksdb.cur-size-all-mem-tables",
                             "rocksdb.estimate-table-readers-mem", "rocksdb.block-cache-usage"}) {
      std::uint64_t v = 0;
      if (db_->GetIntProperty(prop, &v)) s.memory_bytes += v;
    }
    s.memory_bytes += parts_.size() * sizeof(Partition);
    s.syncs = syncs_.load(std::memory_order_relaxed);
    s.writes = written_.load(std::memory_order_relaxed);
    s.sync_us = sync_us_.load(std::memory_order_relaxed);
    s.sync_waits = sync_waits_.load(std::memory_order_relaxed);
    return s;
  }

  bool durable() const override { return mode_ == SyncMode::kAlways; }
  bool acks_after_sync() const override { return mode_ == SyncMode::kAlways; }
  std::uint64_t write_ticket() const override { return written_.load(std::memory_order_acquire); }

  void when_synced(std::uint64_t ticket, std::function<void(Status)> done) override {
    {
      std::lock_guard lock(mu_);
      if (mode_ == SyncMode::kAlways && ticket > synced_) {
        waiters_.push_back(Waiter{ticket, std::move(done)});
        cv_.notify_one();
        return;
      }
    }
    done(Status());
  }

  Status put_meta(std::string_view name, std::string_view value) override {
    rocksdb::WriteOptions w;
    w.sync = mode_ != SyncMode::kNone;
    rocksdb::Status s = db_->Put(w, slice(prefixed(kMetaPrefix, name)), slice(value));
    if (s.ok() && mode_ == SyncMode::kAlways) s = db_->FlushWAL(true);  // (manual_wal_flush)
    if (!s.ok()) return internal("put", s);
    return Status();
  }
  Status erase_meta(std::string_view name) override {
    rocksdb::WriteOptions w;
    w.sync = mode_ != SyncMode::kNone;
    rocksdb::Status s = db_->Delete(w, slice(prefixed(kMetaPrefix, name)));
    if (!s.ok()) return internal("delete", s);
    return Status();
  }
  Status get_meta(std::string_view name, std::string* value) const override {
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), slice(prefixed(kMetaPrefix, name)), value);
    if (s.IsNotFound()) return Status(ErrorCode::kNotFound);
    if (!s.ok()) return internal("get", s);
    return Status();
  }

 private:
  // Whether the database holds prefixed key `k`, and its value's size. REQUIRES: the
  // partition's mu held.
  Status read_old(const std::string& k, bool& found, std::uint64_t& size) const {
    rocksdb::PinnableSlice old;
    rocksdb::Status g =
        db_->Get(rocksdb::ReadOptions(), db_->DefaultColumnFamily(), slice(k), &old);
    if (!g.ok() && !g.IsNotFound()) return internal("get", g);
    found = g.ok();
    size = found ? old.size() : 0;
    return Status();
  }

  struct Waiter {
    std::uint64_t ticket;
    std::function<void(Status)> done;
  };

  // Writes the log's buffer out (sync = always keeps the log in the process between syncs:
  // kv.sync's manual_wal_flush below) and syncs it.
  rocksdb::Status timed_sync() {
    const auto t0 = std::chrono::steady_clock::now();
    rocksdb::Status rs = db_->FlushWAL(true);
    sync_us_.fetch_add(
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                       std::chrono::steady_clock::now() - t0)
                                       .count()),
        std::memory_order_relaxed);
    return rs;
  }

  // sync = always: sync whenever someone waits for a write not yet synced; everything written
  // up to the moment the sync starts is covered by it, so writers that come while it runs
  // share the next one.
  void sync_on_demand() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      cv_.wait(lock, [&] { return stop_ || !waiters_.empty(); });
      if (stop_) break;
      const std::uint64_t upto = written_.load(std::memory_order_acquire);
      lock.unlock();
      const rocksdb::Status rs = timed_sync();
      lock.lock();
      const Status s = rs.ok() ? Status() : internal("sync of the write-ahead log", rs);
      if (s.ok()) synced_ = std::max(synced_, upto);
      std::vector<Waiter> ready;
      for (auto it = waiters_.begin(); it != waiters_.end();) {
        if (it->ticket <= upto) {
          ready.push_back(std::move(*it));
          it = waiters_.erase(it);
        } else {
          ++it;
        }
      }
      syncs_.fetch_add(1, std::memory_order_relaxed);
      sync_waits_.fetch_add(ready.size(), std::memory_order_relaxed);
      lock.unlock();
      for (Waiter& w : ready) w.done(s);
      lock.lock();
    }
    // Stopping: whoever still waits is told the engine closed.
    std::vector<Waiter> left;
    left.swap(waiters_);
    lock.unlock();
    for (Waiter& w : left) w.done(Status(ErrorCode::kUnavailable, "the engine closed"));
  }

  // sync = interval: sync every interval_ when anything was written since the last one.
  void sync_every() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, interval_, [&] { return stop_; });
      if (stop_) break;
      const std::uint64_t upto = written_.load(std::memory_order_acquire);
      if (upto == synced_) continue;
      lock.unlock();
      const rocksdb::Status rs = timed_sync();
      lock.lock();
      if (rs.ok()) synced_ = upto;
      syncs_.fetch_add(1, std::memory_order_relaxed);
    }
  }

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<Partition> parts_;
  const SyncMode mode_;
  const std::chrono::milliseconds interval_;
  rocksdb::WriteOptions write_;
  std::atomic<std::uint64_t> written_{0};  // writes made (tickets)
  std::atomic<std::uint64_t> syncs_{0};
  std::atomic<std::uint64_t> sync_us_{0};     // time in the syncer's FlushWAL(true), summed
  std::atomic<std::uint64_t> sync_waits_{0};  // when_synced callbacks the syncer ran

  // Guards the syncer's state.
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Waiter> waiters_;
  std::uint64_t synced_ = 0;  // every write up to this ticket is synced
  bool stop_ = false;
  std::thread syncer_;
};

}  // namespace

Result<std::unique_ptr<Engine>> new_rocksdb_engine(const std::string& dir, std::uint32_t partitions,
                                                   SyncMode sync,
                                                   std::chrono::milliseconds interval) {
  auto bad = [&](const std::string& why) {
    return Status(ErrorCode::kBadConfig, "kv.data_dir " + dir + ": " + why);
  };
  if (dir.empty()) return bad("empty path");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return bad("cannot create it: " + ec.message());
  rocksdb::Options o;
  o.create_if_missing = true;
  o.max_background_jobs = 2;
  // With sync = always a write is acknowledged only after the syncer's FlushWAL(true), so the
  // log may stay in the process until then: no write system call per put (RocksDB's
  // manual_wal_flush). With interval and none every write reaches the OS at once, so a crash
  // of the process loses nothing acknowledged.
  o.manual_wal_flush = sync == SyncMode::kAlways;
  // Bloom filters: most of the store's reads are the read before a write, of a key often not
  // there yet; without a filter each is a search of the memtable and of every table file that
  // may hold the key (RocksDB has none by default).
  o.memtable_prefix_bloom_size_ratio = 0.02;
  o.memtable_whole_key_filtering = true;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(o, dir, &raw);
  if (!s.ok()) return bad("cannot open the database: " + s.ToString());
  std::unique_ptr<rocksdb::DB> db(raw);

  // The partition count is fixed when the data is first written: keys are placed by it.
  const std::string count_key = prefixed(kMetaPrefix, "partitions");
  std::string stored;
  s = db->Get(rocksdb::ReadOptions(), slice(count_key), &stored);
  if (s.ok()) {
    if (stored != std::to_string(partitions)) {
      (void)db->Close();
      return bad("the data there was written with " + stored + " partitions and kv.partitions is " +
                 std::to_string(partitions) +
                 " (a cluster's partition count is fixed when it is created)");
    }
  } else if (s.IsNotFound()) {
    rocksdb::WriteOptions w;
    w.sync = true;
    s = db->Put(w, slice(count_key), std::to_string(partitions));
    if (!s.ok()) return bad("cannot write: " + s.ToString());
  } else {
    return bad("cannot read: " + s.ToString());
  }

  auto engine = std::make_unique<RocksdbEngine>(std::move(db), partitions, sync, interval);
  if (Status c = engine->recount(); !c.ok()) return c;
  engine->start_syncer();
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace nodus::kv
