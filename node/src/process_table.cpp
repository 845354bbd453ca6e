#include "process_table.hpp"

#include "check.hpp"
#include "process_impl.hpp"

namespace nodus::detail {

ProcessTable::ProcessTable() : segments_(new std::atomic<Slot*>[kMaxSegments]) {
  for (std::uint32_t i = 0; i < kMaxSegments; ++i) segments_[i].store(nullptr);
}

ProcessTable::~ProcessTable() {
  for (std::uint32_t i = 0; i < kMaxSegments; ++i) {
    Slot* s = segments_[i].load();
    if (!s) continue;
    for (std::uint32_t j = 0; j < kSegmentSize; ++j) {
      // Processes still here at teardown were never removed (the node could not stop them).
      if (s[j].word.load() & kAlive) delete s[j].process;
    }
    delete[] s;
  }
}

std::uint64_t ProcessTable::insert(Process* p, const std::function<void(std::uint64_t)>& named) {
  std::uint32_t index;
  {
    MutexLock lock(free_mu_);
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      index = next_++;
      std::uint32_t seg = index >> kSegmentBits;
      NODUS_CHECK(seg < kMaxSegments);
      if (!segments_[seg].load(std::memory_order_relaxed)) {
        segments_[seg].store(new Slot[kSegmentSize], std::memory_order_release);
      }
    }
  }
  Slot* s = slot(index);
  std::uint64_t gen = s->word.load(std::memory_order_relaxed) >> 32;
  const std::uint64_t id = (gen << 32) | index;
  named(id);
  s->process = p;
  s->word.store((gen << 32) | kAlive | 1, std::memory_order_release);
  size_.fetch_add(1, std::memory_order_relaxed);
  return id;
}

ProcessTable::Handle ProcessTable::lookup(std::uint64_t id) {
  std::uint32_t index = static_cast<std::uint32_t>(id);
  std::uint64_t gen = id >> 32;
  Slot* s = slot(index);
  if (!s) return {};
  std::uint64_t w = s->word.load(std::memory_order_acquire);
  for (;;) {
    if ((w >> 32) != gen || !(w & kAlive)) return {};
    if (s->word.compare_exchange_weak(w, w + 1, std::memory_order_acquire,
                                      std::memory_order_acquire)) {
      return Handle(this, index, s->process);
    }
  }
}

void ProcessTable::mark_exiting(std::uint64_t id) {
  Slot* s = slot(static_cast<std::uint32_t>(id));
  NODUS_CHECK(s != nullptr);
  s->word.fetch_or(kExiting, std::memory_order_seq_cst);
}

void ProcessTable::release(std::uint32_t index) {
  Slot* s = slot(index);
  std::uint64_t w = s->word.fetch_sub(1, std::memory_order_acq_rel);
  if ((w & kCountMask) != 1) return;
  // Last reference: the process is dead (the table's own reference is gone).
  Process* p = s->process;
  s->process = nullptr;
  std::uint64_t gen = (w >> 32) + 1;
  if (gen > 0xffffffffull) gen = 1;
  s->word.store(gen << 32, std::memory_order_release);
  delete p;
  MutexLock lock(free_mu_);
  free_.push_back(index);
}

void ProcessTable::remove(std::uint64_t id) {
  std::uint32_t index = static_cast<std::uint32_t>(id);
  Slot* s = slot(index);
  NODUS_CHECK(s != nullptr);
  std::uint64_t old = s->word.fetch_and(~kAlive, std::memory_order_acq_rel);
  NODUS_CHECK((old & kAlive) && (old >> 32) == (id >> 32));
  size_.fetch_sub(1, std::memory_order_relaxed);
  release(index);
}

void ProcessTable::Handle::reset() {
  if (p_) {
    table_->release(slot_);
    p_ = nullptr;
  }
}

void ProcessTable::for_each(const std::function<void(Process&)>& f) {
  std::uint32_t end;
  {
    MutexLock lock(free_mu_);
    end = next_;
  }
  for (std::uint32_t i = 0; i < end; ++i) {
    Slot* s = slot(i);
    if (!s) continue;
    std::uint64_t w = s->word.load(std::memory_order_acquire);
    if (!(w & kAlive)) continue;
    Handle h = lookup((w >> 32) << 32 | i);
    if (h) f(*h.get());
  }
}

}  // namespace nodus::detail
