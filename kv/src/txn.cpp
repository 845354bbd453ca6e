// Transactions and compare-and-set, nodus_kv's side: checking, routing to the partition's first
// up primary, the term form, and the answers. The vnode's side (check and write in one step,
// replication as one message) is in vnode.cpp (coordinate_txn, replica_txn).
#include "txn.hpp"

#include <algorithm>
#include <set>

#include "nodus/kv/errors.hpp"
#include "nodus/kv/partition.hpp"
#include "nodus/node/gen_server.hpp"
#include "query.hpp"
#include "state.hpp"
#include "ttl.hpp"

namespace nodus::kv {

Status register_txn_protocol() {
  for (Status s :
       {register_message<KvTxn>(), register_message<TxnReply>(), register_message<ReplicaTxn>()}) {
    if (!s.ok()) return s;
  }
  return Status();
}

TxnReply txn_error(ErrorCode code, std::string message) {
  TxnReply r;
  r.code = static_cast<std::uint16_t>(code);
  r.message = std::move(message);
  return r;
}

Result<std::uint32_t> check_txn(const KvTxn& t, const KvState& st, std::uint32_t partitions) {
  const Options& o = st.options;
  if (t.ops.empty()) return Status(ErrorCode::kBadArg, "a transaction names no key");
  if (t.ops.size() > kMaxTxnKeys) {
    return Status(ErrorCode::kBadArg, "a transaction names " + std::to_string(t.ops.size()) +
                                          " keys, the limit is " + std::to_string(kMaxTxnKeys));
  }
  std::set<std::string_view> seen;
  std::size_t total_bytes = 0;
  std::uint32_t p = 0;
  for (std::size_t i = 0; i < t.ops.size(); ++i) {
    const TxnOp& op = t.ops[i];
    if (op.key.empty()) return Status(ErrorCode::kBadArg, "empty key");
    if (op.key.size() > kMaxKeyBytes) {
      return Status(ErrorCode::kValueTooLarge, "key is " + std::to_string(op.key.size()) +
                                                   " bytes, the limit is " +
                                                   std::to_string(kMaxKeyBytes));
    }
    if (op.write > kTxnDelete) return Status(ErrorCode::kBadArg, "unknown write");
    if (op.cond > kCondAbsent) return Status(ErrorCode::kBadArg, "unknown condition");
    if ((op.ttl_ms || op.keep_ttl) && op.write != kTxnPut) {
      return Status(ErrorCode::kBadArg, "ttl and keep_ttl are options of a put only");
    }
    if (op.ttl_ms && op.keep_ttl) {
      return Status(ErrorCode::kBadArg, "a put takes ttl or keep_ttl, not both");
    }
    if (op.ttl_ms > kMaxTtlMs) {
      return Status(ErrorCode::kBadArg, "ttl = " + std::to_string(op.ttl_ms) +
                                            " ms is above the limit of " +
                                            std::to_string(kMaxTtlMs) + " ms");
    }
    if (op.value.size() > o.max_value_bytes) {
      return Status(ErrorCode::kValueTooLarge, "value is " + std::to_string(op.value.size()) +
                                                   " bytes, the limit (kv.max_value_bytes) is " +
                                                   std::to_string(o.max_value_bytes));
    }
    if (!seen.insert(op.key).second) {
      return Status(ErrorCode::kBadArg, "a transaction names a key twice");
    }
    total_bytes += op.value.size();
    if (total_bytes > kGetReplyBytes) {
      return Status(ErrorCode::kValueTooLarge, "the transaction's values are over " +
                                                   std::to_string(kGetReplyBytes) +
                                                   " bytes together; split it");
    }
    const std::uint32_t kp = partition_of(op.key, partitions);
    if (i == 0) {
      p = kp;
    } else if (kp != p) {
      return Status(ErrorCode::kCrossPartition,
                    "the keys are in partitions " + std::to_string(p) + " and " +
                        std::to_string(kp) +
                        ": a transaction's keys must share a hash tag ({tag} in the key)");
    }
  }
  if (t.timeout_ms > kMaxRequestTimeout.count()) {
    return Status(ErrorCode::kBadArg, "timeout = " + std::to_string(t.timeout_ms) +
                                          " ms is above the limit of " +
                                          std::to_string(kMaxRequestTimeout.count()) + " ms");
  }
  for (auto [name, v] : {std::pair{"w", t.w}, {"pw", t.pw}, {"dw", t.dw}}) {
    if (v > o.replicas) {
      return Status(ErrorCode::kBadArg, std::string(name) + " = " + std::to_string(v) +
                                            " is above N = " + std::to_string(o.replicas));
    }
  }
  return p;
}

// -- the check at the first primary ------------------------------------------------------------

TxnKey txn_key_state(const KvState& st, const std::string& key, const Object& o) {
  TxnKey k;
  const std::uint64_t now = st.wall_ms();
  for (const Sibling& s : o.values()) {
    if (is_live(s, now)) k.values.push_back(s.value);  // not deleted, not expired
  }
  k.context = o.empty() ? std::string() : st.signer.encode(key, o.join());
  return k;
}

std::variant<TxnPlan, TxnReply> plan_txn(
    KvState& st, PartitionState& ps, const KvTxn& t, std::uint32_t p, std::uint32_t partitions,
    const std::function<Result<Object>(const std::string&)>& read,
    const std::function<void(Object&)>& resolve) {
  // Every key read and checked first: nothing is written unless all conditions hold.
  TxnPlan plan;
  plan.objects.reserve(t.ops.size());
  bool writes = false;
  for (const TxnOp& op : t.ops) {
    if (partition_of(op.key, partitions) != p) {
      return txn_error(ErrorCode::kCrossPartition, "a key is of another partition");
    }
    Result<Object> local = read(op.key);
    if (!local) return txn_error(ErrorCode::kInternal, local.error().to_string());
    for (const auto& e : local->entries()) {
      for (const auto& v : e.values) st.clock.observe(v.timestamp);
    }
    plan.objects.push_back(std::move(*local));
    writes = writes || op.write != kTxnNone;
  }
  auto states = [&](TxnReply r) {
    for (std::size_t j = 0; j < t.ops.size(); ++j) {
      r.keys.push_back(txn_key_state(st, t.ops[j].key, plan.objects[j]));
    }
    return r;
  };
  for (std::size_t i = 0; i < t.ops.size(); ++i) {
    const TxnOp& op = t.ops[i];
    bool holds = true;
    if (op.cond == kCondAbsent) {
      holds = reads_absent(plan.objects[i], st.wall_ms());  // deleted or expired counts as absent
    } else if (op.cond == kCondVersion) {
      Result<VersionVector> want = st.signer.decode(op.key, op.if_version);
      if (!want) return txn_error(want.error().code(), want.error().message());
      holds = *want == plan.objects[i].join();
    }
    if (!holds) {
      return states(txn_error(kv::kVersionMismatch,
                              "key " + op.key.substr(0, 200) +
                                  (op.cond == kCondAbsent ? " exists" : " has another version")));
    }
  }
  if (!writes) return states(TxnReply{});  // a read (or checks only): nothing to replicate
  for (std::size_t i = 0; i < t.ops.size(); ++i) {
    const TxnOp& op = t.ops[i];
    if (op.write == kTxnNone) continue;
    const bool del = op.write == kTxnDelete;
    Object& o = plan.objects[i];
    const VersionVector seen = o.join();
    const Actor actor = ps.actors.for_write(op.key, o, seen);
    // The new value's expiry (ttl.hpp), by this primary's clock: its own ttl, or with keep_ttl
    // that of the live values it supersedes.
    std::uint64_t expiry = 0;
    const std::uint64_t now_ms = st.wall_ms();
    if (op.ttl_ms) {
      expiry = now_ms + op.ttl_ms;
    } else if (op.keep_ttl) {
      const auto left = ttl_left_ms(o, now_ms);
      if (left && *left > 0) expiry = now_ms + *left;
    }
    o = o.update(
        seen,
        Sibling{del ? std::string() : std::string(op.value), st.clock.now(), del, del ? 0 : expiry},
        actor);
    resolve(o);
    std::string bytes;
    encode_object(o, bytes);
    if (bytes.size() > st.max_object_bytes) {
      return txn_error(ErrorCode::kValueTooLarge,
                       "the object of key " + op.key.substr(0, 200) + " would be " +
                           std::to_string(bytes.size()) +
                           " bytes, the limit (kv.max_object_bytes) is " +
                           std::to_string(st.max_object_bytes));
    }
    plan.written.push_back(i);
    plan.encoded.push_back(std::move(bytes));
    plan.seen.push_back(seen);
  }
  std::size_t total = 0;  // one ReplicaTxn carries them all: it must fit a frame
  for (const std::string& e : plan.encoded) total += e.size();
  if (total > kGetReplyBytes) {
    return txn_error(ErrorCode::kValueTooLarge,
                     "the transaction's objects would be " + std::to_string(total) +
                         " bytes together, the limit is " + std::to_string(kGetReplyBytes));
  }
  return plan;
}

// -- routing ---------------------------------------------------------------------------------

void route_txn(KvState& st, KvTxn t, From from, TxnShape shape) {
  auto fail = [&](ErrorCode code, std::string message) {
    st.counters.errors.fetch_add(1, std::memory_order_relaxed);
    answer_txn(from, shape, txn_error(code, std::move(message)));
  };
  std::shared_ptr<const View> view = st.view();
  if (!view || !view->ready()) return fail(ErrorCode::kUnavailable, "the ring has not formed yet");
  Result<std::uint32_t> part = check_txn(t, st, view->ring->partitions());
  if (!part) return fail(part.error().code(), part.error().message());
  const std::uint32_t p = *part;
  const auto now = st.now();
  const auto deadline = t.forwarded ? st.local_deadline(t.deadline_ms)
                                    : now + (t.timeout_ms ? std::chrono::milliseconds(t.timeout_ms)
                                                          : st.options.request_timeout);
  if (deadline <= now) {
    st.counters.expired_skipped.fetch_add(1, std::memory_order_relaxed);
    return fail(ErrorCode::kTimeout, "");
  }
  const auto prim = view->primaries(p, st.options.replicas);
  int first = -1;
  for (std::uint32_t m : prim) {
    if (view->up[m] || static_cast<int>(m) == view->self) {
      first = static_cast<int>(m);
      break;
    }
  }
  // Run only where this node sees itself as the first up primary. A transaction forwarded here
  // by a node that saw this one so while this node sees an earlier primary up (the sender saw
  // that one down) goes on to it: run here, it would race with the transactions that primary
  // coordinates, and two coordinators could both accept the same if_version. Each such hop is
  // to an earlier primary of the preference list, so a ring allows N - 1 of them; more means
  // the nodes disagree on the ring itself.
  if (first < 0 || first != view->self) {
    if (first < 0) {
      return fail(ErrorCode::kUnavailable,
                  "no primary of partition " + std::to_string(p) +
                      " is up here: transactions and compare-and-set run on the first primary");
    }
    if (t.forwarded && t.hops + 1u >= st.options.replicas) {
      return fail(ErrorCode::kUnavailable,
                  "the nodes disagree on the first up primary of partition " + std::to_string(p) +
                      " (sent on " + std::to_string(t.hops) + " times): retry");
    }
    // A process here asks the first primary and relays its answer (the caller may be a hidden
    // node the primary cannot reach).
    st.counters.forwarded.fetch_add(1, std::memory_order_relaxed);
    t.hops = t.forwarded ? static_cast<std::uint8_t>(t.hops + 1) : 0;
    t.forwarded = true;
    t.deadline_ms = st.wall_deadline(deadline);
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) +
                      std::chrono::milliseconds(500);
    const Dest to = named(kServerName, view->names[static_cast<std::size_t>(first)].name());
    spawn(st.node, [t = std::move(t), to, from, shape, wait]() mutable {
      auto r = call_as<TxnReply>(to, std::move(t), wait);
      if (r) {
        answer_txn(from, shape, std::move(*r));
      } else {
        const Term& why = r.error().term();
        const Term& head = why.is_tuple() && why.size() > 0 ? why[0] : why;
        auto code = head.is_atom() ? error_from_name(head.as_atom().name()) : std::nullopt;
        answer_txn(from, shape,
                   txn_error(code.value_or(ErrorCode::kTimeout), r.error().to_string()));
      }
    });
    return;
  }
  if (st.queued[p].load(std::memory_order_relaxed) >= st.options.vnode_queue) {
    st.counters.overloaded.fetch_add(1, std::memory_order_relaxed);
    return fail(ErrorCode::kOverloaded, "");
  }
  st.queued[p].fetch_add(1, std::memory_order_seq_cst);  // before the pid: see queued
  const Pid vnode = st.vnode(p);
  if (!st.node.is_process_alive(vnode)) {
    st.unqueue(p);
    return fail(ErrorCode::kUnavailable,
                "the vnode of partition " + std::to_string(p) + " is restarting");
  }
  send(vnode, TxnCoord{std::move(t), from, shape, deadline});
}

