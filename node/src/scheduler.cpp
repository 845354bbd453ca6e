#include "scheduler.hpp"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <optional>

#include <boost/context/fiber.hpp>
#include <boost/context/stack_context.hpp>

#include "check.hpp"
#include "process_impl.hpp"
#include "runtime.hpp"

// Sanitizers must be told about stack switches, or they see one thread jumping between stacks.
#if defined(__SANITIZE_ADDRESS__)
#define NODUS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NODUS_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define NODUS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NODUS_TSAN 1
#endif
#endif

#if NODUS_ASAN
extern "C" void __sanitizer_start_switch_fiber(void** fake_stack_save, const void* bottom,
                                               std::size_t size);
extern "C" void __sanitizer_finish_switch_fiber(void* fake_stack_save, const void** bottom_old,
                                                std::size_t* size_old);
extern "C" void __asan_unpoison_memory_region(void const volatile* addr, std::size_t size);
#endif
#if NODUS_TSAN
extern "C" void* __tsan_get_current_fiber();
extern "C" void* __tsan_create_fiber(unsigned flags);
extern "C" void __tsan_destroy_fiber(void* fiber);
extern "C" void __tsan_switch_to_fiber(void* fiber, unsigned flags);
#endif

namespace ctx = boost::context;

namespace nodus::detail {

namespace {

constexpr int kMaxNextStreak = 64;  // runs from the next slot before the queue gets a turn
constexpr int kSpinRounds = 200;    // polls for work before sleeping
// How long the idle thread that waits for input from other nodes waits before it looks at
// stop and rescue requests made without waking it.
constexpr auto kPollerWait = std::chrono::milliseconds(100);
constexpr std::size_t kFiberPoolMax = 64;
constexpr int kReductionsPerSlice = 2000;  // sends before a running process yields
// A scheduler thread's remote sends wait in its batch for at most this many slices that sent
// something, and this long after the first of them, unless the thread goes idle first.
// (Sixteen: bench/README.md "Remote message cost" measures 1, 4 and 16.)
constexpr int kMaxHeldSlices = 16;
constexpr auto kMaxHold = std::chrono::microseconds(200);

/// mmap'd stacks with a guard page below, so an overflow faults instead of corrupting memory.
struct GuardedStack {
  std::size_t size;
  const void** bottom_out;
  std::size_t* size_out;

  ctx::stack_context allocate() {
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    const std::size_t total = ((size + page - 1) / page + 1) * page;
    void* base = ::mmap(nullptr, total, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    NODUS_CHECK(base != MAP_FAILED);
    NODUS_CHECK(::mprotect(base, page, PROT_NONE) == 0);
    ctx::stack_context sc;
    sc.size = total;
    sc.sp = static_cast<char*>(base) + total;
    *bottom_out = base;
    *size_out = total;
    return sc;
  }
  void deallocate(ctx::stack_context& sc) {
    void* base = static_cast<char*>(sc.sp) - sc.size;
#if NODUS_ASAN
    // A fiber that never returned (its node stopped while it waited) leaves its frames' redzones
    // poisoned, and ASan keeps the shadow of unmapped memory: the next stack mapped here would
    // inherit them and a fresh frame would look like an overflow.
    __asan_unpoison_memory_region(base, sc.size);
#endif
    ::munmap(base, sc.size);
  }
};

}  // namespace

/// A pooled fiber: a stack with a worker loop on it that runs whatever process the thread
/// hands it.
struct FiberHandle {
  ctx::fiber fiber;
  void* tsan = nullptr;
  const void* stack_bottom = nullptr;
  std::size_t stack_size = 0;
};

/// Lives on a fiber's own stack; says where to go back to.
struct FiberCtx {
  ctx::fiber caller;
  void* fake_stack = nullptr;  // ASan's bookkeeping for this fiber
};

struct Worker {
  enum class Status { kDone, kSuspended, kYielded };

  Scheduler* sched = nullptr;
  unsigned index = 0;
  std::thread thread;

  // Guards queue; other workers lock it to steal.
  Mutex mu;
  std::deque<Process*> queue NODUS_GUARDED_BY(mu);
  std::atomic<std::size_t> queue_size{0};
  // Processes run so far; a thief reads it to tell a busy owner from a stuck one.
  std::atomic<std::uint64_t> runs{0};

