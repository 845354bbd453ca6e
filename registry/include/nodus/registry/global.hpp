// Global names: one process per name in the whole connected cluster, like Erlang's `global`.
//
// Every node that takes part runs the global name service (start_global). Each such node keeps
// a full copy of the name table, so whereis_global and sends to global("name") are local reads
// (no message, no lock on the node: a shared lock on the table). Registration asks every
// connected node that runs the service for its lock on the name and goes on once a majority of
// them (itself included) granted it, then commits it everywhere; any two majorities share a
// node, which grants one lock at a time, so in a connected cluster at most one of two racing
// nodes wins (the protocol is in docs/protocol.md, "Global names").
//
// A name goes when its process exits (its node tells the others) and when its node goes down
// (each node drops the names of a node it declared down, within the failure-detection window).
// A hidden node (nodusctl) is no member: what its own service sends is ignored and counted.
// After a partition heals, the sides exchange their tables, ended registrations included; a name
// held by two processes goes to the registration of the higher fencing epoch (GlobalEpoch:
// registrations made apart on the two sides differ in their registrar even when their counters
// are equal), and two of the same epoch (only a registrar that restarted and forgot what it
// handed out makes two) are settled by the resolver (GlobalOptions::resolver), the same on
// every node. Every node ends with the same holder whatever the order in which it hears of the
// registrations; the loser is told ({global_name_conflict, Name, Winner}) or exits, as
// configured.
//
// Each registration carries a fencing epoch that only grows per name across the cluster and
// that no two holders share, even while the cluster is split: a new holder's epoch is above
// every earlier holder's it could know of, so a downstream service that remembers the highest
// epoch it saw can refuse writes from a stale holder, and of two holders made on the two sides
// of a partition it takes writes from one only once it has seen the other.
//
// Thread-safety: every function may be called from any thread.
#pragma once

#include <chrono>
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "nodus/transport/status.hpp"

