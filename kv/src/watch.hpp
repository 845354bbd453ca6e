// The store's watches, inside (the contract is nodus/kv/watch.hpp).
//
// Each node runs a watch server, `nodus_kv_watch` (under nodus_kv_sup), that holds the node's
// watchers and monitors them. It tells every other node of the cluster the patterns its
// watchers have (WatchPatterns, acknowledged), and keeps the others' patterns in the node's
// WatchState, which vnodes read. A vnode that coordinates a change calls notify_change: for
// every node with a pattern that matches the key, one KvWatchEvent goes to that node's watch
// server, which passes it on to its matching watchers as {kv_event, ...} terms. With no watcher
// anywhere, the hook costs a vnode one atomic load.
//
// Thread-safety: notify_change and notify_expired may be called from any vnode at once; the
// WatchState they read is guarded as said there.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kv_protocol.hpp"
#include "nodus/kv/watch.hpp"
#include "nodus/transport/detail/mutex.hpp"
#include "object.hpp"
#include "state.hpp"

namespace nodus::kv {

/// The per-node watch server, registered locally under this name.
inline constexpr const char* kWatchName = "nodus_kv_watch";

/// How long a watch call waits for the members to acknowledge its pattern, at most.
inline constexpr std::chrono::milliseconds kWatchAckWait{2000};
/// Keys whose last versions a watch server remembers for the order check (least recently seen
/// forgotten first: a key forgotten has no check until its next event).
inline constexpr std::size_t kWatchOrderKeys = 100000;
/// How long a watch server holds an event whose predecessors (its `seen`) have not come yet,
/// at most: then it is passed on (and a predecessor that comes later ends the watches it would
/// reach out of order, with kv_watch_lost).
inline constexpr std::chrono::milliseconds kWatchHoldWait{1000};
/// Patterns one node may announce; a WatchPatterns with more is refused.
inline constexpr std::size_t kMaxAnnouncedPatterns = 1000000;

// -- wire messages (docs/protocol.md 12.7) -----------------------------------------------------

/// A change, from the vnode that coordinated it to the watch server of a node with a matching
/// pattern. kind: WatchKind. version: the key's version vector after the change, as flat
/// (vnode, epoch, counter) triples; seen: the causal context the write superseded (what its
/// writer had read), the same way; context: `version` signed, for watchers. The receiver
/// passes an event on only after those it saw (ordering, watch.cpp).
struct KvWatchEvent {
  std::uint8_t kind = 0;
  std::string key;
  Bin value;
  std::string context;
  std::vector<std::uint64_t> version;
  std::vector<std::uint64_t> seen;
  NODUS_MESSAGE(KvWatchEvent, 525, kind, key, value, context, version, seen);
};

/// A node's watch patterns, all of them (each a WatchMatch and its bytes), to every other node's
/// watch server; `seq` grows with each change, and the receiver answers WatchPatternsAck{seq}.
struct WatchPatterns {
  std::uint64_t seq = 0;
  std::vector<std::uint8_t> kinds;
  std::vector<std::string> patterns;
  NODUS_MESSAGE(WatchPatterns, 526, seq, kinds, patterns);
};
struct WatchPatternsAck {
  std::uint64_t seq = 0;
  NODUS_MESSAGE(WatchPatternsAck, 527, seq);
};

Status register_watch_protocol();

// -- patterns ----------------------------------------------------------------------------------

struct WatchPattern {
  WatchMatch match = WatchMatch::kGlob;
  std::string text;
  bool matches(std::string_view key) const;
  friend auto operator<=>(const WatchPattern&, const WatchPattern&) = default;
};

/// A pattern term ({watch, Pattern}) as a WatchPattern. Errors: kBadArg naming what is wrong.
Result<WatchPattern> parse_pattern(const Term& t);

// -- shared state ------------------------------------------------------------------------------

/// The nodes with watchers and their patterns, as of one moment: immutable, replaced whole.
struct WatchRoutes {
  std::vector<std::pair<Atom, std::vector<WatchPattern>>> nodes;
};

/// A node's watch state, in a Node service slot of its own: the routes vnodes read, the
/// counters, and the watchers (so a restarted watch server can tell them they lost events).
struct WatchState {
  std::shared_ptr<const WatchRoutes> routes() const NODUS_EXCLUDES(mu_) {
    nodus::detail::MutexLock lock(mu_);
    return routes_;
  }
  void set_routes(std::shared_ptr<const WatchRoutes> r) NODUS_EXCLUDES(mu_) {
    nodus::detail::MutexLock lock(mu_);
    any_.store(r && !r->nodes.empty(), std::memory_order_release);
    routes_ = std::move(r);
  }
  /// False while no node has a watcher: the vnodes' fast path.
  bool any() const { return any_.load(std::memory_order_acquire); }

  std::atomic<std::uint64_t> events{0}, lost{0}, out_of_order{0}, watchers{0}, duplicates{0};
  /// The watchers and their patterns as the server last had them (only the server touches it).
  std::map<Ref, std::pair<Pid, Term>> held;

 private:
  // Guards routes_: the watch server replaces it, vnodes read it per watched change.
  mutable nodus::detail::Mutex mu_;
  std::shared_ptr<const WatchRoutes> routes_ NODUS_GUARDED_BY(mu_);
  std::atomic<bool> any_{false};
};

/// The watch state of `node` (made with the store), or nullptr.
WatchState* watch_state_of(Node& node);

// -- hooks -------------------------------------------------------------------------------------

/// True when some node watches a pattern matching `key`: a coordinator asks before it copies
/// the value for notify_change.
bool watched(Node& node, std::string_view key);

/// A change the calling vnode coordinated and stored: `object` is the key's object after it,
/// `value` what it wrote (empty for a delete), `seen` the causal context it superseded. Sends
/// one KvWatchEvent to each node with a matching pattern. Call it from exactly one party per
/// change (the coordinator).
void notify_change(KvState& st, std::string_view key, const Object& object, WatchKind kind,
                   std::string_view value, const VersionVector& seen);

/// The hook of the TTL sweep: `object` (the key's object as stored, its values expired) expired
/// in `partition`. Sends {kv_event, expire, Key, Value, Context} for it, Value the newest live
/// value that expired. Like notify_change, call it from one party per expiry (the sweep of the
/// partition's first primary that is up, or the coordinator of the read that found it expired)
/// so the watchers hear of it once.
void notify_expired(KvState& st, std::uint32_t partition, std::string_view key,
                    const Object& object);

/// True when `request` is a watch request to nodus_kv: {watch, ...} or {unwatch, ...}.
bool is_watch_request(const Term& request);
/// Hands a watch request nodus_kv was called with to the watch server, which answers `from`.
void forward_watch(Node& node, const Term& request, From from);

/// Starts `nodus_kv_watch` on `node`, linked to the caller (nodus_kv_sup, which restarts it).
Result<Pid, Reason> start_watch_server(Node& node, KvState* st);

}  // namespace nodus::kv