// -- answers -----------------------------------------------------------------------------------

namespace {

Term values_term(std::vector<Bin>& values) {
  List out;
  out.reserve(values.size());
  for (auto& v : values) out.emplace_back(std::move(v));
  return Term(std::move(out));
}

Term u(std::uint64_t v) { return Term(static_cast<std::int64_t>(v)); }

}  // namespace

void answer_txn(const From& from, TxnShape shape, TxnReply r) {
  if (shape == TxnShape::kTyped) {
    nodus::reply(from, std::move(r));
    return;
  }
  const auto code = static_cast<ErrorCode>(r.code);
  Term out;
  if (code == ErrorCode::kOk) {
    if (shape == TxnShape::kWriteTerm) {
      out = tuple("ok", Term(r.keys.empty() ? std::string() : std::move(r.keys[0].context)));
    } else {
      List keys;
      for (auto& k : r.keys) {
        keys.push_back(tuple(values_term(k.values), Term(std::move(k.context))));
      }
      out = tuple("ok", Term(std::move(keys)));
    }
  } else if (code == ErrorCode::kNoQuorum) {
    out = tuple("error", tuple("no_quorum", atom(r.quorum), u(r.needed), u(r.got)));
  } else if (r.code == static_cast<std::uint16_t>(kv::kVersionMismatch)) {
    // {error, {version_mismatch, Message, [{Values, Context}...]}}: every key's state now.
    List keys;
    for (auto& k : r.keys) keys.push_back(tuple(values_term(k.values), Term(std::move(k.context))));
    out =
        tuple("error", tuple("version_mismatch", bin(std::move(r.message)), Term(std::move(keys))));
  } else {
    out = error_term(code, r.message);
  }
  nodus::reply(from, std::move(out));
}

