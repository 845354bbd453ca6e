// kv::Client's compare-and-set and transaction() (a KvTxn to nodus_kv, which runs it on the
// partition's first up primary: txn.hpp), and nodus_kv's {multi_get | multi_put, ...} requests
// (through a Client). The batches themselves are in client.cpp.
#include <algorithm>
#include <optional>

#include "nodus/kv/client.hpp"
#include "nodus/kv/partition.hpp"
#include "nodus/node/gen_server.hpp"
#include "state.hpp"
#include "txn.hpp"

namespace nodus::kv {

namespace {

constexpr auto kMargin = std::chrono::milliseconds(500);

Dest store_of(Node& node, const std::string& via) {
  return via.empty() ? Dest(node.whereis(kServerName)) : named(kServerName, via);
}

std::chrono::milliseconds wait_for(Node& node, const std::string& via,
                                   std::chrono::milliseconds timeout) {
  if (timeout.count()) return timeout;
  KvState* st = via.empty() ? state_of(node) : nullptr;
  return st ? st->options.request_timeout : kMaxRequestTimeout;
}

// A failed call as a Status: its reason's head names the code when it is one.
Status status_of_reason(const Reason& reason) {
  const Term& t = reason.term();
  const Term& head = t.is_tuple() && t.size() > 0 ? t[0] : t;
  if (head.is_atom()) {
    if (auto code = error_from_name(head.as_atom().name())) {
      return Status(*code, reason.to_string());
    }
  }
  return Status(ErrorCode::kExited, reason.to_string());
}

Status status_of(const TxnReply& r) {
  const auto code = static_cast<ErrorCode>(r.code);
  if (code == ErrorCode::kNoQuorum) {
    return Status(
        code, r.quorum + ": needed " + std::to_string(r.needed) + ", got " + std::to_string(r.got));
  }
  return Status(code, r.message);
}

TxnKey* first_key(TxnReply& r) { return r.keys.empty() ? nullptr : &r.keys[0]; }

}  // namespace

namespace {

Result<TxnReply> run_txn(Node& node, const std::string& via, KvTxn t,
                         std::chrono::milliseconds timeout) {
  const Dest to = store_of(node, via);
  if (via.empty() && !to.pid().valid()) {
    return Status(ErrorCode::kNoProc, "the store does not run on this node");
  }
  auto r = call_as<TxnReply>(to, std::move(t), wait_for(node, via, timeout) + kMargin);
  if (!r) return status_of_reason(r.error());
  return std::move(*r);
}

}  // namespace

Result<std::string> Client::cas(std::string_view key, std::uint8_t write, std::string_view value,
                                const RequestOptions& opts, GetResult* current) const {
  if (write == kTxnDelete && opts.ttl.count() != 0) {
    return Status(ErrorCode::kBadArg, "ttl is an option of put only");
  }
  KvTxn t;
  TxnOp op;
  op.key.assign(key);
  op.write = write;
  op.value.assign(value);
  op.cond = opts.if_version->empty() ? kCondAbsent : kCondVersion;
  op.if_version = *opts.if_version;
  if (write == kTxnPut) op.ttl_ms = static_cast<std::uint64_t>(opts.ttl.count());  // ttl.hpp
  t.ops.push_back(std::move(op));
  t.w = opts.w;
  t.pw = opts.pw;
  t.dw = opts.dw;
  t.timeout_ms = static_cast<std::uint32_t>(opts.timeout.count());
  auto r = run_txn(*node_, via_, std::move(t), opts.timeout);
  if (!r) return r.error();
  TxnKey* k = first_key(*r);
  if (r->code != 0) {
    if (r->code == static_cast<std::uint16_t>(kVersionMismatch) && current && k) {
      current->values.assign(k->values.begin(), k->values.end());
      current->context = std::move(k->context);
    }
    return status_of(*r);
  }
  if (!k) return Status(ErrorCode::kProtocol, "a compare-and-set answered without its key");
  return std::move(k->context);
}

Result<TxnResult> Client::transaction(const std::vector<std::string>& keys, const TxnFn& fun,
                                      const TxnOptions& opts) const {
  if (keys.empty()) return Status(ErrorCode::kBadArg, "a transaction names no key");
  if (opts.max_attempts < 1) return Status(ErrorCode::kBadArg, "max_attempts must be >= 1");
  KvTxn read;
  for (const auto& k : keys) read.ops.push_back(TxnOp{k, kTxnNone, kCondNone, {}, {}});
  read.timeout_ms = static_cast<std::uint32_t>(opts.timeout.count());
  // The first snapshot: a read at the first primary (a mismatch then brings the next).
  auto r = run_txn(*node_, via_, read, opts.timeout);
  if (!r) return r.error();
  if (r->code != 0) return status_of(*r);
  for (std::uint32_t attempt = 1;; ++attempt) {
    if (r->keys.size() != keys.size()) {
      return Status(ErrorCode::kProtocol, "a transaction answered for another number of keys");
    }
    TxnResult out;
    out.attempts = attempt;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      out.values[keys[i]].assign(r->keys[i].values.begin(), r->keys[i].values.end());
    }
    std::optional<TxnWrites> writes = fun(out.values);
    if (!writes) return out;  // aborted: nothing written
    KvTxn commit;
    commit.w = opts.w;
    commit.pw = opts.pw;
    commit.dw = opts.dw;
    commit.timeout_ms = read.timeout_ms;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      TxnOp op{keys[i], kTxnNone, kCondNone, {}, {}};
      // Each key as it was read: its context, or absent when it had none.
      if (r->keys[i].context.empty()) {
        op.cond = kCondAbsent;
      } else {
        op.cond = kCondVersion;
        op.if_version = r->keys[i].context;
      }
      if (auto w = writes->find(keys[i]); w != writes->end()) {
        op.write = w->second ? kTxnPut : kTxnDelete;
        if (w->second) op.value = *w->second;
      }
      commit.ops.push_back(std::move(op));
    }
    for (const auto& [k, v] : *writes) {
      if (std::find(keys.begin(), keys.end(), k) == keys.end()) {
        return Status(ErrorCode::kBadArg, "the transaction's function wrote a key it did not name");
      }
    }
    r = run_txn(*node_, via_, std::move(commit), opts.timeout);
    if (!r) return r.error();
    if (r->code == 0) {
      out.committed = true;
      for (std::size_t i = 0; i < keys.size() && i < r->keys.size(); ++i) {
        out.context[keys[i]] = std::move(r->keys[i].context);
      }
      return out;
    }
    if (r->code != static_cast<std::uint16_t>(kVersionMismatch)) return status_of(*r);
    if (attempt >= opts.max_attempts) {
      return Status(kVersionMismatch, "the keys changed during each of " + std::to_string(attempt) +
                                          " attempts: " + r->message);
    }
    // The mismatch carries every key's state now: the next attempt runs on it.
  }
}

}  // namespace nodus::kv

