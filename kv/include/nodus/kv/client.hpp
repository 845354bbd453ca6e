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
// context, a quorum above N), nodedown / noproc (the node or its store is not there).
//
// Thread-safety: a Client may be used from several threads or processes at once.
#pragma once

#include <chrono>
#include <cstdint>
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
};

class Client {
 public:
  /// Sends through `node`'s own store, or the store on the node named `via`. Copies share
  /// their copy of the ring.
  explicit Client(Node& node, std::string via = {});

  /// The key's values and causal context. Errors: see above; not_found when absent.
  Result<GetResult> get(std::string_view key, const RequestOptions& opts = {}) const;
  /// Stores `value`; returns the new causal context.
  Result<std::string> put(std::string_view key, std::string_view value,
                          const RequestOptions& opts = {}) const;
  /// Deletes (a tombstone superseding `opts.context`, or what the coordinator has seen when
  /// it is empty); returns the tombstone's causal context.
  Result<std::string> del(std::string_view key, const RequestOptions& opts = {}) const;
  /// One page of the live keys matching the glob `pattern` (`*`, `?`, `[a-z]`, `\x`), cluster
  /// wide: one replica of each partition is asked (a coverage query, as Riak's list-keys), so a
  /// key that replica has not received yet shows up once hand-off or repair brought it.
  /// Errors: badarg (a malformed cursor or option), unavailable (a partition without a replica
  /// up), timeout.
  Result<KeysPage> keys(std::string_view pattern, const KeysOptions& opts = {}) const;
  /// What every replica of `key` holds, as the term of `{explain, Key}` (docs/protocol.md
  /// 12.3): for diagnosis, not for reading the value.
  Result<Term> explain(std::string_view key, std::chrono::milliseconds timeout = {}) const;

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

  Node* node_;
  std::string via_;
  std::shared_ptr<detail::RouteCache> routes_;
};

}  // namespace nodus::kv
