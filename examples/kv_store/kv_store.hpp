// KVStore: the chapter's capstone, a key-value server with TTL, replication, subscriptions,
// transactions, batches and stats, as a thin GenServer over the cluster's store (kv/).
//
// The chapter's KVStore.Server keeps a map in its state and casts each write to the replica
// pids it was given. Here the data lives in the store that runs on every node of the cluster
// (kv::start, or [kv] in a nodusd config), which already replicates each key on N nodes,
// expires TTLs, resolves concurrent writes and persists. A KVStore server is one door onto it,
// started under a name on any node of the ring: a put through kv_store@n1 is read through
// kv_store@n2. What the server itself keeps is what the chapter's does besides the map: its
// subscribers (monitored, so a dead one is dropped) and a watch of the store on their behalf.
//
// What each chapter call becomes:
// - put(key, value, ttl:, replicate:): a put superseding what a get of the key saw (an
//   overwrite, as Map.put). ttl: the store keeps the expiry with the value on every replica and
//   a read after it sees nothing (the store's sweep, not a timer here, drops it). replicate:
//   the store always keeps N copies, so `false` cannot mean "this node only": it means W = 1,
//   the put is answered once the coordinating replica stored it and the other copies follow
//   asynchronously (the chapter's cast to the peers); `true` waits for the store's write
//   quorum W.
// - get / delete / keys: the store's get (R replies), delete (a tombstone) and keys (a
//   coverage query, glob patterns; every page gathered here). A key with concurrent values
//   (siblings) reads as the greatest of them by bytes, as the Redis endpoint's GET does.
// - subscribe: the calling process gets the store's watch events of every key,
//   {kv_event, put | delete | expire, Key, Value, Context} (kv::watch_event decodes them), from
//   whichever node made the change, until it exits; {kv_watch_lost, Pattern} says events were
//   lost (the server fell behind, or a ring member went down or came back); it watches again
//   at once, and when the store refuses that (unavailable while a member does not acknowledge
//   the watch, too_many_watches) again after 100 ms, 200 ms, ... up to every 5 s until it
//   holds a watch, so subscribers are never left without events for good. stats says
//   `watching` (false while it retries) and counts `rewatches_refused`.
// - add_replica(node): the chapter hands a server another pid to copy writes to. In a Dynamo
//   store replicas are ring members, so this stages `{cluster, join, Node}` and commits it: the
//   node (running the store, linked, a candidate) becomes a member, takes its share of the
//   partitions by hand-off, and holds replicas of their keys from then on. N itself is fixed
//   when the cluster is created (kv.replicas).
// - transaction(keys, fun): kv::Client::transaction: fun sees the keys' values and returns the
//   writes, committed atomically at the partition's first primary if none of the keys changed
//   meanwhile (else fun runs again). The keys must share a partition: give them a {hash tag}.
// - multi_get / multi_put: the store's batches, one result per key; multi_put overwrites as
//   put does (a multi_get for the contexts first).
// - stats: every ring member's store stats, summed: keys (copies / N), memory (bytes), hits,
//   misses, replicas (N), and the server's own subscribers.
//
// Every request the server takes runs in a process of its own that answers the caller
// (reply(from, ...)), so slow store requests never hold up the server or each other.
//
// Requests as terms (nodusctl call): {put, K, V} | {put, K, V, #{ttl => Ms, replicate => Bool}}
// -> ok; {get, K} -> {ok, V} | nil; {delete, K} -> ok; keys | {keys, Glob} -> [K...];
// subscribe -> ok; {add_replica, Node} -> ok; {multi_get, [K...]} -> [{ok, V} | nil ...];
// {multi_put, [{K, V}...]} (and Opts as put's) -> ok; stats -> #{keys, memory, hits, misses,
// replicas, nodes, subscribers, watching, rewatches_refused}. K and V are binaries (atoms are taken
// as their text); failures answer {error, {Code, Message}}.
#pragma once

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "nodus/kv/client.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/node/gen_server.hpp"

namespace kv_store {

using namespace nodus;

struct PutOptions {
  /// The value expires this long after the store takes it (0: never).
  std::chrono::milliseconds ttl{0};
  /// false: answered once one replica stored it (W = 1); the others still get their copies.
  bool replicate = true;
};

/// transaction()'s request: local only (it holds a function).
struct Transact {
  std::vector<std::string> keys;
  kv::TxnFn fun;
};
/// Its answer.
struct Transacted {
  Status status;
  kv::TxnResult result;
};

class KVStore : public GenServer {
 public:
  static constexpr const char* kName = "kv_store";
  /// Most keys keys() gathers; past it, {error, {badarg, ...}} (page with kv::Client::keys).
  static constexpr std::size_t kMaxKeys = 100'000;

