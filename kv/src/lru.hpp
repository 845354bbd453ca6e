// LRU eviction (kv.max_keys, kv.max_memory): the recency of a node's live keys, all partitions.
//
// Recency is exact and node-wide: one recency list (most recent first) of (partition, key) and
// a hash index into it, so a touch (a read or write of the key on any replica here) is O(1)
// and the least recently used keys of the whole node are the list's tail. A node over its bound
// takes its victims from that tail, those of the partitions it owns in the ring first (DESIGN.md
// "the partitions it owns first"), then those of its other primary partitions. Each tracked key
// is one malloc'd entry: the list's links, the partition and the key's size, then the key's
// bytes (an intrusive list node), found through an open-addressing table of pointers
// (entry_table.hpp): about 24 bytes of entry header, malloc's rounding and 9-24 bytes of table
// beside the key's own bytes (a std::list of std::string and an unordered_map into it took
// ~110), and only when a bound is set: with kv.max_keys = kv.max_memory = 0 nothing is tracked
// and no lock is taken. memory_bytes() says what it holds, which kv.max_memory counts. Redis's
// sampled approximate LRU needs random keys of the store and a clock field in each stored
// object (a read would then rewrite the object: an engine write and an AAE tree update per
// get); the list touches memory only. A per-partition list (one per vnode, no lock) was tried
// first: a partition holding mostly hot keys then had to give its share of the excess from them
// while other partitions kept cold ones, so recently read keys were evicted; one list per node
// does not.
//
// Thread-safety: every method may be called from any thread (the vnodes of the node touch it);
// one mutex, held for O(1) per touch and O(scan) per eviction round.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "entry_table.hpp"
#include "nodus/transport/detail/mutex.hpp"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace nodus::kv {

class NodeLru {
 public:
  explicit NodeLru(std::uint32_t partitions)
      : counts_(std::make_unique<std::atomic<std::uint64_t>[]>(partitions)),
        partitions_(partitions) {
    for (std::uint32_t p = 0; p < partitions; ++p) counts_[p].store(0);
  }
  ~NodeLru() {
    for (Entry* e = head_; e;) std::free(std::exchange(e, e->next));
  }
  NodeLru(const NodeLru&) = delete;
  NodeLru& operator=(const NodeLru&) = delete;

