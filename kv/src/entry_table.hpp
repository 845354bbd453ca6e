// What the store's per-key indexes (the TTL index, ttl.hpp; the LRU list, lru.hpp) are built
// of: entries that hold their key inline (one malloc'd block per key per index, the key's
// bytes after a small header), found by an open-addressing hash table of pointers to them with
// a one-byte fragment of each key's hash beside its slot (the memory engine's table, which
// keeps a probe short and a miss to one line of fragments). std::map / std::list /
// std::unordered_map nodes with a std::string each cost two or three allocations per key; this
// costs one, ~9-24 bytes of table and the entry's header beside the key.
//
// Thread-safety: none; the index that owns a table serialises its use.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>
#include <vector>

namespace nodus::kv {

/// What malloc takes for a block of `n` bytes, by jemalloc's size classes (8, 16 ... 128 by 16,
/// then four classes per doubling); glibc's (n + 8 rounded up to 16) comes within a class.
inline std::size_t malloc_bytes(std::size_t n) {
  if (n <= 8) return 8;
  if (n <= 128) return (n + 15) & ~std::size_t{15};
  const std::size_t step = std::bit_ceil(n) >> 3;
  return (n + step - 1) & ~(step - 1);
}

/// malloc(n) that does not return null (out of memory: nothing sensible to do but stop).
inline void* checked_malloc(std::size_t n) {
  void* p = std::malloc(n);
  if (!p) std::abort();
  return p;
}

/// An open-addressing hash table of `Entry*` (owned by the caller). `HashOf` computes an
/// entry's hash again (for a move on grow or erase): `std::uint64_t operator()(const Entry&)`.
/// Lookups take the hash and an equality test, so the table needs no key of its own.
template <class Entry, class HashOf>
class EntryTable {
 public:
  EntryTable() = default;
  EntryTable(EntryTable&& o) noexcept
      : slots_(std::move(o.slots_)),
        frags_(std::move(o.frags_)),
        size_(std::exchange(o.size_, 0)) {}
  EntryTable& operator=(EntryTable&& o) noexcept {
    slots_ = std::move(o.slots_);
    frags_ = std::move(o.frags_);
    size_ = std::exchange(o.size_, 0);
    return *this;
  }

  /// The entry of hash `h` for which `eq(entry)` holds, or null.
  template <class Eq>
  Entry* find(std::uint64_t h, Eq&& eq) const {
    if (size_ == 0) return nullptr;
    const std::uint8_t f = fragment(h);
    for (std::size_t i = h & mask();; i = (i + 1) & mask()) {
      Entry* e = slots_[i];
      if (!e) return nullptr;
      if (frags_[i] == f && eq(*e)) return e;
    }
  }
  /// Adds `e` of hash `h`. REQUIRES: no equal entry is in the table.
  void insert(std::uint64_t h, Entry* e) {
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    place(h, e);
    ++size_;
  }
  /// Takes out the entry of hash `h` for which `eq(entry)` holds and returns it (null: none).
  template <class Eq>
  Entry* erase(std::uint64_t h, Eq&& eq) {
    if (size_ == 0) return nullptr;
    const std::uint8_t f = fragment(h);
    std::size_t i = h & mask();
    for (;; i = (i + 1) & mask()) {
      if (!slots_[i]) return nullptr;
      if (frags_[i] == f && eq(*slots_[i])) break;
    }
    Entry* out = slots_[i];
    slots_[i] = nullptr;
    --size_;
    // Backward shift: later entries of the run move into the hole when their home allows.
    std::size_t hole = i;
    for (std::size_t j = (i + 1) & mask(); slots_[j]; j = (j + 1) & mask()) {
      const std::size_t home = HashOf()(*slots_[j]) & mask();
      const bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
      if (movable) {
        slots_[hole] = slots_[j];
        frags_[hole] = frags_[j];
        slots_[j] = nullptr;
        hole = j;
      }
    }
    return out;
  }
  /// Calls `fn(Entry*)` for every entry (in no set order).
  template <class F>
  void each(F&& fn) const {
    for (Entry* e : slots_) {
      if (e) fn(e);
    }
  }

  std::size_t size() const { return size_; }
  /// The table's own bytes (slots and fragments), not the entries'.
  std::size_t bytes() const {
    return slots_.empty()
               ? 0
               : malloc_bytes(slots_.capacity() * sizeof(Entry*)) + malloc_bytes(frags_.capacity());
  }

 private:
  std::size_t mask() const { return slots_.size() - 1; }
  // Bits 40..47, as the memory engine: the slot index takes the low bits.
  static std::uint8_t fragment(std::uint64_t h) { return static_cast<std::uint8_t>(h >> 40); }
  void place(std::uint64_t h, Entry* e) {
    std::size_t i = h & mask();
    while (slots_[i]) i = (i + 1) & mask();
    slots_[i] = e;
    frags_[i] = fragment(h);
  }
  void grow() {
    std::vector<Entry*> old = std::move(slots_);
    slots_.assign(old.empty() ? 16 : old.size() * 2, nullptr);
    frags_.assign(slots_.size(), 0);
    for (Entry* e : old) {
      if (e) place(HashOf()(*e), e);
    }
  }

  std::vector<Entry*> slots_;
  std::vector<std::uint8_t> frags_;  // per slot: fragment() of its entry's hash
  std::size_t size_ = 0;
};

}  // namespace nodus::kv
