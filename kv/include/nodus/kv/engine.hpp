// The storage engine interface: where a node's vnodes keep their objects.
//
// One engine per node holds every partition replica of that node, the partition being part of
// the key (Riak ran one engine per vnode, and many small engines stalled together on compaction
// and file handles). The store gives it opaque bytes: keys up to 64 KiB and encoded objects
// (value, version, metadata). The in-memory engine (new_memory_engine) is what this issue
// ships; a durable engine implements the same interface later.
//
// Thread-safety: every method may be called from any thread. Calls on distinct partitions
// never wait for each other; calls on one partition are serialised by the engine.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "nodus/transport/status.hpp"

namespace nodus::kv {

struct EngineStats {
  std::uint64_t keys = 0;          ///< entries over all partitions
  std::uint64_t data_bytes = 0;    ///< key and value bytes stored
  std::uint64_t memory_bytes = 0;  ///< an estimate of all memory the engine holds
};

class Engine {
 public:
  virtual ~Engine() = default;

  /// Stores `value` under `key` in `partition`, replacing what was there. With a durable
  /// engine, ok means written (and synced when the engine syncs). Errors: the engine's own.
  /// REQUIRES: partition < the engine's partition count.
  virtual Status put(std::uint32_t partition, std::string_view key, std::string_view value) = 0;
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
  virtual bool durable() const = 0;
};

/// An engine in memory: one open-addressing hash table per partition, each entry one
/// allocation holding its key and value (beside them, an 8-byte header, malloc's word and
/// rounding to 16, and 8 to 16 bytes of table: about 45 bytes per entry for small keys).
/// Nothing survives the process. REQUIRES: partitions >= 1.
std::unique_ptr<Engine> new_memory_engine(std::uint32_t partitions);

}  // namespace nodus::kv
