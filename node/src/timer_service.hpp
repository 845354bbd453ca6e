// TimerService: delivers an envelope to a process at a deadline (private to the runtime).
//
// One thread sleeps until the earliest deadline. Timers live in a binary heap with each entry
// knowing its index, so cancelling (every call that gets its reply in time cancels one) is
// O(log n) and leaves nothing behind. Adding a timer wakes the thread only when the new
// deadline is earlier than the one it sleeps until, so a stream of calls with the same 5 s
// timeout costs no wake-ups.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "envelope.hpp"

namespace nodus::detail {

class Runtime;

class TimerService {
 public:
  using Clock = std::chrono::steady_clock;

  explicit TimerService(Runtime& rt);
  ~TimerService();
  TimerService(const TimerService&) = delete;
  TimerService& operator=(const TimerService&) = delete;

  void start();
  /// Stops the thread; pending timers are dropped. Idempotent.
  void stop();

  /// At `when`, delivers an envelope of `kind` with `ref` (and `msg`) to `to`. `ref.id` is the
  /// timer's key for cancel; it must be unique (a fresh ref).
  void add(Clock::time_point when, const Pid& to, Kind kind, const Ref& ref, Message msg = {});
  /// Removes the timer; the time that was left, or nullopt if it fired or never existed.
  std::optional<std::chrono::milliseconds> cancel(std::uint64_t ref_id);

  std::size_t size() const;

 private:
  struct Entry {
    Clock::time_point when;
    std::size_t index;
    Pid to;
    Kind kind;
    Ref ref;
    Message msg;
  };

  void run();
  void heap_push(Entry* e);
  void heap_remove(Entry* e);
  void sift_up(std::size_t i);
  void sift_down(std::size_t i);
  void swap_at(std::size_t a, std::size_t b);

  Runtime& rt_;
  // Guards heap_, by_ref_, wake_at_ and stop_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Entry*> heap_;
  std::unordered_map<std::uint64_t, Entry*> by_ref_;
  Clock::time_point wake_at_ = Clock::time_point::max();
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace nodus::detail
