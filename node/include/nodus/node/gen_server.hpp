// GenServer: the generic server behaviour, as in Erlang/OTP.
//
// A server is a class derived from GenServer; its members are its state, touched only by its
// own process. Override the callbacks you need:
//
//     class Stack : public nodus::GenServer {
//      public:
//       Action init(std::vector<Term> items) { items_ = std::move(items); return ok(); }
//       Action handle_call(Message& req, From) override {
//         if (req == "pop") {
//           if (items_.empty()) return reply(tuple("error", "empty"));
//           Term top = items_.back();
//           items_.pop_back();
//           return reply(tuple("ok", top));
//         }
//         return GenServer::handle_call(req, {});
//       }
//       Action handle_cast(Message& req) override {
//         if (auto m = req.match({"push", _})) items_.push_back(m[0]);
//         return noreply();
//       }
//      private:
//       std::vector<Term> items_;
//     };
//     auto pid = nodus::start_link<Stack>(node, std::vector<Term>{});
//
// init takes whatever arguments start/start_link were given (after an optional SpawnOptions)
// and runs in the new process; start returns after it. Callbacks return an Action built by
// the helpers below (ok, reply, noreply, stop, ...). A callback that throws ends the process
// with {exception, "Type: what"} after terminate runs; links and monitors are told.
//
// Thread-safety: the callbacks run on the server's process only; start/stop/call may be used
// from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "nodus/node/message.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "nodus/node/term.hpp"
#include "nodus/node/timeout.hpp"

namespace nodus {

namespace detail {
struct ActionAccess;
}

/// Asks for handle_continue(arg) to run before the next message: {continue, Arg}.
struct Continue {
  Term arg;
};

/// What a callback asks the behaviour to do next. Built with GenServer's helpers.
class [[nodiscard]] Action {
 public:
  enum class Kind : std::uint8_t { kOk, kReply, kNoReply, kStop, kIgnore };

  Kind kind() const { return kind_; }
  Action(Action&&) noexcept = default;
  Action& operator=(Action&&) noexcept = default;

 private:
  friend class GenServer;
  friend struct detail::ActionAccess;
  explicit Action(Kind k) : kind_(k) {}

  Kind kind_;
  std::optional<Message> reply_;
  Reason reason_;
  std::optional<Term> continue_;
  std::optional<std::chrono::milliseconds> idle_;
};

class GenServer {
 public:
  GenServer() = default;
  virtual ~GenServer() = default;
  GenServer(const GenServer&) = delete;
  GenServer& operator=(const GenServer&) = delete;

  // -- callbacks --------------------------------------------------------------------
  /// A call. Default: stops with {bad_call, Request}, as gen_server does.
  virtual Action handle_call(Message& request, From from);
  /// A cast. Default: stops with {bad_cast, Request}.
  virtual Action handle_cast(Message& request);
  /// Every other message: plain sends, timers, Down, Exit (when trapping exits), the idle
  /// timeout (the atom `timeout`). Default: ignores it.
  virtual Action handle_info(Message& msg);
  /// Runs right after the callback that returned a Continue. Default: stops (bad_continue).
  virtual Action handle_continue(Term& arg);
  /// Runs when the server stops: a callback returned stop, a callback threw, stop() was
  /// called, its parent's exit arrived while trapping exits, or the node is shutting down.
  virtual void terminate(const Reason& reason);
  /// What introspection (nodusctl info) shows of the state. Default: the type's name.
  virtual Term format_status();

  /// The default init: no arguments, ok.
  Action init() { return ok(); }

 protected:
  // -- results ------------------------------------------------------------------------
  static Action ok() { return Action(Action::Kind::kOk); }
  static Action ok(Continue c) { return with_continue(ok(), std::move(c)); }
  /// ok with an idle timeout: handle_info(timeout) if no message comes within `idle`.
  static Action ok(std::chrono::milliseconds idle) { return with_idle(ok(), idle); }
  /// init only: start no process; start returns the error `ignore`.
  static Action ignore() { return Action(Action::Kind::kIgnore); }
  /// Stop with `reason` (terminate runs). In init, start returns the error `reason`.
  static Action stop(Reason reason);
  /// Stop with `reason`, answering the current call with `value` first.
  static Action stop_and_reply(Reason reason, Message value);
  static Action reply(Message value);
  static Action reply(Message value, Continue c) {
    return with_continue(reply(std::move(value)), std::move(c));
  }
  static Action reply(Message value, std::chrono::milliseconds idle) {
    return with_idle(reply(std::move(value)), idle);
  }
  /// Answer later with reply(from, value), or not at all (the caller times out).
  static Action noreply() { return Action(Action::Kind::kNoReply); }
  static Action noreply(Continue c) { return with_continue(noreply(), std::move(c)); }
  static Action noreply(std::chrono::milliseconds idle) { return with_idle(noreply(), idle); }
  /// Answers a call kept from an earlier handle_call (see nodus::reply).
  static void reply(const From& from, Message value) { nodus::reply(from, std::move(value)); }