  // -- client API (runs in the caller) --

  /// Starts the server under `name`. REQUIRES: the store runs on `node` (else the start fails
  /// with {unavailable, ...}).
  static Result<Pid, Reason> start_link(Node& node, Name name = Name(kName)) {
    return nodus::start_link<KVStore>(node, SpawnOptions{.name = std::move(name)}, &node);
  }
  static Status put(const Dest& s, std::string_view key, std::string_view value,
                    PutOptions opts = {}) {
    return ok_of(call(s, tuple("put", bin(key), bin(value), opts_term(opts)), kWait));
  }
  /// The value, or nullopt when the key is absent (deleted, expired, never written).
  static Result<std::optional<std::string>> get(const Dest& s, std::string_view key) {
    auto r = call(s, tuple("get", bin(key)), kWait);
    if (!r) return reasons::to_status(r.error());
    if (*r == Term("nil")) return std::optional<std::string>();
    if (auto m = r->match({"ok", _bin})) return std::optional<std::string>(m[0].as_bin());
    return status_of(*r);
  }
  static Status del(const Dest& s, std::string_view key) {
    return ok_of(call(s, tuple("delete", bin(key)), kWait));
  }
  /// The live keys matching the glob `pattern`, cluster-wide, by partition then bytes.
  static Result<std::vector<std::string>> keys(const Dest& s, std::string_view pattern = "*") {
    auto r = call(s, tuple("keys", bin(pattern)), kWait);
    if (!r) return reasons::to_status(r.error());
    if (!r->is_list()) return status_of(*r);
    std::vector<std::string> out;
    for (const Term& k : r->as_list()) out.push_back(k.as_bin());
    return out;
  }
  /// The calling process receives every change from now on (see the top). REQUIRES: has_self().
  static Status subscribe(const Dest& s) { return ok_of(call(s, "subscribe", kWait)); }
  /// Makes `node` a member of the ring (see the top).
  static Status add_replica(const Dest& s, std::string_view node) {
    return ok_of(call(s, tuple("add_replica", bin(node)), kWait));
  }
  /// Runs `fun` over `keys` (one partition) and commits its writes atomically (see the top).
  /// Local only: `s` is a server on the caller's node (a function cannot cross nodes: else
  /// badarg). REQUIRES: has_self().
  static Result<kv::TxnResult> transaction(const Dest& s, std::vector<std::string> keys,
                                           kv::TxnFn fun) {
    auto r = call_as<Transacted>(s, Transact{std::move(keys), std::move(fun)}, kWait);
    if (!r) return reasons::to_status(r.error());
    if (!r->status.ok()) return r->status;
    return std::move(r->result);
  }
  /// One result per key, in order: the value or nullopt.
  static Result<std::vector<std::optional<std::string>>> multi_get(
      const Dest& s, const std::vector<std::string>& keys) {
    List ks;
    for (const auto& k : keys) ks.push_back(bin(k));
    auto r = call(s, tuple("multi_get", Term(std::move(ks))), kWait);
    if (!r) return reasons::to_status(r.error());
    if (!r->is_list()) return status_of(*r);
    std::vector<std::optional<std::string>> out;
    for (const Term& v : r->as_list()) {
      if (auto m = v.match({"ok", _bin})) {
        out.emplace_back(m[0].as_bin());
      } else if (v == Term("nil")) {
        out.emplace_back();
      } else {
        return status_of(v);
      }
    }
    return out;
  }
  /// Puts every pair; the first failure, if any.
  static Status multi_put(const Dest& s,
                          const std::vector<std::pair<std::string, std::string>>& kvs,
                          PutOptions opts = {}) {
    List pairs;
    for (const auto& [k, v] : kvs) pairs.push_back(tuple(bin(k), bin(v)));
    return ok_of(call(s, tuple("multi_put", Term(std::move(pairs)), opts_term(opts)), kWait));
  }
  /// #{keys, memory, hits, misses, replicas, nodes, subscribers, watching, rewatches_refused}
  /// (see the top).
  static Result<Term> stats(const Dest& s) {
    auto r = call(s, "stats", kWait);
    if (!r) return reasons::to_status(r.error());
    if (!r->is_map()) return status_of(*r);
    return std::move(*r);
  }

  // -- server callbacks (run in the server's process) --