  // Touched only by this worker's thread.
  // The process to run right after this one. Atomic because a thief may take it when the
  // owner is stuck in a long handler; the owner swaps it with exchange.
  std::atomic<Process*> next{nullptr};
  std::atomic<bool> in_run{false};
  int next_streak = 0;
  Process* current = nullptr;
  FiberCtx* current_ctx = nullptr;
  Status status = Status::kDone;
  int reductions = 0;
  // Slices whose remote sends wait in this thread's batch, and when the first of them ended.
  int held_slices = 0;
  std::chrono::steady_clock::time_point held_since{};
  std::vector<FiberHandle*> pool;
  std::vector<std::uint64_t> seen_runs;  // per victim: its `runs` when its queue held one
  void* tsan_self = nullptr;
  void* fake_stack = nullptr;
  const void* thread_stack_bottom = nullptr;
  std::size_t thread_stack_size = 0;
};

namespace {

thread_local Worker* tls_worker_ = nullptr;

// Not inlined: a fiber may resume on another thread, and the compiler must not reuse a
// thread-local address computed before the switch.
[[gnu::noinline]] Worker* this_worker() { return tls_worker_; }

void after_switch_into_fiber(FiberCtx& fc, Worker* w) {
#if NODUS_ASAN
  __sanitizer_finish_switch_fiber(fc.fake_stack, &w->thread_stack_bottom, &w->thread_stack_size);
#else
  (void)fc;
  (void)w;
#endif
}

void before_switch_out_of_fiber(FiberCtx& fc, Worker* w, bool dying) {
#if NODUS_TSAN
  __tsan_switch_to_fiber(w->tsan_self, 0);
#endif
#if NODUS_ASAN
  __sanitizer_start_switch_fiber(dying ? nullptr : &fc.fake_stack, w->thread_stack_bottom,
                                 w->thread_stack_size);
#else
  (void)fc;
  (void)w;
  (void)dying;
#endif
}

void switch_into(Worker& w, FiberHandle* f) {
#if NODUS_TSAN
  __tsan_switch_to_fiber(f->tsan, 0);
#endif
#if NODUS_ASAN
  __sanitizer_start_switch_fiber(&w.fake_stack, f->stack_bottom, f->stack_size);
#endif
  f->fiber = std::move(f->fiber).resume();
#if NODUS_ASAN
  __sanitizer_finish_switch_fiber(w.fake_stack, nullptr, nullptr);
#endif
  (void)w;
}

FiberHandle* new_fiber(std::size_t stack_size) {
  auto* h = new FiberHandle;
  GuardedStack alloc{stack_size, &h->stack_bottom, &h->stack_size};
  h->fiber = ctx::fiber(std::allocator_arg, alloc, [](ctx::fiber&& caller) {
    FiberCtx fc;
    fc.caller = std::move(caller);
    Worker* w = this_worker();
    after_switch_into_fiber(fc, w);
    for (;;) {
      w->current_ctx = &fc;
      Process* p = w->current;
      if (!p) break;  // the pool is being torn down
      p->run_in_fiber();
      w = this_worker();
      w->status = Worker::Status::kDone;
      before_switch_out_of_fiber(fc, w, false);
      fc.caller = std::move(fc.caller).resume();
      w = this_worker();
      after_switch_into_fiber(fc, w);
    }
    before_switch_out_of_fiber(fc, w, true);
    return std::move(fc.caller);
  });
#if NODUS_TSAN
  h->tsan = __tsan_create_fiber(0);
#endif
  return h;
}

void destroy_fiber(Worker& w, FiberHandle* f) {
  // Resume it with no process: its loop ends and the fiber returns, releasing its stack.
  Process* saved = w.current;
  w.current = nullptr;
  switch_into(w, f);
  w.current = saved;
#if NODUS_TSAN
  __tsan_destroy_fiber(f->tsan);
#endif
  delete f;
}

}  // namespace

Scheduler::Scheduler(Runtime& rt, unsigned threads, std::size_t stack_size, bool manual)
    : rt_(rt), stack_size_(stack_size), manual_(manual) {
  if (manual) threads = 1;
  poll_wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  NODUS_CHECK(poll_wake_fd_ >= 0);
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < threads; ++i) {
    auto w = std::make_unique<Worker>();
    w->sched = this;
    w->index = i;
    workers_.push_back(std::move(w));
  }
}

Scheduler::~Scheduler() {
  stop();
  ::close(poll_wake_fd_);
}

void Scheduler::wake_poller() {
  std::uint64_t one = 1;
  (void)!::write(poll_wake_fd_, &one, sizeof(one));
}

void Scheduler::start() {
  NODUS_CHECK(!started_);
  started_ = true;
  if (manual_) return;  // processes run inside step()
  for (auto& w : workers_) {
    Worker* wp = w.get();
    wp->thread = std::thread([this, wp] { run_worker(*wp); });
  }
  if (workers_.size() > 1) monitor_ = std::thread([this] { run_monitor(); });
}

void Scheduler::run_monitor() {
  // A handler cannot be preempted, so work queued behind a long one (its next slot or its
  // queue) is handed to an idle thread: every tick, a worker that is inside the same run as
  // at the last tick and has work waiting gets a thief woken for it. Ticks back off while
  // nothing runs, so an idle node stays idle.
  std::vector<std::uint64_t> seen(workers_.size(), ~std::uint64_t{0});
  auto tick = std::chrono::milliseconds(1);
  MutexLock lock(monitor_mu_);
  while (!stop_.load()) {
    monitor_cv_.wait_for(tick);
    bool any_running = false;
    bool stuck = false;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      Worker& w = *workers_[i];
      const bool running = w.in_run.load(std::memory_order_relaxed);
      const std::uint64_t runs = w.runs.load(std::memory_order_relaxed);
      any_running = any_running || running;
      const bool waiting = w.queue_size.load(std::memory_order_relaxed) > 0 ||
                           w.next.load(std::memory_order_relaxed) != nullptr;
      if (running && runs == seen[i] && waiting) stuck = true;
      seen[i] = runs;
    }
    // Injected work nobody picked up (a spinner took one item and then ran a long handler).
    if (injected_size_.load() > 0) stuck = true;
    if (stuck && sleepers_.load() > 0) {
      {
        MutexLock sleep_lock(sleep_mu_);
        rescue_.store(true);
      }
      sleep_cv_.notify_one();
    } else if (stuck && poller_.load()) {
      rescue_.store(true);
      wake_poller();
    }
    tick = any_running ? std::chrono::milliseconds(1)
                       : std::min(tick * 2, std::chrono::milliseconds(16));
  }
}