  /// This server's pid.
  static Pid self() { return nodus::self(); }

 private:
  static Action with_continue(Action a, Continue c) {
    a.continue_ = std::move(c.arg);
    return a;
  }
  static Action with_idle(Action a, std::chrono::milliseconds idle) {
    a.idle_ = idle;
    return a;
  }
};

}  // namespace nodus

// The machinery behind start<T> (it needs GenServer complete, so it comes here).
#include "nodus/node/detail/gen_server_start.hpp"

namespace nodus {

/// Starts a server of type T on `node` and waits until its init has run: its pid, or
/// `ignore`, or the reason init stopped with (also {exception, ...} when init threw).
/// Arguments after an optional SpawnOptions are passed to T::init.
template <class T, class... Args>
Result<Pid, Reason> start(Node& node, Args&&... args) {
  if constexpr (detail::FirstIsOptions<Args...>::value) {
    return [&](auto&& opts, auto&&... rest) {
      return detail::start_impl<T>(node, SpawnOptions(opts), std::forward<decltype(rest)>(rest)...);
    }(std::forward<Args>(args)...);
  } else {
    return detail::start_impl<T>(node, SpawnOptions{}, std::forward<Args>(args)...);
  }
}

/// start, linked to the current process (from a plain thread without an Inbox: not linked).
template <class T, class... Args>
Result<Pid, Reason> start_link(Node& node, Args&&... args) {
  if constexpr (detail::FirstIsOptions<Args...>::value) {
    return [&](auto&& opts, auto&&... rest) {
      SpawnOptions o(opts);
      o.link = true;
      return detail::start_impl<T>(node, o, std::forward<decltype(rest)>(rest)...);
    }(std::forward<Args>(args)...);
  } else {
    SpawnOptions o;
    o.link = true;
    return detail::start_impl<T>(node, o, std::forward<Args>(args)...);
  }
}

/// A call whose reply is a typed message R (or a Term when R is Term). Errors: as call(), and
/// {protocol_error, "unexpected reply type X"} when the callee answered with another type.
template <class R>
Result<R, Reason> call_as(const Dest& to, Message request, Timeout timeout = kDefaultCallTimeout);

template <class R>
Result<R, Reason> call_as(const Dest& to, Message request, Timeout timeout) {
  auto r = detail::call_typed(to, std::move(request), timeout);
  if (!r) return std::move(r).error();
  if constexpr (std::is_same_v<R, Term>) {
    if (r->is_term()) return std::move(r->term());
  } else {
    if (R* v = r->template get<R>()) return std::move(*v);
  }
  // The callee answered, with something the caller's protocol does not have.
  return reasons::of(ErrorCode::kProtocol,
                     bin(std::string("unexpected reply type ") + r->type_name()));
}

/// Waits for the reply to `id` (send_request) when it is a typed message R (or a Term when R is
/// Term), as call_as does for a call: so a process can have many typed calls outstanding and
/// gather their replies, as OTP's gen_server:receive_response/2 does. Unlike wait_response, a
/// request that times out is abandoned: a reply that arrives later is dropped, never kept or
/// seen as a message, so the gatherer's mailbox does not grow with late replies. Errors: as
/// call(): `timeout`, `noproc`, `overloaded`, the callee's exit reason, nodedown; and
/// {protocol_error, "unexpected reply type X"} when the callee answered with another type.
/// REQUIRES: `id` came from send_request of the current process and was not taken yet.
template <class R>
Result<R, Reason> receive_response_as(const RequestId& id, Timeout timeout = kDefaultCallTimeout) {
  auto r = detail::receive_typed(id, timeout);
  if (!r) return std::move(r).error();
  if constexpr (std::is_same_v<R, Term>) {
    if (r->is_term()) return std::move(r->term());
  } else {
    if (R* v = r->template get<R>()) return std::move(*v);
  }
  return reasons::of(ErrorCode::kProtocol,
                     bin(std::string("unexpected reply type ") + r->type_name()));
}

/// Stops a server (or any process) with `reason` and waits until it is gone: its terminate
/// runs first. Errors: noproc, timeout (the process is still running).
Status stop(const Pid& pid, Reason reason = reasons::normal(),
            Timeout timeout = kDefaultCallTimeout);

}  // namespace nodus