  Action init(Node* node) {
    if (!kv::ring(*node)) {
      return stop(reasons::of(ErrorCode::kUnavailable,
                              bin("kv_store needs the store on this node (kv::start, or [kv] "
                                  "initial_members in the node's config)")));
    }
    node_ = node;
    client_.emplace(*node);
    return ok();
  }

  Action handle_call(Message& msg, From from) override {
    if (Transact* t = msg.get<Transact>()) {
      work(from, [c = *client_, t = std::move(*t)]() -> Message {
        auto r = c.transaction(t.keys, t.fun);
        return r ? Transacted{Status(), std::move(*r)} : Transacted{r.error(), {}};
      });
      return noreply();
    }
    if (!msg.is_term()) return GenServer::handle_call(msg, from);
    const Term& t = msg.term();
    if (t == Term("subscribe")) return reply(subscribe_caller(from.pid));
    if (t == Term("stats")) {
      const std::size_t subscribers = subscribers_.size();
      const bool watching = watch_.has_value();
      const std::int64_t refused = rewatches_refused_;
      work(from, [node = node_, subscribers, watching, refused] {
        return Message(gather_stats(*node, subscribers, watching, refused));
      });
      return noreply();
    }
    Status bad;
    auto text = [&](const Term& x) -> std::string {
      if (x.is_bin()) return x.as_bin();
      if (x.is_atom()) return std::string(x.as_atom().name());
      bad = Status(ErrorCode::kBadArg, "keys and values are binaries, not " + x.to_string());
      return {};
    };
    const kv::Client c = *client_;
    if (auto m = t.match({"put", _, _}); m || t.match({"put", _, _, _})) {
      const Term& o = t.size() == 4 ? t[3] : Term(List{});
      std::string key = text(t[1]), value = text(t[2]);
      kv::RequestOptions opts = request_options(o, bad);
      if (!bad.ok()) return reply(error_of(bad));
      work(from, [c, key, value, opts] { return Message(put_over(c, key, value, opts)); });
    } else if (auto g = t.match({"get", _})) {
      std::string key = text(g[0]);
      if (!bad.ok()) return reply(error_of(bad));
      work(from, [c, key] { return Message(value_term(c.get(key))); });
    } else if (auto d = t.match({"delete", _})) {
      std::string key = text(d[0]);
      if (!bad.ok()) return reply(error_of(bad));
      work(from, [c, key] {
        auto r = c.del(key);
        return Message(r || r.error().code() == ErrorCode::kNotFound ? Term("ok")
                                                                     : error_of(r.error()));
      });
    } else if (t == Term("keys") || t.match({"keys", _})) {
      std::string pattern = t.is_tuple() ? text(t[1]) : "*";
      if (!bad.ok()) return reply(error_of(bad));
      work(from, [c, pattern] { return Message(all_keys(c, pattern)); });
    } else if (auto a = t.match({"add_replica", _})) {
      std::string node = text(a[0]);
      if (!bad.ok()) return reply(error_of(bad));
      work(from, [node] { return Message(join(node)); });
    } else if (auto mg = t.match({"multi_get", _list})) {
      std::vector<std::string> keys;
      for (const Term& k : mg[0].as_list()) keys.push_back(text(k));
      if (!bad.ok()) return reply(error_of(bad));
      work(from, [c, keys] {
        List out;
        for (auto& r : c.multi_get(keys)) out.push_back(value_term(std::move(r)));
        return Message(Term(std::move(out)));
      });
    } else if (auto mp = t.match({"multi_put", _list}); mp || t.match({"multi_put", _list, _})) {
      std::vector<std::pair<std::string, std::string>> kvs;
      for (const Term& e : t[1].as_list()) {
        if (!e.is_tuple() || e.size() != 2) {
          bad = Status(ErrorCode::kBadArg, "multi_put takes a list of {Key, Value}");
          break;
        }
        kvs.emplace_back(text(e[0]), text(e[1]));
      }
      kv::RequestOptions opts = request_options(t.size() == 3 ? t[2] : Term(List{}), bad);
      if (!bad.ok()) return reply(error_of(bad));
      work(from, [c, kvs, opts] { return Message(multi_put_over(c, kvs, opts)); });
    } else {
      return reply(error_of(Status(ErrorCode::kBadArg, "unknown request " + t.to_string())));
    }
    return noreply();
  }

