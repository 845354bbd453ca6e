#include "nodus/node/process.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <limits>
#include <mutex>
#include <ostream>
#include <thread>
#include <typeinfo>
#include <vector>

#include "check.hpp"
#include "process_impl.hpp"
#include "runtime.hpp"

namespace nodus {

// -- reasons ------------------------------------------------------------------

std::ostream& operator<<(std::ostream& os, const Reason& r) { return os << r.term(); }
std::ostream& operator<<(std::ostream& os, const Message& m) { return os << m.to_string(); }

namespace reasons {
Reason normal() { return Term(atom("normal")); }
Reason shutdown() { return Term(atom("shutdown")); }
Reason kill() { return Term(atom("kill")); }
Reason killed() { return Term(atom("killed")); }
Reason noproc() { return of(ErrorCode::kNoProc); }
Reason timeout() { return of(ErrorCode::kTimeout); }
Reason of(ErrorCode code) { return Term(atom(error_name(code))); }
Reason of(ErrorCode code, Term detail) { return tuple(atom(error_name(code)), std::move(detail)); }
Reason from_status(const Status& s) {
  if (s.message().empty()) return of(s.code());
  return of(s.code(), bin(s.message()));
}
Status to_status(const Reason& r) {
  const Term& t = r.term();
  const Term* name = &t;
  const Term* detail = nullptr;
  if (t.is_tuple() && t.size() == 2) {
    name = &t[0];
    detail = &t[1];
  }
  if (name->is_atom()) {
    if (auto code = error_from_name(name->as_atom().name()); code && *code != ErrorCode::kOk) {
      if (!detail) return Status(*code);
      return Status(*code, detail->is_bin() ? detail->as_bin() : detail->to_string());
    }
  }
  return Status(ErrorCode::kExited, t.to_string());
}
bool is_clean(const Reason& r) {
  if (r.is_atom("normal") || r.is_atom("shutdown")) return true;
  return r.is_tuple() && r.size() == 2 && r[0].is_atom("shutdown");
}
}  // namespace reasons

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
  if (x_) {
    for (Envelope* e : x_->replies) delete e;
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

void Process::park(Clock::time_point deadline) {
  waiting_.store(true, std::memory_order_relaxed);
  if (thread_bound_) {
    Envelope* expected = nullptr;
    if (head_.compare_exchange_strong(expected, kBlocked, std::memory_order_acq_rel)) {
      park_thread(deadline);
    }
  } else {
    if (deadline != Clock::time_point::max() && !x().wake_token) {
      x().wake_token = rt_.make_ref();
      rt_.timers().add(deadline, pid_, Kind::kWakeup, x().wake_token);
    }
    Scheduler::suspend();
  }
  waiting_.store(false, std::memory_order_relaxed);
}

void Process::end_wait() {
  if (x().wake_token) {
    (void)rt_.timers().cancel(x().wake_token.id);
    x().wake_token = Ref{};
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
        if (std::any_of(x().awaiting.begin(), x().awaiting.end(),
                        [&](const auto& a) { return a.first == e->ref; })) {
          x().replies.push_back(e);
        } else {
          delete e;  // a late reply: the caller gave up
        }
        break;
      case Kind::kWakeup:
        if (x().wake_token && e->ref == x().wake_token) woke_ = true;
        delete e;
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
      x().monitored_by.emplace_back(e->ref, e->from);
      break;
    case Kind::kDemonitor: {
      auto it = std::find_if(x().monitored_by.begin(), x().monitored_by.end(),
                             [&](const auto& m) { return m.first == e->ref; });
      if (it != x().monitored_by.end()) x().monitored_by.erase(it);
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
        x().pending_reason = reasons::killed();
      } else if (trap_exit()) {
        queue_user(new Envelope(Kind::kInfo, e->from, Ref{}, Exit{e->from, std::move(reason)}));
        queued_.fetch_add(1, std::memory_order_relaxed);
      } else if (!reason.is_atom("normal") || (!from_link && e->from == pid_)) {
        if (!exit_pending_) {
          exit_pending_ = true;
          x().pending_reason = std::move(reason);
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
      if (x_ && (x_->all_nodes || std::find(x_->node_monitors.begin(), x_->node_monitors.end(),
                                            node) != x_->node_monitors.end())) {
        queue_user(new Envelope(Kind::kInfo, Pid{}, Ref{}, NodeUp{node}));
        queued_.fetch_add(1, std::memory_order_relaxed);
      }
      break;
    }
    case Kind::kShutdown:
      shutdown_requested_ = true;
      if (!exit_pending_) {
        exit_pending_ = true;
        x().pending_reason = reasons::shutdown();
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
  for (auto it = x().replies.begin(); it != x().replies.end(); ++it) {
    if ((*it)->ref == ref) {
      Envelope* e = *it;
      x().replies.erase(it);
      forget_ref(ref);
      return e;
    }
  }
  return nullptr;
}

bool Process::has_reply(const Ref& ref) const {
  return std::any_of(x().replies.begin(), x().replies.end(),
                     [&](const Envelope* e) { return e->ref == ref; });
}

void Process::forget_ref(const Ref& ref) {
  auto it = std::find_if(x().awaiting.begin(), x().awaiting.end(),
                         [&](const auto& a) { return a.first == ref; });
  if (it != x().awaiting.end()) x().awaiting.erase(it);
}

void Process::monitor_node(Atom node, bool on) {
  auto& v = x().node_monitors;
  auto it = std::find(v.begin(), v.end(), node);
  if (on && it == v.end()) v.push_back(node);
  if (!on && it != v.end()) v.erase(it);
}

void Process::monitor_nodes(bool on) { x().all_nodes = on; }

void Process::node_down(Atom node, bool hidden) {
  if (!x_) return;
  Extras& x = *x_;
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
  x().monitors.emplace_back(ref, target);
  n_monitors_.store(static_cast<std::uint32_t>(x().monitors.size()), std::memory_order_relaxed);
}

bool Process::remove_monitor(const Ref& ref, Pid* target) {
  auto it = std::find_if(x().monitors.begin(), x().monitors.end(),
                         [&](const auto& m) { return m.first == ref; });
  if (it == x().monitors.end()) return false;
  if (target) *target = it->second;
  x().monitors.erase(it);
  n_monitors_.store(static_cast<std::uint32_t>(x().monitors.size()), std::memory_order_relaxed);
  return true;
}

void Process::resolve_deferred(const From& from) {
  if (from == x().current_call) x().current_replied = true;
  auto it = std::find(x().deferred.begin(), x().deferred.end(), from);
  if (it != x().deferred.end()) x().deferred.erase(it);
}

bool Process::has_monitor(const Ref& ref) const {
  return std::any_of(x().monitors.begin(), x().monitors.end(),
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
  if (std::find(x().links.begin(), x().links.end(), p) == x().links.end()) x().links.push_back(p);
  n_links_.store(static_cast<std::uint32_t>(x().links.size()), std::memory_order_relaxed);
}

bool Process::remove_link(const Pid& p) {
  auto it = std::find(x().links.begin(), x().links.end(), p);
  if (it == x().links.end()) return false;
  x().links.erase(it);
  n_links_.store(static_cast<std::uint32_t>(x().links.size()), std::memory_order_relaxed);
  return true;
}

void Process::finish(const Reason& reason) {
  if (dead_) return;
  dead_ = true;
  rt_.forget_name(pid_);  // gone before anyone hears of the exit
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
  if (!x_) return;  // no links, monitors or waits: nothing more to tell
  Extras& x = *x_;
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
          std::lock_guard<std::mutex> lock(mu_);
          if (woken_) break;
        }
        if (rt().scheduler().step()) continue;
        std::unique_lock<std::mutex> lock(mu_);
        if (woken_ || Clock::now() >= deadline) break;
        // Idle: wait briefly for a timer (timers fire on their own thread).
        cv_.wait_for(lock, std::chrono::milliseconds(1));
      }
      std::lock_guard<std::mutex> lock(mu_);
      woken_ = false;
      return;
    }
    std::unique_lock<std::mutex> lock(mu_);
    while (!woken_) {
      if (deadline == Clock::time_point::max()) {
        cv_.wait(lock);
      } else if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
        break;
      }
    }
    woken_ = false;
  }
  void wake_thread() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      woken_ = true;
    }
    cv_.notify_one();
  }

 private:
  // Guards woken_: the owner thread sleeps on cv_ until a push wakes it.
  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;
};

