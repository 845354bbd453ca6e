// The storage engine interface: where a node's vnodes keep their objects.
//
// One engine per node holds every partition replica of that node, the partition being part of
// the key (Riak ran one engine per vnode, and many small engines stalled together on compaction
// and file handles). The store gives it opaque bytes: keys up to 64 KiB and encoded objects
// (value, version, metadata). Two engines: in memory (new_memory_engine, the default) and
// on disk (new_rocksdb_engine, `kv.data_dir`).
//
// Durability with group commit: an engine whose acks_after_sync() is true (RocksDB with
// `sync = always`) returns from put/erase once the write is in its log but not yet synced;
// the caller that must not acknowledge before the sync takes write_ticket() after its write
// and asks when_synced(ticket, fn): one syncer thread syncs the log for every write made so
// far and then calls each waiting fn, so many writers share one fsync and no caller blocks a
// scheduler thread on the disk (Postgres's commit_delay, RocksDB's own group commit, done
// outside the callers' threads).
//
// Thread-safety: every method may be called from any thread. Calls on distinct partitions
// never wait for each other; calls on one partition are serialised by the engine.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nodus/transport/status.hpp"

namespace nodus::kv {

struct EngineStats {
  std::uint64_t keys = 0;          ///< entries over all partitions
  std::uint64_t data_bytes = 0;    ///< key and value bytes stored
  std::uint64_t memory_bytes = 0;  ///< an estimate of all memory the engine holds
  std::uint64_t syncs = 0;         ///< syncs of a durable engine's log to disk so far
  std::uint64_t writes = 0;        ///< writes (put, put_batch, erase) a durable engine made
  std::uint64_t sync_us = 0;       ///< time its syncs took, summed (us)
  std::uint64_t sync_waits = 0;    ///< when_synced callbacks its syncer ran (wake-ups)
};

class Engine {
 public:
  virtual ~Engine() = default;

  /// Stores `value` under `key` in `partition`, replacing what was there. With a durable
  /// engine, ok means written (and synced when the engine syncs). Errors: the engine's own.
  /// REQUIRES: partition < the engine's partition count.
  virtual Status put(std::uint32_t partition, std::string_view key, std::string_view value) = 0;
  /// Stores every (key, value) of `entries` in `partition` as one write: a durable engine keeps
  /// all of them or none across a crash (a transaction's keys, kv/src/txn.hpp). This default
  /// stores them one by one (all or none only while the process lives). Errors: as put.
  virtual Status put_batch(
      std::uint32_t partition,
      const std::vector<std::pair<std::string_view, std::string_view>>& entries) {
    for (const auto& [k, v] : entries) {
      if (Status s = put(partition, k, v); !s.ok()) return s;
    }
    return Status();
  }
  /// Copies the value under `key` into `*value`. Errors: kNotFound when there is none.
  virtual Status get(std::uint32_t partition, std::string_view key, std::string* value) const = 0;
  /// Removes `key`; ok also when it was not there.
  virtual Status erase(std::uint32_t partition, std::string_view key) = 0;
  /// Calls `fn` for every entry of `partition`, in no set order, until it returns false.
  /// `fn` must not call the engine (the partition is locked while it runs); the views are
  /// valid only during the call.
  virtual void fold(
      std::uint32_t partition,
      const std::function<bool(std::string_view key, std::string_view value)>& fn) const = 0;
  /// Entries in `partition`.
  virtual std::uint64_t keys(std::uint32_t partition) const = 0;
  /// Bytes of keys and values in `partition`.
  virtual std::uint64_t data_bytes(std::uint32_t partition) const = 0;
  virtual EngineStats stats() const = 0;
  /// True when an acknowledged put survives a crash of the node (the store's DW counts it).
  /// For an engine that acks_after_sync(), "acknowledged" means when_synced said ok.
  virtual bool durable() const = 0;

  /// True when put and erase return before their write is synced, and a caller that
  /// acknowledges durability must wait for when_synced. Default: false.
  virtual bool acks_after_sync() const { return false; }
  /// A count of the writes made so far (put, erase): taken after a write, it is that write's
  /// ticket (and covers every earlier write). Default: 0.
  virtual std::uint64_t write_ticket() const { return 0; }
  /// Calls `done(status)` once every write up to `ticket` is synced (ok), or the sync failed
  /// (the engine's error). `done` runs on the engine's syncer thread (or at once, on the
  /// caller's, when nothing waits to be synced): it must be quick and must not call the
  /// engine; sending a message is what it is for. Default: done(ok) at once.
  virtual void when_synced(std::uint64_t ticket, std::function<void(Status)> done) {
    (void)ticket;
    done(Status());
  }

  /// The store's own records beside the partitions (the ring, the claimant's staged changes,
  /// the progress of hand-offs): `name` -> `value`, written and synced before put_meta (or
  /// erase_meta) returns on a durable engine. Defaults: put_meta and erase_meta keep nothing,
  /// get_meta finds nothing (kNotFound).
  virtual Status put_meta(std::string_view name, std::string_view value) {
    (void)name;
    (void)value;
    return Status();
  }
  virtual Status get_meta(std::string_view name, std::string* value) const {
    (void)name;
    (void)value;
    return Status(ErrorCode::kNotFound);
  }
  /// Removes record `name`; ok also when there was none.
  virtual Status erase_meta(std::string_view name) {
    (void)name;
    return Status();
  }
};

/// An engine in memory: one open-addressing hash table per partition, each entry one
/// allocation holding its key and value (beside them, an 8-byte header, malloc's word and
/// rounding to 16, and 8 to 16 bytes of table: about 45 bytes per entry for small keys).
/// Nothing survives the process. REQUIRES: partitions >= 1.
std::unique_ptr<Engine> new_memory_engine(std::uint32_t partitions);

/// When a durable engine syncs its log to disk (kv.sync).
enum class SyncMode : std::uint8_t {
  /// A write is acknowledged only once synced (acks_after_sync(); durable() is true): nothing
  /// acknowledged is lost, neither by a crash of the process nor of the machine.
  kAlways,
  /// Synced every `interval`; acknowledged at once. A crash of the process loses nothing
  /// (each write reached the OS before put returned); a crash of the machine or a power cut
  /// loses up to the last interval of writes. durable() is false.
  kInterval,
  /// Never synced by the engine: the OS writes back when it decides (Linux: within about
  /// 30 s). A crash of the process loses nothing; one of the machine loses what the OS had
  /// not written. durable() is false.
  kNone,
};

/// An engine on disk: one RocksDB database in `dir` (created with its parents if missing)
/// for all `partitions`, each partition a key prefix (its number as 4 bytes, big endian), so
/// one write-ahead log serves every partition and its syncs are shared. keys() and
/// data_bytes() are counted again at open by one scan of the data. `interval` (ms) is for
/// SyncMode::kInterval. Errors: kBadConfig when `dir` cannot be created, opened or locked
/// (another process has it), or holds a database made for another partition count (the
/// message names both); kInternal for RocksDB's other errors. REQUIRES: partitions >= 1.
Result<std::unique_ptr<Engine>> new_rocksdb_engine(
    const std::string& dir, std::uint32_t partitions, SyncMode sync,
    std::chrono::milliseconds interval = std::chrono::milliseconds(100));

}  // namespace nodus::kv
