// Processes: isolated units of state that talk only by messages, and the calls every process
// (and every plain thread) uses to talk to them.
//
// A process handles one message at a time; nobody else touches its state. Processes are
// multiplexed on a node's scheduler threads. A process may block in call() or receive()
// without blocking its scheduler thread: it is parked on its own small stack and the thread
// runs others until the answer arrives.
//
// The free functions act on behalf of the *current process*: the process whose handler is
// running, or, on a plain thread, the Inbox that thread created (see Inbox). send, cast and
// call also work from a plain thread with no Inbox (call then waits on that thread only).
//
// Delivery guarantees, for local and remote processes alike:
//   send / cast: at most once; ordered per pair of processes; never blocks the sender (but for
//     back-pressure towards a peer node whose queue is nearly full). A send to a dead pid is
//     dropped silently, like Erlang's `!`.
//   call: see call() below.
//   exit signals, monitors, links: as Erlang's.
//
// Every wait may end the process. call, receive, sleep_for, await_down, wait_response, start
// and stop wait, and a process that waits still receives exit signals: one that ends it (a
// linked process's crash when not trapping exits, exit(pid, kill), the node's shutdown)
// unwinds the waiting handler's stack by throwing an internal exception that derives from
// nothing (not std::exception), so that the runtime can finish the process with that reason.
// Destructors run as it unwinds. A handler that catches with `catch (...)` around a wait
// swallows its own process's death: it must rethrow (`throw;`) whatever it does not know.
// `catch (const std::exception&)` is safe.
//
// Thread-safety: every function here may be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nodus/node/detail/dest_name.hpp"
#include "nodus/node/message.hpp"
#include "nodus/node/term.hpp"
#include "nodus/node/timeout.hpp"
#include "nodus/transport/status.hpp"

namespace nodus {

class Node;
namespace detail {
class Process;
}

/// An exit reason, a DOWN reason, a call error: a term, as in Erlang (`normal`, `shutdown`,
/// `{shutdown, X}`, `killed`, `noproc`, `timeout`, {exception, "std::runtime_error: boom"} ...).
/// A type of its own (not just Term) so that Result<Term, Reason> can tell a reply from an
/// error.
class Reason {
 public:
  Reason() = default;
  Reason(Term t) : t_(std::move(t)) {}              // NOLINT: implicit on purpose
  Reason(Atom a) : t_(a) {}                         // NOLINT
  Reason(const char* atom_name) : t_(atom_name) {}  // NOLINT: an atom, like Term's
  const Term& term() const { return t_; }
  operator const Term&() const { return t_; }  // NOLINT
  bool is_atom(std::string_view name) const { return t_.is_atom(name); }
  bool is_tuple() const { return t_.is_tuple(); }
  std::size_t size() const { return t_.size(); }
  const Term& operator[](std::size_t i) const { return t_[i]; }
  std::string to_string() const { return t_.to_string(); }
  friend bool operator==(const Reason& a, const Reason& b) { return a.t_ == b.t_; }
  friend bool operator==(const Reason& a, const Term& b) { return a.t_ == b; }
  friend bool operator==(const Reason& a, const char* atom_name) { return a.t_.is_atom(atom_name); }