Process* require_self(const char* what) {
  Process* p = current_process();
  if (!p) {
    std::fprintf(stderr,
                 "nodus: %s needs a current process (call it from a process or create an Inbox)\n",
                 what);
    NODUS_CHECK(p != nullptr);
  }
  return p;
}

Runtime& runtime_for_call(const Pid& to) {
  Process* me = current_process();
  if (me) return me->rt();
  Runtime* rt = Runtime::for_pid(to);
  NODUS_CHECK(rt != nullptr && "no nodus::Node exists in this process");
  return *rt;
}

}  // namespace

Runtime& runtime_for_dest(const Dest& to) {
  if (to.is_pid()) return runtime_for_call(to.pid());
  if (Process* me = current_process()) return me->rt();
  Runtime* rt = Runtime::any();
  NODUS_CHECK(rt != nullptr && "no nodus::Node exists in this process");
  return *rt;
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

Result<Message, Reason> call_message(const Dest& dest, Message request, Timeout timeout,
                                     Kind kind) {
  Runtime& rt = runtime_for_dest(dest);
  Waiter me(rt);
  // A local name is resolved now; a remote one by its node. `target` says whose node going
  // down ends the wait.
  Pid target = dest.is_pid() ? dest.pid() : Pid{dest.node(), 0, 0};
  if (dest.is_via()) {
    target = dest.resolver().whereis_name(*rt.node(), dest.via_key());
    if (!target) return reasons::noproc();
  } else if (!dest.is_pid() && (dest.node() == Atom() || dest.node() == rt.name())) {
    target = rt.whereis(dest.name());
    if (!target) return reasons::noproc();
  }
  const Dest to = target.id ? Dest(target) : dest;
  if (target == me->pid()) return reasons::of(ErrorCode::kCallingSelf);
  Ref ref = rt.make_ref();
  me->await_ref(ref, target);
  // A call made while handling a call gets no more time than that call has left.
  const auto deadline = std::min(timeout.deadline_from_now(), me->current_deadline());
  auto* e = new Envelope(kind, me->pid(), ref, std::move(request));
  e->deadline = deadline;
  // Only calls to other nodes are timed (CallLatency): a local call is too cheap to time.
  const bool remote = target.node != rt.name();
  const auto sent =
      remote ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  rt.deliver(to, e);
  bool got = me->wait_until([&] { return me->has_reply(ref); }, deadline);
  if (remote) rt.record_remote_call(std::chrono::steady_clock::now() - sent);
  if (!got) {
    me->forget_ref(ref);
    return reasons::timeout();
  }
  std::unique_ptr<Envelope> r(me->take_reply(ref));
  if (r->kind == Kind::kReplyError) return Reason(r->msg.is_term() ? r->msg.term() : Term());
  return std::move(r->msg);
}

}  // namespace detail

