// nodus_kv: the store's server on each node. It answers client requests (typed KvRequest from
// kv::Client, or terms from any language: docs/protocol.md "The store"), checks them, and routes
// each to the vnode that coordinates it: this node's, when it holds a primary of the key, else
// the first up primary's node (a KvForward, answered from there straight to the caller). It
// also forms the ring from kv.initial_members, gossips it, and tracks which members are up.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <tuple>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "aae.hpp"
#include "claimant.hpp"
#include "nodus/kv/partition.hpp"
#include "nodus/node/gen_server.hpp"
#include "nodus/node/supervisor.hpp"
#include "query.hpp"
#include "state.hpp"
#include "transfer.hpp"
#include "txn.hpp"
#include "watch.hpp"

namespace nodus::kv {

// -- shared state ------------------------------------------------------------------------------

namespace {

Term u(std::uint64_t v) { return Term(static_cast<std::int64_t>(v)); }

}  // namespace

KvState* state_of(Node& node) { return node.service<KvState>(); }

namespace {
std::size_t max_object_bytes_for(const Options& o) {
  if (o.max_object_bytes) return o.max_object_bytes;
  return std::min<std::size_t>(kDefaultMaxObjectBytes, kGetReplyBytes / std::max(1u, o.replicas));
}
}  // namespace

namespace {
bool timing_enabled() {
  const char* v = std::getenv("NODUS_KV_TIMING");
  return v && *v && std::string_view(v) != "0";
}
}  // namespace

KvState::KvState(Node& n, Options o)
    : node(n),
      options(std::move(o)),
      timing(timing_enabled()),
      max_object_bytes(max_object_bytes_for(options)),
      signer(options.context_secret),
      clock([this] { return wall_ms(); }) {
  engine =
      options.engine ? options.engine(options.partitions) : new_memory_engine(options.partitions);
  // Each partition's vnode id: random, so no two incarnations of the store (a node restarted,
  // with or without its data) ever write under the same actor.
  std::mt19937_64 rng(seed("vnode ids"));
  parts.reserve(options.partitions);
  for (std::uint32_t p = 0; p < options.partitions; ++p) parts.emplace_back(rng() | 1);
  queued = std::make_unique<std::atomic<std::uint32_t>[]>(options.partitions);
  hinted = std::make_unique<std::atomic<std::uint32_t>[]>(options.partitions);
  for (std::uint32_t p = 0; p < options.partitions; ++p) {
    queued[p].store(0);
    hinted[p].store(0);
  }
  if (evicts()) lru = std::make_unique<NodeLru>(options.partitions);
}

std::uint64_t KvState::seed(std::string_view purpose) const {
  if (!options.clock) {
    std::random_device rd;
    return (std::uint64_t{rd()} << 32) ^ rd();
  }
  std::string s(node.name().name());
  s.append("/").append(std::to_string(node.creation())).append("/").append(purpose);
  return XXH3_64bits(s.data(), s.size());
}

std::shared_ptr<const MergeFn> KvState::merge_for(std::string_view key) const {
  nodus::detail::MutexLock lock(merge_mu_);
  std::shared_ptr<const MergeFn> best;
  std::size_t best_len = 0;
  for (const auto& [prefix, fn] : merges_) {
    if (key.substr(0, prefix.size()) == prefix && (!best || prefix.size() > best_len)) {
      best = fn;
      best_len = prefix.size();
    }
  }
  return best;
}

void KvState::add_merge(std::string prefix, MergeFn fn) {
  nodus::detail::MutexLock lock(merge_mu_);
  auto shared = std::make_shared<const MergeFn>(std::move(fn));
  for (auto& [p, f] : merges_) {
    if (p == prefix) {
      f = shared;
      return;
    }
  }
  merges_.emplace_back(std::move(prefix), std::move(shared));
  has_merges_.store(true, std::memory_order_relaxed);
}

bool KvState::take_repair_token() {
  nodus::detail::MutexLock lock(repair_mu_);
  const auto now = this->now();
  if (now - repair_window_ >= std::chrono::seconds(1)) {
    repair_window_ = now;
    repairs_in_window_ = 0;
  }
  if (repairs_in_window_ >= options.read_repair_per_s) return false;
  ++repairs_in_window_;
  return true;
}

void AtomicLatency::record(std::chrono::steady_clock::duration d) {
  const auto us = static_cast<std::uint64_t>(
      std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(d).count()));
  std::size_t b = 0;
  while (b < Latency::kBuckets - 1 && us > Latency::kBoundsUs[b]) ++b;
  counts[b].fetch_add(1, std::memory_order_relaxed);
  count.fetch_add(1, std::memory_order_relaxed);
  sum_us.fetch_add(us, std::memory_order_relaxed);
}

const char* stage_name(Stage s) {
  static constexpr const char* kNames[] = {"put.route",  "put.local",   "put.quorum",
                                           "put.total",  "replica.put", "get.route",
                                           "get.quorum", "get.total",   "replica.get"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == static_cast<std::size_t>(Stage::kCount));
  return kNames[static_cast<std::size_t>(s)];
}

namespace {
// Bucket i holds times up to 2^(i/4) us.
double stage_bound_us(std::size_t i) { return std::exp2(static_cast<double>(i) / 4.0); }
}  // namespace

void StageClock::record(std::chrono::steady_clock::duration d) {
  const auto ns = static_cast<std::uint64_t>(
      std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()));
  const double us = static_cast<double>(ns) / 1000.0;
  std::size_t b = 0;
  if (us > 1.0) {
    b = std::min<std::size_t>(kBuckets - 1,
                              static_cast<std::size_t>(std::ceil(4.0 * std::log2(us))));
  }
  counts[b].fetch_add(1, std::memory_order_relaxed);
  count.fetch_add(1, std::memory_order_relaxed);
  sum_ns.fetch_add(ns, std::memory_order_relaxed);
}

StageTiming StageClock::snapshot(Stage s) const {
  StageTiming t;
  t.name = stage_name(s);
  t.count = count.load(std::memory_order_relaxed);
  if (t.count == 0) return t;
  t.mean_us = static_cast<double>(sum_ns.load(std::memory_order_relaxed)) / 1000.0 /
              static_cast<double>(t.count);
  std::uint64_t seen = 0;
  bool have50 = false;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += counts[i].load(std::memory_order_relaxed);
    if (!have50 && seen * 2 >= t.count) {
      t.p50_us = stage_bound_us(i);
      have50 = true;
    }
    if (seen * 100 >= t.count * 99) {
      t.p99_us = stage_bound_us(i);
      break;
    }
  }
  return t;
}

Latency AtomicLatency::snapshot() const {
  Latency l;
  for (std::size_t i = 0; i < Latency::kBuckets; ++i) l.counts[i] = counts[i].load();
  l.count = count.load();
  l.sum_us = sum_us.load();
  return l;
}

