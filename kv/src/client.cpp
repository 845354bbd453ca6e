#include "nodus/kv/client.hpp"

#include "kv_protocol.hpp"
#include "nodus/node/gen_server.hpp"
#include "state.hpp"

namespace nodus::kv {

namespace {

// The call waits this much beyond the request's own deadline, so the store's timeout answer
// (which names what was missing) arrives before the call gives up.
constexpr auto kMargin = std::chrono::milliseconds(500);

Status status_of(const KvReply& r) {
  const auto code = static_cast<ErrorCode>(r.code);
  if (code == ErrorCode::kNoQuorum) {
    return Status(
        code, r.quorum + ": needed " + std::to_string(r.needed) + ", got " + std::to_string(r.got));
  }
  return Status(code, r.message);
}

Status status_of(const Reason& reason) {
  const Term& t = reason.term();
  const Term& head = t.is_tuple() && t.size() > 0 ? t[0] : t;
  if (head.is_atom()) {
    if (auto code = error_from_name(head.as_atom().name())) {
      return Status(*code, reason.to_string());
    }
  }
  return Status(ErrorCode::kExited, reason.to_string());
}

}  // namespace

Client::Client(Node& node, std::string via) : node_(&node), via_(std::move(via)) {
  (void)detail::errors_registered();
  (void)register_protocol();
}

namespace {
Result<KvReply> send_request(Node& node, const std::string& via, KvRequest req,
                             std::chrono::milliseconds timeout) {
  std::chrono::milliseconds wait = timeout;
  if (wait.count() == 0) {
    // The request's deadline is then the kv.request_timeout of the node it goes to: known for
    // this node; for another, wait as long as any request may (that store answers by then).
    KvState* st = via.empty() ? state_of(node) : nullptr;
    wait = st ? st->options.request_timeout : kMaxRequestTimeout;
  }
  const Dest to = via.empty() ? Dest(node.whereis(kServerName)) : named(kServerName, via);
  if (via.empty() && !to.pid().valid()) {
    return Status(ErrorCode::kNoProc, "the store does not run on this node");
  }
  auto r = call_as<KvReply>(to, std::move(req), wait + kMargin);
  if (!r) return status_of(r.error());
  return std::move(*r);
}

KvRequest make(Op op, std::string_view key, const RequestOptions& o) {
  KvRequest r;
  r.op = static_cast<std::uint8_t>(op);
  r.key.assign(key);
  r.context = o.context;
  r.r = o.r;
  r.pr = o.pr;
  r.w = o.w;
  r.pw = o.pw;
  r.dw = o.dw;
  r.timeout_ms = static_cast<std::uint32_t>(o.timeout.count());
  return r;
}
}  // namespace

Result<GetResult> Client::get(std::string_view key, const RequestOptions& opts) const {
  auto r = send_request(*node_, via_, make(Op::kGet, key, opts), opts.timeout);
  if (!r) return r.error();
  if (r->code != 0) return status_of(*r);
  GetResult g;
  g.values.reserve(r->values.size());
  for (Bin& v : r->values) g.values.push_back(std::move(v));
  g.context = std::move(r->context);
  return g;
}

Result<std::string> Client::put(std::string_view key, std::string_view value,
                                const RequestOptions& opts) const {
  KvRequest req = make(Op::kPut, key, opts);
  req.value.assign(value);
  auto r = send_request(*node_, via_, std::move(req), opts.timeout);
  if (!r) return r.error();
  if (r->code != 0) return status_of(*r);
  return std::move(r->context);
}

Result<std::string> Client::del(std::string_view key, const RequestOptions& opts) const {
  auto r = send_request(*node_, via_, make(Op::kDelete, key, opts), opts.timeout);
  if (!r) return r.error();
  if (r->code != 0) return status_of(*r);
  return std::move(r->context);
}

namespace {
// A term request to nodus_kv, with the term reply's errors as Status.
Result<Term> term_request(Node& node, const std::string& via, Term request,
                          std::chrono::milliseconds timeout) {
  KvState* st = via.empty() ? state_of(node) : nullptr;
  if (timeout.count() == 0) {
    timeout = st ? st->options.request_timeout : std::chrono::milliseconds(5000);
  }
  const Dest to = via.empty() ? Dest(node.whereis(kServerName)) : named(kServerName, via);
  if (via.empty() && !to.pid().valid()) {
    return Status(ErrorCode::kNoProc, "the store does not run on this node");
  }
  auto r = call(to, std::move(request), timeout + kMargin);
  if (!r) return status_of(r.error());
  const Term& t = *r;
  if (auto ok = t.match({"error", _})) {
    const Term& e = ok[0];
    const Term& head = e.is_tuple() && e.size() > 0 ? e[0] : e;
    auto code = head.is_atom() ? error_from_name(head.as_atom().name()) : std::nullopt;
    std::string message = e.is_tuple() && e.size() > 1 && e[1].is_bin() ? e[1].as_bin() : "";
    return Status(code.value_or(ErrorCode::kProtocol), message);
  }
  return t;
}
}  // namespace

Result<KeysPage> Client::keys(std::string_view pattern, const KeysOptions& opts) const {
  MapEntries o;
  if (!opts.cursor.empty()) o.emplace_back(Term("cursor"), Term(opts.cursor));
  if (opts.limit) o.emplace_back(Term("limit"), Term(static_cast<std::int64_t>(opts.limit)));
  if (opts.timeout.count()) o.emplace_back(Term("timeout"), Term(opts.timeout.count()));
  auto r =
      term_request(*node_, via_, tuple("keys", bin(std::string(pattern)), Term(Map{std::move(o)})),
                   opts.timeout);
  if (!r) return r.error();
  auto m = r->match({"ok", _list, _});
  if (!m) return Status(ErrorCode::kProtocol, "unexpected keys reply " + r->to_string());
  KeysPage page;
  for (const Term& k : m[0].as_list()) {
    if (k.is_bin()) page.keys.push_back(k.as_bin());
  }
  if (m[1].is_bin()) page.cursor = m[1].as_bin();
  return page;
}

Result<Term> Client::explain(std::string_view key, std::chrono::milliseconds timeout) const {
  Term req = timeout.count() ? tuple("explain", bin(std::string(key)),
                                     map({{"timeout", Term(timeout.count())}}))
                             : tuple("explain", bin(std::string(key)));
  auto r = term_request(*node_, via_, std::move(req), timeout);
  if (!r) return r.error();
  auto m = r->match({"ok", _map});
  if (!m) return Status(ErrorCode::kProtocol, "unexpected explain reply " + r->to_string());
  return m[0];
}

}  // namespace nodus::kv
