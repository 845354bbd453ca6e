// The messaging calls of process.hpp (self, spawn, send, cast, call, reply, timers, monitors,
// links, exits, local names, Inbox) and the reasons they give: what every process and plain
// thread uses to talk to processes, local or remote.
#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <ostream>
#include <thread>

#include "check.hpp"
#include "nodus/node/process.hpp"
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
  const auto deadline = std::min(rt.deadline(timeout), me->current_deadline());
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
Pid sender() {
  const detail::Process* me = detail::current_process();
  return me ? me->current_sender() : Pid{};
}

Pid spawn(Node& node, std::function<void()> body, SpawnOptions opts) {
  Runtime& rt = detail::NodeAccess::runtime(node);
  Process* p = detail::make_fun_process(rt, std::move(body), opts);
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
  (void)me->wait_until([] { return false; }, me->rt().now() + d);
}

Message receive() {
  Process* me = detail::require_self("receive()");
  std::unique_ptr<Envelope> e(me->receive_until(Process::Clock::time_point::max()));
  me->count_handled();
  return std::move(e->msg);
}

std::optional<Message> receive(Timeout t) {
  Process* me = detail::require_self("receive()");
  std::unique_ptr<Envelope> e(me->receive_until(me->rt().deadline(t)));
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
  bool got = me->wait_until([&] { return me->has_reply(id.ref); }, me->rt().deadline(timeout));
  if (!got) return reasons::timeout();  // still outstanding: may be waited for again
  std::unique_ptr<Envelope> r(me->take_reply(id.ref));
  if (r->kind == Kind::kReplyError) return Reason(r->msg.is_term() ? r->msg.term() : Term());
  if (r->msg.is_term()) return std::move(r->msg.term());
  return reasons::of(ErrorCode::kBadArg, bin(std::string("typed reply ") + r->msg.type_name() +
                                             " to an untyped request: use call_as<T>"));
}

namespace detail {
Result<Message, Reason> receive_typed(const RequestId& id, Timeout timeout) {
  Process* me = detail::require_self("receive_response_as");
  bool got = me->wait_until([&] { return me->has_reply(id.ref); }, me->rt().deadline(timeout));
  if (!got) {
    me->forget_ref(id.ref);  // abandoned: a late reply is dropped as a timed-out call's
    return reasons::timeout();
  }
  std::unique_ptr<Envelope> r(me->take_reply(id.ref));
  if (r->kind == Kind::kReplyError) return Reason(r->msg.is_term() ? r->msg.term() : Term());
  return std::move(r->msg);
}
}  // namespace detail

Ref send_after(const Pid& to, Message msg, std::chrono::milliseconds delay) {
  return detail::runtime_for_call(to).send_after(to, std::move(msg), delay);
}

std::optional<std::chrono::milliseconds> cancel_timer(const Ref& timer) {
  Runtime* rt = Runtime::owning(timer.node, timer.creation);  // the node that made the timer
  if (!rt) return std::nullopt;
  return rt->cancel_timer(timer);
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
  bool got = me->wait_until([&] { return !me->has_monitor(ref); }, me->rt().deadline(timeout));
  if (!got) return std::nullopt;
  return me->take_down(ref);
}

void link(const Pid& pid) {
  Process* me = detail::require_self("link");
  if (pid == me->pid()) return;
  me->add_link(pid);
  me->rt().deliver(pid, new Envelope(Kind::kLink, me->pid(), Ref{}, Message()));
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