std::vector<Target> View::targets(std::uint32_t p, std::uint32_t n) const {
  const std::vector<std::uint32_t> prim = ring->preference_list(p, n);
  std::vector<Target> out;
  std::vector<std::uint32_t> down;
  for (std::uint32_t m : prim) {
    if (up[m]) {
      out.push_back(Target{m, true, m, names[m]});
    } else {
      down.push_back(m);
    }
  }
  if (down.empty()) return out;
  std::vector<bool> used(up.size(), false);
  for (std::uint32_t m : prim) used[m] = true;
  const std::uint32_t q = ring->partitions();
  std::size_t next = 0;
  for (std::uint32_t i = 0; i < q && next < down.size(); ++i) {
    const std::uint32_t o = ring->owner((p + i) % q);
    if (used[o] || !up[o]) continue;
    used[o] = true;
    out.push_back(Target{o, false, down[next++], names[o]});
  }
  return out;
}

KvReply error_reply(ErrorCode code, std::string message) {
  KvReply r;
  r.code = static_cast<std::uint16_t>(code);
  r.message = std::move(message);
  return r;
}

namespace {

Term reply_term(Op op, bool with_ttl, KvReply r) {
  const auto code = static_cast<ErrorCode>(r.code);
  if (code == ErrorCode::kOk) {
    if (op == Op::kGet) {
      List values;
      values.reserve(r.values.size());
      for (auto& v : r.values) values.emplace_back(std::move(v));
      if (with_ttl) {  // {get, Key, #{with_ttl => true}}: the key's time left, or infinity
        Term left = r.ttl_ms >= 0 ? Term(r.ttl_ms) : Term("infinity");
        return tuple("ok", Term(std::move(values)), Term(std::move(r.context)), std::move(left));
      }
      return tuple("ok", Term(std::move(values)), Term(std::move(r.context)));
    }
    return tuple("ok", Term(std::move(r.context)));
  }
  if (code == ErrorCode::kNoQuorum) {
    return tuple("error", tuple("no_quorum", atom(r.quorum), u(r.needed), u(r.got)));
  }
  return error_term(code, r.message);
}

}  // namespace

void answer(const Origin& origin, KvReply reply) {
  if (origin.term) {
    nodus::reply(origin.from, reply_term(origin.op, origin.with_ttl, std::move(reply)));
  } else {
    nodus::reply(origin.from, std::move(reply));
  }
}

Status register_protocol() {
  for (Status s :
       {register_message<KvRequest>(), register_message<KvReply>(), register_message<KvForward>(),
        register_message<ReplicaPut>(), register_message<ReplicaPutAck>(),
        register_message<ReplicaGet>(), register_message<ReplicaGetReply>(),
        register_message<RingGossip>(), register_message<HandoffPut>(),
        register_message<HandoffAck>(), register_message<ReapTombstone>(),
        register_message<KvDirect>(), register_txn_protocol()}) {
    if (!s.ok()) return s;
  }
  return Status();
}

// -- requests ------------------------------------------------------------------------------------

Status check_request(const KvRequest& r, const Options& o) {
  if (r.op < 1 || r.op > 3) return Status(ErrorCode::kBadArg, "unknown operation");
  if (r.key.empty()) return Status(ErrorCode::kBadArg, "empty key");
  if (r.key.size() > kMaxKeyBytes) {
    return Status(ErrorCode::kValueTooLarge, "key is " + std::to_string(r.key.size()) +
                                                 " bytes, the limit is " +
                                                 std::to_string(kMaxKeyBytes));
  }
  if (r.value.size() > o.max_value_bytes) {
    return Status(ErrorCode::kValueTooLarge, "value is " + std::to_string(r.value.size()) +
                                                 " bytes, the limit (kv.max_value_bytes) is " +
                                                 std::to_string(o.max_value_bytes));
  }
  auto above_n = [&](const char* name, std::uint32_t v) {
    return Status(ErrorCode::kBadArg, std::string(name) + " = " + std::to_string(v) +
                                          " is above N = " + std::to_string(o.replicas));
  };
  if (r.timeout_ms > kMaxRequestTimeout.count()) {
    return Status(ErrorCode::kBadArg, "timeout = " + std::to_string(r.timeout_ms) +
                                          " ms is above the limit of " +
                                          std::to_string(kMaxRequestTimeout.count()) + " ms");
  }
  if (r.r > o.replicas) return above_n("r", r.r);
  if (r.pr > o.replicas) return above_n("pr", r.pr);
  if (r.w > o.replicas) return above_n("w", r.w);
  if (r.pw > o.replicas) return above_n("pw", r.pw);
  if (r.dw > o.replicas) return above_n("dw", r.dw);
  if (r.ttl_ms != 0 && r.op != static_cast<std::uint8_t>(Op::kPut)) {
    return Status(ErrorCode::kBadArg, "ttl is an option of put only");
  }
  if (r.ttl_ms > kMaxTtlMs) {
    return Status(ErrorCode::kBadArg, "ttl = " + std::to_string(r.ttl_ms) +
                                          " ms is above the limit of " + std::to_string(kMaxTtlMs) +
                                          " ms");
  }
  if (r.with_ttl && r.op != static_cast<std::uint8_t>(Op::kGet)) {
    return Status(ErrorCode::kBadArg, "with_ttl is an option of get only");
  }
  if (r.overwrite && r.op == static_cast<std::uint8_t>(Op::kGet)) {
    return Status(ErrorCode::kBadArg, "overwrite is an option of put and delete only");
  }
  if (r.overwrite && !r.context.empty()) {
    return Status(ErrorCode::kBadArg,
                  "overwrite and context exclude each other (overwrite supersedes what the "
                  "coordinator holds; a context supersedes what a read saw)");
  }
  return Status();
}

