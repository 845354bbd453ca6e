// Supervisors: processes that start other processes, watch them and restart them when they
// exit, as Erlang/OTP's `supervisor` and Elixir's `DynamicSupervisor` do.
//
// A supervisor is a GenServer (behaviour "supervisor" in introspection) that traps exits. It
// starts its children in order from their ChildSpecs, each linked to it, and when one exits it
// restarts it, and some of its siblings, by the supervisor's Strategy and the child's Restart
// type. Too many restarts in a short time (more than `intensity` within `period`) mean that
// restarting does not help: the supervisor stops all its children and exits with `shutdown`,
// so that its own supervisor can try at a higher level.
//
//     auto sup = nodus::start_supervisor(
//         node, {.strategy = Strategy::kOneForAll},
//         {child<Cache>(node, "cache", 1000),
//          child<Writer>(node, "writer").with_shutdown(200ms),
//          child<Reporter>(node, "reporter").with_restart(Restart::kTransient)});
//
// When a supervisor stops (its parent exits, stop(), the node shuts down, or the restart
// intensity is exceeded) it stops its children one at a time in reverse start order, each as
// its Shutdown says: an exit signal `shutdown` (a GenServer that traps exits runs terminate),
// then `kill` if the child is not gone within the timeout.
//
// Requests to a supervisor (which_children, start_child, ...) are local typed messages: they
// work on the supervisor's own node only.
//
// Thread-safety: every function here may be called from any thread, or from any process
// other than the supervisor itself (a child calling its own supervisor from its init
// deadlocks, as in Erlang).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "nodus/node/gen_server.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "nodus/node/timeout.hpp"

namespace nodus {

/// Which children a supervisor restarts when one of them has to be restarted.
enum class Strategy : std::uint8_t {
  kOneForOne,   ///< only that child
  kOneForAll,   ///< every child: the others are stopped (reverse order), all start again in order
  kRestForOne,  ///< that child and those started after it (stopped in reverse, started in order)
};

/// When a child is restarted after it exits.
enum class Restart : std::uint8_t {
  kPermanent,  ///< always, even after a normal exit
  kTransient,  ///< only after an abnormal exit: not normal, shutdown or {shutdown, _}
  kTemporary,  ///< never; its spec is removed when it exits or is stopped
};

/// What a child is: a worker, or a supervisor of its own (shown by which_children and used for
/// the default shutdown).
enum class ChildType : std::uint8_t { kWorker, kSupervisor };

/// How a supervisor stops a child: an exit signal `shutdown`, then `kill` if the child is not
/// gone within a timeout (which may be `infinity`); or `brutal_kill`: `kill` at once, so that
/// the child's terminate does not run. Converts implicitly from a duration or a Timeout:
/// `.shutdown = 200ms`, `.shutdown = infinity`, `.shutdown = brutal_kill`.
class Shutdown {
 public:
  /// The default: 5 s for a worker (Erlang's), infinity for a supervisor (it needs the time to
  /// stop its own children).
  constexpr Shutdown() = default;
  constexpr Shutdown(Timeout t) : kind_(Kind::kTimeout), timeout_(t) {}  // NOLINT: implicit
  template <class Rep, class Period>
  constexpr Shutdown(std::chrono::duration<Rep, Period> d)  // NOLINT: implicit on purpose
      : Shutdown(Timeout(d)) {}
  static constexpr Shutdown brutal_kill() {
    Shutdown s;
    s.kind_ = Kind::kBrutalKill;
    return s;
  }

  constexpr bool is_brutal_kill() const { return kind_ == Kind::kBrutalKill; }
  /// How long a child of `type` is given after `shutdown` before it is killed.
  /// REQUIRES: !is_brutal_kill().
  constexpr Timeout timeout_for(ChildType type) const {
    if (kind_ == Kind::kTimeout) return timeout_;
    return type == ChildType::kSupervisor ? infinity : kDefaultWorkerTimeout;
  }

 private:
  enum class Kind : std::uint8_t { kDefault, kTimeout, kBrutalKill };
  static constexpr Timeout kDefaultWorkerTimeout = std::chrono::seconds(5);
  Kind kind_ = Kind::kDefault;
  Timeout timeout_ = kDefaultWorkerTimeout;
};

/// Kill the child at once when stopping it: `.shutdown = brutal_kill`.
inline constexpr Shutdown brutal_kill = Shutdown::brutal_kill();

/// How to start and look after one child. Build it with child<T>(), supervisor_child() or
/// designated initializers; adjust it with the with_* setters.
struct ChildSpec {
  /// Names the child within its supervisor (unique there; ignored by a DynamicSupervisor).
  std::string id;
  /// Starts the child linked to the calling process, which is the supervisor, as an Erlang
  /// child spec's start_link MFA does: the child's pid, or why it could not start. The
  /// error `ignore` (a GenServer's init returned ignore) starts nothing and is not a failure.
  /// The supervisor calls it again for every restart. (The supervisor also links to the pid
  /// it returns, so a start function that forgot to link is still supervised, but a GenServer
  /// runs terminate on its supervisor's shutdown only when started with start_link.)
  std::function<Result<Pid, Reason>()> start;
  Restart restart = Restart::kPermanent;
  Shutdown shutdown;
  ChildType type = ChildType::kWorker;

