// Process: the runtime's side of a process (private). Subclasses give it a behaviour:
// GenServerProcess (gen_server.cpp), FunProcess (a spawned function) and InboxProcess (a
// plain thread's mailbox).
//
// Mailbox: a lock-free LIFO of envelopes (one CAS per push) with two sentinels: kBlocked says
// the owner is idle or parked, so the push that replaces it must wake the owner (schedule it,
// or notify its thread) — exactly one wake-up per idle period; kClosed says the process is
// gone, so the push fails and the sender bounces the envelope (a call gets noproc). The owner
// takes the whole list at once, reverses it to arrival order, handles signals right away and
// keeps user messages in a private FIFO.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "envelope.hpp"
#include "nodus/node/process.hpp"
#include "scheduler.hpp"

namespace nodus::detail {

class Runtime;
struct FiberHandle;
void release_fiber(FiberHandle* f);

/// Thrown to unwind a process's handler stack when it exits from inside a wait or exit_self.
/// Deliberately not a std::exception, so handlers that catch std::exception do not swallow it.
struct ProcessExit {
  Reason reason;
  bool run_terminate;  // exit_self from a handler: the behaviour's terminate still runs
};

class Process {
 public:
  enum class PushResult { kOk, kClosed, kRejected };
  using Clock = std::chrono::steady_clock;

  Process(Runtime& rt, bool thread_bound, const SpawnOptions& opts);
  virtual ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  const Pid& pid() const { return pid_; }
  void set_pid(const Pid& p) { pid_ = p; }
  Runtime& rt() const { return rt_; }
  /// The node's time (Runtime::now): its virtual clock's under simulation.
  Clock::time_point now() const;
  const Pid& parent() const { return parent_; }
  void set_parent(const Pid& p) { parent_ = p; }

  // -- producers: any thread ----------------------------------------------------
  /// Takes ownership of `e` on kOk; on failure the caller still owns it (and bounces it).
  PushResult push(Envelope* e);

  // -- the scheduler's hooks -------------------------------------------------------
  /// Runs on a fresh fiber when the process is scheduled and has no parked fiber.
  virtual void run_in_fiber() = 0;
  /// Work that is not in the mailbox (a pending handle_continue): run again without waiting.
  virtual bool has_pending_work() const { return false; }
  FiberHandle* take_fiber() { return std::exchange(fiber_, nullptr); }
  void park_fiber(FiberHandle* f) { fiber_ = f; }
  /// The scheduler's: where this process's last remote sends wait (RemoteBatchScope).
  RemoteBatchMark& remote_mark() { return remote_mark_; }
  /// After a run: deletes a dead process's table entry, or blocks / requeues it.
  void after_run(bool suspended);

  // -- the owner's side (its own fiber or thread only) ---------------------------
  /// Moves arrived envelopes into the process: signals handled, replies matched, user
  /// messages queued in order.
  void fetch();
  /// The next user message in arrival order (fetching if needed), or nullptr. Caller owns it.
  Envelope* next_user();
  /// Waits until pred() holds (checked after each fetch) or the deadline passes; false on
  /// timeout. Throws ProcessExit when an exit signal ends the process meanwhile.
  template <class Pred>
  bool wait_until(Pred pred, Clock::time_point deadline);
  /// Waits for the next user message; nullptr on timeout.
  Envelope* receive_until(Clock::time_point deadline);

  /// Accepts replies for `ref` from now on (call, send_request).
  /// `target` is who will answer: if its node goes down, the wait ends with nodedown.
  void await_ref(const Ref& ref, const Pid& target = Pid{}) {
    extras().awaiting.emplace_back(ref, target);
  }
  /// The reply for `ref` if it has arrived (and forgets the ref); caller owns it.
  Envelope* take_reply(const Ref& ref);
  bool has_reply(const Ref& ref) const;
  void forget_ref(const Ref& ref);

  /// A call this process will answer later (handle_call returned noreply); if it dies first,
  /// the caller gets the exit reason.
  void defer(const From& from) {
    if (!(from == extras().current_call && extras().current_replied))
      extras().deferred.push_back(from);
  }
  /// The call being handled now (so a reply(from) inside its own handler is not deferred, and
  /// so that finish answers it if the process exits before it is answered). From{} once the
  /// handler has returned.
  void set_current_call(const From& from) {
    extras().current_call = from;
    extras().current_replied = false;
  }
  void resolve_deferred(const From& from);

