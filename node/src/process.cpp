// Process: the runtime's side of a process (process_impl.hpp): its mailbox, signals, waits,
// links, monitors and exit; and the two processes that are no GenServer: a spawned function
// and a plain thread's Inbox.
#include <cxxabi.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <limits>
#include <mutex>
#include <typeinfo>
#include <vector>

#include "check.hpp"
#include "nodus/node/detail/mutex.hpp"
#include "process_impl.hpp"
#include "runtime.hpp"

namespace nodus {
namespace detail {

namespace {
thread_local Process* tls_inbox_ = nullptr;
// This thread's open Inboxes, newest last: the newest is the current process. Closing one
// that is not the newest takes it out of the middle.
thread_local std::vector<Process*> tls_inboxes_;

Reason exception_reason() {
  std::string what;
  const char* mangled = nullptr;
  try {
    throw;
  } catch (const std::exception& e) {
    what = e.what();
    mangled = typeid(e).name();
  } catch (...) {
    std::type_info* t = abi::__cxa_current_exception_type();
    mangled = t ? t->name() : "unknown";
  }
  int status = 0;
  char* demangled = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string type = (status == 0 && demangled) ? demangled : mangled;
  std::free(demangled);
  std::string text = what.empty() ? type : type + ": " + what;
  return tuple(atom("exception"), bin(text));
}
}  // namespace

Reason current_exception_reason() { return exception_reason(); }

Process* current_process() {
  Process* p = Scheduler::current();
  return p ? p : tls_inbox_;
}
void push_thread_inbox(Process* p) {
  tls_inboxes_.push_back(p);
  tls_inbox_ = p;
}
void remove_thread_inbox(Process* p) {
  auto it = std::find(tls_inboxes_.begin(), tls_inboxes_.end(), p);
  if (it != tls_inboxes_.end()) tls_inboxes_.erase(it);
  tls_inbox_ = tls_inboxes_.empty() ? nullptr : tls_inboxes_.back();
}

// -- Process -------------------------------------------------------------------

Process::Process(Runtime& rt, bool thread_bound, const SpawnOptions& opts)
    : rt_(rt),
      max_mailbox_(static_cast<std::uint32_t>(
          std::min<std::size_t>(opts.max_mailbox, std::numeric_limits<std::uint32_t>::max()))),
      overflow_(opts.overflow),
      thread_bound_(thread_bound) {}

Process::~Process() {
  release_fiber(fiber_);
  for (Envelope* e = fifo_head_; e;) {
    Envelope* n = e->next;
    delete e;
    e = n;
  }
  if (extras_) {
    for (Envelope* e : extras_->replies) delete e;
  }
  Envelope* h = head_.load();
  if (h != kClosed && h != kBlocked) {
    while (h) {
      Envelope* n = h->next;
      delete h;
      h = n;
    }
  }
}

Process::PushResult Process::push(Envelope* e) {
  const bool user = is_user_kind(e->kind);
  if (user && max_mailbox_ && overflow_ == Overflow::kReject && e->kind != Kind::kStop &&
      e->kind != Kind::kGetStatus && queued_.load(std::memory_order_relaxed) >= max_mailbox_) {
    dropped_.fetch_add(1, std::memory_order_relaxed);
    return PushResult::kRejected;
  }
  // Counted before it is visible, so the owner never dequeues it before it is counted (the
  // count would wrap below zero).
  if (user) queued_.fetch_add(1, std::memory_order_relaxed);
  Envelope* h = head_.load(std::memory_order_relaxed);
  for (;;) {
    if (h == kClosed) {
      if (user) queued_.fetch_sub(1, std::memory_order_relaxed);
      return PushResult::kClosed;
    }
    e->next = (h == kBlocked) ? nullptr : h;
    if (head_.compare_exchange_weak(h, e, std::memory_order_acq_rel, std::memory_order_relaxed)) {
      break;
    }
  }
  if (h == kBlocked) wake();
  return PushResult::kOk;
}

void Process::wake() {
  if (thread_bound_) {
    wake_thread();
  } else {
    rt_.scheduler().schedule(this);
  }
}

void Process::park_thread(Clock::time_point) { NODUS_CHECK(false && "not thread-bound"); }
void Process::wake_thread() { NODUS_CHECK(false && "not thread-bound"); }

void Process::after_run(bool suspended) {
  if (dead_) {
    Runtime& rt = rt_;
    const Pid pid = pid_;
    rt.retire(pid);  // may delete this
    return;
  }
  if (!suspended && (fifo_head_ || has_pending_work())) {
    rt_.scheduler().yield(this);
    return;
  }
  Envelope* expected = nullptr;
  if (!head_.compare_exchange_strong(expected, kBlocked, std::memory_order_acq_rel)) {
    rt_.scheduler().yield(this);
  }
}

Process::Clock::time_point Process::now() const { return rt_.now(); }

void Process::park(Clock::time_point deadline) {
  waiting_.store(true, std::memory_order_relaxed);
  if (thread_bound_) {
    Envelope* expected = nullptr;
    if (head_.compare_exchange_strong(expected, kBlocked, std::memory_order_acq_rel)) {
      park_thread(deadline);
    }
  } else {
    if (deadline != Clock::time_point::max() && !extras().wake_token) {
      extras().wake_token = rt_.make_ref();
      rt_.timers().add(deadline, pid_, Kind::kWakeup, extras().wake_token);
    }
    Scheduler::suspend();
  }
  waiting_.store(false, std::memory_order_relaxed);
}

void Process::end_wait() {
  if (extras().wake_token) {
    (void)rt_.timers().cancel(extras().wake_token.id);
    extras().wake_token = Ref{};
  }
  woke_ = false;
}

void Process::fetch() {
  Envelope* h = head_.exchange(nullptr, std::memory_order_acq_rel);
  if (h == kBlocked || h == kClosed) {
    if (h == kClosed) head_.store(kClosed);
    return;
  }
  Envelope* in_order = in_arrival_order(h);
  while (in_order) {
    Envelope* e = in_order;
    in_order = e->next;
    e->next = nullptr;
    switch (e->kind) {
      case Kind::kReply:
      case Kind::kReplyError:
        if (std::any_of(extras().awaiting.begin(), extras().awaiting.end(),
                        [&](const auto& a) { return a.first == e->ref; })) {
          extras().replies.push_back(e);
        } else {
          delete e;  // a late reply: the caller gave up
        }
        break;
      case Kind::kWakeup:
        if (extras().wake_token && e->ref == extras().wake_token) woke_ = true;
        delete e;
        break;
      case Kind::kInfo:
        // A timer's message (send_after: no sender, the timer's ref) is the timer's end.
        if (e->ref && !e->from && has_timers_.load(std::memory_order_relaxed)) {
          rt_.timer_fired(e->ref);
        }
        queue_user(e);
        break;
      case Kind::kIdleTimeout:  // the behaviour checks whether it is still current
        queue_user(e);
        queued_.fetch_add(1, std::memory_order_relaxed);
        break;
      default:
        if (is_user_kind(e->kind)) {
          queue_user(e);
        } else {
          handle_signal(e);
        }
    }
  }
}

void Process::queue_user(Envelope* e) {
  if (fifo_tail_) {
    fifo_tail_->next = e;
  } else {
    fifo_head_ = e;
  }
  fifo_tail_ = e;
}

void Process::drop_oldest_over_bound() {
  if (!max_mailbox_ || overflow_ != Overflow::kDropOldest) return;
  Envelope* prev = nullptr;
  Envelope* e = fifo_head_;
  while (e && queued_.load(std::memory_order_relaxed) > max_mailbox_) {
    Envelope* n = e->next;
    if (e->kind == Kind::kStop || e->kind == Kind::kGetStatus) {
      prev = e;  // system messages are never dropped, as push never rejects them
      e = n;
      continue;
    }
    if (prev) {
      prev->next = n;
    } else {
      fifo_head_ = n;
    }
    if (fifo_tail_ == e) fifo_tail_ = prev;
    e->next = nullptr;
    count_dequeued();
    dropped_.fetch_add(1, std::memory_order_relaxed);
    rt_.bounce(e, reasons::of(ErrorCode::kOverloaded), pid_);
    e = n;
  }
}

Envelope* Process::next_user() {
  if (!fifo_head_) fetch();
  drop_oldest_over_bound();
  Envelope* e = fifo_head_;
  if (!e) return nullptr;
  fifo_head_ = e->next;
  if (!fifo_head_) fifo_tail_ = nullptr;
  e->next = nullptr;
  count_dequeued();
  return e;
}

Envelope* Process::receive_until(Clock::time_point deadline) {
  Envelope* got = nullptr;
  wait_until(
      [&] {
        got = next_user();
        return got != nullptr;
      },
      deadline);
  return got;
}

void Process::handle_signal(Envelope* e) {
  switch (e->kind) {
    case Kind::kLink:
      add_link(e->from);
      break;
    case Kind::kUnlink:
      remove_link(e->from);
      break;
    case Kind::kMonitor:
      extras().monitored_by.emplace_back(e->ref, e->from);
      break;
    case Kind::kDemonitor: {
      auto it = std::find_if(extras().monitored_by.begin(), extras().monitored_by.end(),
                             [&](const auto& m) { return m.first == e->ref; });
      if (it != extras().monitored_by.end()) extras().monitored_by.erase(it);
      break;
    }
    case Kind::kDown: {
      Pid target;
      if (remove_monitor(e->ref, &target)) {
        queue_user(new Envelope(Kind::kInfo, e->from, e->ref,
                                Down{e->ref, e->from, std::move(e->msg.term())}));
        queued_.fetch_add(1, std::memory_order_relaxed);
      }
      break;
    }
    case Kind::kLinkExit:
    case Kind::kExitSignal: {
      Reason reason = e->msg.is_term() ? e->msg.term() : Term();
      const bool from_link = e->kind == Kind::kLinkExit;
      if (from_link && !remove_link(e->from)) break;  // unlinked meanwhile
      // A plain thread's Inbox cannot be unwound from outside: even `kill` arrives as a message.
      if (!from_link && reason.is_atom("kill") && !thread_bound_) {
        exit_pending_ = true;
        extras().pending_reason = reasons::killed();
      } else if (trap_exit()) {
        queue_user(new Envelope(Kind::kInfo, e->from, Ref{}, Exit{e->from, std::move(reason)}));
        queued_.fetch_add(1, std::memory_order_relaxed);
      } else if (!reason.is_atom("normal") || (!from_link && e->from == pid_)) {
        if (!exit_pending_) {
          exit_pending_ = true;
          extras().pending_reason = std::move(reason);
        }
      }
      break;
    }
    case Kind::kNodeDown: {
      const Term& what = e->msg.term();  // Node, or {Node, hidden} for a hidden node
      if (what.is_tuple()) {
        node_down(what[0].as_atom(), /*hidden=*/true);
      } else {
        node_down(what.as_atom(), /*hidden=*/false);
      }
      break;
    }
    case Kind::kNodeUp: {
      Atom node = e->msg.term().as_atom();
      if (extras_ && (extras_->all_nodes ||
                      std::find(extras_->node_monitors.begin(), extras_->node_monitors.end(),
                                node) != extras_->node_monitors.end())) {
        queue_user(new Envelope(Kind::kInfo, Pid{}, Ref{}, NodeUp{node}));
        queued_.fetch_add(1, std::memory_order_relaxed);
      }
      break;
    }
    case Kind::kShutdown:
      shutdown_requested_ = true;
      if (!exit_pending_) {
        exit_pending_ = true;
        extras().pending_reason = reasons::shutdown();
      }
      break;
    case Kind::kIdleTimeout:
    default:
      // kIdleTimeout is matched by the behaviour: it arrives as a user message.
      break;
  }
  delete e;
}

bool Process::handle_system(Envelope* e) {
  if (e->kind == Kind::kGetStatus) {
    Term status;
    try {
      status = format_status();
    } catch (...) {
      status = tuple(atom("format_status_failed"), current_exception_reason());
    }
    rt_.send_reply(e->from, e->ref, std::move(status));
    delete e;
    return true;
  }
  return false;
}

Envelope* Process::take_reply(const Ref& ref) {
  for (auto it = extras().replies.begin(); it != extras().replies.end(); ++it) {
    if ((*it)->ref == ref) {
      Envelope* e = *it;
      extras().replies.erase(it);
      forget_ref(ref);
      return e;
    }
  }
  return nullptr;
}

bool Process::has_reply(const Ref& ref) const {
  return std::any_of(extras().replies.begin(), extras().replies.end(),
                     [&](const Envelope* e) { return e->ref == ref; });
}

void Process::forget_ref(const Ref& ref) {
  auto it = std::find_if(extras().awaiting.begin(), extras().awaiting.end(),
                         [&](const auto& a) { return a.first == ref; });
  if (it != extras().awaiting.end()) extras().awaiting.erase(it);
}

void Process::monitor_node(Atom node, bool on) {
  auto& v = extras().node_monitors;
  auto it = std::find(v.begin(), v.end(), node);
  if (on && it == v.end()) v.push_back(node);
  if (!on && it != v.end()) v.erase(it);
}

void Process::monitor_nodes(bool on) { extras().all_nodes = on; }

void Process::node_down(Atom node, bool hidden) {
  if (!extras_) return;
  Extras& x = *extras_;
  const Reason noconnection(atom("noconnection"));
  // Monitors of processes there fire with noconnection.
  for (auto it = x.monitors.begin(); it != x.monitors.end();) {
    if (it->second.node != node) {
      ++it;
      continue;
    }
    queue_user(new Envelope(Kind::kInfo, it->second, it->first,
                            Down{it->first, it->second, noconnection}));
    queued_.fetch_add(1, std::memory_order_relaxed);
    it = x.monitors.erase(it);
  }
  n_monitors_.store(static_cast<std::uint32_t>(x.monitors.size()), std::memory_order_relaxed);
  // Their monitors of us are gone with them.
  std::erase_if(x.monitored_by, [&](const auto& m) { return m.second.node == node; });
  // Calls waiting for an answer from there fail with nodedown.
  for (const auto& waiting : x.awaiting) {
    const Ref& ref = waiting.first;  // not a structured binding: lambdas capture it (clang 14)
    const Pid& target = waiting.second;
    if (target.node != node) continue;
    if (std::any_of(x.replies.begin(), x.replies.end(),
                    [&](const Envelope* r) { return r->ref == ref; })) {
      continue;
    }
    x.replies.push_back(
        new Envelope(Kind::kReplyError, target, ref, reasons::of(ErrorCode::kNodeDown)));
  }
  // Links to processes there break with noconnection, as an exit signal from each.
  std::vector<Pid> broken;
  for (const Pid& p : x.links) {
    if (p.node == node) broken.push_back(p);
  }
  for (const Pid& p : broken) {
    auto* e = new Envelope(Kind::kLinkExit, p, Ref{}, noconnection);
    handle_signal(e);
  }
  if ((x.all_nodes && !hidden) ||
      std::find(x.node_monitors.begin(), x.node_monitors.end(), node) != x.node_monitors.end()) {
    queue_user(new Envelope(Kind::kInfo, Pid{}, Ref{}, NodeDown{node, noconnection}));
    queued_.fetch_add(1, std::memory_order_relaxed);
  }
}

void Process::add_monitor(const Ref& ref, const Pid& target) {
  extras().monitors.emplace_back(ref, target);
  n_monitors_.store(static_cast<std::uint32_t>(extras().monitors.size()),
                    std::memory_order_relaxed);
}

bool Process::remove_monitor(const Ref& ref, Pid* target) {
  auto it = std::find_if(extras().monitors.begin(), extras().monitors.end(),
                         [&](const auto& m) { return m.first == ref; });
  if (it == extras().monitors.end()) return false;
  if (target) *target = it->second;
  extras().monitors.erase(it);
  n_monitors_.store(static_cast<std::uint32_t>(extras().monitors.size()),
                    std::memory_order_relaxed);
  return true;
}

void Process::resolve_deferred(const From& from) {
  if (from == extras().current_call) extras().current_replied = true;
  auto it = std::find(extras().deferred.begin(), extras().deferred.end(), from);
  if (it != extras().deferred.end()) extras().deferred.erase(it);
}

bool Process::has_monitor(const Ref& ref) const {
  return std::any_of(extras().monitors.begin(), extras().monitors.end(),
                     [&](const auto& m) { return m.first == ref; });
}

Reason Process::take_down(const Ref& ref) {
  Envelope* prev = nullptr;
  for (Envelope* e = fifo_head_; e; prev = e, e = e->next) {
    const Down* d = e->msg.get<Down>();
    if (e->kind != Kind::kInfo || !d || d->ref != ref) continue;
    if (prev) {
      prev->next = e->next;
    } else {
      fifo_head_ = e->next;
    }
    if (fifo_tail_ == e) fifo_tail_ = prev;
    count_dequeued();
    Reason r = d->reason;
    delete e;
    return r;
  }
  return reasons::noproc();
}

void Process::add_link(const Pid& p) {
  if (std::find(extras().links.begin(), extras().links.end(), p) == extras().links.end())
    extras().links.push_back(p);
  n_links_.store(static_cast<std::uint32_t>(extras().links.size()), std::memory_order_relaxed);
}

bool Process::remove_link(const Pid& p) {
  auto it = std::find(extras().links.begin(), extras().links.end(), p);
  if (it == extras().links.end()) return false;
  extras().links.erase(it);
  n_links_.store(static_cast<std::uint32_t>(extras().links.size()), std::memory_order_relaxed);
  return true;
}

void Process::finish(const Reason& reason) {
  if (dead_) return;
  dead_ = true;
  // Dead from here on for every name service (Node::is_process_alive), and its name and timers
  // gone, before anyone hears of the exit.
  rt_.table().mark_exiting(pid_.id);
  rt_.forget_name(pid_);
  if (has_timers_.load(std::memory_order_seq_cst)) rt_.cancel_timers_of(pid_);
  // Close the mailbox: from now on senders bounce at once (noproc).
  Envelope* h = head_.exchange(kClosed, std::memory_order_acq_rel);
  if (h != kBlocked) {
    Envelope* in_order = in_arrival_order(h);
    // Signals first (a monitor or link that raced with the exit gets the real reason).
    while (in_order) {
      Envelope* e = in_order;
      in_order = e->next;
      e->next = nullptr;
      if (is_user_kind(e->kind)) {
        queue_user(e);
      } else if (e->kind == Kind::kMonitor || e->kind == Kind::kLink) {
        rt_.bounce(e, reason, pid_);
      } else if (e->kind == Kind::kDemonitor || e->kind == Kind::kUnlink) {
        handle_signal(e);
      } else {
        delete e;
      }
    }
  }
  for (Envelope* e = fifo_head_; e;) {
    Envelope* n = e->next;
    e->next = nullptr;
    count_dequeued();
    rt_.bounce(e, reason, pid_);
    e = n;
  }
  fifo_head_ = fifo_tail_ = nullptr;
  if (!extras_) return;  // no links, monitors or waits: nothing more to tell
  Extras& x = *extras_;
  for (Envelope* e : x.replies) delete e;
  x.replies.clear();
  x.awaiting.clear();
  // The call being handled when the process exited (killed while its handler waited,
  // exit_self) and calls kept to answer later will never be answered: their callers get the
  // reason now instead of waiting for their timeout.
  if (x.current_call.pid && !x.current_replied) {
    rt_.send_error_reply(x.current_call.pid, x.current_call.ref, reason);
  }
  x.current_call = From{};
  for (const From& f : x.deferred) rt_.send_error_reply(f.pid, f.ref, reason);
  x.deferred.clear();
  for (const Pid& p : x.links) {
    rt_.deliver(p, new Envelope(Kind::kLinkExit, pid_, Ref{}, reason));
  }
  x.links.clear();
  for (const auto& [ref, watcher] : x.monitored_by) {
    rt_.deliver(watcher, new Envelope(Kind::kDown, pid_, ref, reason));
  }
  x.monitored_by.clear();
  for (const auto& [ref, target] : x.monitors) {
    rt_.deliver(target, new Envelope(Kind::kDemonitor, pid_, ref, Term()));
  }
  x.monitors.clear();
  n_links_.store(0);
  n_monitors_.store(0);
  if (x.wake_token) {
    (void)rt_.timers().cancel(x.wake_token.id);
    x.wake_token = Ref{};
  }
}

std::size_t Process::memory_estimate() const {
  std::size_t bytes = sizeof(*this) + mailbox_length() * sizeof(Envelope);
  if (has_extras_.load(std::memory_order_relaxed)) {
    bytes +=
        sizeof(Extras) + link_count() * sizeof(Pid) + monitor_count() * sizeof(std::pair<Ref, Pid>);
  }
  return bytes;
}

// -- a spawned function --------------------------------------------------------

namespace {

class FunProcess final : public Process {
 public:
  FunProcess(Runtime& rt, std::function<void()> body, const SpawnOptions& opts)
      : Process(rt, false, opts), body_(std::move(body)) {}

