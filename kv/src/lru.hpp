// LRU eviction (kv.max_keys, kv.max_memory): the recency of a node's live keys, all partitions.
//
// Recency is exact and node-wide: one recency list (most recent first) of (partition, key) and
// a hash index into it, so a touch (a read or write of the key on any replica here) is O(1)
// and the least recently used keys of the whole node are the list's tail. A node over its bound
// takes its victims from that tail, those of the partitions it owns in the ring first (DESIGN.md
// "the partitions it owns first"), then those of its other primary partitions. It costs about
// 100 bytes per live key beside the key's own bytes (a list node holding the key and 4 bytes of
// partition, a hash node, a bucket), and only when a bound is set: with kv.max_keys =
// kv.max_memory = 0 nothing is tracked and no lock is taken. Redis's sampled approximate LRU
// needs random keys of the store and a clock field in each stored object (a read would then
// rewrite the object: an engine write and an AAE tree update per get); the list touches memory
// only. A per-partition list (one per vnode, no lock) was tried first: a partition holding
// mostly hot keys then had to give its share of the excess from them while other partitions
// kept cold ones, so recently read keys were evicted; one list per node does not.
//
// Thread-safety: every method may be called from any thread (the vnodes of the node touch it);
// one mutex, held for O(1) per touch and O(scan) per eviction round.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "nodus/transport/detail/mutex.hpp"

namespace nodus::kv {

class NodeLru {
 public:
  explicit NodeLru(std::uint32_t partitions)
      : counts_(std::make_unique<std::atomic<std::uint64_t>[]>(partitions)),
        partitions_(partitions) {
    for (std::uint32_t p = 0; p < partitions; ++p) counts_[p].store(0);
  }

  /// Makes `key` of partition `p` the most recently used, adding it when absent.
  void touch(std::uint32_t p, std::string_view key) NODUS_EXCLUDES(mu_) {
    nodus::detail::MutexLock lock(mu_);
    const std::string& id = compose(p, key);
    auto it = at_.find(id);
    if (it != at_.end()) {
      order_.splice(order_.begin(), order_, it->second);
      return;
    }
    order_.push_front(id);
    at_.emplace(std::string_view(order_.front()), order_.begin());
    counts_[p].fetch_add(1, std::memory_order_relaxed);
  }
  /// Makes it the most recently used if it is tracked (a read: a read of a deleted key adds
  /// nothing).
  void touch_if_present(std::uint32_t p, std::string_view key) NODUS_EXCLUDES(mu_) {
    nodus::detail::MutexLock lock(mu_);
    auto it = at_.find(compose(p, key));
    if (it != at_.end()) order_.splice(order_.begin(), order_, it->second);
  }
  /// Forgets it (deleted, erased); nothing when it is not tracked.
  void remove(std::uint32_t p, std::string_view key) NODUS_EXCLUDES(mu_) {
    nodus::detail::MutexLock lock(mu_);
    auto it = at_.find(compose(p, key));
    if (it == at_.end()) return;
    auto pos = it->second;
    at_.erase(it);
    order_.erase(pos);
    counts_[p].fetch_sub(1, std::memory_order_relaxed);
  }
  /// Live keys tracked in partition `p`, and in all.
  std::uint64_t keys(std::uint32_t p) const { return counts_[p].load(std::memory_order_relaxed); }
  std::uint64_t size() const {
    std::uint64_t n = 0;
    for (std::uint32_t p = 0; p < partitions_; ++p) n += keys(p);
    return n;
  }
  /// Up to `n` (partition, key), least recently used first: those of the partitions `first`
  /// selects, then when they are too few those `then` selects; at most `scan` entries from the
  /// tail are looked at.
  std::vector<std::pair<std::uint32_t, std::string>> oldest(
      std::size_t n, const std::function<bool(std::uint32_t)>& first,
      const std::function<bool(std::uint32_t)>& then, std::size_t scan) const NODUS_EXCLUDES(mu_) {
    std::vector<std::pair<std::uint32_t, std::string>> out, more;
    nodus::detail::MutexLock lock(mu_);
    std::size_t seen = 0;
    for (auto it = order_.rbegin(); it != order_.rend() && out.size() < n && seen < scan;
         ++it, ++seen) {
      const std::uint32_t p = partition_of_id(*it);
      if (first(p)) {
        out.emplace_back(p, it->substr(4));
      } else if (more.size() < n && then(p)) {
        more.emplace_back(p, it->substr(4));
      }
    }
    for (auto& m : more) {
      if (out.size() >= n) break;
      out.push_back(std::move(m));
    }
    return out;
  }

 private:
  // The list's entries: the partition (4 bytes, big endian), then the key.
  static const std::string& compose(std::uint32_t p, std::string_view key) {
    thread_local std::string id;
    id.assign({static_cast<char>(p >> 24), static_cast<char>(p >> 16), static_cast<char>(p >> 8),
               static_cast<char>(p)});
    id.append(key);
    return id;
  }
  static std::uint32_t partition_of_id(const std::string& id) {
    const auto* b = reinterpret_cast<const unsigned char*>(id.data());
    return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
           b[3];
  }

  mutable nodus::detail::Mutex mu_;
  std::list<std::string> order_ NODUS_GUARDED_BY(mu_);  // front: most recently used
  std::unordered_map<std::string_view, std::list<std::string>::iterator> at_
      NODUS_GUARDED_BY(mu_);                              // views the strings of order_
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;  // per partition, changed under mu_
  std::uint32_t partitions_;
};

}  // namespace nodus::kv
