// nodus_kv: the store's server on each node. It answers client requests (typed KvRequest from
// kv::Client, or terms from any language: docs/protocol.md "The store"), checks them, and routes
// each to the vnode that coordinates it: this node's, when it holds a primary of the key, else
// the first up primary's node (a KvForward, answered from there straight to the caller). It
// also forms the ring from kv.initial_members, gossips it, and tracks which members are up.
#include <algorithm>
#include <random>
#include <set>

#include "nodus/kv/partition.hpp"
#include "nodus/node/gen_server.hpp"
#include "query.hpp"
#include "state.hpp"

namespace nodus::kv {

// -- shared state ------------------------------------------------------------------------------

namespace {

Term u(std::uint64_t v) { return Term(static_cast<std::int64_t>(v)); }

}  // namespace

KvState* state_of(Node& node) { return node.service<KvState>(); }

KvState::KvState(Node& n, Options o)
    : node(n),
      options(std::move(o)),
      signer(options.context_secret),
      clock([this] { return wall_ms(); }) {
  engine =
      options.engine ? options.engine(options.partitions) : new_memory_engine(options.partitions);
  queued = std::make_unique<std::atomic<std::uint32_t>[]>(options.partitions);
  hinted = std::make_unique<std::atomic<std::uint32_t>[]>(options.partitions);
  for (std::uint32_t p = 0; p < options.partitions; ++p) {
    queued[p].store(0);
    hinted[p].store(0);
  }
}

std::uint64_t KvState::wall_ms() const {
  if (!options.clock) return HybridClock::system_ms();
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(options.clock->now().time_since_epoch())
          .count());
}

std::shared_ptr<const MergeFn> KvState::merge_for(std::string_view key) const {
  std::lock_guard lock(merge_mu_);
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
  std::lock_guard lock(merge_mu_);
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
  std::lock_guard lock(repair_mu_);
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
      out.push_back(Target{m, true, m});
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
    out.push_back(Target{o, false, down[next++]});
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

Term reply_term(Op op, KvReply r) {
  const auto code = static_cast<ErrorCode>(r.code);
  if (code == ErrorCode::kOk) {
    if (op == Op::kGet) {
      List values;
      values.reserve(r.values.size());
      for (auto& v : r.values) values.emplace_back(std::move(v));
      return tuple("ok", Term(std::move(values)), Term(std::move(r.context)));
    }
    return tuple("ok", Term(std::move(r.context)));
  }
  switch (code) {
    case ErrorCode::kNoQuorum:
      return tuple("error", tuple("no_quorum", u(r.needed), u(r.got)));
    case ErrorCode::kNotFound:
    case ErrorCode::kTimeout:
    case ErrorCode::kOverloaded:
    case ErrorCode::kUnavailable:
      return tuple("error", atom(error_name(code)));
    default:
      return tuple("error", tuple(atom(error_name(code)),
                                  bin(r.message.empty() ? error_message(code) : r.message)));
  }
}

}  // namespace

void answer(const Origin& origin, KvReply reply) {
  if (origin.term) {
    nodus::reply(origin.from, reply_term(origin.op, std::move(reply)));
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
        register_message<HandoffAck>(), register_message<ReapTombstone>()}) {
    if (!s.ok()) return s;
  }
  return Status();
}

// -- requests ------------------------------------------------------------------------------------

namespace {

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
  if (r.r > o.replicas) return above_n("r", r.r);
  if (r.w > o.replicas) return above_n("w", r.w);
  if (r.pw > o.replicas) return above_n("pw", r.pw);
  if (r.dw > o.replicas) return above_n("dw", r.dw);
  return Status();
}

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
    std::uint32_t* field = name == "r"         ? &r.r
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
                   "expected {get, Key, Opts}, {put, Key, Value, Opts} or {delete, Key, Opts}");
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
  return map({{"epoch", u(r.epoch())},
              {"partitions", u(r.partitions())},
              {"replicas", u(r.replicas())},
              {"members", Term(std::move(members))},
              {"owners", Term(std::move(owners))}});
}

// -- the server --------------------------------------------------------------------------------