  void monitor_node(Atom node, bool on);
  void monitor_nodes(bool on);
  /// The deadline of the call being handled (max() if none): calls made while handling it
  /// get no more than what is left.
  std::chrono::steady_clock::time_point current_deadline() const { return current_deadline_; }
  void set_current_deadline(std::chrono::steady_clock::time_point d) { current_deadline_ = d; }

  void add_monitor(const Ref& ref, const Pid& target);
  bool remove_monitor(const Ref& ref, Pid* target);
  bool has_monitor(const Ref& ref) const;
  /// Takes the queued Down for monitor `ref` out of the mailbox; its reason (or noproc).
  Reason take_down(const Ref& ref);
  void add_link(const Pid& p);
  bool remove_link(const Pid& p);
  bool trap_exit() const { return trap_exit_.load(std::memory_order_relaxed); }
  bool set_trap_exit(bool on) { return trap_exit_.exchange(on, std::memory_order_relaxed); }
  /// A timer is aimed at this process (see has_timers_). REQUIRES: the runtime's timer lock.
  void note_timer() { has_timers_.store(true, std::memory_order_seq_cst); }
  /// An exit signal ended the process while it was busy: the behaviour should stop now.
  bool exit_pending() const { return exit_pending_; }
  const Reason& pending_reason() const { return extras().pending_reason; }
  bool shutdown_requested() const { return shutdown_requested_; }
  void clear_exit_pending() { exit_pending_ = false; }

  /// Ends the process: closes the mailbox, answers what is queued (and the call being handled,
  /// if still unanswered) with `reason`, tells links and monitors. Runs on the owner.
  /// Idempotent.
  void finish(const Reason& reason);
  bool dead() const { return dead_; }
  void count_handled() { handled_.fetch_add(1, std::memory_order_relaxed); }
  /// A user message has left the queue (dispatched, received or dropped).
  void count_dequeued() { queued_.fetch_sub(1, std::memory_order_relaxed); }

  // -- introspection: any thread ---------------------------------------------------
  virtual const char* behaviour() const { return "process"; }
  virtual std::string type_name() const { return "process"; }
  virtual std::size_t memory_estimate() const;
  /// format_status: called on the owner.
  virtual Term format_status() { return Term(atom(behaviour())); }
  /// Who sent the message the behaviour is handling now (see nodus::sender); on the owner.
  virtual Pid current_sender() const { return Pid{}; }
  std::size_t mailbox_length() const { return queued_.load(std::memory_order_relaxed); }
  std::uint64_t messages_handled() const { return handled_.load(std::memory_order_relaxed); }
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
  bool waiting() const { return waiting_.load(std::memory_order_relaxed); }
  std::size_t link_count() const { return n_links_.load(std::memory_order_relaxed); }
  std::size_t monitor_count() const { return n_monitors_.load(std::memory_order_relaxed); }

 protected:
  /// A user message that the process itself handles before the behaviour sees it (system
  /// messages). Returns true if consumed (and deleted).
  bool handle_system(Envelope* e);

 private:
  static inline Envelope* const kBlocked = reinterpret_cast<Envelope*>(1);
  static inline Envelope* const kClosed = reinterpret_cast<Envelope*>(2);

  void handle_signal(Envelope* e);         // takes ownership
  void node_down(Atom node, bool hidden);  // hidden: a hidden node (no NodeDown for monitor_nodes)
  void queue_user(Envelope* e);
  void park(Clock::time_point deadline);
  void end_wait();
  void wake();

 protected:
  /// Thread-bound processes (Inbox): block the thread until wake_thread() or the deadline.
  virtual void park_thread(Clock::time_point deadline);
  virtual void wake_thread();

 private:
  void drop_oldest_over_bound();

  Runtime& rt_;
  Pid pid_;
  Pid parent_;
  const std::uint32_t max_mailbox_;
  const Overflow overflow_;
  const bool thread_bound_;
  bool woke_ = false;
  bool exit_pending_ = false;
  bool shutdown_requested_ = false;
  bool dead_ = false;
  std::atomic<bool> trap_exit_{false};
  std::atomic<bool> waiting_{false};
  // Set (seq_cst, by any thread) once a timer was aimed at this process (Runtime::send_after):
  // its exit then cancels them, and fired ones are forgotten as they arrive.
  std::atomic<bool> has_timers_{false};

  // Written by any thread.
  std::atomic<Envelope*> head_{nullptr};
  std::atomic<std::size_t> queued_{0};
  std::atomic<std::uint32_t> dropped_{0};