namespace {

// Reads the options map of a term request into `r`. Errors name the option.
Status parse_opts(const Term& opts, KvRequest& r) {
  if (opts.is_list() && opts.as_list().empty()) return Status();
  if (!opts.is_map()) return Status(ErrorCode::kBadArg, "options must be a map");
  for (const auto& [k, v] : opts.as_map()) {
    if (!k.is_atom()) return Status(ErrorCode::kBadArg, "option names are atoms");
    const std::string_view name = k.as_atom().name();
    if (name == "context") {
      if (!v.is_bin()) return Status(ErrorCode::kBadArg, "option context must be a binary");
      r.context = v.as_bin();
      continue;
    }
    if (name == "ttl") {  // ms; check_request bounds it
      if (!v.is_int() || v.as_int() < 1) {
        return Status(ErrorCode::kBadArg, "option ttl must be an integer >= 1 (ms)");
      }
      r.ttl_ms = static_cast<std::uint64_t>(v.as_int());
      continue;
    }
    if (name == "with_ttl" || name == "overwrite") {
      if (!v.is_atom("true") && !v.is_atom("false")) {
        return Status(ErrorCode::kBadArg, "option " + std::string(name) + " must be true or false");
      }
      (name == "with_ttl" ? r.with_ttl : r.overwrite) = v.is_atom("true");
      continue;
    }
    std::uint32_t* field = name == "r"         ? &r.r
                           : name == "pr"      ? &r.pr
                           : name == "w"       ? &r.w
                           : name == "pw"      ? &r.pw
                           : name == "dw"      ? &r.dw
                           : name == "timeout" ? &r.timeout_ms
                                               : nullptr;
    if (!field) return Status(ErrorCode::kBadArg, "unknown option " + std::string(name));
    if (!v.is_int() || v.as_int() < 1 || v.as_int() > 0x7fffffff) {
      return Status(ErrorCode::kBadArg, "option " + std::string(name) + " must be an integer >= 1");
    }
    *field = static_cast<std::uint32_t>(v.as_int());
  }
  return Status();
}

// A term request as a KvRequest: {get, Key, Opts}, {put, Key, Value, Opts}, {delete, Key, Opts}
// (Opts may be left out).
Result<KvRequest> parse_term(const Term& t) {
  const Status bad(ErrorCode::kBadArg,
                   "expected {get, Key, Opts}, {put, Key, Value, Opts}, {delete, Key, Opts}, "
                   "{keys, Pattern, Opts}, {explain, Key, Opts}, ring or stats");
  if (!t.is_tuple() || t.size() < 2 || !t[0].is_atom()) return bad;
  const std::string_view op = t[0].as_atom().name();
  KvRequest r;
  std::size_t opts_at = 0;
  if (op == "get" && (t.size() == 2 || t.size() == 3)) {
    r.op = static_cast<std::uint8_t>(Op::kGet);
    opts_at = 2;
  } else if (op == "put" && (t.size() == 3 || t.size() == 4)) {
    r.op = static_cast<std::uint8_t>(Op::kPut);
    if (!t[2].is_bin()) return Status(ErrorCode::kBadArg, "the value must be a binary");
    r.value = t[2].as_bin();
    opts_at = 3;
  } else if (op == "delete" && (t.size() == 2 || t.size() == 3)) {
    r.op = static_cast<std::uint8_t>(Op::kDelete);
    opts_at = 2;
  } else {
    return bad;
  }
  if (!t[1].is_bin()) return Status(ErrorCode::kBadArg, "the key must be a binary");
  r.key = t[1].as_bin();
  if (t.size() > opts_at) {
    if (Status s = parse_opts(t[opts_at], r); !s.ok()) return s;
  }
  return r;
}

Term ring_term(const View& v) {
  const Ring& r = *v.ring;
  List owners;
  for (std::uint32_t p = 0; p < r.partitions(); ++p) {
    owners.push_back(bin(r.members()[r.owner(p)]));
  }
  List members;
  for (std::size_t i = 0; i < r.members().size(); ++i) {
    members.push_back(tuple(bin(r.members()[i]), v.up[i] ? "up" : "down"));
  }
  List leaving;
  for (const auto& m : r.leaving()) leaving.push_back(bin(m));
  List transfers;  // partitions moving: their owner now and the next one (Riak's `next`)
  for (std::uint32_t p : r.transfers()) {
    transfers.push_back(map({{"partition", u(p)},
                             {"from", bin(r.members()[r.owner(p)])},
                             {"to", bin(r.members()[r.next_owner(p)])}}));
  }
  return map({{"epoch", u(r.epoch())},
              {"partitions", u(r.partitions())},
              {"replicas", u(r.replicas())},
              {"members", Term(std::move(members))},
              {"owners", Term(std::move(owners))},
              {"claimant", bin(r.claimant())},
              {"leaving", Term(std::move(leaving))},
              {"transfers", Term(std::move(transfers))}});
}

// -- stats -------------------------------------------------------------------------------------

// The fields of {stats} summed cluster-wide (each node's counters and sizes); siblings_max and
// replicas are the most of any node, not a sum.
constexpr const char* kSummed[] = {"keys",
                                   "live_keys",
                                   "data_bytes",
                                   "memory_bytes",
                                   "hits",
                                   "misses",
                                   "gets",
                                   "puts",
                                   "deletes",
                                   "errors",
                                   "overloaded",
                                   "read_repairs",
                                   "hints",
                                   "hints_pending",
                                   "handoffs",
                                   "expired",
                                   "evictions",
                                   "tombstones_reaped",
                                   "bad_messages",
                                   "merge_errors",
                                   "aae_exchanges",
                                   "aae_segments_differing",
                                   "aae_keys_repaired",
                                   "aae_busy_us",
                                   "aae_throttled",
                                   "syncs",
                                   "sync_writes",
                                   "sync_us",
                                   "sync_waits"};
constexpr const char* kMost[] = {"replicas", "siblings_max", "ring_epoch"};

}  // namespace

Term node_stats_term(Node& node) {
  Result<Stats> s = stats(node);
  if (!s) return Term(Map{});
  const Stats& x = *s;
  List parts;
  for (std::size_t p = 0; p < x.partition_keys.size(); ++p) {
    parts.push_back(map({{"partition", u(p)},
                         {"keys", u(x.partition_keys[p])},
                         {"bytes", u(x.partition_bytes[p])}}));
  }
  return map({{"node", bin(std::string(node.name().name()))},
              {"keys", u(x.keys)},
              {"live_keys", u(x.live_keys)},
              {"data_bytes", u(x.data_bytes)},
              {"memory_bytes", u(x.memory_bytes)},
              {"hits", u(x.hits)},
              {"misses", u(x.misses)},
              {"replicas", u(x.replicas)},
              {"gets", u(x.gets)},
              {"puts", u(x.puts)},
              {"deletes", u(x.deletes)},
              {"errors", u(x.errors)},
              {"overloaded", u(x.overloaded)},
              {"read_repairs", u(x.read_repairs)},
              {"hints", u(x.hints)},
              {"hints_pending", u(x.hints_pending)},
              {"handoffs", u(x.handoffs)},
              {"expired", u(x.expired)},
              {"evictions", u(x.evictions)},
              {"tombstones_reaped", u(x.tombstones_reaped)},
              {"siblings_max", u(x.siblings_max)},
              {"bad_messages", u(x.bad_messages)},
              {"merge_errors", u(x.merge_errors)},
              {"ring_epoch", u(x.ring_epoch)},
              {"aae_exchanges", u(x.aae_exchanges)},
              {"aae_segments_differing", u(x.aae_segments_differing)},
              {"aae_keys_repaired", u(x.aae_keys_repaired)},
              {"aae_busy_us", u(x.aae_busy_us)},
              {"aae_throttled", u(x.aae_throttled)},
              {"syncs", u(x.syncs)},
              {"sync_writes", u(x.sync_writes)},
              {"sync_us", u(x.sync_us)},
              {"sync_waits", u(x.sync_waits)},
              {"partitions", Term(std::move(parts))}});
}

