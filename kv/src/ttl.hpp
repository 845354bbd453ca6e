// Expiry (TTL): what reads as live at a moment, the per-partition index of the keys that hold
// values with an expiry, and the sweep that turns expired values into tombstones.
//
// A put with a ttl stores its value with an absolute expiry (Sibling::expiry_ms: wall-clock ms
// since 1970, the coordinator's clock plus the ttl), replicated with it like any other field
// of the object: replica writes, read repair, hinted hand-off and transfers all carry it, and
// the durable engine stores it. Every read (get, keys, explain, the merge functions' input)
// treats a value past its expiry as absent at once, on any node, without waiting for a sweep.
//
// No resurrection. An expired value is not dropped: the sweep turns it into a tombstone under
// the same dot (Sibling::tombstone, its expiry kept), so it goes on superseding whatever its
// write superseded, exactly as a delete does, and is then reaped by the tombstone rules (every
// primary holds it and kv.tombstone_ttl has passed, counted from its expiry). A replica that
// missed the write and still holds an older value is repaired by the tombstone, never the
// other way round. (Riak's TTL dropped expired objects on each backend by itself, so an older
// copy elsewhere or in the AAE trees could come back: basho/riak#981.) Both forms of an
// expired dot read the same, so replicas that hold one or the other agree.
//
// Thread-safety: the functions are pure; an ExpiryIndex belongs to its partition's vnode.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "entry_table.hpp"
#include "object.hpp"

namespace nodus::kv {

struct KvState;

/// The longest ttl a put may ask for, in ms (about 300 years): past it, badarg.
inline constexpr std::uint64_t kMaxTtlMs = std::uint64_t{10'000'000'000'000};

/// Keys whose expired values the sweep turns into tombstones per vnode per round, at most
/// (kv.ttl_sweep_interval_ms apart); the rest wait for the next round.
inline constexpr std::size_t kSweepPerRound = 1000;

/// True when `s` reads as a value at wall-clock `now_ms`: no tombstone, not expired.
inline bool is_live(const Sibling& s, std::uint64_t now_ms) {
  return !s.tombstone && (s.expiry_ms == 0 || s.expiry_ms > now_ms);
}

/// True when no value of `o` is live at `now_ms` (deleted, expired, or empty): the key reads as
/// not found.
bool reads_absent(const Object& o, std::uint64_t now_ms);

/// How long the key lives on at `now_ms`, in ms: the latest expiry of its live values, minus
/// now; 0 when some live value never expires; nullopt when none is live.
std::optional<std::uint64_t> ttl_left_ms(const Object& o, std::uint64_t now_ms);

/// The earliest expiry of a value that is not yet a tombstone (0: none): when the sweep should
/// look at the key next.
std::uint64_t next_expiry(const Object& o);

/// The sweep's change to one object: every value expired at `now_ms` becomes a tombstone (its
/// dot, timestamp and expiry kept, its bytes dropped). Returns how many did.
std::size_t expire_values(Object& o, std::uint64_t now_ms);

/// The newest moment (wall-clock ms) a tombstone of `o` stands for: its write, or its expiry
/// when it is an expired value's. kv.tombstone_ttl counts from it.
std::uint64_t tombstone_age_from(const Object& o);

/// A partition's keys that hold a value with an expiry, by when the first one expires: one
/// entry per key, updated on every write of the key (write_local), so it holds at most as many
/// keys as the partition. An entry may be stale (the key was overwritten or dropped since): the
/// sweep reads the key again before it changes anything. Kept in PartitionState, so a
/// restarted vnode keeps it; rebuilt from the engine when the store starts on a durable one.
/// Each key is one malloc'd entry (its expiry, its place in the queue, its size, then its
/// bytes), found by an open-addressing table of pointers (entry_table.hpp) and queued in a
/// binary heap of pointers ordered by (expiry, key): about 16 bytes of entry header, malloc's
/// rounding, 9-24 bytes of table and 8-16 of heap beside the key's bytes (a std::map from key to
/// expiry and a std::set of (expiry, key) took ~145). Keys due at once come out in key order.
/// Thread-safety: only its partition's vnode changes it; memory_bytes() may be read from any
/// thread.
class ExpiryIndex {
 public:
  ExpiryIndex() = default;
  ~ExpiryIndex();
  ExpiryIndex(ExpiryIndex&& o) noexcept;
  ExpiryIndex& operator=(ExpiryIndex&&) = delete;
  ExpiryIndex(const ExpiryIndex&) = delete;
  ExpiryIndex& operator=(const ExpiryIndex&) = delete;

  /// `key` now expires first at `expiry_ms` (0: holds nothing that expires: forgotten).
  void note(std::string_view key, std::uint64_t expiry_ms);
  /// Takes out up to `limit` keys due at `now_ms`, earliest first (ties in key order).
  std::vector<std::string> take_due(std::uint64_t now_ms, std::size_t limit);
  std::size_t size() const { return queue_.size(); }
  bool empty() const { return queue_.empty(); }
  /// The bytes the index holds (entries by malloc's rounding, table, heap).
  std::uint64_t memory_bytes() const { return bytes_.load(std::memory_order_relaxed); }

 private:
  struct Entry {
    std::uint64_t expiry_ms;
    std::uint32_t at;  // its index in queue_
    std::uint32_t size;
    char* bytes() { return reinterpret_cast<char*>(this + 1); }
    std::string_view key() const { return {reinterpret_cast<const char*>(this + 1), size}; }
  };
  struct HashOf {
    std::uint64_t operator()(const Entry& e) const;
  };
  static bool before(const Entry* a, const Entry* b) {
    return a->expiry_ms != b->expiry_ms ? a->expiry_ms < b->expiry_ms : a->key() < b->key();
  }
  void set(std::size_t i, Entry* e) {
    queue_[i] = e;
    e->at = static_cast<std::uint32_t>(i);
  }
  void sift_up(std::size_t i);
  void sift_down(std::size_t i);
  void unqueue(Entry* e);  // takes `e` out of queue_
  void release(Entry* e);  // frees it, out of both
  void publish_bytes();

  EntryTable<Entry, HashOf> due_;
  std::vector<Entry*> queue_;  // a binary min-heap by before()
  std::uint64_t entry_bytes_ = 0;
  std::atomic<std::uint64_t> bytes_{0};
};

/// Notes the object just stored under `key` in partition `p`'s index: called by every write.
/// Cheap when neither the object nor the index holds an expiry.
void note_expiry(ExpiryIndex& index, std::string_view key, const Object& o);

/// Runs one sweep round of partition `p` (on its vnode): up to kSweepPerRound keys whose values
/// expired are read again, their expired values turned into tombstones and stored, each key
/// counted in Counters::expired. Each is stored through `write` (the vnode's write_local, which
/// keeps the partition's anti-entropy tree and this index current). Returns the keys that now
/// hold tombstones only (the vnode schedules their reap checks). `expired`, when set, is called
/// after each such write with the key's object as it was before its values expired (for the
/// watches' expire event).
std::vector<std::string> sweep_expired(
    KvState& st, std::uint32_t p,
    const std::function<Status(const std::string& key, const Object& o)>& write,
    const std::function<void(const std::string& key, const Object& before)>& expired = {});

/// With a durable engine that holds data at start: fills every partition's index from it (one
/// scan, decoding only objects whose encoding has expiries).
void restore_expiry_index(KvState& st);

}  // namespace nodus::kv