namespace {
/// Manual mode: the calling thread acts as the one worker while this lives.
class ManualWorkerScope {
 public:
  explicit ManualWorkerScope(Worker& w) : saved_(tls_worker_) {
    tls_worker_ = &w;
#if NODUS_TSAN
    w.tsan_self = __tsan_get_current_fiber();
#endif
  }
  ~ManualWorkerScope() { tls_worker_ = saved_; }
  ManualWorkerScope(const ManualWorkerScope&) = delete;
  ManualWorkerScope& operator=(const ManualWorkerScope&) = delete;

 private:
  Worker* saved_;
};
}  // namespace

bool Scheduler::step() {
  NODUS_CHECK(manual_);
  Worker& w = *workers_[0];
  ManualWorkerScope scope(w);
  RemoteBatchScope batch;                           // run() sends it at the end of the slice
  if (rt_.virtual_time()) rt_.timers().fire_due();  // no timer thread under virtual time
  Process* p = find_work(w);
  if (p) run(w, p);
  return p != nullptr;
}

void Scheduler::stop() {
  if (!started_) return;
  if (manual_) {
    Worker& w = *workers_[0];
    ManualWorkerScope scope(w);
    for (FiberHandle* f : w.pool) destroy_fiber(w, f);
    w.pool.clear();
    started_ = false;
    return;
  }
  {
    MutexLock lock(sleep_mu_);
    stop_.store(true);
  }
  sleep_cv_.notify_all();
  wake_poller();
  { MutexLock lock(monitor_mu_); }
  monitor_cv_.notify_all();
  if (monitor_.joinable()) monitor_.join();
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
  started_ = false;
}

Process* Scheduler::current() {
  Worker* w = this_worker();
  return w ? w->current : nullptr;
}

void Scheduler::consume_reduction() {
  Worker* w = this_worker();
  if (!w || !w->current_ctx || ++w->reductions < kReductionsPerSlice) return;
  w->status = Worker::Status::kYielded;
  switch_out(w);
}

void Scheduler::suspend() {
  Worker* w = this_worker();
  NODUS_CHECK(w && w->current_ctx);
  w->status = Worker::Status::kSuspended;
  switch_out(w);
}

void Scheduler::switch_out(Worker* w) {
  FiberCtx* fc = w->current_ctx;
  before_switch_out_of_fiber(*fc, w, false);
  fc->caller = std::move(fc->caller).resume();
  w = this_worker();
  after_switch_into_fiber(*fc, w);
  w->current_ctx = fc;
}

void Scheduler::schedule(Process* p) {
  Worker* w = this_worker();
  if (w && w->sched == this) {
    if (Process* older = w->next.exchange(p, std::memory_order_acq_rel)) {
      {
        MutexLock lock(w->mu);
        w->queue.push_back(older);
        w->queue_size.fetch_add(1);
      }
      notify_one();
    }
    return;
  }
  {
    MutexLock lock(inject_mu_);
    injected_.push_back(p);
    injected_size_.fetch_add(1);
  }
  notify_one();
}