Term sum_stats(const std::vector<std::pair<std::string, std::optional<Term>>>& each) {
  auto field = [](const Term& m, const char* name) -> std::uint64_t {
    const Term* v = m.find(Term(name));
    return v && v->is_int() && v->as_int() > 0 ? static_cast<std::uint64_t>(v->as_int()) : 0;
  };
  std::map<std::string, std::uint64_t> sums, most;
  for (const char* f : kSummed) sums[f] = 0;
  for (const char* f : kMost) most[f] = 0;
  std::map<std::uint64_t, std::pair<std::uint64_t, std::uint64_t>> parts;  // keys, bytes
  List nodes;
  std::uint64_t up = 0, down = 0;
  for (const auto& [name, t] : each) {
    if (!t || !t->is_map()) {
      ++down;
      nodes.push_back(map({{"node", bin(name)}, {"state", "down"}}));
      continue;
    }
    ++up;
    for (auto& [f, total] : sums) total += field(*t, f.c_str());
    for (auto& [f, m] : most) m = std::max(m, field(*t, f.c_str()));
    if (const Term* ps = t->find(Term("partitions")); ps && ps->is_list()) {
      for (const Term& p : ps->as_list()) {
        if (!p.is_map()) continue;
        auto& [k, b] = parts[field(p, "partition")];
        k += field(p, "keys");
        b += field(p, "bytes");
      }
    }
    MapEntries one = t->as_map();
    one.emplace_back(Term("state"), Term("up"));
    nodes.push_back(Term(Map{std::move(one)}));
  }
  MapEntries out;
  for (const auto& [f, total] : sums) out.emplace_back(Term(atom(f)), u(total));
  for (const auto& [f, m] : most) out.emplace_back(Term(atom(f)), u(m));
  List plist;
  for (const auto& [p, kb] : parts) {
    plist.push_back(map({{"partition", u(p)}, {"keys", u(kb.first)}, {"bytes", u(kb.second)}}));
  }
  out.emplace_back(Term("partitions"), Term(std::move(plist)));
  out.emplace_back(Term("nodes_up"), u(up));
  out.emplace_back(Term("nodes_down"), u(down));
  out.emplace_back(Term("nodes"), Term(std::move(nodes)));
  return Term(Map{std::move(out)});
}

namespace {

// -- the server --------------------------------------------------------------------------------

// nodus_kv's ring gossip timer, sent to itself: a local type that is no wire message, so no peer
// can send one (a forged periodic timer would re-arm itself and multiply).
struct GossipTimer {};

class KvServer : public GenServer {
 public:
  Action init(Node* node, KvState* st) {
    node_ = node;
    st_ = st;
    me_ = std::string(node->name().name());
    // With kv.data_dir: the changes staged here before a restart (claimant.hpp).
    if (std::string staged;
        st_->engine->get_meta(kStagedRecord, &staged).ok() && !claimant_.restore(staged)) {
      st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
    }
    staged_saved_ = claimant_.version();
    rng_.seed(static_cast<std::uint32_t>(st_->seed("gossip/" + std::to_string(self().id))));
    monitor_nodes(true);
    for (Atom peer : node->nodes()) up_.insert(std::string(peer.name()));
    const auto& init = st_->options.initial_members;
    if (auto v = st_->view(); v && v->ready()) {  // restarted: carry on with the ring we had
      ring_ = v->ring;
      claimant_.prune(*ring_);
      save_staged();
      publish();
      for (const auto& peer : up_) send(named(kServerName, peer), RingGossip{});
    } else if (init.empty() || (init.size() == 1 && init[0] == me_)) {
      adopt(Ring::create(st_->options.partitions, st_->options.replicas, {me_}).value());
    } else {
      publish();
      maybe_form();
      // Ask the nodes already linked for their ring (a restarted member learns it here).
      for (const auto& peer : up_) send(named(kServerName, peer), RingGossip{});
    }
    send_after(self(), GossipTimer{}, std::chrono::milliseconds(1000));
    return ok();
  }

  Action handle_call(Message& msg, From from) override {
    if (KvRequest* r = msg.get<KvRequest>()) {
      route(std::move(*r), Origin{from, false, static_cast<Op>(r->op)}, std::nullopt);
      return noreply();
    }
    if (KvTxn* tx = msg.get<KvTxn>()) {  // txn.cpp; "forwarded" is taken from members only
      auto v = st_->view();
      if (tx->forwarded && (!v->ready() || v->index_of(from.pid.node) < 0)) tx->forwarded = false;
      route_txn(*st_, std::move(*tx), from, TxnShape::kTyped);
      return noreply();
    }
    if (msg.is_term()) {
      const Term& t = msg.term();
      if (t == Term("ring")) {
        auto v = st_->view();
        if (!v->ready()) return reply(tuple("error", "unavailable"));
        return reply(tuple("ok", ring_term(*v)));
      }
      if (t == Term("stats")) return reply(tuple("ok", stats_term()));
      if (t == tuple("stats", "cluster")) {  // every member's, summed
        cluster_stats(from);
        return noreply();
      }
      if (t == Term("transfers")) {  // every node's hand-offs, gathered by a process
        std::vector<std::string> nodes{me_};
        nodes.insert(nodes.end(), store_.begin(), store_.end());
        spawn(*node_, [nodes, from] {
          List all;
          for (const auto& n : nodes) {
            auto r = call(named(kTransferName, n), Term("status"), std::chrono::milliseconds(2000));
            if (!r) continue;  // down meanwhile: its transfers start again when it is back
            if (auto m = r->match({"ok", _list})) {
              for (const Term& x : m[0].as_list()) all.push_back(x);
            }
          }
          nodus::reply(from, tuple("ok", Term(std::move(all))));
        });
        return noreply();
      }
      if (is_cluster_request(t)) {  // staged membership changes: claimant.cpp
        cluster(t, from);
        return noreply();
      }
      if (is_query(t)) {  // keys, explain: query.cpp
        start_query(*node_, st_, t, from);
        return noreply();
      }
      if (is_multi_request(t)) {  // client_txn.cpp
        start_multi(*node_, t, from);
        return noreply();
      }
      TxnShape shape = TxnShape::kTyped;
      if (auto tx = txn_of_term(t, &shape)) {  // {txn, ...}, or a write with if_version
        if (!*tx) return reply(error_term(tx->error().code(), tx->error().message()));
        route_txn(*st_, std::move(**tx), from, shape);
        return noreply();
      }
      if (is_watch_request(t)) {  // watch, unwatch: watch.cpp
        forward_watch(*node_, t, from);
        return noreply();
      }
      Result<KvRequest> r = parse_term(t);
      if (!r) {
        return reply(
            tuple("error", tuple(atom(error_name(r.error().code())), bin(r.error().message()))));
      }
      const Op op = static_cast<Op>(r->op);
      route(std::move(*r), Origin{from, true, op}, std::nullopt);
      return noreply();
    }
    return reply(tuple("error", tuple("badarg", bin("not a store request"))));
  }

