// Scheduler: runs processes on a fixed pool of threads (private to the runtime).
//
// Each thread keeps a local run queue plus a "next" slot: a process made runnable by the one
// running now goes to the slot and runs right after it on the same thread, so a call between
// two processes costs no thread hand-off (waking a sleeping thread costs ~20 us, as much as a
// network hop). Idle threads steal from the others; threads with nothing to do spin briefly,
// then sleep. Processes made runnable from outside (timers, plain threads) go to a shared
// injection queue.
//
// Every handler runs on a fiber (a small pooled stack, boost::context). When a handler blocks
// in call/receive, its fiber is parked with the process and the thread takes another fiber
// from its pool, so one thread can hold any number of blocked calls. Idle processes hold no
// fiber.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "nodus/node/detail/mutex.hpp"

namespace nodus::detail {

class Process;
class Runtime;
struct Worker;

/// Where a process's remote sends wait: a scheduler thread's batch (RemoteBatchScope), and
/// how many times it had been flushed when the process last added to it. A generation that
/// wrapped around only costs a flush that was not needed.
struct RemoteBatchMark {
  void* batch = nullptr;
  std::uint32_t generation = 0;
};

class Scheduler {
 public:
  /// `manual`: no threads; processes run only inside step(), on the caller's thread, one
  /// scheduling at a time, in a deterministic order (for tests that step message by message).
  Scheduler(Runtime& rt, unsigned threads, std::size_t stack_size, bool manual = false);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  void start();
  /// Stops the threads once their queues are empty. Idempotent.
  void stop();

  /// Makes `p` runnable. REQUIRES: p is not queued or running (the mailbox protocol ensures
  /// exactly one schedule per wake-up).
  void schedule(Process* p);
  /// Re-queues the process that just ran (after a full slice), behind the others.
  void yield(Process* p);

  unsigned threads() const { return manual_ ? 0 : static_cast<unsigned>(workers_.size()); }
  bool manual() const { return manual_; }
  /// Manual mode: runs the next runnable process once (one slice); false if none was runnable.
  bool step();

  /// Parks the running process's fiber and returns to the scheduler loop. The process is
  /// resumed (this call returns) when it is scheduled again. REQUIRES: on a fiber.
  static void suspend();
  /// The process running on this thread's current fiber, or nullptr on a plain thread.
  static Process* current();
  /// Counts one unit of work (a send) for the running process; after a slice's worth it
  /// yields to the others, like the BEAM's reductions. No-op off the scheduler.
  static void consume_reduction();

 private:
  friend struct Worker;
  void run_worker(Worker& w);
  Process* find_work(Worker& w);
  Process* steal(Worker& w);
  void run(Worker& w, Process* p);
  /// Sends what the thread's processes left in its remote batch.
  static void flush_held(Worker& w);
  void notify_one();
  void wake_poller();
  void run_monitor();
  static void switch_out(Worker* w);
  bool any_work() const;

  Runtime& rt_;
  std::size_t stack_size_;
  const bool manual_;
  std::vector<std::unique_ptr<Worker>> workers_;

  // Guards injected_; producers are threads outside the pool.
  Mutex inject_mu_;
  std::deque<Process*> injected_ NODUS_GUARDED_BY(inject_mu_);
  std::atomic<std::size_t> injected_size_{0};  // injected_.size(), read without the lock

  // Sleepers wait on sleep_cv_. Guards no data (what a sleeper checks is atomic): held by a
  // sleeper from its last check to its wait, and by whoever notifies it, so that no wake-up
  // falls between the two.
  Mutex sleep_mu_;
  CondVar sleep_cv_{sleep_mu_};
  std::atomic<int> sleepers_{0};
  std::atomic<int> spinning_{0};
  std::atomic<bool> stop_{false};
  std::atomic<bool> rescue_{false};  // the monitor asks a sleeper to steal from a stuck thread
  // The idle thread waiting for input from other nodes (Runtime::wait_for_input), if any, and
  // the eventfd that wakes it.
  std::atomic<bool> poller_{false};
  int poll_wake_fd_ = -1;
  bool started_ = false;

  // The monitor thread sleeps on monitor_cv_ between ticks; monitor_mu_ only pairs with it.
  Mutex monitor_mu_;
  CondVar monitor_cv_{monitor_mu_};
  std::thread monitor_;
};

}  // namespace nodus::detail
