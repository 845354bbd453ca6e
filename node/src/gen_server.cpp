#include "nodus/node/gen_server.hpp"

#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>

#include "check.hpp"
#include "process_impl.hpp"
#include "runtime.hpp"

namespace nodus {

// -- default callbacks -------------------------------------------------------------

Action GenServer::handle_call(Message& request, From) {
  return stop(tuple(atom("bad_call"),
                    request.is_term() ? request.term() : Term(atom(request.type_name()))));
}
Action GenServer::handle_cast(Message& request) {
  return stop(tuple(atom("bad_cast"),
                    request.is_term() ? request.term() : Term(atom(request.type_name()))));
}
Action GenServer::handle_info(Message&) { return noreply(); }
Action GenServer::handle_continue(Term& arg) { return stop(tuple(atom("bad_continue"), arg)); }
void GenServer::terminate(const Reason&) {}
Term GenServer::format_status() { return Term(atom("gen_server")); }

Action GenServer::stop(Reason reason) {
  Action a(Action::Kind::kStop);
  a.reason_ = std::move(reason);
  return a;
}
Action GenServer::stop_and_reply(Reason reason, Message value) {
  Action a(Action::Kind::kStop);
  a.reason_ = std::move(reason);
  a.reply_.emplace(std::move(value));
  return a;
}
Action GenServer::reply(Message value) {
  Action a(Action::Kind::kReply);
  a.reply_.emplace(std::move(value));
  return a;
}

namespace detail {

// Reads what a callback returned (Action's fields are private to the behaviour).
struct ActionAccess {
  static Action::Kind kind(const Action& a) { return a.kind_; }
  static std::optional<Message>& reply(Action& a) { return a.reply_; }
  static Reason& reason(Action& a) { return a.reason_; }
  static std::optional<Term>& continue_arg(Action& a) { return a.continue_; }
  static std::optional<std::chrono::milliseconds> idle(const Action& a) { return a.idle_; }
};

std::string demangle(const char* mangled) {
  int status = 0;
  char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string out = (status == 0 && d) ? d : mangled;
  std::free(d);
  return out;
}

namespace {

constexpr int kSlice = 2000;  // messages per run before others get a turn (as sends, see scheduler)

/// The process behind every GenServer.
class GenServerProcess final : public Process {
 public:
  GenServerProcess(Runtime& rt, const SpawnOptions& opts, ServerFactory make,
                   const std::string* type, std::size_t state_size, const char* behaviour,
                   From starter)
      : Process(rt, false, opts),
        pending_start_(std::make_unique<PendingStart>(PendingStart{std::move(make), starter})),
        type_(type),
        state_size_(static_cast<std::uint32_t>(state_size)),
        behaviour_(behaviour) {}

  const char* behaviour() const override { return behaviour_; }
  std::string type_name() const override { return *type_; }
  bool has_pending_work() const override { return continue_ != nullptr; }
  std::size_t memory_estimate() const override { return Process::memory_estimate() + state_size_; }
  Term format_status() override { return server_ ? server_->format_status() : Term(); }

  void run_in_fiber() override {
    try {
      if (!server_) {
        start();
        if (dead() || !continue_) return;  // init's Continue runs now, not at the next message
      }
      // A continue still pending when the slice ends runs next time (has_pending_work).
      for (int n = 0; n < kSlice && !dead(); ++n) {
        if (exit_pending()) {
          exit_from_signal();
          return;
        }
        if (continue_) {
          Term arg = std::move(*continue_);
          continue_ = nullptr;
          apply(guarded([&] { return server_->handle_continue(arg); }), nullptr);
          continue;
        }
        Envelope* e = next_user();
        if (!e) break;
        dispatch(std::unique_ptr<Envelope>(e));
      }
      if (dead()) return;
      if (exit_pending()) {
        exit_from_signal();
        return;
      }
    } catch (const ProcessExit& x) {
      if (x.run_terminate) {
        terminate_and_finish(x.reason);
      } else if (shutdown_requested() && server_ && !x.reason.is_atom("killed")) {
        // The node's shutdown arrived while a handler waited (in call, receive, await_down):
        // terminate still runs, as it does when the signal finds the server idle (not after
        // the kill that ends a shutdown's grace period).
        clear_exit_pending();
        terminate_and_finish(x.reason);
      } else {
        finish(x.reason);
      }
    }
  }

 private:
  // Runs a callback; an exception becomes a stop with a reason naming it. ProcessExit passes.
  template <class F>
  Action guarded(F&& f) {
    try {
      return f();
    } catch (const ProcessExit&) {
      throw;
    } catch (...) {
      return GenServerAccess::stop(current_exception_reason());
    }
  }

  struct GenServerAccess : GenServer {
    static Action stop(Reason r) { return GenServer::stop(std::move(r)); }
  };

