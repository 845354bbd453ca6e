// kv::Client: get, put and delete against the store from any process or thread.
//
// A Client sends each request to one node (its own node by default, or a named one: a hidden
// client node talks to a member). When that node is a primary of the key, the request goes
// straight to the vnode of the key's partition there, which coordinates it (the Client keeps a
// copy of that node's ring, asked for on first use and again every few seconds; a vnode that
// is not the one to coordinate hands the request to its nodus_kv); else to the node's
// `nodus_kv` server, which routes it to a primary of the key. The answer comes from the
// coordinating vnode. Every call waits at most the request's
// timeout plus a short margin (a request without one through another node: kMaxRequestTimeout,
// since that node's kv.request_timeout is not known here; its store answers by its deadline).
//
//     kv::Client kv(node);
//     auto ctx = kv.put("user:1", "alice");                  // the new causal context
//     auto got = kv.get("user:1");                           // values (siblings) + context
//     kv.put("user:1", "alice2", {.context = got->context}); // supersedes what get saw
//
// Errors (Status codes): not_found (get of a missing or deleted key), no_quorum (the message
// names the quorum, as "w: needed 2, got 1"; r, pr, w, pw or dw), timeout, overloaded, unavailable
// (no ring yet, or no replica up), value_too_large, too_many_siblings, badarg (a bad or forged
// context, a quorum above N), nodedown / noproc (the node or its store is not there);
// compare-and-set and transactions also kVersionMismatch and cross_partition.
//
// Thread-safety: a Client may be used from several threads or processes at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nodus/kv/errors.hpp"
#include "nodus/kv/watch.hpp"
#include "nodus/node/node.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::kv {

namespace detail {
struct RouteCache;  // the ring as the Client last saw it (client.cpp)
}

/// Per-request options; 0 means the node's configured default.
struct RequestOptions {
  std::string context;  ///< the causal context of an earlier get/put (puts and deletes)
  std::uint32_t r = 0;  ///< replies a get waits for (R), PR of them from primaries
  std::uint32_t pr = 0;
  std::uint32_t w = 0;  ///< acks a put waits for (W), PW of them primaries, DW durable
  std::uint32_t pw = 0;
  std::uint32_t dw = 0;
  std::chrono::milliseconds timeout{0};  ///< the request's deadline (0: kv.request_timeout)
  /// Puts only: the value expires this long after the coordinator stores it (its clock; 0:
  /// never), at most about 300 years. Gets and deletes refuse it (badarg). An expired value
  /// reads as absent at once on every node; a put with a context that saw it supersedes it as
  /// usual.
  std::chrono::milliseconds ttl{0};
  /// Compare-and-set (put and del): the write happens only if the key's causal context at its
  /// partition's first up primary is exactly this one (a context a get, put, del or mismatch
  /// returned), or, when it is the empty string, if the key has no live value there
  /// (create-only). Else kVersionMismatch and nothing is written. `context` is then unused: the
  /// write supersedes what the primary holds. A put's `ttl` applies to the new value, counted
  /// from when the first primary stores it. See transaction() for the guarantees.
  std::optional<std::string> if_version{};
  /// Puts (and deletes) without a context: a blind overwrite. The coordinating vnode (a
  /// primary of the key) builds the context from its own copy when it coordinates the write,
  /// so the write supersedes every value that copy holds, as a delete without a context does,
  /// in one store round trip and with no read first (Redis's SET). It supersedes only what
  /// that replica holds: a write another coordinator took concurrently that has not reached it
  /// yet stays, and becomes a sibling (kv.conflicts = siblings) or loses or wins by timestamp
  /// (lww) when the replicas meet. Without it (the default) a put without a context
  /// supersedes nothing and its value becomes a sibling of what is there. With a non-empty
  /// `context`, or on a get: badarg. Not with if_version (unused there).
  bool overwrite = false;
};