  Action handle_info(Message& msg) override {
    if (KvForward* f = msg.get<KvForward>()) {
      forward_in(*f);
    } else if (Reroute* rr = msg.get<Reroute>()) {
      if (sender().node != node_->name()) return refuse();  // local only, as its type
      route(std::move(rr->request), rr->origin, std::nullopt);
    } else if (const RingGossip* g = msg.get<RingGossip>()) {
      const Pid from = sender();
      if (!from.valid()) return refuse();
      gossip_in(*g, from.node);
    } else if (const TransferDone* td = msg.get<TransferDone>()) {
      const Pid from = sender();
      if (!from.valid() || !ring_ || ring_->member_index(from.node.name()) < 0) return refuse();
      transfer_done(*td, std::string(from.node.name()));
    } else if (const NodeUp* nu = msg.get<NodeUp>()) {
      up_.insert(std::string(nu->node.name()));
      publish();
      maybe_form();
      auto v = st_->view();
      if (v->ready() && v->self >= 0) {
        send_ring(nu->node);
      } else {  // a candidate: asking for the ring also tells the members it runs the store
        send(named(kServerName, nu->node.name()), RingGossip{});
      }
    } else if (const NodeDown* nd = msg.get<NodeDown>()) {
      up_.erase(std::string(nd->node.name()));
      store_.erase(std::string(nd->node.name()));
      publish();
    } else if (msg.is<GossipTimer>()) {
      // Anti-entropy for the ring: one random up node a second gets ours. A node outside
      // the ring (a candidate) asks for one instead: nobody takes a ring from it.
      auto v = st_->view();
      if (!up_.empty()) {
        auto it = up_.begin();
        std::advance(it, static_cast<long>(rng_() % up_.size()));
        if (v->ready() && v->self >= 0) {
          send_ring(atom(*it));
        } else {
          send(named(kServerName, *it), RingGossip{});
        }
      }
      if (ring_ && acting_claimant() == me_) {
        if (auto r = claimant_.switch_idle(*ring_, st_->options.replicas)) commit_ring(*r);
      }
      send_after(self(), GossipTimer{}, std::chrono::milliseconds(1000));
    } else {
      return refuse();
    }
    return noreply();
  }

  // nodus_kv takes no casts (the default would stop it).
  Action handle_cast(Message&) override { return refuse(); }

 private:
  Action refuse() {
    st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
    return noreply();
  }

  // A request a member (or a candidate: a linked node running the store) handed on. Taken
  // only from those; the caller it names must be on
  // a node this one knows (its atom exists), else the answer could not reach it anyway.
  void forward_in(KvForward& f) {
    const Pid from = sender();
    auto v = st_->view();
    const std::optional<Pid> pid = f.reply_pid.pid();
    const std::optional<Ref> ref = f.reply_ref.ref();
    if (!from.valid() || !v->ready() ||
        (v->index_of(from.node) < 0 && !store_.count(std::string(from.node.name()))) || !pid ||
        !ref) {
      (void)refuse();
      return;
    }
    const Op op = static_cast<Op>(f.request.op);
    route(std::move(f.request), Origin{From{*pid, *ref}, f.term_reply, op}, f.deadline_ms);
  }

  // Sends a request to the vnode that coordinates it, here or on the first up primary's node.
  // Its deadline is fixed here when it comes from a caller (its timeout from now), else it is
  // the one the member that forwarded it fixed (`forwarded_deadline_ms`): a request whose
  // caller gave up is dropped wherever it waits (counted in expired_skipped).
  void route(KvRequest req, Origin origin, std::optional<std::uint64_t> forwarded_deadline_ms) {
    origin.with_ttl = req.with_ttl;
    if (Status s = check_request(req, st_->options); !s.ok()) {
      answer(origin, error_reply(s.code(), s.message()));
      return;
    }
    const bool forwarded = forwarded_deadline_ms.has_value();
    const auto now = st_->now();
    const auto deadline = forwarded
                              ? st_->local_deadline(*forwarded_deadline_ms)
                              : now + (req.timeout_ms ? std::chrono::milliseconds(req.timeout_ms)
                                                      : st_->options.request_timeout);
    if (deadline <= now) {
      st_->counters.expired_skipped.fetch_add(1, std::memory_order_relaxed);
      answer(origin, error_reply(ErrorCode::kTimeout));
      return;
    }
    std::shared_ptr<const View> view = st_->view();
    if (!view->ready()) {
      answer(origin, error_reply(ErrorCode::kUnavailable, "the ring has not formed yet"));
      return;
    }
    const std::uint32_t p = partition_of(req.key, view->ring->partitions());
    if (!forwarded) {
      const auto prim = view->primaries(p, st_->options.replicas);
      const bool here =
          view->self >= 0 &&
          std::find(prim.begin(), prim.end(), static_cast<std::uint32_t>(view->self)) != prim.end();
      if (!here) {
        for (std::uint32_t m : prim) {
          if (!view->up[m]) continue;
          st_->counters.forwarded.fetch_add(1, std::memory_order_relaxed);
          if (!reachable(origin.from.pid.node)) {
            relay(std::move(req), origin, view->names[m], deadline);
            return;
          }
          send(named(kServerName, view->names[m].name()),
               KvForward{std::move(req), WireId::of(origin.from.pid), WireId::of(origin.from.ref),
                         origin.term, st_->wall_deadline(deadline)});
          return;
        }
        // No primary is up: coordinate here, as a fallback.
      }
    }
    if (st_->queued[p].load(std::memory_order_relaxed) >= st_->options.vnode_queue) {
      st_->counters.overloaded.fetch_add(1, std::memory_order_relaxed);
      answer(origin, error_reply(ErrorCode::kOverloaded));
      return;
    }
    st_->queued[p].fetch_add(1, std::memory_order_seq_cst);  // before the pid: see queued
    const Pid vnode = st_->vnode(p);
    if (!node_->is_process_alive(vnode)) {  // crashed, its supervisor restarts it
      st_->unqueue(p);
      answer(origin, error_reply(ErrorCode::kUnavailable,
                                 "the vnode of partition " + std::to_string(p) + " is restarting"));
      return;
    }
    send(vnode, CoordRequest{std::move(req), origin, deadline,
                             st_->timing ? std::chrono::steady_clock::now()
                                         : std::chrono::steady_clock::time_point{}});
  }

  // True when the primaries can answer a caller on `node` directly: this node or a member of
  // the mesh. A hidden node (nodusctl, a client in another language) is linked to the nodes it
  // was pointed at only, and nobody else links to it.
  bool reachable(Atom node) const {
    const std::string_view name = node.name();
    return name == me_ || up_.count(std::string(name)) > 0;
  }