  void run_in_fiber() override {
    // Runs once: the body keeps its fiber while it waits in receive.
    Reason reason = reasons::normal();
    try {
      body_();
      fetch();
      if (exit_pending()) reason = pending_reason();
    } catch (const ProcessExit& x) {
      reason = x.reason;
    } catch (...) {
      reason = exception_reason();
    }
    body_ = nullptr;
    finish(reason);
  }
  std::string type_name() const override { return "fun"; }

 private:
  std::function<void()> body_;
};

class InboxProcess final : public Process {
 public:
  explicit InboxProcess(Runtime& rt) : Process(rt, true, SpawnOptions{}) {}
  void run_in_fiber() override { NODUS_CHECK(false && "an Inbox is never scheduled"); }
  const char* behaviour() const override { return "inbox"; }
  std::string type_name() const override { return "inbox"; }

 protected:
  void park_thread(Clock::time_point deadline) override {
    if (rt().scheduler().manual()) {
      // Nobody else runs the processes: this thread does, until something wakes it.
      for (;;) {
        {
          MutexLock lock(mu_);
          if (woken_) break;
        }
        if (rt().scheduler().step()) continue;
        if (rt().now() >= deadline) break;
        // Under virtual time the simulation moves on meanwhile (other nodes, the network, time).
        if (rt().advance_time()) continue;
        MutexLock lock(mu_);
        if (woken_ || rt().now() >= deadline) break;
        // Idle: wait briefly for a timer (timers fire on their own thread).
        cv_.wait_for(std::chrono::milliseconds(1));
      }
      MutexLock lock(mu_);
      woken_ = false;
      return;
    }
    MutexLock lock(mu_);
    while (!woken_) {
      if (deadline == Clock::time_point::max()) {
        cv_.wait();
      } else if (!cv_.wait_until(deadline)) {
        break;
      }
    }
    woken_ = false;
  }
  void wake_thread() override {
    {
      MutexLock lock(mu_);
      woken_ = true;
    }
    cv_.notify_one();
  }

 private:
  // Guards woken_: the owner thread sleeps on cv_ until a push wakes it.
  Mutex mu_;
  CondVar cv_{mu_};
  bool woken_ NODUS_GUARDED_BY(mu_) = false;
};

}  // namespace

Process* make_fun_process(Runtime& rt, std::function<void()> body, const SpawnOptions& opts) {
  return new FunProcess(rt, std::move(body), opts);
}

Process* make_inbox(Runtime& rt) {
  auto* p = new InboxProcess(rt);
  rt.adopt(p);
  return p;
}

Waiter::Waiter(Runtime& rt, bool same_runtime) : p_(current_process()) {
  if (!p_ || (same_runtime && &p_->rt() != &rt)) {
    temp_ = make_inbox(rt);
    p_ = temp_;
  }
}

Waiter::~Waiter() {
  if (temp_) {
    temp_->finish(reasons::normal());
    Runtime& rt = temp_->rt();
    rt.retire(temp_->pid());  // retire copies the pid before the process can go
  }
}

}  // namespace detail
}  // namespace nodus