/// What transaction() shows its function: each key's live values at the partition's first
/// primary (none: absent; several: concurrent siblings, which a write of the key resolves).
using TxnSnapshot = std::map<std::string, std::vector<std::string>, std::less<>>;
/// What the function writes: key -> its new value, or nullopt to delete it. Keys of the
/// transaction left out stay as they are (and are still checked unchanged at commit).
using TxnWrites = std::map<std::string, std::optional<std::string>, std::less<>>;
/// A transaction's body: the writes to commit, or nullopt to abort (nothing is written). It may
/// run several times (once per attempt) and must not have other effects that matter.
using TxnFn = std::function<std::optional<TxnWrites>(const TxnSnapshot&)>;

struct TxnOptions {
  std::uint32_t w = 0, pw = 0, dw = 0;   ///< as RequestOptions
  std::chrono::milliseconds timeout{0};  ///< per attempt's read and commit (0: kv.request_timeout)
  std::uint32_t max_attempts = 10;       ///< commits tried before kVersionMismatch, >= 1
};

struct TxnResult {
  bool committed = false;  ///< false: the function aborted (returned nullopt)
  std::uint32_t attempts = 0;
  TxnSnapshot values;                          ///< the snapshot the committed function saw
  std::map<std::string, std::string> context;  ///< every key's causal context after the commit
};

/// Options of a keys query; 0 / empty means the default.
struct KeysOptions {
  std::string cursor;       ///< from the previous page; empty: the first page
  std::uint32_t limit = 0;  ///< keys per page, 1..10000 (0: 1000)
  std::chrono::milliseconds timeout{0};
};

struct KeysPage {
  std::vector<std::string> keys;  ///< by partition, then by key bytes
  std::string cursor;             ///< for the next page; empty when this was the last
};

struct GetResult {
  std::vector<std::string> values;  ///< one, or several concurrent ones (siblings)
  std::string context;              ///< opaque; pass it to the next put to supersede them
  /// How long the key lives on (of its values, the last to expire), as the coordinator saw it;
  /// nullopt when some value never expires.
  std::optional<std::chrono::milliseconds> ttl;
};

class Client {
 public:
  /// Sends through `node`'s own store, or the store on the node named `via`. Copies share
  /// their copy of the ring.
  explicit Client(Node& node, std::string via = {});

  /// The key's values and causal context. Errors: see above; not_found when absent.
  Result<GetResult> get(std::string_view key, const RequestOptions& opts = {}) const;
  /// Stores `value`; returns the new causal context. With `opts.if_version`, a compare-and-set:
  /// kVersionMismatch when the key's version differs, and then `*current` (when given) holds
  /// its values and context at the first primary (no values: absent), for the next attempt.
  Result<std::string> put(std::string_view key, std::string_view value,
                          const RequestOptions& opts = {}, GetResult* current = nullptr) const;
  /// Deletes (a tombstone superseding `opts.context`, or what the coordinator has seen when
  /// it is empty); returns the tombstone's causal context. `opts.if_version`: as for put.
  Result<std::string> del(std::string_view key, const RequestOptions& opts = {},
                          GetResult* current = nullptr) const;

  /// get / put / del of many keys at once: one request per key, each sent as get, put or del
  /// sends it (straight to the key's vnode on this node when the node is a primary of the
  /// key, else to the store), all sent before any answer is awaited, those of one partition
  /// back to back; then the answers are gathered, by one deadline (opts.timeout, as for one
  /// request). So a batch costs about what one request costs plus the time to send the rest,
  /// not N round trips. One result per key, in order, each as get's, put's or del's (a key
  /// that fails does not fail the others; the batch is not atomic). Keys of any partitions;
  /// at most kMaxMultiKeys (beyond: every result badarg). opts.context and opts.if_version are
  /// not used; opts.overwrite and opts.ttl apply to every put (a negative ttl: every result
  /// badarg). multi_del deletes keys[i] superseding contexts[i] (a get's context), or, where
  /// that is "" or missing, what the key's coordinator has seen (as del).
  std::vector<Result<GetResult>> multi_get(const std::vector<std::string>& keys,
                                           const RequestOptions& opts = {}) const;
  std::vector<Result<std::string>> multi_put(
      const std::vector<std::pair<std::string, std::string>>& kvs,
      const RequestOptions& opts = {}) const;
  std::vector<Result<std::string>> multi_del(const std::vector<std::string>& keys,
                                             const std::vector<std::string>& contexts = {},
                                             const RequestOptions& opts = {}) const;
  static constexpr std::size_t kMaxMultiKeys = 10000;