// -- the public API --------------------------------------------------------------

using detail::Envelope;
using detail::Kind;
using detail::Process;
using detail::Runtime;

Pid self() { return detail::require_self("self()")->pid(); }
bool has_self() { return detail::current_process() != nullptr; }

Pid spawn(Node& node, std::function<void()> body, SpawnOptions opts) {
  Runtime& rt = detail::NodeAccess::runtime(node);
  auto* p = new detail::FunProcess(rt, std::move(body), opts);
  Process* me = detail::current_process();
  if (me && &me->rt() == &rt) p->set_parent(me->pid());
  if (!opts.name.empty()) {
    Pid pid = rt.adopt(p);
    if (!detail::register_start_name(rt, opts.name, pid).ok()) {  // taken: nothing starts
      p->finish(reasons::normal());
      rt.retire(pid);
      return Pid{};
    }
    if (opts.link) {
      Process* linker = detail::require_self("spawn_link");
      p->add_link(linker->pid());
      linker->add_link(pid);
    }
    rt.scheduler().schedule(p);
    return pid;
  }
  if (opts.link) {
    Process* linker = detail::require_self("spawn_link");
    Pid pid = rt.adopt(p);
    p->add_link(linker->pid());
    linker->add_link(pid);
    rt.scheduler().schedule(p);
    return pid;
  }
  return rt.spawn(p);
}