namespace nodus {

/// A registration's fencing epoch (the token a holder shows a downstream service), ordered by
/// counter, then registrar (by node name, bytewise). The counter is above every counter the
/// registrar's majority had seen for the name, so it grows with every new holder; two sides of
/// a partition can each reach the same counter, and differ in the registrar, which hands out a
/// counter once per name (its own lock serialises its rounds). Cheap to copy.
struct GlobalEpoch {
  std::uint64_t counter = 0;
  Atom node;  ///< the node whose global name server registered it (not always the holder's)
  friend bool operator==(const GlobalEpoch&, const GlobalEpoch&) = default;
  friend std::strong_ordering operator<=>(const GlobalEpoch&, const GlobalEpoch&) = default;
  std::string to_string() const;  ///< "7@n1"
};

/// One global name as a node's table holds it.
struct GlobalEntry {
  std::string name;
  Pid pid;
  Atom node;                ///< the holder's node (pid.node)
  GlobalEpoch epoch;        ///< the fencing epoch: grows with every new holder of the name
  std::uint64_t clock = 0;  ///< the registration's logical (Lamport) time
};

/// What happens to the loser of a name conflict found when a partition heals (or when two
/// registrations that lost sight of each other meet): not to the holder a re-registration takes
/// the name from, which is not told.
enum class ConflictAction : std::uint8_t {
  kNotify,  ///< it gets {global_name_conflict, Name, WinnerPid} (handle_info) and keeps running
  kExit,    ///< it gets the exit signal {global_name_conflict, Name, WinnerPid}
};

/// Picks the holder of `name` between two claims of the same epoch (one registrar's counter
/// handed out twice: it restarted between, and a partition kept it from learning what it had
/// handed out); must return a.pid or b.pid.
/// It runs on every node that sees the conflict, so it must be deterministic and symmetric (the
/// same answer for (a, b) and (b, a)), and transitive when three claims meet; it must not read
/// the wall clock or local state.
using GlobalResolver =
    std::function<Pid(const std::string& name, const GlobalEntry& a, const GlobalEntry& b)>;

/// The default resolver: the earlier registration by logical clock; ties go to the holder on
/// the node whose name sorts first, then to the lower pid.
Pid resolve_earliest(const std::string& name, const GlobalEntry& a, const GlobalEntry& b);

struct GlobalOptions {
  /// Who keeps a name claimed at the same epoch by two processes after a partition heals (a
  /// claim of a higher epoch wins without it; the winner is then raised to a new epoch). Default
  /// resolve_earliest. Every node of a cluster must use the same resolver.
  GlobalResolver resolver = resolve_earliest;
  /// What the loser of a conflict gets. Default kNotify: it may still hold state worth saving
  /// or handing over; kExit is simpler for servers that must never run twice.
  ConflictAction on_conflict = ConflictAction::kNotify;
  /// A lock whose registrar neither commits nor releases it within this time is freed (its
  /// node is normally declared down first). Longer is safer on a slow network; shorter frees
  /// a name sooner after a registrar vanished mid-registration.
  std::chrono::milliseconds lock_timeout{2000};
};

/// Starts the global name service on `node` (a GenServer registered locally as
/// "nodus_global"). Idempotent: ok when it runs already (the first options stay). Nodes that
/// do not run it take no part in global names. nodusd, the test node and the benchmarks start
/// it; a program that builds its own Node calls this once after Node::start.
Status start_global(Node& node, GlobalOptions options = {});

/// The destination of a global name: send, cast, call and monitor resolve it on the sender's
/// node when used (a local read). Nobody holding it is `noproc` (a send is dropped). Also a
/// start name: start<T>(node, SpawnOptions{.name = global("db")}).
Dest global(std::string_view name);

/// The calls below that change names ask `node`'s global name server; like every call they
/// start from the caller's own node when the caller is a process or has an Inbox, so call them
/// on the caller's node (otherwise they travel over the link to `node`).
///
/// Registers `pid` under `name` cluster-wide and returns the registration's fencing epoch
/// (the holder's, when `pid` held it already).
/// Waits for the locks of a majority of the nodes (about one round trip); rounds lost to
/// racing registrars are retried after a short random pause. Errors: kAlreadyStarted with the
/// holder (NameStatus::holder()); kBadArg for an empty name or an invalid pid; kNotFound when
/// the service does not run on `node`; kNoQuorum when no majority granted the lock in 60
/// rounds (the name stays contended, or peers do not answer); kTimeout when `node`'s server
/// did not answer within 10 s; kProtocol for an answer that is not the protocol's.
Result<GlobalEpoch, NameStatus> register_global(Node& node, std::string_view name, Pid pid);
/// Moves `name` to `pid` whoever holds it now (Erlang's re_register_name); a new epoch. Errors
/// as register_global except kAlreadyStarted.
Result<GlobalEpoch, NameStatus> re_register_global(Node& node, std::string_view name, Pid pid);
/// Removes `name` cluster-wide. Errors: kNotFound when nobody held it when asked (or the
/// service does not run on `node`); kNoQuorum, kTimeout, kProtocol as register_global. A name
/// that goes meanwhile (its holder exits while the rounds are retried) is removed: ok.
Status unregister_global(Node& node, std::string_view name);
/// Who holds `name`, from `node`'s copy of the table: no messages. A holder on `node` that has
/// exited is no answer, even before the service has handled its exit.
std::optional<Pid> whereis_global(Node& node, std::string_view name);
/// The fencing epoch of `name`'s current registration, or nullopt when nobody holds it.
std::optional<GlobalEpoch> global_epoch(Node& node, std::string_view name);
/// Every global name in `node`'s table, sorted by name.
std::vector<GlobalEntry> global_names(Node& node);
/// The connected nodes whose global name service this node has synchronised with, sorted.
std::vector<Atom> global_nodes(Node& node);

/// Counters of `node`'s global name service since it started (zero when it does not run).
struct GlobalStats {
  /// Lock rounds this node ran for registrations and unregistrations, retries included.
  std::uint64_t rounds = 0;
  /// Of those, lost: another registrar held a lock, or peers did not answer in lock_timeout.
  std::uint64_t rounds_lost = 0;
  /// Messages ignored because they came from a hidden node, which is no member
  /// (docs/protocol.md section 11): it neither votes in rounds nor changes the table. Also a
  /// member's Hello that arrived before its link counted as up here (its state comes again).
  std::uint64_t ignored = 0;
};
GlobalStats global_stats(Node& node);

}  // namespace nodus