// -- the term form -----------------------------------------------------------------------------

namespace {

// An if_version: a causal context (binary), or `absent`.
Status condition_of(const Term& v, TxnOp& op) {
  if (v.is_atom("absent")) {
    op.cond = kCondAbsent;
    return Status();
  }
  if (v.is_bin()) {
    op.cond = kCondVersion;
    op.if_version = v.as_bin();
    return Status();
  }
  return Status(ErrorCode::kBadArg,
                "if_version must be a causal context (a binary) or the atom absent");
}

// A put's ttl (ms, 1..kMaxTtlMs) or keep_ttl (true | false), into `op`.
Status put_option(std::string_view name, const Term& v, TxnOp& op) {
  if (name == "ttl") {
    if (!v.is_int() || v.as_int() < 1 || static_cast<std::uint64_t>(v.as_int()) > kMaxTtlMs) {
      return Status(ErrorCode::kBadArg, "option ttl must be an integer from 1 to " +
                                            std::to_string(kMaxTtlMs) + " (ms)");
    }
    op.ttl_ms = static_cast<std::uint64_t>(v.as_int());
    return Status();
  }
  if (!v.is_atom("true") && !v.is_atom("false")) {
    return Status(ErrorCode::kBadArg, "option keep_ttl must be true or false");
  }
  op.keep_ttl = v.is_atom("true");
  return Status();
}

// The options of a transaction (or of a put/delete with if_version, whose condition goes to
// `op`): w, pw, dw, timeout, if_version, and for a put ttl and keep_ttl.
Status txn_opts(const Term& opts, KvTxn& t, TxnOp* op) {
  if (opts.is_list() && opts.as_list().empty()) return Status();
  if (!opts.is_map()) return Status(ErrorCode::kBadArg, "options must be a map");
  for (const auto& [k, v] : opts.as_map()) {
    if (!k.is_atom()) return Status(ErrorCode::kBadArg, "option names are atoms");
    const std::string_view name = k.as_atom().name();
    if (name == "if_version" && op) {
      if (Status s = condition_of(v, *op); !s.ok()) return s;
      continue;
    }
    if (op && op->write == kTxnPut && (name == "ttl" || name == "keep_ttl")) {
      if (Status s = put_option(name, v, *op); !s.ok()) return s;
      continue;
    }
    std::uint32_t* field = name == "w"         ? &t.w
                           : name == "pw"      ? &t.pw
                           : name == "dw"      ? &t.dw
                           : name == "timeout" ? &t.timeout_ms
                                               : nullptr;
    if (!field) {
      return Status(ErrorCode::kBadArg,
                    "unknown option " + std::string(name) +
                        (op ? " (with if_version: w, pw, dw, timeout, and for a put ttl, keep_ttl)"
                            : " (w, pw, dw, timeout)"));
    }
    if (!v.is_int() || v.as_int() < 1 || v.as_int() > 0x7fffffff) {
      return Status(ErrorCode::kBadArg, "option " + std::string(name) + " must be an integer >= 1");
    }
    *field = static_cast<std::uint32_t>(v.as_int());
  }
  return Status();
}

bool names_if_version(const Term& opts) {
  if (!opts.is_map()) return false;
  for (const auto& [k, v] : opts.as_map()) {
    if (k.is_atom("if_version")) return true;
  }
  return false;
}

Result<TxnOp> op_of_term(const Term& e) {
  const Status bad(ErrorCode::kBadArg,
                   "a transaction's operation is {read, Key}, {check, Key, If}, {put, Key, Value}, "
                   "{put, Key, Value, If}, {put, Key, Value, #{if_version, ttl, keep_ttl}}, "
                   "{delete, Key} or {delete, Key, If}; If is a context or absent");
  if (!e.is_tuple() || e.size() < 2 || !e[0].is_atom() || !e[1].is_bin()) return bad;
  TxnOp op;
  op.key = e[1].as_bin();
  const std::string_view kind = e[0].as_atom().name();
  std::size_t if_at = 0;
  if (kind == "read" && e.size() == 2) {
  } else if (kind == "check" && e.size() == 3) {
    if_at = 2;
  } else if (kind == "put" && (e.size() == 3 || e.size() == 4)) {
    if (!e[2].is_bin()) return Status(ErrorCode::kBadArg, "the value must be a binary");
    op.write = kTxnPut;
    op.value = e[2].as_bin();
    if (e.size() == 4) if_at = 3;
  } else if (kind == "delete" && (e.size() == 2 || e.size() == 3)) {
    op.write = kTxnDelete;
    if (e.size() == 3) if_at = 2;
  } else {
    return bad;
  }
  if (if_at && op.write == kTxnPut && e[if_at].is_map()) {  // #{if_version, ttl, keep_ttl}
    for (const auto& [k, v] : e[if_at].as_map()) {
      const std::string_view name = k.is_atom() ? k.as_atom().name() : "";
      Status s = name == "if_version" ? condition_of(v, op)
                 : name == "ttl" || name == "keep_ttl"
                     ? put_option(name, v, op)
                     : Status(ErrorCode::kBadArg, "unknown option " + k.to_string() +
                                                      " of a put (if_version, ttl, "
                                                      "keep_ttl)");
      if (!s.ok()) return s;
    }
    return op;
  }
  if (if_at) {
    if (Status s = condition_of(e[if_at], op); !s.ok()) return s;
  }
  return op;
}

}  // namespace