 private:
  Term t_;
};

/// Writes r.to_string(), like a Term.
std::ostream& operator<<(std::ostream& os, const Reason& r);

/// The result of a call: the reply, or why there is none (`timeout`, `noproc`, `nodedown`,
/// `calling_self`, `overloaded`, or the callee's exit reason if it died before replying).
using CallResult = Result<Term, Reason>;

/// Well-known reasons. Every reason the runtime gives for an error with a code in the table
/// (transport/include/nodus/transport/error_definitions.hpp) is made by of(): the words a
/// caller matches (noproc, nodedown, overloaded, calling_self, timeout, already_started ...) are
/// the table's short names, never spelled anywhere else.
namespace reasons {
Reason normal();    ///< normal
Reason shutdown();  ///< shutdown
Reason kill();      ///< kill: the untrappable exit signal
Reason killed();    ///< killed: what the victim of `kill` exits with
Reason noproc();    ///< of(ErrorCode::kNoProc)
Reason timeout();   ///< of(ErrorCode::kTimeout)
/// The reason for an error code: its short name as an atom (noproc, nodedown ...).
Reason of(ErrorCode code);
/// {Name, Detail}: the code's short name and a term saying more ({already_started, Pid},
/// {badarg, "why"}).
Reason of(ErrorCode code, Term detail);
/// The reason for a Status error: of(code), or {name, "message"} when it carries a message.
Reason from_status(const Status& s);
/// The Status for a reason: a reason made by of() or from_status() gives its code back (with
/// the detail as the message); any other (an exit reason of the callee) is kExited with the
/// reason as its message.
Status to_status(const Reason& r);
/// True for normal, shutdown and {shutdown, _}: the exits a supervisor calls clean.
bool is_clean(const Reason& r);
}  // namespace reasons

/// Who is waiting for a call's reply: the caller and the call's reference. Keep it to answer
/// later with reply(from, value).
struct From {
  Pid pid;
  Ref ref;
  friend bool operator==(const From&, const From&) = default;
};

/// Sent to a process when something it monitors goes down (handle_info / receive).
struct Down {
  Ref ref;
  Pid pid;
  Reason reason;
};
/// Sent to a process that traps exits when a linked process exits, or when exit(pid, reason)
/// targets it: Erlang's {'EXIT', From, Reason}.
struct Exit {
  Pid from;
  Reason reason;
};

/// Sent to a process that monitors a node (monitor_node) when the node's link comes up.
struct NodeUp {
  Atom node;
};
/// Sent to a process that monitors a node when the node goes down or becomes unreachable.
struct NodeDown {
  Atom node;
  Reason reason;
};

/// What a mailbox does when it is full.
enum class Overflow : std::uint8_t {
  kReject,      ///< the sender's message is refused: a call fails with `overloaded`
  kDropOldest,  ///< the oldest waiting message is dropped to make room (when the process
                ///< takes its next message: while it is busy the queue may exceed the bound)
};

/// What registering a name returns: ok, or the error; when the name is taken
/// (kAlreadyStarted) also the process that holds it, as a Pid (Erlang's
/// {error, {already_started, Pid}}). The holder travels as a Pid, not as text in the message,
/// so that start answers {already_started, Holder} without asking again, which could find the
/// name free or held by another process by then. Converts to its Status.
class [[nodiscard]] NameStatus {
 public:
  /// Ok.
  NameStatus() = default;
  /// Any outcome but a taken name (which has a holder: taken()).
  NameStatus(Status status) : status_(std::move(status)) {}  // NOLINT: implicit on purpose
  /// kAlreadyStarted: `holder` holds the name (the message names it too, for people).
  static NameStatus taken(const Pid& holder) {
    NameStatus s(Status(ErrorCode::kAlreadyStarted, holder.to_string()));
    s.holder_ = holder;
    return s;
  }

  bool ok() const { return status_.ok(); }
  ErrorCode code() const { return status_.code(); }
  const std::string& message() const { return status_.message(); }
  std::string to_string() const { return status_.to_string(); }
  const Status& status() const { return status_; }
  operator const Status&() const { return status_; }  // NOLINT: implicit on purpose
  /// Who holds the name; an invalid Pid unless code() is kAlreadyStarted.
  const Pid& holder() const { return holder_; }

