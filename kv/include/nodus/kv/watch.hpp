// Watches: a process on any node asks to hear of every change to the keys matching a pattern
// (one key, a prefix, or a glob) and receives, in handle_info (or receive), one term per change:
//
//     {kv_event, put | delete | expire, Key, Value, Context}
//
// Key, Value and Context are binaries: Value is what the change wrote (empty for a delete; for
// an expiry the value that expired), Context the key's causal context after the change (a put
// with it supersedes what the change left, siblings included). A watch ends when the watcher
// exits (it is monitored), when it asks (kv::Client::unwatch), or when it falls behind: a watcher
// with kv.watch_queue events not yet taken is sent {kv_watch_lost, Pattern} and dropped, so
// it never misses events silently (etcd's slow watchers did: etcd-io/etcd#17529, #18089); it
// then reads what it needs and watches again.
//
// Guarantees (README "Watches" says why):
// - Once per change: the event is made by the vnode that coordinated the put or delete (as Riak's
//   postcommit hooks run in its put FSM), right after it stored the new version, and by no other
//   party: replica writes, read repair, hinted hand-off and ownership transfer bring no change
//   about, only copies of one, so they make no event. A put answered no_quorum or timeout that
//   the coordinator had stored is a change (it may be read later) and is reported.
// - Per key in version order: events of one coordinator reach a node's watchers in the order it
//   made them (one process, one ordered link). Causally ordered writes coordinated on different
//   nodes could arrive the other way round over two links; the watch server of the watcher's
//   node remembers, per key, the versions it has passed on, and a watcher that would be handed an
//   older version after a newer one is sent {kv_watch_lost, Pattern} instead. Concurrent writes
//   (siblings) have no order; each is an event.
// - An expiry is one expire event: every replica sweeps it, and only the partition's first
//   primary that is up (as the sweeping node sees the ring) tells the watchers, so with the
//   first primary down the next one does. Two nodes that each see the other down can both take
//   themselves for it; the watch server passes on one expire per key and version (remembered
//   as the order check's versions are), so a watcher that sees both nodes hears of it once.
// - A watch call returns once every ring member that is up knows of the pattern (at most 2 s):
//   a change coordinated after it returns is seen.
//
// Terms on the wire (docs/protocol.md 12.7): {watch, Pattern} to `nodus_kv` (Pattern: a binary
// glob, {key, Bin} or {prefix, Bin}) answers {ok, WatchRef}; {unwatch, WatchRef} answers ok.
//
// Thread-safety: every function may be called from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "nodus/node/node.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::kv {

/// How a watch's pattern matches keys.
enum class WatchMatch : std::uint8_t {
  kGlob = 0,    ///< as keys(): `*`, `?`, `[a-z]`, `\x` (a key without those matches itself)
  kKey = 1,     ///< exactly this key (its bytes may contain `*`)
  kPrefix = 2,  ///< every key that starts with these bytes
};

/// What changed.
enum class WatchKind : std::uint8_t { kPut = 1, kDelete = 2, kExpire = 3 };

/// One `{kv_event, ...}` term, decoded.
struct WatchEvent {
  WatchKind kind = WatchKind::kPut;
  std::string key;
  std::string value;    ///< what the put wrote; empty for a delete; the expired value
  std::string context;  ///< the key's causal context after the change
};

/// The event `msg` carries, or nullopt when it is no `{kv_event, ...}` term.
std::optional<WatchEvent> watch_event(const Message& msg);
/// The pattern of a `{kv_watch_lost, Pattern}` term (as the watch gave it), or nullopt.
std::optional<Term> watch_lost(const Message& msg);

/// The pattern term of a watch: a binary for a glob, {key, Bin} or {prefix, Bin}.
Term watch_pattern(std::string_view pattern, WatchMatch match = WatchMatch::kGlob);

/// A node's watch figures since the store started there (also in /metrics).
struct WatchStats {
  std::uint64_t watchers = 0;      ///< watches held by this node now
  std::uint64_t events = 0;        ///< events sent to this node's watchers
  std::uint64_t lost = 0;          ///< watches ended with kv_watch_lost
  std::uint64_t out_of_order = 0;  ///< of them, for an event that came after a newer one
  std::uint64_t duplicates = 0;    ///< expire events dropped: that expiry went out already
};

/// `node`'s watch figures. Errors: kNotFound when the store does not run there.
Result<WatchStats> watch_stats(Node& node);

}  // namespace nodus::kv
