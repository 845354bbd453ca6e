// ProcessTable: maps a local pid's id to its Process, lock-free on the lookup path.
//
// The id of a pid is (generation << 32 | slot). Each slot has one atomic word
// [generation:32 | alive:1 | exiting:1 | count:30]: a lookup succeeds only while the slot's
// generation matches and the process is alive, and it takes a counted reference (one CAS) so the
// process cannot be freed under the caller. The table itself holds one reference while the process
// is alive; the last reference to go deletes the process and frees the slot for reuse under the
// next generation, so stale pids never reach a new process.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "nodus/node/detail/mutex.hpp"

namespace nodus::detail {

class Process;

class ProcessTable {
 public:
  ProcessTable();
  ~ProcessTable();
  ProcessTable(const ProcessTable&) = delete;
  ProcessTable& operator=(const ProcessTable&) = delete;

  /// A counted reference to a live (or recently dead) process. Move-only.
  class Handle {
   public:
    Handle() = default;
    Handle(Handle&& o) noexcept : table_(o.table_), slot_(o.slot_), p_(o.p_) { o.p_ = nullptr; }
    Handle& operator=(Handle&& o) noexcept {
      if (this != &o) {
        reset();
        table_ = o.table_;
        slot_ = o.slot_;
        p_ = o.p_;
        o.p_ = nullptr;
      }
      return *this;
    }
    ~Handle() { reset(); }
    Process* get() const { return p_; }
    Process* operator->() const { return p_; }
    explicit operator bool() const { return p_ != nullptr; }
    void reset();

   private:
    friend class ProcessTable;
    Handle(ProcessTable* t, std::uint32_t slot, Process* p) : table_(t), slot_(slot), p_(p) {}
    ProcessTable* table_ = nullptr;
    std::uint32_t slot_ = 0;
    Process* p_ = nullptr;
  };

  /// Adds `p` (the table takes ownership) and returns its id (never 0). `named` is called with
  /// the id before the process becomes visible to lookup and for_each (it sets the pid that
  /// other threads then read).
  std::uint64_t insert(Process* p, const std::function<void(std::uint64_t)>& named);
  /// The process with `id` if it is alive.
  Handle lookup(std::uint64_t id);
  /// Whether the process with `id` is alive and not exiting (mark_exiting): one load, no
  /// reference taken, so concurrent readers share the slot's cache line. Inline: the name
  /// services ask it on every lookup.
  bool alive(std::uint64_t id) const {
    const Slot* s = slot(static_cast<std::uint32_t>(id));
    if (!s) return false;
    // seq_cst (a plain load on x86): Runtime::send_after pairs it with Process::finish.
    const std::uint64_t w = s->word.load(std::memory_order_seq_cst);
    return (w >> 32) == (id >> 32) && (w & kAlive) && !(w & kExiting);
  }
  /// The process with `id` has begun to exit: alive() is false from now on, while lookups
  /// still find it until remove(). REQUIRES: called by the process itself, before remove().
  void mark_exiting(std::uint64_t id);
  /// Marks the process dead and drops the table's reference: lookups fail from now on and the
  /// process is deleted when the last Handle goes. REQUIRES: called once per inserted id.
  void remove(std::uint64_t id);

  std::size_t size() const { return size_.load(std::memory_order_relaxed); }

  /// Calls f on every live process (holding a reference during the call).
  void for_each(const std::function<void(Process&)>& f);

 private:
  static constexpr std::uint32_t kSegmentBits = 16;
  static constexpr std::uint32_t kSegmentSize = 1u << kSegmentBits;
  static constexpr std::uint32_t kMaxSegments = 1u << 14;  // 2^30 slots
  static constexpr std::uint64_t kAlive = 1ull << 31;
  static constexpr std::uint64_t kExiting = 1ull << 30;
  static constexpr std::uint64_t kCountMask = kExiting - 1;

  struct Slot {
    std::atomic<std::uint64_t> word{1ull << 32};  // generation 1, dead, count 0
    Process* process = nullptr;
  };

  Slot* slot(std::uint32_t index) const {
    std::uint32_t seg = index >> kSegmentBits;
    if (seg >= kMaxSegments) return nullptr;
    Slot* s = segments_[seg].load(std::memory_order_acquire);
    return s ? &s[index & (kSegmentSize - 1)] : nullptr;
  }
  void release(std::uint32_t index);

  std::unique_ptr<std::atomic<Slot*>[]> segments_;
  // Guards the free list and the slot allocation cursor; held only to take or return a slot,
  // never on the lookup path.
  Mutex free_mu_;
  std::vector<std::uint32_t> free_ NODUS_GUARDED_BY(free_mu_);
  std::uint32_t next_ NODUS_GUARDED_BY(free_mu_) = 0;
  std::atomic<std::size_t> size_{0};
};

}  // namespace nodus::detail