  /// Makes `key` of partition `p` the most recently used, adding it when absent.
  void touch(std::uint32_t p, std::string_view key) NODUS_EXCLUDES(mu_) {
    const std::uint64_t h = hash(p, key);
    nodus::detail::MutexLock lock(mu_);
    if (Entry* e = at_.find(h, Same{p, key})) {
      unlink(e);
      push_front(e);
      return;
    }
    auto* e = static_cast<Entry*>(checked_malloc(sizeof(Entry) + key.size()));
    e->partition = p;
    e->size = static_cast<std::uint32_t>(key.size());
    if (!key.empty()) std::memcpy(e->bytes(), key.data(), key.size());
    at_.insert(h, e);
    push_front(e);
    entry_bytes_ += malloc_bytes(sizeof(Entry) + key.size());
    counts_[p].fetch_add(1, std::memory_order_relaxed);
    publish_bytes();
  }
  /// Makes it the most recently used if it is tracked (a read: a read of a deleted key adds
  /// nothing).
  void touch_if_present(std::uint32_t p, std::string_view key) NODUS_EXCLUDES(mu_) {
    const std::uint64_t h = hash(p, key);
    nodus::detail::MutexLock lock(mu_);
    if (Entry* e = at_.find(h, Same{p, key})) {
      unlink(e);
      push_front(e);
    }
  }
  /// Forgets it (deleted, erased); nothing when it is not tracked.
  void remove(std::uint32_t p, std::string_view key) NODUS_EXCLUDES(mu_) {
    const std::uint64_t h = hash(p, key);
    nodus::detail::MutexLock lock(mu_);
    Entry* e = at_.erase(h, Same{p, key});
    if (!e) return;
    unlink(e);
    entry_bytes_ -= malloc_bytes(sizeof(Entry) + e->size);
    std::free(e);
    counts_[p].fetch_sub(1, std::memory_order_relaxed);
    publish_bytes();
  }
  /// Live keys tracked in partition `p`, and in all.
  std::uint64_t keys(std::uint32_t p) const { return counts_[p].load(std::memory_order_relaxed); }
  std::uint64_t size() const {
    std::uint64_t n = 0;
    for (std::uint32_t p = 0; p < partitions_; ++p) n += keys(p);
    return n;
  }
  /// The bytes the recency list and its index hold (entries by malloc's rounding, the table).
  std::uint64_t memory_bytes() const { return bytes_.load(std::memory_order_relaxed); }
  /// Up to `n` (partition, key), least recently used first: those of the partitions `first`
  /// selects, then when they are too few those `then` selects; at most `scan` entries from the
  /// tail are looked at.
  std::vector<std::pair<std::uint32_t, std::string>> oldest(
      std::size_t n, const std::function<bool(std::uint32_t)>& first,
      const std::function<bool(std::uint32_t)>& then, std::size_t scan) const NODUS_EXCLUDES(mu_) {
    std::vector<std::pair<std::uint32_t, std::string>> out, more;
    nodus::detail::MutexLock lock(mu_);
    std::size_t seen = 0;
    for (const Entry* e = tail_; e && out.size() < n && seen < scan; e = e->prev, ++seen) {
      const std::uint32_t p = e->partition;
      if (first(p)) {
        out.emplace_back(p, e->key());
      } else if (more.size() < n && then(p)) {
        more.emplace_back(p, e->key());
      }
    }
    for (auto& m : more) {
      if (out.size() >= n) break;
      out.push_back(std::move(m));
    }
    return out;
  }

 private:
  // One tracked key: the list's links, then the key's bytes (size of them) after the header.
  struct Entry {
    Entry* prev;  // more recently used; null at the front
    Entry* next;  // less recently used; null at the back
    std::uint32_t partition;
    std::uint32_t size;
    char* bytes() { return reinterpret_cast<char*>(this + 1); }
    std::string_view key() const { return {reinterpret_cast<const char*>(this + 1), size}; }
  };
  static std::uint64_t hash(std::uint32_t p, std::string_view key) {
    return XXH3_64bits_withSeed(key.data(), key.size(), p);
  }
  struct HashOf {
    std::uint64_t operator()(const Entry& e) const { return hash(e.partition, e.key()); }
  };
  struct Same {
    std::uint32_t p;
    std::string_view key;
    bool operator()(const Entry& e) const { return e.partition == p && e.key() == key; }
  };

  void unlink(Entry* e) NODUS_REQUIRES(mu_) {
    (e->prev ? e->prev->next : head_) = e->next;
    (e->next ? e->next->prev : tail_) = e->prev;
  }
  void push_front(Entry* e) NODUS_REQUIRES(mu_) {
    e->prev = nullptr;
    e->next = head_;
    (head_ ? head_->prev : tail_) = e;
    head_ = e;
  }
  void publish_bytes() NODUS_REQUIRES(mu_) {
    bytes_.store(entry_bytes_ + at_.bytes(), std::memory_order_relaxed);
  }

  mutable nodus::detail::Mutex mu_;
  Entry* head_ NODUS_GUARDED_BY(mu_) = nullptr;  // most recently used
  Entry* tail_ NODUS_GUARDED_BY(mu_) = nullptr;  // least recently used
  EntryTable<Entry, HashOf> at_ NODUS_GUARDED_BY(mu_);
  std::uint64_t entry_bytes_ NODUS_GUARDED_BY(mu_) = 0;
  std::atomic<std::uint64_t> bytes_{0};                   // entry_bytes_ and at_'s, for readers
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // per partition, changed under mu_
  std::uint32_t partitions_;
};

}  // namespace nodus::kv