Pid spawn_link(Node& node, std::function<void()> body, SpawnOptions opts) {
  opts.link = true;
  return spawn(node, std::move(body), opts);
}

void sleep_for(std::chrono::milliseconds d) {
  Process* me = detail::current_process();
  if (!me) {
    std::this_thread::sleep_for(d);
    return;
  }
  (void)me->wait_until([] { return false; }, Process::Clock::now() + d);
}

Message receive() {
  Process* me = detail::require_self("receive()");
  std::unique_ptr<Envelope> e(me->receive_until(Process::Clock::time_point::max()));
  me->count_handled();
  return std::move(e->msg);
}

std::optional<Message> receive(Timeout t) {
  Process* me = detail::require_self("receive()");
  std::unique_ptr<Envelope> e(me->receive_until(t.deadline_from_now()));
  if (!e) return std::nullopt;
  me->count_handled();
  return std::move(e->msg);
}

namespace {
void send_kind(const Dest& to, Message msg, Kind kind) {
  Process* me = detail::current_process();
  Runtime& rt = detail::runtime_for_dest(to);
  if (to.is_via()) {
    if (kind == Kind::kInfo) {
      (void)to.resolver().send(*rt.node(), to.via_key(), std::move(msg));
      return;
    }
    Pid pid = to.resolver().whereis_name(*rt.node(), to.via_key());
    if (!pid) return;  // nobody holds it: dropped, as a send to a dead pid
    send_kind(pid, std::move(msg), kind);
    return;
  }
  rt.await_room(to.is_pid() ? to.pid().node : to.node());
  rt.deliver(to, new Envelope(kind, me ? me->pid() : Pid{}, Ref{}, std::move(msg)));
  detail::Scheduler::consume_reduction();
}
}  // namespace

void send(const Dest& to, Message msg) { send_kind(to, std::move(msg), Kind::kInfo); }
void cast(const Dest& to, Message request) { send_kind(to, std::move(request), Kind::kCast); }

CallResult call(const Dest& to, Message request, Timeout timeout) {
  auto r = detail::call_message(to, std::move(request), timeout, Kind::kCall);
  if (!r) return std::move(r).error();
  Message& m = r.value();
  if (m.is_term()) return std::move(m.term());
  return reasons::of(ErrorCode::kBadArg, bin(std::string("typed reply ") + m.type_name() +
                                             " to an untyped call: use call_as<T>"));
}

void reply(const From& from, Message value) {
  if (!from.pid) return;
  if (Process* me = detail::current_process()) me->resolve_deferred(from);
  Runtime& rt = detail::runtime_for_call(from.pid);
  rt.send_reply(from.pid, from.ref, std::move(value));
}