void Scheduler::yield(Process* p) {
  Worker* w = this_worker();
  if (!w || w->sched != this) {
    schedule(p);
    return;
  }
  std::size_t queued;
  {
    MutexLock lock(w->mu);
    w->queue.push_back(p);
    queued = w->queue_size.fetch_add(1) + 1;
  }
  // This thread runs the queue's head next; another thread is worth waking only when there is
  // more than that. (Stealing one of two busy partners puts them on two cores that then fight
  // over the same cache lines: slower than one core, as local-cast measures.)
  if (queued > 1) notify_one();
}

void Scheduler::notify_one() {
  if (spinning_.load() > 0) return;  // a spinner takes it
  if (sleepers_.load() > 0) {
    MutexLock lock(sleep_mu_);
    sleep_cv_.notify_one();
  } else if (poller_.load()) {
    wake_poller();
  }
}

bool Scheduler::any_work() const {
  if (injected_size_.load() > 0) return true;
  for (const auto& w : workers_) {
    if (w->queue_size.load() > 0) return true;
  }
  return false;
}

Process* Scheduler::steal(Worker& self) {
  const std::size_t n = workers_.size();
  if (self.seen_runs.size() != n) self.seen_runs.assign(n, ~std::uint64_t{0});
  for (std::size_t i = 1; i < n; ++i) {
    const std::size_t v = (self.index + i) % n;
    Worker& victim = *workers_[v];
    const std::size_t queued = victim.queue_size.load(std::memory_order_relaxed);
    if (queued == 0) {
      // The next slot is the owner's, unless the owner is stuck in one long handler.
      Process* p = victim.next.load(std::memory_order_acquire);
      if (!p || !victim.in_run.load(std::memory_order_relaxed)) continue;
      const std::uint64_t runs = victim.runs.load(std::memory_order_relaxed);
      if (self.seen_runs[v] != runs) {
        self.seen_runs[v] = runs;
        continue;
      }
      if (victim.next.compare_exchange_strong(p, nullptr, std::memory_order_acq_rel)) return p;
      continue;
    }
    if (queued == 1) {
      // One waiting process is usually the partner of the one running there, about to run
      // on that thread with warm caches; take it only if the owner made no progress since
      // we last looked (it is stuck in a long handler).
      const std::uint64_t runs = victim.runs.load(std::memory_order_relaxed);
      if (self.seen_runs[v] != runs) {
        self.seen_runs[v] = runs;
        continue;
      }
    }
    MutexLock lock(victim.mu);
    if (victim.queue.empty()) continue;
    Process* p = victim.queue.front();
    victim.queue.pop_front();
    victim.queue_size.fetch_sub(1);
    return p;
  }
  return nullptr;
}

Process* Scheduler::find_work(Worker& w) {
  if (Process* p = w.next.exchange(nullptr, std::memory_order_acq_rel)) {
    if (++w.next_streak < kMaxNextStreak || w.queue_size.load(std::memory_order_relaxed) == 0) {
      return p;
    }
    // Let the queue have a turn: the next slot goes to the back.
    MutexLock lock(w.mu);
    w.queue.push_back(p);
    w.queue_size.fetch_add(1);
  }
  w.next_streak = 0;
  if (w.queue_size.load(std::memory_order_relaxed) > 0) {
    MutexLock lock(w.mu);
    if (!w.queue.empty()) {
      Process* p = w.queue.front();
      w.queue.pop_front();
      w.queue_size.fetch_sub(1);
      return p;
    }
  }
  if (injected_size_.load(std::memory_order_relaxed) > 0) {
    MutexLock lock(inject_mu_);
    if (!injected_.empty()) {
      Process* p = injected_.front();
      injected_.pop_front();
      injected_size_.fetch_sub(1);
      return p;
    }
  }
  return steal(w);
}

