// A hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014) for
// `conflicts = lww`: timestamps that follow the wall clock in milliseconds but never go
// backwards on a node and always exceed every timestamp the node has seen, so a write that
// causally follows another wins even when the two coordinators' clocks disagree.
//
// A timestamp is (wall-clock ms << 16) | logical counter.
//
// Thread-safety: now() and observe() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <utility>

namespace nodus::kv {

class HybridClock {
 public:
  using WallMs = std::function<std::uint64_t()>;
  static std::uint64_t system_ms() {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
  }
  explicit HybridClock(WallMs wall = &system_ms) : wall_(std::move(wall)) {}

  /// A new timestamp, above every earlier one of this clock and every one observed.
  std::uint64_t now() {
    const std::uint64_t physical = wall_() << 16;
    std::uint64_t last = last_.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint64_t next = physical > last ? physical : last + 1;
      if (last_.compare_exchange_weak(last, next, std::memory_order_relaxed)) return next;
    }
  }
  /// Takes in a timestamp seen in a message, so later ones exceed it.
  void observe(std::uint64_t ts) {
    std::uint64_t last = last_.load(std::memory_order_relaxed);
    while (ts > last && !last_.compare_exchange_weak(last, ts, std::memory_order_relaxed)) {
    }
  }
  /// The wall-clock milliseconds of a timestamp.
  static std::uint64_t millis(std::uint64_t ts) { return ts >> 16; }

 private:
  WallMs wall_;
  std::atomic<std::uint64_t> last_{0};
};

}  // namespace nodus::kv