 private:
  Status status_;
  Pid holder_;
};

/// A naming service other than the node's local names: the hook behind `via` names and global
/// names. node/ only calls it; registry/ implements it (the Registry, global names) and so can
/// any user type (see registry/include/nodus/registry/via.hpp). It lives here, and not in
/// registry/, because the runtime resolves every Dest and layers only point down.
///
/// Thread-safety: every method may be called from any thread, concurrently.
class NameResolver {
 public:
  virtual ~NameResolver() = default;
  /// The process registered under `key` now, or an invalid Pid. Called when a message is sent
  /// (or a call or monitor made) from `node`; should be a local read, without messages.
  virtual Pid whereis_name(Node& node, const Term& key) const = 0;
  /// Registers `pid` under `key` (start with a via or global name calls this before init).
  /// Errors: kAlreadyStarted with the holder (NameStatus::taken), or the service's own.
  virtual NameStatus register_name(Node& node, const Term& key, const Pid& pid) const = 0;
  /// Removes `key`; false when nobody held it.
  virtual bool unregister_name(Node& node, const Term& key) const = 0;
  /// A plain message (send) to the process under `key`, Erlang's Mod:send/2. Default:
  /// whereis_name, then nodus::send; false (and nothing sent) when nobody holds the key.
  /// cast, call and monitor resolve with whereis_name.
  virtual bool send(Node& node, const Term& key, Message msg) const;
  /// "via(<service>, key)", for logs and errors.
  virtual std::string describe(const Term& key) const;
};

/// Where a message goes: a pid, a name registered on the sender's node (`named("stack")`),
/// a name registered on another node (`named("stack", "n2")`, Erlang's {stack, n2}), or a key
/// of a naming service (`via(registry, key)`, `global("name")`, see registry/). A name is
/// resolved when the message is sent; a name nobody holds is `noproc`.
///
/// A pid Dest (built for every send to a pid) costs what the pid costs; a name's string and a
/// via key's pointer share one slot beside it.
class Dest {
 public:
  Dest(const Pid& pid) : pid_(pid) {}  // NOLINT: implicit on purpose

  bool is_pid() const { return name_.kind() == detail::DestName::Kind::kNone; }
  /// A key of a naming service (via or global).
  bool is_via() const { return name_.kind() == detail::DestName::Kind::kVia; }
  const Pid& pid() const { return pid_; }
  /// The registered name; empty for a pid or a via key.
  const std::string& name() const;
  /// The node of a remote name; the atom `undefined` for a local name.
  Atom node() const { return name_.node(); }
  /// The naming service of a via key. REQUIRES: is_via().
  const NameResolver& resolver() const { return *name_.via().resolver; }
  /// The key of a via name. REQUIRES: is_via().
  const Term& via_key() const { return name_.via().key; }
  /// "<n1.4.0>", "stack", "{stack,n2}" or the resolver's description.
  std::string to_string() const;

 private:
  friend Dest named(std::string_view name);
  friend Dest named(std::string_view name, std::string_view node);
  friend Dest via_name(std::shared_ptr<const NameResolver> resolver, Term key);
  explicit Dest(detail::DestName name) : name_(std::move(name)) {}

  Pid pid_;
  detail::DestName name_;
};

/// A name registered on the sender's node.
Dest named(std::string_view name);
/// A name registered on `node`.
Dest named(std::string_view name, std::string_view node);
/// `key` of the naming service `resolver` (registry/ wraps this as via(...) and global(...)).
/// REQUIRES: resolver != nullptr.
Dest via_name(std::shared_ptr<const NameResolver> resolver, Term key);

/// The name a process starts under (SpawnOptions::name): none, a local name (a string
/// converts), or a via or global name (a Dest converts: `.name = global("db")`).
class Name {
 public:
  Name() = default;
  Name(std::string local) {  // NOLINT: implicit on purpose
    if (!local.empty()) dest_ = named(local);
  }
  Name(const char* local) : Name(std::string(local)) {}       // NOLINT
  Name(std::string_view local) : Name(std::string(local)) {}  // NOLINT
  /// A local name or a via key. REQUIRES: not a pid and not a name on another node.
  Name(const Dest& name) : dest_(name) {}  // NOLINT

