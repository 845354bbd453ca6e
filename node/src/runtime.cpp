#include "runtime.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "check.hpp"
#include "process_impl.hpp"

namespace nodus::detail {

namespace {
// Guards g_runtimes: the nodes alive in this OS process, for plain-thread calls.
Mutex g_runtimes_mu;
std::vector<Runtime*> g_runtimes NODUS_GUARDED_BY(g_runtimes_mu);

std::uint32_t default_creation() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
  std::uint32_t c = static_cast<std::uint32_t>(us ^ (us >> 32));
  return c == 0 ? 1 : c;
}
}  // namespace

Runtime::Runtime(const NodeOptions& options)
    : clock_owner_(options.clock),
      clock_(options.clock.get()),
      name_(options.name),
      creation_(options.creation ? options.creation : default_creation()),
      timers_(*this, options.clock.get()),
      scheduler_(*this, options.schedulers, options.fiber_stack_size, options.manual_scheduling) {
  // Timers of a virtual clock fire inside step(): only a manual scheduler has one.
  NODUS_CHECK(!clock_ || options.manual_scheduling);
  {
    MutexLock lock(g_runtimes_mu);
    g_runtimes.push_back(this);
  }
  timers_.start();
  scheduler_.start();
}

Runtime::~Runtime() {
  shutdown(std::chrono::seconds(5));
  MutexLock lock(g_runtimes_mu);
  g_runtimes.erase(std::remove(g_runtimes.begin(), g_runtimes.end(), this), g_runtimes.end());
}

Runtime* Runtime::for_pid(const Pid& pid) {
  if (Process* p = current_process()) return &p->rt();
  MutexLock lock(g_runtimes_mu);
  for (Runtime* rt : g_runtimes) {
    if (rt->is_local(pid)) return rt;
  }
  return g_runtimes.empty() ? nullptr : g_runtimes.front();
}

Runtime* Runtime::owning(Atom node, std::uint32_t creation) {
  MutexLock lock(g_runtimes_mu);
  for (Runtime* rt : g_runtimes) {
    if (rt->name_ == node && rt->creation_ == creation) return rt;
  }
  return nullptr;
}

Runtime* Runtime::any() {
  MutexLock lock(g_runtimes_mu);
  return g_runtimes.empty() ? nullptr : g_runtimes.front();
}

Pid Runtime::adopt(Process* p) {
  // The pid is set before the table publishes the process: introspection and shutdown read it
  // from other threads as soon as it is there.
  std::uint64_t id = table_.insert(p, [&](std::uint64_t fresh) {
    p->set_pid(Pid{name_, creation_, fresh});
  });
  return Pid{name_, creation_, id};
}

Pid Runtime::spawn(Process* p) {
  Pid pid = adopt(p);
  scheduler_.schedule(p);
  return pid;
}

void Runtime::deliver(const Pid& to, Envelope* e) {
  if (!to.valid()) {
    delete e;
    return;
  }
  if (to.node != name_) {
    deliver_remote(to, e);
    return;
  }
  if (to.creation != creation_) {  // a pid of this node's earlier incarnation
    bounce(e, reasons::noproc(), to);
    return;
  }
  ProcessTable::Handle h = table_.lookup(to.id);
  if (!h) {
    bounce(e, reasons::noproc(), to);
    return;
  }
  switch (h->push(e)) {
    case Process::PushResult::kOk:
      return;
    case Process::PushResult::kClosed:
      bounce(e, reasons::noproc(), to);
      return;
    case Process::PushResult::kRejected:
      bounce(e, reasons::of(ErrorCode::kOverloaded), to);
      return;
  }
}

void Runtime::bounce(Envelope* e, const Reason& reason, const Pid& target) {
  std::unique_ptr<Envelope> owned(e);
  switch (e->kind) {
    case Kind::kCall:
    case Kind::kGetStatus:
    case Kind::kStop:
      send_error_reply(e->from, e->ref, reason);
      break;
    case Kind::kMonitor:
      deliver(e->from, new Envelope(Kind::kDown, target, e->ref, reason));
      break;
    case Kind::kLink:
      deliver(e->from, new Envelope(Kind::kLinkExit, target, Ref{}, reason));
      break;
    default:
      break;  // a message to a dead process is dropped, as in Erlang
  }
}