void Scheduler::run_worker(Worker& w) {
  tls_worker_ = &w;
#if NODUS_TSAN
  w.tsan_self = __tsan_get_current_fiber();
#endif
  // What the processes run here send to other nodes, while the thread lives (see run()).
  std::optional<RemoteBatchScope> batch(std::in_place);
  for (;;) {
    Process* p = find_work(w);
    if (p) {
      run(w, p);
      continue;
    }
    // Nothing to run: what waits in the batch leaves before the thread spins or sleeps.
    flush_held(w);
    spinning_.fetch_add(1);
    const bool networked = rt_.transport() != nullptr;
    for (int i = 0; i < kSpinRounds && !p; ++i) {
      if (any_work()) p = find_work(w);
      if (p) break;
      if (networked) {
        // A networked node looks at its socket while it spins: an answer that arrives now is
        // read and run by this thread, not handed over by the transport's I/O thread.
        rt_.wait_for_input(-1, std::chrono::milliseconds(0));
        RemoteBatchScope::flush();  // a refusal the input made the runtime send, if any
        p = find_work(w);
        if (p) break;
      }
      std::this_thread::yield();
    }
    spinning_.fetch_sub(1);
    if (p) {
      run(w, p);
      continue;
    }
    // One idle thread at a time waits for input from other nodes instead of sleeping, so a
    // message from another node is read, delivered and run by the same thread, with no
    // hand-off from the transport's I/O thread (a wake-up costs as much as the network hop).
    // poller_ is set before work is checked, and notify_one() checks it after queueing work:
    // one of the two sees the other.
    if (rt_.transport() != nullptr && !poller_.exchange(true)) {
      bool waited = false;
      if (!any_work() && !rescue_.load() && !stop_.load())
        waited = rt_.wait_for_input(poll_wake_fd_, kPollerWait);
      std::uint64_t n;
      (void)!::read(poll_wake_fd_, &n, sizeof(n));  // consumed: the next wait starts afresh
      poller_.store(false);
      rescue_.store(false);
      if (waited || any_work() || stop_.load()) {
        if (stop_.load() && !any_work()) break;
        continue;
      }
    }
    MutexLock lock(sleep_mu_);
    sleepers_.fetch_add(1);
    while (!any_work() && !rescue_.load() && !stop_.load()) sleep_cv_.wait();
    rescue_.store(false);
    sleepers_.fetch_sub(1);
    if (stop_.load() && !any_work()) break;
  }
  batch.reset();  // sends the rest
  for (FiberHandle* f : w.pool) destroy_fiber(w, f);
  w.pool.clear();
  tls_worker_ = nullptr;
}

void Scheduler::flush_held(Worker& w) {
  RemoteBatchScope::flush();
  w.held_slices = 0;
}

void Scheduler::run(Worker& w, Process* p) {
  FiberHandle* f = p->take_fiber();
  if (!f) {
    if (!w.pool.empty()) {
      f = w.pool.back();
      w.pool.pop_back();
    } else {
      f = new_fiber(stack_size_);
    }
  }
  w.current = p;
  w.status = Worker::Status::kDone;
  w.reductions = 0;
  w.runs.store(w.runs.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  w.in_run.store(true, std::memory_order_relaxed);
  // What p sent in an earlier slice may still wait in another thread's batch: it leaves
  // first, so that p's messages keep their order.
  RemoteBatchScope::flush_marked(p->remote_mark());
  const std::uint64_t added = RemoteBatchScope::added();
  switch_into(w, f);
  if (manual_) {
    RemoteBatchScope::flush();  // one slice at a time, in a deterministic order
  } else if (RemoteBatchScope::added() != added) {
    // p's sends wait in this thread's batch, with those of the slices before and after it, so
    // that a burst of answers to one peer leaves as one ZeroMQ message. Marked before p can
    // be resumed anywhere else.
    p->remote_mark() = RemoteBatchScope::mark();
    const auto now = std::chrono::steady_clock::now();
    if (w.held_slices++ == 0) w.held_since = now;
    if (w.held_slices >= kMaxHeldSlices || now - w.held_since >= kMaxHold) flush_held(w);
  }
  w.in_run.store(false, std::memory_order_relaxed);
  w.current = nullptr;
  w.current_ctx = nullptr;
  if (w.status == Worker::Status::kYielded) {
    // Mid-handler, out of reductions: keep the fiber and go to the back of the queue.
    p->park_fiber(f);
    yield(p);
    return;
  }
  if (w.status == Worker::Status::kSuspended) {
    p->park_fiber(f);
  } else if (w.pool.size() < kFiberPoolMax) {
    w.pool.push_back(f);
  } else {
    destroy_fiber(w, f);
  }
  p->after_run(w.status == Worker::Status::kSuspended);
}

void release_fiber(FiberHandle* f) {
  // A process destroyed while parked: only at node teardown, when a process was stuck in a
  // wait past the shutdown grace. Destroying a parked boost fiber would unwind its stack with
  // an exception that user code may swallow (catch (...)); instead its stack is left mapped,
  // never run again. A leak of one stack, at teardown only, against undefined behaviour.
  if (!f) return;
  if (f->fiber) {
    new ctx::fiber(std::move(f->fiber));  // deliberately never destroyed (see above)
  }
#if NODUS_TSAN
  __tsan_destroy_fiber(f->tsan);
#endif
  delete f;
}

}  // namespace nodus::detail