  void start() {
    // Link first so that a crash in init reaches the parent (start_link semantics).
    std::pair<std::unique_ptr<GenServer>, Action> made{nullptr, GenServerAccess::stop(Term())};
    try {
      made = pending_start_->make();
    } catch (const ProcessExit& x) {
      init_failed(pending_start_->starter, x.reason);
      return;
    } catch (...) {
      init_failed(pending_start_->starter, current_exception_reason());
      return;
    }
    const From starter = pending_start_->starter;
    pending_start_ = nullptr;
    server_ = std::move(made.first);
    Action& a = made.second;
    switch (ActionAccess::kind(a)) {
      case Action::Kind::kOk:
        rt().send_reply(starter.pid, starter.ref, Term(pid()));
        after_callback(a);
        break;
      case Action::Kind::kIgnore:
        init_failed(starter, reasons::of(ErrorCode::kIgnored), reasons::normal());
        break;
      case Action::Kind::kStop:
        init_failed(starter, ActionAccess::reason(a));
        break;
      default:
        init_failed(starter, tuple(atom("bad_return_value"), atom("init")));
    }
  }

  // init did not succeed: start returns `reply`; the process exits with `exit_reason` and,
  // as in OTP 26, does not send the starter an exit signal through the link.
  void init_failed(From starter, const Reason& reply,
                   std::optional<Reason> exit_reason = std::nullopt) {
    pending_start_ = nullptr;
    if (starter.pid) {
      remove_link(starter.pid);
      rt().deliver(starter.pid, new Envelope(Kind::kUnlink, pid(), Ref{}, Term()));
    }
    rt().send_error_reply(starter.pid, starter.ref, reply);
    finish(exit_reason ? *exit_reason : reply);
  }

  void dispatch(std::unique_ptr<Envelope> e) {
    // An idle timeout that fired as its timer was being cancelled is no message: it must not
    // cancel the timeout armed since.
    if (e->kind == Kind::kIdleTimeout && e->ref != idle_ref_) return;
    count_handled();
    // A system message is not a message to the behaviour either: the idle timeout runs on.
    if (e->kind == Kind::kGetStatus) {
      handle_system(e.release());
      return;
    }
    if (idle_ref_) {
      (void)rt().timers().cancel(idle_ref_.id);
      if (e->kind == Kind::kIdleTimeout && e->ref == idle_ref_) {
        idle_ref_ = Ref{};
        Message timeout(atom("timeout"));  // gen_server's idle timeout message, not an error
        apply(guarded([&] { return server_->handle_info(timeout); }), nullptr);
        return;
      }
      idle_ref_ = Ref{};
    }
    switch (e->kind) {
      case Kind::kCall: {
        // The caller has given up already: nobody would read the answer.
        if (e->deadline != Clock::time_point::max() && rt().now() >= e->deadline) break;
        From from{e->from, e->ref};
        set_current_call(from);
        set_current_deadline(e->deadline);
        struct ClearDeadline {
          Process* p;
          ~ClearDeadline() { p->set_current_deadline(Clock::time_point::max()); }
        } clear{this};
        apply(guarded([&] { return server_->handle_call(e->msg, from); }), &from);
        set_current_call(From{});
        break;
      }
      case Kind::kCast:
        apply(guarded([&] { return server_->handle_cast(e->msg); }), nullptr);
        break;
      case Kind::kInfo:
        if (const Exit* x = e->msg.get<Exit>();
            x && trap_exit() && x->from == parent() && parent().valid()) {
          terminate_and_finish(x->reason);  // the parent (a supervisor) is stopping us
          return;
        }
        apply(guarded([&] { return server_->handle_info(e->msg); }), nullptr);
        break;
      case Kind::kStop: {
        Reason reason = e->msg.is_term() ? Reason(e->msg.term()) : reasons::normal();
        terminate_and_finish(reason);
        break;
      }
      default:
        break;
    }
  }

  void apply(Action a, const From* from) {
    const Action::Kind kind = ActionAccess::kind(a);
    // Answered below: finish must not answer it again.
    if (from && (kind == Action::Kind::kReply || kind == Action::Kind::kStop)) {
      resolve_deferred(*from);
    }
    switch (kind) {
      case Action::Kind::kReply:
        if (from) rt().send_reply(from->pid, from->ref, std::move(*ActionAccess::reply(a)));
        after_callback(a);
        break;
      case Action::Kind::kOk:
        if (from) {  // handle_call must reply, noreply or stop: gen_server crashes here too
          terminate_and_finish(tuple(atom("bad_return_value"), atom("ok")));
          break;
        }
        after_callback(a);
        break;
      case Action::Kind::kNoReply:
        if (from && ActionAccess::kind(a) == Action::Kind::kNoReply) defer(*from);
        after_callback(a);
        break;
      case Action::Kind::kStop: {
        if (from && ActionAccess::reply(a)) {
          rt().send_reply(from->pid, from->ref, std::move(*ActionAccess::reply(a)));
        } else if (from) {
          rt().send_error_reply(from->pid, from->ref, ActionAccess::reason(a));
        }
        terminate_and_finish(ActionAccess::reason(a));
        break;
      }
      case Action::Kind::kIgnore:
        terminate_and_finish(tuple(atom("bad_return_value"), atom("ignore")));
        break;
    }
  }