void Runtime::send_reply(const Pid& to, const Ref& ref, Message value) {
  deliver(to, new Envelope(Kind::kReply, Pid{}, ref, std::move(value)));
}

void Runtime::send_error_reply(const Pid& to, const Ref& ref, const Reason& reason) {
  deliver(to, new Envelope(Kind::kReplyError, Pid{}, ref, reason));
}

Ref Runtime::send_after(const Pid& to, Message msg, std::chrono::milliseconds delay) {
  const Ref ref = make_ref();
  const auto when = now() + delay;
  if (!is_local(to)) {  // another node's process: the timer is this node's to keep
    timers_.add(when, to, Kind::kInfo, ref, std::move(msg));
    return ref;
  }
  ProcessTable::Handle target = table_.lookup(to.id);
  if (!target) return ref;  // gone: no timer
  MutexLock lock(user_timers_mu_);
  // The flag first, then the liveness: with Process::finish marking the exit first, then
  // reading the flag (all seq_cst), either the exit sees the flag and cancels this timer
  // (under this lock, so after it is recorded), or this sees the exit and sets none.
  target->note_timer();
  if (!table_.alive(to.id)) return ref;
  timer_target_.emplace(ref.id, to.id);
  timers_of_[to.id].push_back(ref.id);
  timers_.add(when, to, Kind::kInfo, ref, std::move(msg));
  return ref;
}

std::optional<std::chrono::milliseconds> Runtime::cancel_timer(const Ref& timer) {
  std::optional<std::chrono::milliseconds> left = timers_.cancel(timer.id);
  timer_fired(timer);  // forgotten either way
  return left;
}

void Runtime::timer_fired(const Ref& timer) {
  MutexLock lock(user_timers_mu_);
  auto it = timer_target_.find(timer.id);
  if (it == timer_target_.end()) return;
  auto of = timers_of_.find(it->second);
  if (of != timers_of_.end()) {
    std::erase(of->second, timer.id);
    if (of->second.empty()) timers_of_.erase(of);
  }
  timer_target_.erase(it);
}

void Runtime::cancel_timers_of(const Pid& pid) {
  MutexLock lock(user_timers_mu_);
  auto of = timers_of_.find(pid.id);
  if (of == timers_of_.end()) return;
  for (std::uint64_t id : of->second) {
    (void)timers_.cancel(id);
    timer_target_.erase(id);
  }
  timers_of_.erase(of);
}

void Runtime::retire(Pid pid) {
  table_.remove(pid.id);  // first: a registration racing with this exit then fails its lookup
  forget_name(pid);
}

void Runtime::forget_name(const Pid& pid) {
  if (named_.load() == 0) return;
  MutexLock lock(names_mu_);
  auto it = name_of_.find(pid.id);
  if (it == name_of_.end()) return;
  by_name_.erase(it->second);
  name_of_.erase(it);
  named_.fetch_sub(1);
}

NameStatus Runtime::register_name(std::string_view name, const Pid& pid) {
  if (name.empty()) return Status(ErrorCode::kBadArg, "an empty name");
  if (!is_local(pid)) return Status(ErrorCode::kBadArg, pid.to_string() + " is not on this node");
  MutexLock lock(names_mu_);
  auto held = by_name_.find(std::string(name));
  if (held != by_name_.end()) {
    return NameStatus::taken(held->second);
  }
  if (!table_.lookup(pid.id)) return Status(ErrorCode::kBadArg, pid.to_string() + " is not alive");
  if (auto it = name_of_.find(pid.id); it != name_of_.end()) {
    return Status(ErrorCode::kBadArg, pid.to_string() + " is already registered as " + it->second);
  }
  by_name_.emplace(std::string(name), pid);
  name_of_.emplace(pid.id, std::string(name));
  named_.fetch_add(1);
  return Status::Ok();
}