class KvServer : public GenServer {
 public:
  Action init(Node* node, KvState* st) {
    node_ = node;
    st_ = st;
    me_ = std::string(node->name().name());
    // Seeded from the node's name and incarnation, not std::random_device: a simulated
    // cluster replays from its seed.
    rng_.seed(static_cast<std::uint32_t>(std::hash<std::string>()(me_) ^ node->creation()));
    monitor_nodes(true);
    for (Atom peer : node->nodes()) up_.insert(std::string(peer.name()));
    const auto& init = st_->options.initial_members;
    if (init.empty() || (init.size() == 1 && init[0] == me_)) {
      adopt(Ring::create(st_->options.partitions, st_->options.replicas, {me_}).value());
    } else {
      publish();
      maybe_form();
      // Ask the nodes already linked for their ring (a restarted member learns it here).
      for (const auto& peer : up_) {
        send(named(kServerName, peer), RingGossip{me_, 0, 0, 0, {}, {}});
      }
    }
    send_after(self(), Term("gossip"), std::chrono::milliseconds(1000));
    return ok();
  }

  Action handle_call(Message& msg, From from) override {
    if (KvRequest* r = msg.get<KvRequest>()) {
      route(std::move(*r), Origin{from, false, static_cast<Op>(r->op)}, false);
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
      if (is_query(t)) {  // keys, explain: query.cpp
        start_query(*node_, st_, t, from);
        return noreply();
      }
      Result<KvRequest> r = parse_term(t);
      if (!r) {
        return reply(
            tuple("error", tuple(atom(error_name(r.error().code())), bin(r.error().message()))));
      }
      const Op op = static_cast<Op>(r->op);
      route(std::move(*r), Origin{from, true, op}, false);
      return noreply();
    }
    return reply(tuple("error", tuple("badarg", bin("not a store request"))));
  }

  Action handle_info(Message& msg) override {
    if (KvForward* f = msg.get<KvForward>()) {
      const Op op = static_cast<Op>(f->request.op);
      route(std::move(f->request),
            Origin{From{f->reply_pid.pid(), f->reply_ref.ref()}, f->term_reply, op}, true);
    } else if (const RingGossip* g = msg.get<RingGossip>()) {
      gossip_in(*g);
    } else if (const NodeUp* nu = msg.get<NodeUp>()) {
      up_.insert(std::string(nu->node.name()));
      publish();
      maybe_form();
      auto v = st_->view();
      if (v->ready()) send_ring(std::string(nu->node.name()));
    } else if (const NodeDown* nd = msg.get<NodeDown>()) {
      up_.erase(std::string(nd->node.name()));
      publish();
    } else if (msg == "gossip") {
      // Anti-entropy for the ring: one random up member a second gets ours.
      auto v = st_->view();
      if (v->ready() && !up_.empty()) {
        auto it = up_.begin();
        std::advance(it, static_cast<long>(rng_() % up_.size()));
        send_ring(*it);
      }
      send_after(self(), Term("gossip"), std::chrono::milliseconds(1000));
    }
    return noreply();
  }