  // Fluent setters: child<Cache>(node, "cache").with_restart(Restart::kTransient).
  ChildSpec with_restart(Restart r) && {
    restart = r;
    return std::move(*this);
  }
  ChildSpec with_shutdown(Shutdown s) && {
    shutdown = s;
    return std::move(*this);
  }
  ChildSpec with_type(ChildType t) && {
    type = t;
    return std::move(*this);
  }
};

/// A worker child that runs start_link<T>(node, args...): its init gets a copy of `args` at
/// every (re)start. `node` must outlive the supervisor.
template <class T, class... Args>
ChildSpec child(Node& node, std::string id, Args... args) {
  Node* n = &node;
  ChildSpec spec;
  spec.id = std::move(id);
  spec.start = [n, args...]() -> Result<Pid, Reason> { return start_link<T>(*n, args...); };
  return spec;
}

/// Restart intensity and strategy of a supervisor.
struct SupervisorFlags {
  Strategy strategy = Strategy::kOneForOne;
  /// More than `intensity` restarts within `period` and the supervisor gives up (stops its
  /// children and exits with `shutdown`). Default 3 in 5 s, Elixir's choice: Erlang's 1 in
  /// 5 s escalates a short burst of failures to the parent at once; a larger intensity rides
  /// out more of them, but a child that crashes in a loop takes longer to escalate.
  int intensity = 3;
  std::chrono::milliseconds period = std::chrono::seconds(5);
};

/// What which_children shows of one child.
struct ChildInfo {
  std::string id;
  Pid pid;  ///< invalid when the child is not running (stopped, ignored, or being restarted)
  ChildType type = ChildType::kWorker;
  Restart restart = Restart::kPermanent;
};

/// What count_children shows.
struct ChildCounts {
  std::size_t specs = 0;        ///< children the supervisor knows, running or not
  std::size_t active = 0;       ///< children running now
  std::size_t supervisors = 0;  ///< specs of type supervisor
  std::size_t workers = 0;      ///< specs of type worker
};

// -- static supervisors --------------------------------------------------------------

/// Starts a supervisor, linked to the current process (start_link semantics; from a plain
/// thread without an Inbox: not linked), and its children in order; returns once all have
/// started. Errors: {shutdown, {failed_to_start_child, Id, Reason}} when a child's start
/// failed (the children started before it have been stopped, in reverse order);
/// {duplicate_child_name, Id}; {invalid_child_spec, Id} when a spec has no start function.
Result<Pid, Reason> start_supervisor(Node& node, SupervisorFlags flags,
                                     std::vector<ChildSpec> children, SpawnOptions opts = {});

/// A child that is itself a supervisor (type kSupervisor, shutdown infinity by default).
ChildSpec supervisor_child(Node& node, std::string id, SupervisorFlags flags,
                           std::vector<ChildSpec> children);

/// The children in start order. Errors: the call's (noproc, timeout).
Result<std::vector<ChildInfo>, Reason> which_children(const Pid& sup, Timeout timeout = infinity);
Result<ChildCounts, Reason> count_children(const Pid& sup, Timeout timeout = infinity);

/// Adds a child after the existing ones and starts it: its pid, or an invalid pid when its
/// start returned `ignore` (a non-temporary spec is then kept, not running). On a
/// DynamicSupervisor the id is ignored. Errors: the start's error (the spec is not kept);
/// {already_started, Pid} or already_present when the id is taken; {invalid_child_spec, Id};
/// max_children (DynamicSupervisor); the call's.
Result<Pid, Reason> start_child(const Pid& sup, ChildSpec spec, Timeout timeout = infinity);

/// Stops a running child as its Shutdown says; it is not restarted, and its spec is kept (a
/// temporary child's is removed). Returns the atom `ok`. Errors: not_found, not_supported
/// (a DynamicSupervisor: use the pid), the call's.
CallResult terminate_child(const Pid& sup, const std::string& id, Timeout timeout = infinity);
/// Stops the running child with that pid (static or dynamic supervisor); a DynamicSupervisor
/// forgets it. Returns the atom `ok`. Errors: not_found, the call's.
CallResult terminate_child(const Pid& sup, const Pid& child, Timeout timeout = infinity);
/// Starts a stopped child again: its pid (invalid on `ignore`). Errors: running, restarting,
/// not_found, not_supported (DynamicSupervisor), the start's error, the call's.
Result<Pid, Reason> restart_child(const Pid& sup, const std::string& id,
                                  Timeout timeout = infinity);
/// Forgets a stopped child's spec. Returns the atom `ok`. Errors: running, restarting,
/// not_found, not_supported (DynamicSupervisor), the call's.
CallResult delete_child(const Pid& sup, const std::string& id, Timeout timeout = infinity);

// -- dynamic supervisors ---------------------------------------------------------------

/// A DynamicSupervisor starts with no children; start_child adds them. They are independent
/// (one_for_one), and its bookkeeping after a child exits is Elixir's DynamicSupervisor's: a
/// child that is not restarted (temporary, or transient after a clean exit) is forgotten, as
/// is one stopped by terminate_child or whose restart returned `ignore`; one whose restart
/// failed keeps its place (and its max_children slot) and is tried again, each try counting
/// towards the intensity, which, exceeded, stops the supervisor.
struct DynamicSupervisorFlags {
  int intensity = 3;  ///< as SupervisorFlags
  std::chrono::milliseconds period = std::chrono::seconds(5);
  /// Most children at once; start_child beyond it fails with max_children. 0 = unlimited
  /// (the default). A bound keeps a flood of requests from exhausting the node.
  std::size_t max_children = 0;
};

/// Starts a DynamicSupervisor, linked to the current process as start_supervisor is. On
/// stopping, its children are stopped one at a time in reverse start order (a restarted child
/// keeps its place). which_children and count_children work on it.
Result<Pid, Reason> start_dynamic_supervisor(Node& node, DynamicSupervisorFlags flags = {},
                                             SpawnOptions opts = {});

/// A child that is a DynamicSupervisor (type kSupervisor, shutdown infinity by default).
ChildSpec dynamic_supervisor_child(Node& node, std::string id, DynamicSupervisorFlags flags = {});

}  // namespace nodus