std::optional<Result<KvTxn>> txn_of_term(const Term& t, TxnShape* shape) {
  if (!t.is_tuple() || t.size() < 2 || !t[0].is_atom()) return std::nullopt;
  const std::string_view name = t[0].as_atom().name();
  KvTxn txn;
  if (name == "txn" && (t.size() == 2 || t.size() == 3)) {
    *shape = TxnShape::kTxnTerm;
    if (!t[1].is_list()) {
      return Result<KvTxn>(Status(ErrorCode::kBadArg, "a transaction's operations are a list"));
    }
    for (const Term& e : t[1].as_list()) {
      Result<TxnOp> op = op_of_term(e);
      if (!op) return Result<KvTxn>(op.error());
      txn.ops.push_back(std::move(*op));
    }
    if (t.size() == 3) {
      if (Status s = txn_opts(t[2], txn, nullptr); !s.ok()) return Result<KvTxn>(s);
    }
    return Result<KvTxn>(std::move(txn));
  }
  // {put, Key, Value, #{if_version => C}} and {delete, Key, #{if_version => C}}.
  const bool put = name == "put" && t.size() == 4;
  const bool del = name == "delete" && t.size() == 3;
  if (!put && !del) return std::nullopt;
  const Term& opts = t[t.size() - 1];
  if (!names_if_version(opts)) return std::nullopt;
  *shape = TxnShape::kWriteTerm;
  if (!t[1].is_bin()) return Result<KvTxn>(Status(ErrorCode::kBadArg, "the key must be a binary"));
  TxnOp op;
  op.key = t[1].as_bin();
  if (put) {
    if (!t[2].is_bin()) {
      return Result<KvTxn>(Status(ErrorCode::kBadArg, "the value must be a binary"));
    }
    op.write = kTxnPut;
    op.value = t[2].as_bin();
  } else {
    op.write = kTxnDelete;
  }
  if (Status s = txn_opts(opts, txn, &op); !s.ok()) return Result<KvTxn>(s);
  txn.ops.push_back(std::move(op));
  return Result<KvTxn>(std::move(txn));
}

}  // namespace nodus::kv