RequestId send_request(const Dest& to, Message request) {
  Process* me = detail::require_self("send_request");
  Runtime& rt = me->rt();
  Ref ref = rt.make_ref();
  Pid target = to.is_pid() ? to.pid() : Pid{to.node() == Atom() ? rt.name() : to.node(), 0, 0};
  if (to.is_via()) target = to.resolver().whereis_name(*rt.node(), to.via_key());
  me->await_ref(ref, target);
  rt.deliver(to, new Envelope(Kind::kCall, me->pid(), ref, std::move(request)));
  return RequestId{ref, target};
}

CallResult wait_response(const RequestId& id, Timeout timeout) {
  Process* me = detail::require_self("wait_response");
  bool got = me->wait_until([&] { return me->has_reply(id.ref); }, timeout.deadline_from_now());
  if (!got) return reasons::timeout();  // still outstanding: may be waited for again
  std::unique_ptr<Envelope> r(me->take_reply(id.ref));
  if (r->kind == Kind::kReplyError) return Reason(r->msg.is_term() ? r->msg.term() : Term());
  if (r->msg.is_term()) return std::move(r->msg.term());
  return reasons::of(ErrorCode::kBadArg, bin(std::string("typed reply ") + r->msg.type_name() +
                                             " to an untyped request: use call_as<T>"));
}

Ref send_after(const Pid& to, Message msg, std::chrono::milliseconds delay) {
  Runtime& rt = detail::runtime_for_call(to);
  Ref ref = rt.make_ref();
  rt.timers().add(std::chrono::steady_clock::now() + delay, to, Kind::kInfo, ref, std::move(msg));
  return ref;
}

std::optional<std::chrono::milliseconds> cancel_timer(const Ref& timer) {
  Runtime* rt = Runtime::owning(timer.node, timer.creation);  // the node that made the timer
  if (!rt) return std::nullopt;
  return rt->timers().cancel(timer.id);
}

Ref monitor(const Dest& target) {
  Process* me = detail::require_self("monitor");
  Runtime& rt = me->rt();
  Ref ref = rt.make_ref();
  // A local name is resolved now (nobody holds it: a Down with noproc at once); a remote name
  // by its node, and only that node matters if it goes down.
  Dest to = target;
  Pid watched = target.is_pid() ? target.pid() : Pid{target.node(), 0, 0};
  if (target.is_via()) {
    watched = target.resolver().whereis_name(*rt.node(), target.via_key());
    if (watched) {
      to = Dest(watched);
    } else {  // nobody holds it: a Down with noproc at once
      me->add_monitor(ref, watched);
      rt.deliver(me->pid(), new Envelope(Kind::kDown, Pid{}, ref, reasons::noproc()));
      return ref;
    }
  } else if (!target.is_pid() && (target.node() == Atom() || target.node() == rt.name())) {
    watched = rt.whereis(target.name());
    if (watched) to = Dest(watched);  // else the name bounces: a Down with noproc
  }
  me->add_monitor(ref, watched);
  rt.deliver(to, new Envelope(Kind::kMonitor, me->pid(), ref, Term()));
  return ref;
}

// -- names --------------------------------------------------------------------------------

std::string Dest::to_string() const {
  if (is_pid()) return pid_.to_string();
  if (is_via()) return resolver().describe(via_key());
  if (node() == Atom()) return name_.name();
  std::string out = "{";
  out += name_.name();
  out += ",";
  out += node().name();
  out += "}";
  return out;
}

const std::string& Dest::name() const {
  static const std::string kNone;
  return name_.kind() == detail::DestName::Kind::kName ? name_.name() : kNone;
}

Dest named(std::string_view name) { return Dest(detail::DestName(std::string(name), Atom())); }

Dest named(std::string_view name, std::string_view node) {
  return Dest(detail::DestName(std::string(name), Atom(node)));
}

Dest via_name(std::shared_ptr<const NameResolver> resolver, Term key) {
  NODUS_CHECK(resolver != nullptr);
  return Dest(detail::DestName(
      std::make_shared<const detail::ViaKey>(detail::ViaKey{std::move(resolver), std::move(key)})));
}