bool Runtime::unregister_name(std::string_view name) {
  MutexLock lock(names_mu_);
  auto it = by_name_.find(std::string(name));
  if (it == by_name_.end()) return false;
  name_of_.erase(it->second.id);
  by_name_.erase(it);
  named_.fetch_sub(1);
  return true;
}

Pid Runtime::whereis(std::string_view name) const {
  MutexLock lock(names_mu_);
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? Pid{} : it->second;
}

std::vector<std::string> Runtime::registered() const {
  std::vector<std::string> out;
  {
    MutexLock lock(names_mu_);
    for (const auto& [name, pid] : by_name_) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string Runtime::registered_name(const Pid& pid) const {
  if (named_.load() == 0) return {};
  MutexLock lock(names_mu_);
  auto it = name_of_.find(pid.id);
  return it == name_of_.end() ? std::string() : it->second;
}

void Runtime::deliver(const Dest& to, Envelope* e) {
  if (to.is_pid()) {
    deliver(to.pid(), e);
    return;
  }
  if (to.is_via()) {
    Pid pid = to.resolver().whereis_name(*node_, to.via_key());
    if (!pid) {
      bounce(e, reasons::noproc(), Pid{});
      return;
    }
    deliver(pid, e);
    return;
  }
  if (to.node() != Atom() && to.node() != name_) {
    deliver_remote_name(to.node(), to.name(), e);
    return;
  }
  Pid pid = whereis(to.name());
  if (!pid) {
    bounce(e, reasons::noproc(), Pid{});
    return;
  }
  deliver(pid, e);
}

void* Runtime::set_service(std::size_t slot, std::shared_ptr<void> owner) {
  NODUS_CHECK(slot < kServiceSlots);
  MutexLock lock(services_mu_);
  if (void* held = services_[slot].load()) return held;
  void* raw = owner.get();
  service_owners_.push_back(std::move(owner));
  services_[slot].store(raw, std::memory_order_release);
  return raw;
}

void Runtime::shutdown(Timeout grace) {
  if (stopped_.exchange(true)) return;
  shutting_down_.store(true);
  // Inboxes belong to plain threads and leave when those close them: not waited for.
  auto live = [&] {
    std::size_t n = 0;
    table_.for_each([&](Process& p) {
      if (std::string_view(p.behaviour()) != "inbox") ++n;
    });
    return n;
  };
  // On the node's clock: under virtual time a simulation runs meanwhile (the processes may
  // wait for other nodes) and the grace is virtual too.
  auto wait_until_empty = [&](Clock::time_point deadline) {
    while (live() > 0 && now() < deadline) {
      if (scheduler_.manual() && scheduler_.step()) continue;
      if (advance_time()) continue;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return live() == 0;
  };
  auto signal_all = [&](bool only_roots, Kind kind, const Reason& reason) {
    std::vector<Pid> targets;
    table_.for_each([&](Process& p) {
      if (std::string_view(p.behaviour()) == "inbox") return;
      if (only_roots && p.parent().valid()) {
        // A root has no live parent, or a plain thread's Inbox for one (main() starting the
        // top supervisor): the Inbox is never signalled, so its children must be.
        ProcessTable::Handle parent = table_.lookup(p.parent().id);
        if (parent && std::string_view(parent->behaviour()) != "inbox") return;
      }
      targets.push_back(p.pid());
    });
    for (const Pid& pid : targets) deliver(pid, new Envelope(kind, Pid{}, Ref{}, reason));
  };
  const auto deadline = this->deadline(grace);
  // Top-level processes first: supervisors stop their children in order.
  signal_all(true, Kind::kShutdown, reasons::shutdown());
  auto roots_deadline = std::min(deadline, now() + (deadline - now()) / 2);
  if (!wait_until_empty(roots_deadline)) {
    signal_all(false, Kind::kShutdown, reasons::shutdown());
    if (!wait_until_empty(deadline)) {
      signal_all(false, Kind::kExitSignal, reasons::kill());
      wait_until_empty(now() + std::chrono::seconds(1));
    }
  }
  if (transport::Transport* t = transport()) t->close();  // peers hear BYE
  timers_.stop();
  scheduler_.stop();
}

}  // namespace nodus::detail