  Action handle_info(Message& msg) override {
    if (const Down* d = msg.get<Down>()) {  // a subscriber exited: dropped
      subscribers_.erase(d->ref);
      if (subscribers_.empty() && watch_) {
        (void)client_->unwatch(*watch_);
        watch_.reset();
      }
      return noreply();
    }
    if (kv::watch_event(msg)) {  // passed on as it came
      for (const auto& [ref, pid] : subscribers_) send(pid, Term(msg.term()));
      return noreply();
    }
    if (kv::watch_lost(msg)) {  // fell behind: watch again, and say events were lost
      for (const auto& [ref, pid] : subscribers_) send(pid, Term(msg.term()));
      watch_.reset();
      backoff_ = kRewatchFirst;
      rewatch();
      return noreply();
    }
    if (msg.is<Rewatch>()) {
      rewatch_armed_ = false;
      rewatch();
      return noreply();
    }
    return noreply();
  }

 private:
  static constexpr std::chrono::milliseconds kWait{15'000};  // a store request and its margin
  static constexpr const char* kStore = "nodus_kv";          // the store's server, per node

  // Watches the store again for the subscribers; when refused, tries again after backoff_,
  // doubled each time up to kRewatchMost.
  struct Rewatch {};  // local only: the retry's timer
  void rewatch() {
    if (watch_ || subscribers_.empty()) return;
    if (auto w = client_->watch("*")) {
      watch_ = *w;
      return;
    }
    ++rewatches_refused_;
    if (rewatch_armed_) return;
    rewatch_armed_ = true;
    send_after(self(), Rewatch{}, backoff_);
    backoff_ = std::min(backoff_ * 2, kRewatchMost);
  }

  Term subscribe_caller(const Pid& pid) {
    if (!watch_) {
      auto w = client_->watch("*");
      if (!w) return error_of(w.error());
      watch_ = *w;
    }
    subscribers_.emplace(monitor(pid), pid);
    return Term("ok");
  }

  // Runs `job` in a process of its own, which answers `from` with what it returns.
  template <class F>
  void work(const From& from, F job) {
    spawn(*node_, [from, job = std::move(job)]() mutable { reply(from, job()); });
  }

  static Term opts_term(const PutOptions& o) {
    MapEntries m;
    if (o.ttl.count() > 0) m.emplace_back(Term("ttl"), Term(o.ttl.count()));
    if (!o.replicate) m.emplace_back(Term("replicate"), Term(false));
    return Term(Map{std::move(m)});
  }
  static kv::RequestOptions request_options(const Term& o, Status& bad) {
    kv::RequestOptions r;
    if (o.is_list() && o.as_list().empty()) return r;
    if (!o.is_map()) {
      bad = Status(ErrorCode::kBadArg, "options are a map: #{ttl => Ms, replicate => Bool}");
      return r;
    }
    for (const auto& [k, v] : o.as_map()) {
      if (k.is_atom("ttl") && v.is_int() && v.as_int() >= 0) {
        r.ttl = std::chrono::milliseconds(v.as_int());
      } else if (k.is_atom("replicate") && (v.is_atom("true") || v.is_atom("false"))) {
        r.w = v.is_atom("false") ? 1 : 0;
      } else {
        bad = Status(ErrorCode::kBadArg, "bad option " + k.to_string() + " => " + v.to_string() +
                                             " (ttl => Ms >= 0, replicate => true | false)");
      }
    }
    return r;
  }

  static Term error_of(const Status& s) {
    return tuple("error", tuple(atom(error_name(s.code())), bin(s.message())));
  }
  static Status status_of(const Term& t) {
    if (auto m = t.match({"error", {_atom, _bin}})) {
      auto code = error_from_name(m[0].as_atom().name());
      return Status(code.value_or(ErrorCode::kProtocol), m[1].as_bin());
    }
    return Status(ErrorCode::kProtocol, "unexpected answer " + t.to_string());
  }
  static Status ok_of(const CallResult& r) {
    if (!r) return reasons::to_status(r.error());
    return *r == Term("ok") ? Status() : status_of(*r);
  }
  // The value a get shows: the greatest sibling by bytes, so every reader picks the same one.
  static std::string chosen(const kv::GetResult& g) {
    return *std::max_element(g.values.begin(), g.values.end());
  }
  static Term value_term(Result<kv::GetResult> r) {
    if (!r) return r.error().code() == ErrorCode::kNotFound ? Term("nil") : error_of(r.error());
    if (r->values.empty()) return Term("nil");
    return tuple("ok", bin(chosen(*r)));
  }

  // A put that supersedes what a get saw: an overwrite, not a sibling of the old value.
  static Term put_over(const kv::Client& c, const std::string& key, const std::string& value,
                       kv::RequestOptions opts) {
    auto seen = c.get(key);
    if (!seen && seen.error().code() != ErrorCode::kNotFound) return error_of(seen.error());
    if (seen) opts.context = seen->context;
    auto r = c.put(key, value, opts);
    return r ? Term("ok") : error_of(r.error());
  }

  // As put_over for many keys: one multi_get for the contexts, then the puts sent together.
  static Term multi_put_over(const kv::Client& c,
                             const std::vector<std::pair<std::string, std::string>>& kvs,
                             const kv::RequestOptions& opts) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : kvs) keys.push_back(k);
    auto seen = c.multi_get(keys);
    std::vector<RequestId> ids;
    for (std::size_t i = 0; i < kvs.size(); ++i) {
      MapEntries o;
      if (seen[i]) o.emplace_back(Term("context"), bin(seen[i]->context));
      if (opts.ttl.count() > 0) o.emplace_back(Term("ttl"), Term(opts.ttl.count()));
      if (opts.w) o.emplace_back(Term("w"), Term(static_cast<std::int64_t>(opts.w)));
      ids.push_back(send_request(named(kStore), tuple("put", bin(kvs[i].first), bin(kvs[i].second),
                                                      Term(Map{std::move(o)}))));
    }
    Term first_error;
    for (const RequestId& id : ids) {
      auto r = wait_response(id, kWait);
      if (!r) {
        if (first_error == Term()) first_error = error_of(reasons::to_status(r.error()));
      } else if (!r->match({"ok", _}) && first_error == Term()) {
        first_error = *r;
      }
    }
    return first_error == Term() ? Term("ok") : first_error;
  }

