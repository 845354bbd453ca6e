// TimerService: delivers an envelope to a process at a deadline (private to the runtime).
//
// One thread sleeps until the earliest deadline. Timers live in a binary heap with each entry
// knowing its index, so cancelling (every call that gets its reply in time cancels one) is
// O(log n) and leaves nothing behind. Adding a timer wakes the thread only when the new
// deadline is earlier than the one it sleeps until, so a stream of calls with the same 5 s
// timeout costs no wake-ups.
//
// Under a virtual clock (NodeOptions::clock) there is no thread: the scheduler's step() fires
// what is due (fire_due), and every new deadline is told to the clock (Clock::wake_at), so a
// simulation that advances time stops at it.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "envelope.hpp"
#include "nodus/node/detail/mutex.hpp"
#include "nodus/transport/clock.hpp"

namespace nodus::detail {

class Runtime;

class TimerService {
 public:
  using Clock = std::chrono::steady_clock;

  /// `clock`: a virtual clock to read and to tell of deadlines, or null for the steady clock
  /// and a thread of its own.
  TimerService(Runtime& rt, transport::Clock* clock);
  ~TimerService();
  TimerService(const TimerService&) = delete;
  TimerService& operator=(const TimerService&) = delete;

  /// Starts the thread (none under a virtual clock).
  void start();
  /// Stops the thread; pending timers are dropped. Idempotent.
  void stop();
  /// Under a virtual clock: delivers every timer due by the clock's now; how many it fired.
  std::size_t fire_due();

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
  Clock::time_point now() const { return clock_ ? clock_->now() : Clock::now(); }
  void heap_push(Entry* e) NODUS_REQUIRES(mu_);
  void heap_remove(Entry* e) NODUS_REQUIRES(mu_);
  void sift_up(std::size_t i) NODUS_REQUIRES(mu_);
  void sift_down(std::size_t i) NODUS_REQUIRES(mu_);
  void swap_at(std::size_t a, std::size_t b) NODUS_REQUIRES(mu_);

  Runtime& rt_;
  transport::Clock* const clock_;
  // Guards the timers: add, cancel and fire_due come from any thread, the timer thread takes
  // what is due. The thread sleeps on cv_ until wake_at_.
  mutable Mutex mu_;
  CondVar cv_{mu_};
  std::vector<Entry*> heap_ NODUS_GUARDED_BY(mu_);
  std::unordered_map<std::uint64_t, Entry*> by_ref_ NODUS_GUARDED_BY(mu_);
  Clock::time_point wake_at_ NODUS_GUARDED_BY(mu_) = Clock::time_point::max();
  bool stop_ NODUS_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace nodus::detail