bool NameResolver::send(Node& node, const Term& key, Message msg) const {
  Pid pid = whereis_name(node, key);
  if (!pid) return false;
  nodus::send(pid, std::move(msg));
  return true;
}

std::string NameResolver::describe(const Term& key) const {
  std::string out = "via(";
  out += key.to_string();
  out += ")";
  return out;
}

const std::string& Name::local() const {
  static const std::string kNone;
  return is_local() ? dest_->name() : kNone;
}

namespace detail {
NameStatus register_start_name(Runtime& rt, const Name& name, const Pid& pid) {
  if (name.is_via()) {
    const Dest& d = name.dest();
    return d.resolver().register_name(*rt.node(), d.via_key(), pid);
  }
  return rt.register_name(name.local(), pid);
}
}  // namespace detail

NameStatus register_name(std::string_view name, const Pid& pid) {
  Runtime* rt = Runtime::owning(pid.node, pid.creation);
  if (!rt) return Status(ErrorCode::kBadArg, pid.to_string() + " is not on a node of this process");
  return rt->register_name(name, pid);
}

bool unregister_name(std::string_view name) {
  return detail::require_self("unregister_name")->rt().unregister_name(name);
}

Pid whereis(std::string_view name) { return detail::require_self("whereis")->rt().whereis(name); }

bool demonitor(const Ref& ref) {
  Process* me = detail::require_self("demonitor");
  Pid target;
  if (!me->remove_monitor(ref, &target)) return false;
  me->rt().deliver(target, new Envelope(Kind::kDemonitor, me->pid(), ref, Term()));
  return true;
}

std::optional<Reason> await_down(const Ref& ref, Timeout timeout) {
  Process* me = detail::require_self("await_down");
  // The Down ends the monitor as it is fetched; then it is taken out of the queue.
  bool got = me->wait_until([&] { return !me->has_monitor(ref); }, timeout.deadline_from_now());
  if (!got) return std::nullopt;
  return me->take_down(ref);
}

void link(const Pid& pid) {
  Process* me = detail::require_self("link");
  if (pid == me->pid()) return;
  me->add_link(pid);
  me->rt().deliver(pid, new Envelope(Kind::kLink, me->pid(), Ref{}, Term()));
}

void unlink(const Pid& pid) {
  Process* me = detail::require_self("unlink");
  if (!me->remove_link(pid)) return;
  me->rt().deliver(pid, new Envelope(Kind::kUnlink, me->pid(), Ref{}, Term()));
}

bool trap_exit(bool on) { return detail::require_self("trap_exit")->set_trap_exit(on); }

void monitor_nodes(bool on) { detail::require_self("monitor_nodes")->monitor_nodes(on); }

void monitor_node(Atom node, bool on) {
  detail::require_self("monitor_node")->monitor_node(node, on);
}

void exit(const Pid& pid, Reason reason) {
  Process* me = detail::current_process();
  Runtime& rt = detail::runtime_for_call(pid);
  rt.deliver(pid,
             new Envelope(Kind::kExitSignal, me ? me->pid() : Pid{}, Ref{}, std::move(reason)));
}

void exit_self(Reason reason) {
  detail::require_self("exit_self");
  throw detail::ProcessExit{std::move(reason), true};
}

// -- Inbox ------------------------------------------------------------------------

Inbox::Inbox(Node& node) {
  process_ = detail::make_inbox(detail::NodeAccess::runtime(node));
  process_->set_trap_exit(true);  // a test thread wants Exit messages, not to be torn down
  pid_ = process_->pid();
  detail::push_thread_inbox(process_);
}

Inbox::~Inbox() { close(); }

Pid Inbox::pid() const { return pid_; }

void Inbox::close() {
  if (!process_) return;
  detail::remove_thread_inbox(process_);
  process_->finish(reasons::normal());
  process_->rt().retire(pid_);
  process_ = nullptr;
}

}  // namespace nodus
