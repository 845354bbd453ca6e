// The in-memory engine: per partition, a linear-probing hash table of pointers to entries, each
// entry one malloc'd block [u32 key size][u32 value size][key][value]. Lean on purpose: the
// store aims at 10 M keys per node (issue 13: <= 128 bytes per key replica beside its bytes),
// which a std::unordered_map<std::string, std::string> (~100 bytes of overhead) would not meet.
// Deletion shifts later entries back (no tombstones), so probes stay short. Beside each slot a
// one-byte fragment of the key's hash: a probe reads an entry only when its fragment matches,
// so a miss (every put of a fresh key) reads one line of fragments, not ~8 entries.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "nodus/kv/engine.hpp"
#include "nodus/transport/detail/mutex.hpp"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace nodus::kv {

namespace {

constexpr std::size_t kHeader = 8;

std::uint32_t load32(const char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
std::string_view key_of(const char* e) { return {e + kHeader, load32(e)}; }
std::string_view value_of(const char* e) { return {e + kHeader + load32(e), load32(e + 4)}; }
std::size_t entry_size(const char* e) { return kHeader + load32(e) + load32(e + 4); }
// What malloc takes for a block of `n` bytes: glibc rounds n plus its size word up to 16, at
// least 32 (jemalloc's size classes come close).
std::size_t chunk_bytes(std::size_t n) { return std::max<std::size_t>(32, (n + 8 + 15) & ~15ULL); }

char* make_entry(std::string_view key, std::string_view value) {
  char* e = static_cast<char*>(std::malloc(kHeader + key.size() + value.size()));
  if (!e) std::abort();  // out of memory: nothing sensible to return
  const auto ks = static_cast<std::uint32_t>(key.size());
  const auto vs = static_cast<std::uint32_t>(value.size());
  std::memcpy(e, &ks, 4);
  std::memcpy(e + 4, &vs, 4);
  std::memcpy(e + kHeader, key.data(), key.size());
  if (!value.empty()) std::memcpy(e + kHeader + key.size(), value.data(), value.size());
  return e;
}

class Table {
 public:
  ~Table() {
    for (char* e : slots_) std::free(e);
  }

  const char* find(std::string_view key) const {
    if (size_ == 0) return nullptr;
    const std::uint64_t h = hash(key);
    const std::uint8_t f = fragment(h);
    for (std::size_t i = h & mask();; i = (i + 1) & mask()) {
      const char* e = slots_[i];
      if (!e) return nullptr;
      if (frags_[i] == f && key_of(e) == key) return e;
    }
  }

  // Returns the change in stored bytes.
  std::int64_t put(std::string_view key, std::string_view value) {
    if ((size_ + 1) * 4 > slots_.size() * 3) grow();
    const std::uint64_t h = hash(key);
    const std::uint8_t f = fragment(h);
    for (std::size_t i = h & mask();; i = (i + 1) & mask()) {
      char*& e = slots_[i];
      if (!e) {
        e = make_entry(key, value);
        frags_[i] = f;
        allocated_ += chunk_bytes(entry_size(e));
        ++size_;
        return static_cast<std::int64_t>(key.size() + value.size());
      }
      if (frags_[i] == f && key_of(e) == key) {
        const auto old = static_cast<std::int64_t>(load32(e + 4));
        allocated_ -= chunk_bytes(entry_size(e));
        std::free(e);
        e = make_entry(key, value);
        allocated_ += chunk_bytes(entry_size(e));
        return static_cast<std::int64_t>(value.size()) - old;
      }
    }
  }

  // Returns the bytes freed (0 if absent).
  std::int64_t erase(std::string_view key) {
    if (size_ == 0) return 0;
    const std::uint64_t kh = hash(key);
    const std::uint8_t f = fragment(kh);
    std::size_t i = kh & mask();
    for (;; i = (i + 1) & mask()) {
      if (!slots_[i]) return 0;
      if (frags_[i] == f && key_of(slots_[i]) == key) break;
    }
    const auto freed = static_cast<std::int64_t>(entry_size(slots_[i]) - kHeader);
    allocated_ -= chunk_bytes(entry_size(slots_[i]));
    std::free(slots_[i]);
    slots_[i] = nullptr;
    --size_;
    // Backward shift: move later entries of the run into the hole when their home allows.
    std::size_t hole = i;
    for (std::size_t j = (i + 1) & mask(); slots_[j]; j = (j + 1) & mask()) {
      const std::size_t h = home(key_of(slots_[j]));
      const bool movable = hole <= j ? (h <= hole || h > j) : (h <= hole && h > j);
      if (movable) {
        slots_[hole] = slots_[j];
        frags_[hole] = frags_[j];
        slots_[j] = nullptr;
        hole = j;
      }
    }
    return freed;
  }

  template <class F>
  void each(F&& f) const {
    for (const char* e : slots_) {
      if (e && !f(e)) return;
    }
  }

  std::size_t size() const { return size_; }
  std::size_t slot_bytes() const { return slots_.capacity() * sizeof(char*) + frags_.capacity(); }
  /// What the entries take from malloc, by its rounding (chunk_bytes).
  std::size_t entry_bytes() const { return allocated_; }

 private:
  std::size_t mask() const { return slots_.size() - 1; }
  static std::uint64_t hash(std::string_view key) { return XXH3_64bits(key.data(), key.size()); }
  // Bits 40..47: the slot index takes the low bits, and keys of one partition share the top
  // ones when they have no hash tag (the partition is the top bits of the same hash).
  static std::uint8_t fragment(std::uint64_t h) { return static_cast<std::uint8_t>(h >> 40); }
  std::size_t home(std::string_view key) const {
    return static_cast<std::size_t>(hash(key)) & mask();
  }
  void grow() {
    std::vector<char*> old = std::move(slots_);
    std::vector<std::uint8_t> old_frags = std::move(frags_);
    slots_.assign(old.empty() ? 16 : old.size() * 2, nullptr);
    frags_.assign(slots_.size(), 0);
    for (std::size_t k = 0; k < old.size(); ++k) {
      char* e = old[k];
      if (!e) continue;
      std::size_t i = home(key_of(e));
      while (slots_[i]) i = (i + 1) & mask();
      slots_[i] = e;
      frags_[i] = old_frags[k];
    }
  }

  std::vector<char*> slots_;
  std::vector<std::uint8_t> frags_;  // per slot: fragment() of its key's hash
  std::size_t size_ = 0;
  std::size_t allocated_ = 0;
};

struct Partition {
  // Serialises the vnode that owns this partition with folds (hand-off) and stats readers.
  mutable nodus::detail::Mutex mu;
  Table table NODUS_GUARDED_BY(mu);
  // Read without mu by keys() and data_bytes() (atomics, written under it).
  std::atomic<std::uint64_t> keys{0};
  std::atomic<std::uint64_t> bytes{0};
};

class MemoryEngine final : public Engine {
 public:
  explicit MemoryEngine(std::uint32_t partitions) : parts_(partitions) {}

  Status put(std::uint32_t partition, std::string_view key, std::string_view value) override {
    Partition& p = parts_[partition];
    nodus::detail::MutexLock lock(p.mu);
    const std::int64_t delta = p.table.put(key, value);
    p.bytes.fetch_add(static_cast<std::uint64_t>(delta), std::memory_order_relaxed);
    p.keys.store(p.table.size(), std::memory_order_relaxed);
    return Status();
  }
  Status get(std::uint32_t partition, std::string_view key, std::string* value) const override {
    const Partition& p = parts_[partition];
    nodus::detail::MutexLock lock(p.mu);
    const char* e = p.table.find(key);
    if (!e) return Status(ErrorCode::kNotFound);
    value->assign(value_of(e));
    return Status();
  }
  Status erase(std::uint32_t partition, std::string_view key) override {
    Partition& p = parts_[partition];
    nodus::detail::MutexLock lock(p.mu);
    const std::int64_t freed = p.table.erase(key);
    p.bytes.fetch_sub(static_cast<std::uint64_t>(freed), std::memory_order_relaxed);
    p.keys.store(p.table.size(), std::memory_order_relaxed);
    return Status();
  }
  void fold(std::uint32_t partition,
            const std::function<bool(std::string_view, std::string_view)>& fn) const override {
    const Partition& p = parts_[partition];
    nodus::detail::MutexLock lock(p.mu);
    p.table.each([&](const char* e) { return fn(key_of(e), value_of(e)); });
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
      nodus::detail::MutexLock lock(p.mu);
      s.keys += p.table.size();
      s.data_bytes += p.bytes.load(std::memory_order_relaxed);
      s.memory_bytes += p.table.slot_bytes() + p.table.entry_bytes();
    }
    s.memory_bytes += parts_.size() * sizeof(Partition);
    return s;
  }
  bool durable() const override { return false; }

 private:
  std::vector<Partition> parts_;
};

}  // namespace

std::unique_ptr<Engine> new_memory_engine(std::uint32_t partitions) {
  return std::make_unique<MemoryEngine>(partitions);
}

}  // namespace nodus::kv