  bool empty() const { return !dest_.has_value(); }
  bool is_local() const { return dest_ && !dest_->is_via(); }
  bool is_via() const { return dest_ && dest_->is_via(); }
  /// The local name, or "" (none, or a via name).
  const std::string& local() const;
  /// As a destination. REQUIRES: !empty().
  const Dest& dest() const { return *dest_; }
  std::string to_string() const { return dest_ ? dest_->to_string() : std::string(); }

 private:
  std::optional<Dest> dest_;
};

/// Per-process options for spawn and start.
struct SpawnOptions {
  /// Link the new process to the caller (start_link / spawn_link).
  bool link = false;
  /// Register the new process under this name (empty: none): a local name on its node, or a
  /// via or global name, registered before init runs. start/spawn fail with
  /// {already_started, Pid} when another process holds it.
  Name name{};
  /// Most messages waiting in the mailbox; 0 = unbounded (default: unbounded, as in Erlang).
  /// A bound protects memory when a producer outruns a consumer, at the price of rejecting or
  /// dropping messages.
  std::size_t max_mailbox = 0;
  /// What to do when max_mailbox is reached.
  Overflow overflow = Overflow::kReject;
};

// -- the current process ---------------------------------------------------------

/// The current process's pid. REQUIRES: called from a process or a thread with an Inbox.
Pid self();
/// True when the caller is a process or a thread with an Inbox.
bool has_self();

// -- raw processes ----------------------------------------------------------------

/// Starts a process running `body` on `node` and returns its pid at once. The process exits
/// with reason normal when body returns, or with {exception, "..."} when it throws. With
/// `opts.name` taken by another process, nothing starts and the pid is invalid.
Pid spawn(Node& node, std::function<void()> body, SpawnOptions opts = {});
/// spawn with the new process linked to the current one.
Pid spawn_link(Node& node, std::function<void()> body, SpawnOptions opts = {});

/// Suspends the current process for `d` (its scheduler thread runs others meanwhile); its
/// messages stay queued, as with Erlang's timer:sleep. On a plain thread, sleeps the thread.
void sleep_for(std::chrono::milliseconds d);

/// Waits for the next message of the current process. REQUIRES: has_self().
Message receive();
/// Waits at most `t`; nullopt on timeout. REQUIRES: has_self().
std::optional<Message> receive(Timeout t);

// -- messaging -----------------------------------------------------------------------

/// Sends a plain message (handle_info in a GenServer). At most once, ordered per pair.
void send(const Dest& to, Message msg);

/// Sends a cast (handle_cast in a GenServer). At most once, ordered per pair; returns at once
/// (but for back-pressure, as send).
void cast(const Dest& to, Message request);

/// Sends `request` to `to` and waits for the reply, at most `timeout` (default 5 s;
/// `infinity` allowed). Inside a process only that process waits; its scheduler thread runs
/// others meanwhile. Errors: `timeout` (and a reply that arrives later is dropped, never seen
/// as a stray message), `noproc` at once when `to` is dead or unknown, `calling_self`,
/// `overloaded` when `to`'s bounded mailbox rejects the request, or the callee's exit reason
/// when it dies before replying.
CallResult call(const Dest& to, Message request, Timeout timeout = kDefaultCallTimeout);

/// Answers a call later (the `From` kept by a handler that returned noreply). Any process or
/// thread may answer. At most once; answering a caller that gave up does nothing.
void reply(const From& from, Message value);

/// An outstanding asynchronous request (send_request / wait_response).
struct RequestId {
  Ref ref;
  Pid to;
};
/// Sends a call request without waiting. REQUIRES: has_self().
RequestId send_request(const Dest& to, Message request);
/// Waits for the reply to `id`: the value, or `timeout` (the request stays outstanding and can
/// be waited for again), or the callee's failure as for call.
CallResult wait_response(const RequestId& id, Timeout timeout = kDefaultCallTimeout);

// -- timers ---------------------------------------------------------------------------

/// Sends `msg` to `to` (as a plain message) after `delay`. Returns the timer's ref. As
/// Erlang's erlang:send_after to a pid, a timer aimed at a process of the caller's node is
/// cancelled when that process exits, and none is set for a process that has exited already.
Ref send_after(const Pid& to, Message msg, std::chrono::milliseconds delay);
/// Cancels a timer. Returns the time that was left, or nullopt if it already fired, was
/// cancelled with its process, or is unknown.
std::optional<std::chrono::milliseconds> cancel_timer(const Ref& timer);

// -- monitors, links, exits ---------------------------------------------------------

/// Monitors `pid`: when it exits (or is already dead) the current process receives a Down with
/// the reason (`noproc` if it was already dead). REQUIRES: has_self().
Ref monitor(const Dest& target);
/// Stops a monitor; a Down for it that is already queued is dropped too ("flush").
/// Returns false if the monitor was not active.
bool demonitor(const Ref& ref);
/// Waits for the Down of monitor `ref` and takes it out of the mailbox; other messages stay
/// queued, in order (a selective receive). Returns its reason, or nullopt on timeout (the
/// monitor then stays active). REQUIRES: has_self() and `ref` came from monitor().
std::optional<Reason> await_down(const Ref& ref, Timeout timeout);
/// Links the current process and `pid`: when either exits abnormally, the other gets an exit
/// signal (an Exit message when it traps exits; else it exits too). Linking to a dead pid
/// sends the current process an exit signal with reason noproc. REQUIRES: has_self().
void link(const Pid& pid);
/// Removes the link between the current process and `pid` (if any), on both sides: neither
/// gets an exit signal through it any more, and one from `pid` already on its way is ignored.
/// REQUIRES: has_self().
void unlink(const Pid& pid);
/// Asks for NodeUp / NodeDown messages about `node` (on = false stops them), like Erlang's
/// monitor_node. REQUIRES: has_self().
void monitor_node(Atom node, bool on = true);
/// Asks for NodeUp / NodeDown messages about every node (on = false stops them), like
/// Erlang's net_kernel:monitor_nodes. REQUIRES: has_self().
void monitor_nodes(bool on = true);
/// Turns exit signals into Exit messages for the current process (`kill` excepted); returns
/// the old setting. REQUIRES: has_self().
bool trap_exit(bool on);
/// Sends an exit signal to `pid` from the current process (or from no process on a plain
/// thread). `kill` cannot be trapped.
void exit(const Pid& pid, Reason reason);
/// Ends the current process with `reason` (unwinds its handler). REQUIRES: in a process.
[[noreturn]] void exit_self(Reason reason);

// -- names --------------------------------------------------------------------------------

/// Registers `pid` under `name` on the pid's node (which must be in this OS process). The name
/// goes when the process exits. Errors: kAlreadyStarted naming the holder when the name is
/// taken; kBadArg when the process is dead, not local, or already has a name.
NameStatus register_name(std::string_view name, const Pid& pid);
/// Removes a name of the current process's node; false if nobody held it.
/// REQUIRES: has_self() (or use Node::unregister_name).
bool unregister_name(std::string_view name);
/// The process holding `name` on the current process's node (an invalid Pid if none). A local
/// lookup: no messages. REQUIRES: has_self() (or use Node::whereis).
Pid whereis(std::string_view name);

// -- plain threads ----------------------------------------------------------------------

/// Gives a plain thread (main, a test) a mailbox and a pid, so it can monitor, link, receive
/// and send_request like a process. While it exists it is that thread's current process. It
/// traps exits (a linked crash arrives as an Exit message). close() (or the destructor)
/// removes it. Neither copyable nor movable; not for use from other threads.
class Inbox {
 public:
  explicit Inbox(Node& node);
  ~Inbox();
  Inbox(const Inbox&) = delete;
  Inbox& operator=(const Inbox&) = delete;

  Pid pid() const;
  /// Idempotent: exits with reason normal (links and monitors are told).
  void close();

 private:
  detail::Process* process_ = nullptr;
  Pid pid_;
};

}  // namespace nodus