  // Owner only (or read relaxed for introspection where atomic).
  std::atomic<std::uint32_t> n_links_{0};
  std::atomic<std::uint32_t> n_monitors_{0};
  std::atomic<std::uint64_t> handled_{0};
  std::chrono::steady_clock::time_point current_deadline_ =
      std::chrono::steady_clock::time_point::max();
  Envelope* fifo_head_ = nullptr;
  Envelope* fifo_tail_ = nullptr;
  FiberHandle* fiber_ = nullptr;
  RemoteBatchMark remote_mark_;

  // What most idle processes never need, allocated on first use: a million idle servers
  // should cost a few hundred bytes each, not a kilobyte.
  struct Extras {
    std::vector<std::pair<Ref, Pid>> awaiting;  // replies wanted (call, send_request), from whom
    std::vector<Atom> node_monitors;            // nodes whose up/down this process is told of
    bool all_nodes = false;                     // told of every node's up/down (monitor_nodes)
    std::vector<Envelope*> replies;             // replies that arrived for them
    std::vector<Pid> links;
    std::vector<From> deferred;                     // calls to answer later
    std::vector<std::pair<Ref, Pid>> monitors;      // I monitor them
    std::vector<std::pair<Ref, Pid>> monitored_by;  // they monitor me
    From current_call;
    bool current_replied = false;
    Ref wake_token;  // the deadline timer of the current wait
    Reason pending_reason;
  };
  Extras& extras() const {
    if (!extras_) {
      extras_ = std::make_unique<Extras>();
      has_extras_.store(true, std::memory_order_relaxed);
    }
    return *extras_;
  }
  mutable std::atomic<bool> has_extras_{false};
  mutable std::unique_ptr<Extras> extras_;
};

// -- shared between the runtime's sources ----------------------------------------------

/// The process running on this thread: a scheduled process's fiber, or the thread's Inbox.
Process* current_process();
/// The exit reason for the exception being handled: {exception, "Type: what"}. REQUIRES:
/// called inside a catch block. (process.cpp)
Reason current_exception_reason();
/// A new thread-bound process (an Inbox's, or a Waiter's temporary mailbox), adopted by `rt`.
Process* make_inbox(Runtime& rt);
/// A new process that runs `body` (spawn), neither adopted nor scheduled yet.
Process* make_fun_process(Runtime& rt, std::function<void()> body, const SpawnOptions& opts);
/// Sends `request` as an envelope of `kind` (a call, or a get-status) and waits for the reply,
/// at most `timeout`: what call, call_as, process_info and stop share. (messaging.cpp)
Result<Message, Reason> call_message(const Dest& to, Message request, Timeout timeout, Kind kind);

/// Who waits for an answer: the current process, or, for a plain thread without an Inbox (or
/// whose process belongs to another runtime, when `same_runtime`), a temporary mailbox that
/// lives as long as this object.
class Waiter {
 public:
  explicit Waiter(Runtime& rt, bool same_runtime = false);
  ~Waiter();
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;
  Process* operator->() const { return p_; }
  Process* get() const { return p_; }
  /// True when this is the caller's own process (not a temporary mailbox).
  bool is_current() const { return temp_ == nullptr; }

 private:
  Process* p_;
  Process* temp_ = nullptr;
};

/// Reverses a mailbox's LIFO list into arrival order.
inline Envelope* in_arrival_order(Envelope* h) {
  Envelope* in_order = nullptr;
  while (h) {
    Envelope* n = h->next;
    h->next = in_order;
    in_order = h;
    h = n;
  }
  return in_order;
}
/// An Inbox opened on this thread becomes its current process, until it closes; then the
/// newest Inbox still open on the thread is.
void push_thread_inbox(Process* p);
void remove_thread_inbox(Process* p);

}  // namespace nodus::detail

#include "scheduler.hpp"

namespace nodus::detail {

template <class Pred>
bool Process::wait_until(Pred pred, Clock::time_point deadline) {
  struct EndWait {
    Process* p;
    ~EndWait() { p->end_wait(); }
  } guard{this};
  for (;;) {
    fetch();
    if (exit_pending_) throw ProcessExit{extras().pending_reason, false};
    if (pred()) return true;
    // pred may have fetched too (receive does): a signal it took must not be slept on.
    if (exit_pending_) throw ProcessExit{extras().pending_reason, false};
    if (woke_) return false;
    if (deadline != Clock::time_point::max() && now() >= deadline) return false;
    park(deadline);
  }
}

}  // namespace nodus::detail