  // For a caller the primary cannot answer: a process here asks the primary itself and
  // relays the answer.
  // The request keeps its deadline: the primary is given what is left of it.
  void relay(KvRequest req, Origin origin, Atom primary,
             std::chrono::steady_clock::time_point deadline) {
    const auto left = std::max<std::int64_t>(
        1, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - st_->now()).count());
    req.timeout_ms = static_cast<std::uint32_t>(left);
    const auto wait = std::chrono::milliseconds(left) + std::chrono::milliseconds(500);
    spawn(*node_, [req = std::move(req), origin, primary, wait]() mutable {
      auto r = call_as<KvReply>(named(kServerName, primary.name()), std::move(req), wait);
      if (r) {
        answer(origin, std::move(*r));
      } else if (r.error().is_atom("timeout")) {
        answer(origin, error_reply(ErrorCode::kTimeout));
      } else if (r.error().is_atom("nodedown")) {
        // The request may have reached the primary before the link went (a paused node takes
        // it when it resumes): its outcome is unknown, which is what a timeout says, never
        // `unavailable` (a refusal that stored nothing).
        answer(origin, error_reply(ErrorCode::kTimeout,
                                   "the primary " + std::string(primary.name()) +
                                       " went down with the request: its outcome is unknown"));
      } else {
        answer(origin, error_reply(ErrorCode::kUnavailable,
                                   "the primary " + std::string(primary.name()) +
                                       " did not answer: " + r.error().to_string()));
      }
    });
  }

  // -- ring ----------------------------------------------------------------------------------

  void publish() {
    auto v = std::make_shared<View>();
    v->ring = ring_;
    if (ring_) {
      const auto& members = ring_->members();
      v->up.resize(members.size());
      v->names.reserve(members.size());
      for (std::size_t i = 0; i < members.size(); ++i) {
        v->names.push_back(atom(members[i]));
        v->up[i] = members[i] == me_ || up_.count(members[i]) > 0;
      }
      v->self = ring_->member_index(me_);
    }
    st_->set_view(std::move(v));
  }

  void adopt(Ring r) {
    ring_ = std::make_shared<const Ring>(std::move(r));
    claimant_.prune(*ring_);
    publish();
    (void)save_ring(*st_, *ring_);  // with kv.data_dir; a failed write is seen at the next
    save_staged();
  }

  // With kv.data_dir: the staged changes beside the ring, whenever they changed.
  void save_staged() {
    if (claimant_.version() == staged_saved_) return;
    staged_saved_ = claimant_.version();
    const std::string record = claimant_.staged_record();
    (void)(record.empty() ? st_->engine->erase_meta(kStagedRecord)
                          : st_->engine->put_meta(kStagedRecord, record));
  }

  // The claimant as this node sees it: the lowest member that is up and not leaving (Riak
  // moves the claimant off a down node the same way), so a dead claimant can be removed.
  std::string acting_claimant() const {
    return kv::acting_claimant(*ring_, me_, [&](const std::string& m) { return up_.count(m) > 0; });
  }

  // A ring this node (the claimant) made: adopted and sent to every linked node at once.
  void commit_ring(Ring r) {
    adopt(std::move(r));
    for (const auto& peer : up_) send_ring(atom(peer));
  }

  // A sender's hand-offs for switching a partition are all acknowledged (transfer.hpp).
  void transfer_done(const TransferDone& td, const std::string& from) {
    if (!ring_ || td.epoch != ring_->epoch() || acting_claimant() != me_) return;
    if (auto r = claimant_.transfer_done(*ring_, td.partition, from, st_->options.replicas)) {
      commit_ring(std::move(*r));
    }
  }

  // A `{cluster, ...}` request: answered by the claimant, which holds the staged changes;
  // any other node asks it (from a process of its own, so this server stays responsive). A
  // commit's ring goes to every linked node at once (members, candidates, the ones leaving).
  void cluster(const Term& t, From from) {
    if (!ring_ || ring_->empty()) {
      nodus::reply(from, error_term(ErrorCode::kUnavailable, "the ring has not formed yet"));
      return;
    }
    const std::string claimant = acting_claimant();
    if (claimant == me_) {
      Claimant::Outcome o = claimant_.handle(t, ClusterContext{ring_.get(), me_, &up_, &store_});
      // A commit's ring is kept before its staged changes go: a restart between the two finds
      // them applied to the ring it has, and prune drops them.
      if (o.ring) commit_ring(std::move(*o.ring));
      save_staged();
      nodus::reply(from, std::move(o.reply));
      return;
    }
    const Atom to = atom(claimant);
    spawn(*node_, [t, from, to] {
      auto r = call(named(kServerName, to.name()), t, std::chrono::milliseconds(5000));
      nodus::reply(from, r ? std::move(*r)
                           : error_term(ErrorCode::kUnavailable,
                                        "the claimant " + std::string(to.name()) +
                                            " did not answer: " + r.error().to_string()));
    });
  }

  // The claimant (lowest initial member) makes the first ring once every initial member is
  // linked; the others learn it by gossip.
  void maybe_form() {
    if (ring_) return;
    const auto& init = st_->options.initial_members;
    if (init.empty() || *std::min_element(init.begin(), init.end()) != me_) return;
    for (const auto& m : init) {
      if (m != me_ && !up_.count(m)) return;
    }
    auto r = Ring::create(st_->options.partitions, st_->options.replicas, init);
    if (!r) return;  // checked in start()
    adopt(std::move(*r));
    for (const auto& m : ring_->members()) {
      if (m != me_) send_ring(atom(m));
    }
  }

  void send_ring(Atom to) {
    if (!ring_) return;
    send(named(kServerName, to.name()),
         RingGossip{ring_->epoch(), ring_->partitions(), ring_->replicas(), ring_->members(),
                    ring_->owners(), ring_->next(), ring_->leaving()});
  }

  // A ring (or a request for ours) from node `from`, the sender the link authenticated. Any
  // node may ask for ours; a ring is taken only from a member: of our ring when we have one
  // (any other linked node, a client's hidden node included, could otherwise replace the
  // cluster's ring), else from an initial member named in the ring it sends (the claimant, or
  // a member telling a restarted one). Rings are versioned: only a higher epoch replaces ours.
  void gossip_in(const RingGossip& g, Atom from) {
    if (!node_->is_hidden(from) && up_.count(std::string(from.name()))) {
      store_.insert(std::string(from.name()));  // it runs the store: a candidate, if no member
    }
    if (g.epoch == 0) {  // a request for our ring
      send_ring(from);
      return;
    }
    const std::string_view sender = from.name();
    const auto& init = st_->options.initial_members;
    const bool trusted =
        !node_->is_hidden(from) &&
        (ring_ ? ring_->member_index(sender) >= 0
               : std::find(init.begin(), init.end(), sender) != init.end() &&
                     std::find(g.members.begin(), g.members.end(), sender) != g.members.end());
    if (!trusted) {
      // A node dropped from the ring (removed while down) learns from ours that it is out.
      if (ring_ && g.epoch < ring_->epoch() && !node_->is_hidden(from)) send_ring(from);
      (void)refuse();
      return;
    }
    if (g.partitions != st_->options.partitions || g.replicas != st_->options.replicas) {
      (void)refuse();  // another cluster's shape: not ours to adopt
      return;
    }
    Result<Ring> r =
        Ring::from_parts(g.epoch, g.partitions, g.replicas, g.members, g.owners, g.next, g.leaving);
    if (!r) {
      (void)refuse();
      return;
    }
    // Two claimants (each side of a split) may have made different rings of one epoch: every
    // node keeps the lower of them by their parts, so all converge on one.
    auto parts = [](const Ring& x) {
      return std::tie(x.members(), x.owners(), x.next(), x.leaving());
    };
    if (!ring_ || r->epoch() > ring_->epoch() ||
        (r->epoch() == ring_->epoch() && parts(*r) < parts(*ring_))) {
      adopt(std::move(*r));
    } else if (r->epoch() < ring_->epoch() || parts(*r) != parts(*ring_)) {
      send_ring(from);
    }
  }