  static Term all_keys(const kv::Client& c, const std::string& pattern) {
    List out;
    kv::KeysOptions o;
    do {
      auto page = c.keys(pattern, o);
      if (!page) return error_of(page.error());
      for (auto& k : page->keys) out.push_back(bin(std::move(k)));
      if (out.size() > kMaxKeys) {
        return error_of(Status(ErrorCode::kBadArg, "more than " + std::to_string(kMaxKeys) +
                                                       " keys: page with kv::Client::keys"));
      }
      o.cursor = std::move(page->cursor);
    } while (!o.cursor.empty());
    return Term(std::move(out));
  }

  static Term join(const std::string& node) {
    const Dest store = named(kStore);
    auto staged = call(store, tuple("cluster", "join", bin(node)), kWait);
    if (!staged) return error_of(reasons::to_status(staged.error()));
    if (*staged != Term("ok")) return *staged;
    auto committed = call(store, tuple("cluster", "commit"), kWait);
    if (!committed) return error_of(reasons::to_status(committed.error()));
    return committed->match({"ok", _}) ? Term("ok") : *committed;
  }

  static Term gather_stats(Node& node, std::size_t subscribers, bool watching,
                           std::int64_t rewatches_refused) {
    std::int64_t keys = 0, memory = 0, hits = 0, misses = 0, nodes = 0;
    const auto ring = kv::ring(node);
    const std::int64_t n = ring ? ring->replicas() : 0;
    if (ring) {
      for (const std::string& member : ring->members()) {
        auto r = call(named(kStore, member), "stats", std::chrono::milliseconds(2000));
        if (!r || !r->match({"ok", _map})) continue;  // down: left out
        const Term& s = (*r)[1];
        auto field = [&](const char* name) {
          const Term* v = s.find(Term(name));
          return v && v->is_int() ? v->as_int() : 0;
        };
        keys += field("keys");
        memory += field("memory_bytes");
        hits += field("hits");
        misses += field("misses");
        ++nodes;
      }
    }
    return map({{"keys", n ? keys / n : 0},
                {"memory", memory},
                {"hits", hits},
                {"misses", misses},
                {"replicas", n},
                {"nodes", nodes},
                {"subscribers", static_cast<std::int64_t>(subscribers)},
                {"watching", watching},
                {"rewatches_refused", rewatches_refused}});
  }

  Node* node_ = nullptr;
  std::optional<kv::Client> client_;  // set by init
  std::optional<Ref> watch_;
  std::map<Ref, Pid> subscribers_;  // by monitor
  static constexpr std::chrono::milliseconds kRewatchFirst{100}, kRewatchMost{5000};
  std::chrono::milliseconds backoff_ = kRewatchFirst;  // before the next retry of the watch
  bool rewatch_armed_ = false;
  std::int64_t rewatches_refused_ = 0;
};

}  // namespace kv_store