  void after_callback(Action& a) {
    if (auto& c = ActionAccess::continue_arg(a)) continue_ = std::make_unique<Term>(std::move(*c));
    if (auto idle = ActionAccess::idle(a)) {
      idle_ref_ = rt().make_ref();
      rt().timers().add(rt().now() + *idle, pid(), Kind::kIdleTimeout, idle_ref_);
    }
  }

  void exit_from_signal() {
    // Killed by a signal: terminate runs only for a node shutdown (Erlang skips it for an
    // untrapped exit signal: the process is simply gone).
    if (shutdown_requested() && server_) {
      // terminate may wait (a supervisor waits for its children): consume the signal first.
      Reason reason = pending_reason();
      clear_exit_pending();
      terminate_and_finish(reason);
    } else {
      finish(pending_reason());
    }
  }

  void terminate_and_finish(const Reason& reason) {
    Reason final_reason = reason;
    if (server_) {
      try {
        server_->terminate(reason);
      } catch (const ProcessExit& x) {
        // Killed while terminate waited (a supervisor's shutdown timeout ran out), or
        // exit_self from terminate: the process exits with that reason, as in Erlang.
        final_reason = x.reason;
      } catch (...) {
        // A terminate that throws still stops; the original reason stands.
      }
    }
    if (idle_ref_) (void)rt().timers().cancel(idle_ref_.id);
    finish(final_reason);
  }

  // What only the start needs: dropped once init has answered.
  struct PendingStart {
    ServerFactory make;
    From starter;
  };
  std::unique_ptr<PendingStart> pending_start_;
  std::unique_ptr<GenServer> server_;
  const std::string* type_;  // one string per server type, kept by start_impl
  std::uint32_t state_size_;
  const char* behaviour_;
  std::unique_ptr<Term> continue_;
  Ref idle_ref_;
};

}  // namespace

Result<Pid, Reason> start_server(Node& node, const SpawnOptions& opts, ServerFactory make,
                                 const std::string* type_name, std::size_t state_size,
                                 const char* behaviour) {
  Runtime& rt = NodeAccess::runtime(node);
  Waiter waiter(rt, /*same_runtime=*/true);
  Process* me = waiter.is_current() ? waiter.get() : nullptr;

  Ref ref = rt.make_ref();
  waiter->await_ref(ref);
  auto* p = new GenServerProcess(rt, opts, std::move(make), type_name, state_size, behaviour,
                                 From{waiter->pid(), ref});
  if (me) p->set_parent(me->pid());  // a thread or another node's process is no parent here
  Pid pid = rt.adopt(p);
  if (!opts.name.empty()) {
    // Registered before init runs, as gen_server does; a taken name starts nothing.
    NameStatus s = register_start_name(rt, opts.name, pid);
    if (!s.ok()) {
      p->finish(reasons::normal());
      rt.retire(pid);
      if (s.code() == ErrorCode::kAlreadyStarted) {
        return reasons::of(ErrorCode::kAlreadyStarted, s.holder());
      }
      return reasons::from_status(s);
    }
  }
  if (opts.link && me) {
    p->add_link(me->pid());
    me->add_link(pid);
  }
  rt.scheduler().schedule(p);
  waiter->wait_until([&] { return waiter->has_reply(ref); },
                     std::chrono::steady_clock::time_point::max());
  std::unique_ptr<Envelope> r(waiter->take_reply(ref));
  if (r->kind == Kind::kReplyError) return Reason(r->msg.term());
  return pid;
}

Result<Message, Reason> call_typed(const Dest& to, Message request, Timeout timeout) {
  return call_message(to, std::move(request), timeout, Kind::kCall);
}

}  // namespace detail

Status stop(const Pid& pid, Reason reason, Timeout timeout) {
  detail::Runtime* rt = detail::Runtime::for_pid(pid);
  if (!rt) return Status(ErrorCode::kNoProc);
  std::optional<Inbox> temp;  // a plain thread needs a mailbox for the Down
  if (!has_self()) temp.emplace(*rt->node());
  Ref ref = monitor(pid);
  detail::Process* me = detail::current_process();
  rt->deliver(
      pid, new detail::Envelope(detail::Kind::kStop, me->pid(), rt->make_ref(), std::move(reason)));
  std::optional<Reason> down = await_down(ref, timeout);
  if (!down) {
    demonitor(ref);
    return Status(ErrorCode::kTimeout, "stop " + pid.to_string());
  }
  if (*down == reasons::noproc()) return Status(ErrorCode::kNoProc, pid.to_string());
  return Status::Ok();
}

}  // namespace nodus