  Term stats_term() { return node_stats_term(*node_); }

  // {stats, cluster}: every member's {stats} (this node's at once), asked by a process of its
  // own so this server stays responsive, summed; a member that does not answer is listed as
  // down, not an error.
  void cluster_stats(From from) {
    auto v = st_->view();
    std::vector<std::string> members;
    if (v->ready()) members = v->ring->members();
    if (members.empty()) members.push_back(me_);
    std::vector<bool> up;
    for (const auto& m : members) up.push_back(m == me_ || up_.count(m) > 0);
    Term mine = stats_term();
    const std::string me = me_;
    spawn(*node_, [members, up, mine, me, from] {
      std::vector<std::pair<std::string, std::optional<Term>>> each;
      for (std::size_t i = 0; i < members.size(); ++i) {
        if (members[i] == me) {
          each.emplace_back(members[i], mine);
          continue;
        }
        std::optional<Term> got;
        if (up[i]) {
          auto r =
              call(named(kServerName, members[i]), Term("stats"), std::chrono::milliseconds(2000));
          if (r) {
            if (auto m = r->match({"ok", _map})) got = m[0];
          }
        }
        each.emplace_back(members[i], std::move(got));
      }
      nodus::reply(from, tuple("ok", sum_stats(each)));
    });
  }

  Node* node_ = nullptr;
  KvState* st_ = nullptr;
  std::string me_;
  std::set<std::string> up_;
  std::set<std::string> store_;  // linked nodes that run the store (they sent a RingGossip)
  std::shared_ptr<const Ring> ring_;
  Claimant claimant_;               // staged changes, used while this node is the claimant
  std::uint64_t staged_saved_ = 0;  // claimant_.version() when they were last kept
  std::mt19937 rng_;                // whom the ring gossip goes to; seeded in init
};

}  // namespace

Status check_options(const Options& o) {
  auto bad = [](std::string m) { return Status(ErrorCode::kBadConfig, std::move(m)); };
  if (!valid_partition_count(o.partitions)) {
    return bad("kv.partitions must be a power of two in 1..65536, not " +
               std::to_string(o.partitions));
  }
  if (o.replicas < 1 || o.replicas > 16) return bad("kv.replicas must be in 1..16");
  if (o.write_quorum < 1 || o.write_quorum > o.replicas) {
    return bad("kv.write_quorum must be in 1..kv.replicas (" + std::to_string(o.replicas) + ")");
  }
  if (o.read_quorum < 1 || o.read_quorum > o.replicas) {
    return bad("kv.read_quorum must be in 1..kv.replicas (" + std::to_string(o.replicas) + ")");
  }
  for (const auto& [name, q] : {std::pair{"kv.primary_write_quorum", o.primary_write_quorum},
                                std::pair{"kv.durable_write_quorum", o.durable_write_quorum},
                                std::pair{"kv.primary_read_quorum", o.primary_read_quorum}}) {
    if (q > o.replicas) {
      return bad(std::string(name) + " must be in 0..kv.replicas (" + std::to_string(o.replicas) +
                 "), not " + std::to_string(q));
    }
  }
  if (o.initial_members.size() > Ring::kMaxMembers) {
    return bad("kv.initial_members holds more than " + std::to_string(Ring::kMaxMembers));
  }
  if (o.context_secret.empty()) {
    return bad(
        "kv.context_secret must not be empty: it signs causal contexts (nodusd uses the cluster "
        "cookie)");
  }
  if (o.max_siblings < 1) return bad("kv.max_siblings must be at least 1");
  const std::size_t object = max_object_bytes_for(o);
  if (object < o.max_value_bytes + 1024) {
    return bad("kv.max_object_bytes (" + std::to_string(object) +
               ") must exceed kv.max_value_bytes by at least 1024 (the object's own bytes)");
  }
  if (object * o.replicas > kGetReplyBytes) {
    return bad("kv.max_object_bytes x kv.replicas must be at most " +
               std::to_string(kGetReplyBytes) +
               " bytes: a get's answer merges up to N objects and must fit one message");
  }
  if (o.vnode_queue < 1) return bad("kv.vnode_queue must be at least 1");
  if (o.max_memory != 0 && o.max_memory < (1u << 20)) {
    return bad("kv.max_memory must be 0 (off) or at least 1048576 bytes (1 MiB), not " +
               std::to_string(o.max_memory));
  }
  if (o.watch_queue < 1) return bad("kv.watch_queue must be at least 1");
  if (o.max_watches < 1) return bad("kv.max_watches must be at least 1");
  if (o.sync_interval.count() < 1 || o.sync_interval.count() > 60000) {
    return bad("kv.sync_interval_ms must be in 1..60000");
  }
  if (o.ttl_sweep_interval.count() < 1 || o.ttl_sweep_interval.count() > 3600000) {
    return bad("kv.ttl_sweep_interval_ms must be in 1..3600000");
  }
  if (o.aae_exchange_interval.count() < 10 || o.aae_exchange_interval.count() > 86400000) {
    return bad("kv.aae_exchange_interval_ms must be in 10..86400000");
  }
  if (o.aae_concurrency < 1 || o.aae_concurrency > 64) {
    return bad("kv.aae_concurrency must be in 1..64");
  }
  if (o.aae_repairs_per_second < 1) return bad("kv.aae_repairs_per_second must be at least 1");
  if (o.aae_cpu_percent < 1 || o.aae_cpu_percent > 100) {
    return bad("kv.aae_cpu_percent must be in 1..100");
  }
  if (o.request_timeout.count() < 1 || o.request_timeout > kMaxRequestTimeout) {
    return bad("kv.request_timeout_ms must be in 1.." + std::to_string(kMaxRequestTimeout.count()));
  }
  return Status();
}