 private:
  void route(KvRequest req, Origin origin, bool forwarded) {
    if (Status s = check_request(req, st_->options); !s.ok()) {
      answer(origin, error_reply(s.code(), s.message()));
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
            relay(std::move(req), origin, view->names[m]);
            return;
          }
          send(named(kServerName, view->names[m].name()),
               KvForward{std::move(req), WireId::of(origin.from.pid), WireId::of(origin.from.ref),
                         origin.term});
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
    st_->queued[p].fetch_add(1, std::memory_order_relaxed);
    send(st_->vnodes[p], CoordRequest{std::move(req), origin});
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
  void relay(KvRequest req, Origin origin, Atom primary) {
    const auto wait = (req.timeout_ms ? std::chrono::milliseconds(req.timeout_ms)
                                      : st_->options.request_timeout) +
                      std::chrono::milliseconds(500);
    spawn(*node_, [req = std::move(req), origin, primary, wait]() mutable {
      auto r = call_as<KvReply>(named(kServerName, primary.name()), std::move(req), wait);
      if (r) {
        answer(origin, std::move(*r));
      } else if (r.error().is_atom("timeout")) {
        answer(origin, error_reply(ErrorCode::kTimeout));
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
    publish();
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
      if (m != me_) send_ring(m);
    }
  }

  void send_ring(const std::string& to) {
    if (!ring_) return;
    send(named(kServerName, to), RingGossip{me_, ring_->epoch(), ring_->partitions(),
                                            ring_->replicas(), ring_->members(), ring_->owners()});
  }

  void gossip_in(const RingGossip& g) {
    if (g.epoch == 0) {  // a request for our ring
      send_ring(g.from);
      return;
    }
    if (g.partitions != st_->options.partitions || g.replicas != st_->options.replicas) {
      return;  // another cluster's shape: not ours to adopt (logged by nodusd later)
    }
    Result<Ring> r = Ring::from_parts(g.epoch, g.partitions, g.replicas, g.members, g.owners);
    if (!r) return;
    if (!ring_ || r->epoch() > ring_->epoch()) {
      adopt(std::move(*r));
    } else if (r->epoch() < ring_->epoch()) {
      send_ring(g.from);
    }
  }

  Term stats_term() {
    Result<Stats> s = stats(*node_);
    const Stats& x = *s;
    List parts;
    for (std::size_t p = 0; p < x.partition_keys.size(); ++p) {
      parts.push_back(map({{"partition", u(p)}, {"keys", u(x.partition_keys[p])}}));
    }
    return map({{"keys", u(x.keys)},
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
                {"siblings_max", u(x.siblings_max)},
                {"ring_epoch", u(x.ring_epoch)},
                {"partitions", Term(std::move(parts))}});
  }

  Node* node_ = nullptr;
  KvState* st_ = nullptr;
  std::string me_;
  std::set<std::string> up_;
  std::shared_ptr<const Ring> ring_;
  std::mt19937 rng_;  // whom the ring gossip goes to; seeded in init
};

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
  if (o.primary_write_quorum > o.replicas || o.durable_write_quorum > o.replicas) {
    return bad("kv.primary_write_quorum and kv.durable_write_quorum must be at most kv.replicas");
  }
  if (o.initial_members.size() > Ring::kMaxMembers) {
    return bad("kv.initial_members holds more than " + std::to_string(Ring::kMaxMembers));
  }
  if (o.max_siblings < 1) return bad("kv.max_siblings must be at least 1");
  if (o.vnode_queue < 1) return bad("kv.vnode_queue must be at least 1");
  return Status();
}

}  // namespace

Status start(Node& node, Options options) {
  if (!detail::errors_registered()) {
    return Status(ErrorCode::kInternal,
                  "the store's error codes (6000-6999) could not be registered");
  }
  if (Status s = check_options(options); !s.ok()) return s;
  if (state_of(node)) return Status(ErrorCode::kAlreadyStarted, "the store runs on this node");
  if (Status s = register_protocol(); !s.ok()) return s;
  auto owned = std::make_shared<KvState>(node, std::move(options));
  KvState* st = node.set_service(owned);
  if (st != owned.get()) return Status(ErrorCode::kAlreadyStarted, "the store runs on this node");
  st->vnodes.resize(st->options.partitions);
  for (std::uint32_t p = 0; p < st->options.partitions; ++p) {
    auto pid = start_vnode(node, st, p);
    if (!pid)
      return Status(ErrorCode::kInternal,
                    "vnode " + std::to_string(p) + ": " + pid.error().to_string());
    st->vnodes[p] = *pid;
  }
  if (Status s = start_query_server(node, st); !s.ok()) return s;
  SpawnOptions so;
  so.name = kServerName;
  auto server = nodus::start<KvServer>(node, so, &node, st);
  if (!server) return Status(ErrorCode::kInternal, "nodus_kv: " + server.error().to_string());
  st->server = *server;
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

Result<Stats> stats(Node& node) {
  KvState* st = state_of(node);
  if (!st) return Status(ErrorCode::kNotFound, "the store does not run on this node");
  Stats s;
  const EngineStats es = st->engine->stats();
  s.keys = es.keys;
  s.data_bytes = es.data_bytes;
  s.memory_bytes = es.memory_bytes;
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
  s.siblings_max = c.siblings_max;
  s.partitions = st->options.partitions;
  s.replicas = st->options.replicas;
  auto v = st->view();
  s.ring_epoch = v && v->ring ? v->ring->epoch() : 0;
  for (std::uint32_t p = 0; p < st->options.partitions; ++p) {
    s.partition_keys.push_back(st->engine->keys(p));
    s.vnode_queue.push_back(st->queued[p].load(std::memory_order_relaxed));
    s.hints_pending += st->hinted[p].load(std::memory_order_relaxed);
  }
  s.get_latency = st->get_latency.snapshot();
  s.put_latency = st->put_latency.snapshot();
  s.delete_latency = st->delete_latency.snapshot();
  return s;
}

}  // namespace nodus::kv