  /// Runs `fun` over the current values of `keys` and commits what it returns as one atomic
  /// write, optimistically (docs/protocol.md 12.5): the keys are read at their partition's
  /// first up primary, `fun` runs here, and the writes are committed at that primary only if
  /// none of the keys changed there meanwhile (each key's if_version), else it runs again with
  /// the new values, at most opts.max_attempts times. The commit is applied there in one step,
  /// atomic with respect to every other write that primary coordinates, and replicated as one
  /// message per replica. The keys must share a partition (a hash tag: `{user1}.a`,
  /// `{user1}.b`). Errors: cross_partition, kVersionMismatch (every attempt lost a race),
  /// unavailable (no primary of the partition up: transactions never run on a fallback),
  /// no_quorum, timeout (the commit may or may not have been applied), badarg.
  Result<TxnResult> transaction(const std::vector<std::string>& keys, const TxnFn& fun,
                                const TxnOptions& opts = {}) const;
  /// One page of the live keys matching the glob `pattern` (`*`, `?`, `[a-z]`, `\x`), cluster
  /// wide: one replica of each partition is asked (a coverage query, as Riak's list-keys), so a
  /// key that replica has not received yet shows up once hand-off or repair brought it.
  /// Errors: badarg (a malformed cursor or option), unavailable (a partition without a replica
  /// up), timeout.
  Result<KeysPage> keys(std::string_view pattern, const KeysOptions& opts = {}) const;
  /// What every replica of `key` holds, as the term of `{explain, Key}` (docs/protocol.md
  /// 12.3): for diagnosis, not for reading the value.
  Result<Term> explain(std::string_view key, std::chrono::milliseconds timeout = {}) const;
  /// The store's figures as the term of `{stats, cluster}` (docs/protocol.md 12.3): every
  /// member's summed, each node's beside (a member that did not answer listed as down); with
  /// `cluster` false, the term of `stats`: the node's own (kv::stats() is the typed form on
  /// the node itself). `timeout` 0: 10 s. Errors: noproc / nodedown, timeout.
  Result<Term> stats(bool cluster = true, std::chrono::milliseconds timeout = {}) const;

  // -- watches (nodus/kv/watch.hpp) ------------------------------------------------------------

  /// Watches the keys `pattern` matches for the calling process, which then receives one
  /// {kv_event, put | delete | expire, Key, Value, Context} term per change (kv::watch_event
  /// decodes it) until it exits, unwatches, or is sent {kv_watch_lost, Pattern}. Returns once
  /// the cluster's members up know of the pattern (at most 2 s): changes coordinated after that
  /// are seen. The watch is held by the store on this Client's node when it runs one, else by
  /// the node `via` names: then the watcher is remote to it and acknowledges the events it took
  /// with watch_ack, or is dropped after kv.watch_queue of them. Errors: badarg (an empty or
  /// too long pattern), too_many_watches (kv.max_watches), noproc / nodedown, timeout.
  /// REQUIRES: has_self().
  Result<Ref> watch(std::string_view pattern, WatchMatch match = WatchMatch::kGlob) const;
  /// Ends a watch (ok also when it had ended). Events already sent may still arrive.
  Status unwatch(const Ref& watch) const;
  /// Tells the node holding `watch` that its watcher took `events` more events (needed only for
  /// a watch held by another node: see watch). At most once, not answered.
  void watch_ack(const Ref& watch, std::uint32_t events) const;

 private:
  // Where a request for `key` goes: its partition's vnode when the node is a primary of it.
  std::optional<Dest> vnode_for(std::string_view key) const;
  // put / del with if_version (client_txn.cpp). write: txn.hpp's kTxnPut or kTxnDelete.
  Result<std::string> cas(std::string_view key, std::uint8_t write, std::string_view value,
                          const RequestOptions& opts, GetResult* current) const;
  // The partitions of the ring as last seen (0: not known).
  std::uint32_t partitions() const;

  Node* node_;
  std::string via_;
  std::shared_ptr<detail::RouteCache> routes_;
};

}  // namespace nodus::kv