namespace nodus::kv {

bool is_multi_request(const Term& t) {
  return t.is_tuple() && (t.size() == 2 || t.size() == 3) &&
         (t[0].is_atom("multi_get") || t[0].is_atom("multi_put"));
}

namespace {

// A multi request's options: r, pr, w, pw, dw, timeout, and for multi_put overwrite.
Status multi_opts(const Term& opts, bool get, RequestOptions& o) {
  if (opts.is_list() && opts.as_list().empty()) return Status();
  if (!opts.is_map()) return Status(ErrorCode::kBadArg, "options must be a map");
  for (const auto& [k, v] : opts.as_map()) {
    const std::string_view name = k.is_atom() ? k.as_atom().name() : "";
    if (name == "overwrite" && !get) {
      if (!v.is_atom("true") && !v.is_atom("false")) {
        return Status(ErrorCode::kBadArg, "option overwrite must be true or false");
      }
      o.overwrite = v.is_atom("true");
      continue;
    }
    std::uint32_t* field = name == "r"    ? &o.r
                           : name == "pr" ? &o.pr
                           : name == "w"  ? &o.w
                           : name == "pw" ? &o.pw
                           : name == "dw" ? &o.dw
                                          : nullptr;
    if (!field && name != "timeout") {
      return Status(ErrorCode::kBadArg, "unknown option " + k.to_string() +
                                            (get ? " (r, pr, w, pw, dw, timeout)"
                                                 : " (r, pr, w, pw, dw, timeout, overwrite)"));
    }
    if (!v.is_int() || v.as_int() < 1 || v.as_int() > kMaxRequestTimeout.count()) {
      return Status(ErrorCode::kBadArg, "option " + std::string(name) + " must be an integer >= 1");
    }
    if (field) {
      *field = static_cast<std::uint32_t>(v.as_int());
    } else {
      o.timeout = std::chrono::milliseconds(v.as_int());
    }
  }
  return Status();
}

Term error_of(const Status& s) {
  if (s.code() == ErrorCode::kNotFound) return tuple("error", "not_found");
  return tuple("error", tuple(atom(error_name(s.code())), bin(s.message())));
}

}  // namespace

void start_multi(Node& node, const Term& t, From from) {
  const bool get = t[0].is_atom("multi_get");
  RequestOptions o;
  Status bad;
  if (t.size() == 3) bad = multi_opts(t[2], get, o);
  std::vector<std::string> keys;
  std::vector<std::pair<std::string, std::string>> kvs;
  if (bad.ok() && !t[1].is_list()) bad = Status(ErrorCode::kBadArg, "the keys are a list");
  if (bad.ok()) {
    for (const Term& e : t[1].as_list()) {
      if (get && e.is_bin()) {
        keys.push_back(e.as_bin());
      } else if (!get && e.is_tuple() && e.size() == 2 && e[0].is_bin() && e[1].is_bin()) {
        kvs.emplace_back(e[0].as_bin(), e[1].as_bin());
      } else {
        bad = Status(ErrorCode::kBadArg, get ? "multi_get takes a list of binary keys"
                                             : "multi_put takes a list of {Key, Value} binaries");
        break;
      }
    }
  }
  if (bad.ok() && keys.size() + kvs.size() > Client::kMaxMultiKeys) {
    bad = Status(ErrorCode::kBadArg,
                 "more than " + std::to_string(Client::kMaxMultiKeys) + " keys in one request");
  }
  if (!bad.ok()) {
    nodus::reply(from, tuple("error", tuple(atom(error_name(bad.code())), bin(bad.message()))));
    return;
  }
  spawn(node, [&node, get, keys = std::move(keys), kvs = std::move(kvs), o, from] {
    Client c(node);
    List out;
    if (get) {
      for (auto& r : c.multi_get(keys, o)) {
        if (!r) {
          out.push_back(error_of(r.error()));
          continue;
        }
        List values;
        for (auto& v : r->values) values.push_back(Term(std::move(v)));
        out.push_back(tuple("ok", Term(std::move(values)), Term(std::move(r->context))));
      }
    } else {
      for (auto& r : c.multi_put(kvs, o)) {
        out.push_back(r ? tuple("ok", Term(std::move(*r))) : error_of(r.error()));
      }
    }
    nodus::reply(from, tuple("ok", Term(std::move(out))));
  });
}

}  // namespace nodus::kv
