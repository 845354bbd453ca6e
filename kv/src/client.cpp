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
    return Status(code, "needed " + std::to_string(r.needed) + ", got " + std::to_string(r.got));
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
    KvState* st = via.empty() ? state_of(node) : nullptr;
    wait = st ? st->options.request_timeout : std::chrono::milliseconds(5000);
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
  return GetResult{std::move(r->values), std::move(r->context)};
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

}  // namespace nodus::kv