Status start(Node& node, Options options) {
  if (!detail::errors_registered()) {
    return Status(ErrorCode::kInternal,
                  "the store's error codes (6000-6999) could not be registered");
  }
  if (Status s = check_options(options); !s.ok()) return s;
  if (state_of(node)) return Status(ErrorCode::kAlreadyStarted, "the store runs on this node");
  if (Status s = register_protocol(); !s.ok()) return s;
  if (!options.data_dir.empty() && !options.engine) {
    auto e = new_rocksdb_engine(options.data_dir, options.partitions, options.sync,
                                options.sync_interval);
    if (!e) return e.error();
    auto opened = std::make_shared<std::unique_ptr<Engine>>(std::move(*e));
    options.engine = [opened](std::uint32_t) { return std::move(*opened); };
  }
  auto owned = std::make_shared<KvState>(node, std::move(options));
  if (owned->options.aae) {
    owned->aae = std::make_shared<AaeState>(owned->options.partitions,
                                            owned->options.aae_cpu_percent, owned->now());
  }
  if (Status s = restore_durable_state(*owned); !s.ok()) return s;
  restore_expiry_index(*owned);
  KvState* st = node.set_service(owned);
  if (st != owned.get()) return Status(ErrorCode::kAlreadyStarted, "the store runs on this node");
  // One supervisor per node (OTP style): a vnode or nodus_kv that crashes is restarted with
  // the state it keeps in KvState (its partition's epochs and hints, the ring).
  std::vector<ChildSpec> children;
  Node* n = &node;
  for (std::uint32_t p = 0; p < st->options.partitions; ++p) {
    ChildSpec c;
    c.id = vnode_name(p);
    c.start = [n, st, p] { return start_vnode(*n, st, p); };
    c.shutdown = std::chrono::milliseconds(1000);
    children.push_back(std::move(c));
  }
  if (Status s = register_query_protocol(); !s.ok()) return s;
  if (Status s = register_transfer_protocol(); !s.ok()) return s;
  ChildSpec transfer;  // ownership hand-off on membership changes: transfer.cpp
  transfer.id = kTransferName;
  transfer.start = [n, st] { return start_transfer_server(*n, st); };
  children.push_back(std::move(transfer));
  if (st->aae) {  // active anti-entropy: aae.cpp
    if (Status s = register_aae_protocol(); !s.ok()) return s;
    ChildSpec aae;
    aae.id = kAaeName;
    aae.start = [n, st] { return start_aae_server(*n, st); };
    children.push_back(std::move(aae));
  }
  if (Status s = register_watch_protocol(); !s.ok()) return s;
  ChildSpec watch;  // watches: watch.cpp
  watch.id = kWatchName;
  watch.start = [n, st] { return start_watch_server(*n, st); };
  children.push_back(std::move(watch));
  ChildSpec query;
  query.id = kQueryName;
  query.start = [n, st] { return start_query_server(*n, st); };
  children.push_back(std::move(query));
  SpawnOptions server_opts;
  server_opts.name = kServerName;
  children.push_back(child<KvServer>(node, kServerName, server_opts, n, st));
  SupervisorFlags flags;
  flags.intensity = static_cast<int>(std::max<std::uint32_t>(10, st->options.partitions));
  flags.period = std::chrono::seconds(10);
  SpawnOptions so;
  so.name = kSupervisorName;
  auto sup = start_supervisor(node, flags, std::move(children), so);
  if (!sup) return Status(ErrorCode::kInternal, "nodus_kv_sup: " + sup.error().to_string());
  // The store lives as long as the node, not as long as whoever called start.
  if (has_self()) unlink(*sup);
  return Status();
}

Status register_merge(Node& node, std::string prefix, MergeFn fn) {
  KvState* st = state_of(node);
  if (!st) return Status(ErrorCode::kNotFound, "the store does not run on this node");
  st->add_merge(std::move(prefix), std::move(fn));
  return Status();
}

std::optional<Ring> ring(Node& node) {
  KvState* st = state_of(node);
  if (!st) return std::nullopt;
  auto v = st->view();
  if (!v || !v->ring) return Ring();
  return *v->ring;
}

std::uint64_t KvState::index_bytes() const {
  std::uint64_t bytes = lru ? lru->memory_bytes() : 0;
  for (const PartitionState& ps : parts) bytes += ps.expiries.memory_bytes();
  if (aae) bytes += aae->index_bytes();
  return bytes;
}

Result<Stats> stats(Node& node) {
  KvState* st = state_of(node);
  if (!st) return Status(ErrorCode::kNotFound, "the store does not run on this node");
  Stats s;
  const EngineStats es = st->engine->stats();
  s.keys = es.keys;
  s.data_bytes = es.data_bytes;
  s.memory_bytes = es.memory_bytes + st->index_bytes();
  s.syncs = es.syncs;
  s.sync_writes = es.writes;
  s.sync_us = es.sync_us;
  s.sync_waits = es.sync_waits;
  const Counters& c = st->counters;
  s.gets = c.gets;
  s.puts = c.puts;
  s.deletes = c.deletes;
  s.hits = c.hits;
  s.misses = c.misses;
  s.errors = c.errors;
  s.overloaded = c.overloaded;
  s.forwarded = c.forwarded;
  s.replica_writes = c.replica_writes;
  s.expired_skipped = c.expired_skipped;
  s.read_repairs = c.read_repairs;
  s.read_repairs_skipped = c.read_repairs_skipped;
  s.hints = c.hints;
  s.handoffs = c.handoffs;
  s.tombstones_reaped = c.tombstones_reaped;
  s.expired = c.expired;
  s.evictions = c.evictions;
  s.live_keys = st->lru ? st->lru->size() : 0;
  s.siblings_max = c.siblings_max;
  s.bad_messages = c.bad_messages;
  s.merge_errors = c.merge_errors;
  if (st->aae) {
    s.aae_exchanges = st->aae->exchanges;
    s.aae_exchanges_failed = st->aae->exchanges_failed;
    s.aae_segments_differing = st->aae->segments_differing;
    s.aae_keys_repaired = st->aae->keys_repaired;
    s.aae_busy_us = st->aae->busy_us;
    s.aae_throttled = st->aae->throttled;
    s.aae_index_bytes = st->aae->index_bytes();  // memory_bytes counts it too
  }
  s.partitions = st->options.partitions;
  s.replicas = st->options.replicas;
  auto v = st->view();
  s.ring_epoch = v && v->ring ? v->ring->epoch() : 0;
  for (std::uint32_t p = 0; p < st->options.partitions; ++p) {
    s.partition_keys.push_back(st->engine->keys(p));
    s.partition_bytes.push_back(st->engine->data_bytes(p));
    s.vnode_queue.push_back(st->queued[p].load(std::memory_order_relaxed));
    s.hints_pending += st->hinted[p].load(std::memory_order_relaxed);
  }
  s.get_latency = st->get_latency.snapshot();
  s.put_latency = st->put_latency.snapshot();
  s.delete_latency = st->delete_latency.snapshot();
  if (st->timing) {
    for (std::size_t i = 0; i < st->stages.size(); ++i) {
      StageTiming t = st->stages[i].snapshot(static_cast<Stage>(i));
      if (t.count) s.stages.push_back(std::move(t));
    }
  }
  return s;
}

}  // namespace nodus::kv
