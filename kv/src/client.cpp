#include "nodus/kv/client.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>

#include "kv_protocol.hpp"
#include "nodus/kv/partition.hpp"
#include "nodus/node/gen_server.hpp"
#include "state.hpp"
#include "txn.hpp"

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

namespace detail {

// How often a Client asks the node it talks to for its ring again: a ring that moved meanwhile
// costs a hop (the vnode hands the request to nodus_kv), never a wrong answer.
constexpr auto kRingRefresh = std::chrono::seconds(5);
// ... and while it has none (the node had no ring yet, or did not answer).
constexpr auto kRingRetry = std::chrono::milliseconds(200);

struct RouteCache {
  struct Routes {
    std::shared_ptr<const Ring> ring;
    std::vector<bool> here;   // per partition: the node is a primary of it
    std::vector<Dest> vnode;  // per partition: its vnode on the node
  };
  std::mutex mu;
  std::shared_ptr<const Routes> routes;  // null until asked, or when the node had no ring
  std::chrono::steady_clock::time_point asked{};
  std::atomic<bool> asking{false};
};

}  // namespace detail

Client::Client(Node& node, std::string via)
    : node_(&node), via_(std::move(via)), routes_(std::make_shared<detail::RouteCache>()) {
  (void)detail::errors_registered();
  (void)register_protocol();
}

namespace {
Result<Term> term_request(Node& node, const std::string& via, Term request,
                          std::chrono::milliseconds timeout);

// The routes of a ring as the term of a `ring` request (server.cpp's ring_term) describes it,
// for the member `me`; null when the term is not one or `me` is no member.
std::shared_ptr<const detail::RouteCache::Routes> routes_of(const Term& t, std::string_view me) {
  auto m = t.match({"ok", _map});
  if (!m) return nullptr;
  std::uint64_t epoch = 0;
  std::uint32_t partitions = 0, replicas = 0;
  std::vector<std::string> members;
  std::vector<std::string> owner_names;
  for (const auto& [k, v] : m[0].as_map()) {
    if (!k.is_atom()) continue;
    const std::string_view name = k.as_atom().name();
    if (v.is_int() && v.as_int() >= 0) {
      if (name == "epoch") epoch = static_cast<std::uint64_t>(v.as_int());
      if (name == "partitions") partitions = static_cast<std::uint32_t>(v.as_int());
      if (name == "replicas") replicas = static_cast<std::uint32_t>(v.as_int());
    } else if (name == "members" && v.is_list()) {
      for (const Term& e : v.as_list()) {
        if (e.is_tuple() && e.size() == 2 && e[0].is_bin()) members.push_back(e[0].as_bin());
      }
    } else if (name == "owners" && v.is_list()) {
      for (const Term& e : v.as_list()) {
        if (e.is_bin()) owner_names.push_back(e.as_bin());
      }
    }
  }
  std::vector<std::uint16_t> owners;
  owners.reserve(owner_names.size());
  for (const auto& o : owner_names) {
    const auto it = std::find(members.begin(), members.end(), o);
    if (it == members.end()) return nullptr;
    owners.push_back(static_cast<std::uint16_t>(it - members.begin()));
  }
  Result<Ring> ring = Ring::from_parts(epoch, partitions, replicas, members, std::move(owners));
  if (!ring || ring->empty()) return nullptr;
  const int self = ring->member_index(me);
  if (self < 0) return nullptr;
  auto r = std::make_shared<detail::RouteCache::Routes>();
  r->ring = std::make_shared<const Ring>(std::move(*ring));
  const std::string node(me);
  for (std::uint32_t p = 0; p < r->ring->partitions(); ++p) {
    const auto prim = r->ring->preference_list(p, r->ring->replicas());
    r->here.push_back(std::find(prim.begin(), prim.end(), static_cast<std::uint32_t>(self)) !=
                      prim.end());
    r->vnode.push_back(named(vnode_name(p), node));
  }
  return r;
}
}  // namespace

std::optional<Dest> Client::vnode_for(std::string_view key) const {
  if (via_.empty()) {  // this node's store: its own view, its vnodes' pids
    KvState* st = state_of(*node_);
    if (!st) return std::nullopt;
    const auto v = st->view();
    if (!v || !v->ready() || v->self < 0) return std::nullopt;
    const std::uint32_t p = partition_of(key, v->ring->partitions());
    const auto prim = v->primaries(p, st->options.replicas);
    if (std::find(prim.begin(), prim.end(), static_cast<std::uint32_t>(v->self)) == prim.end()) {
      return std::nullopt;
    }
    const Pid pid = st->vnode(p);
    if (!node_->is_process_alive(pid)) return std::nullopt;  // restarting: nodus_kv answers
    return Dest(pid);
  }
  detail::RouteCache& c = *routes_;
  std::shared_ptr<const detail::RouteCache::Routes> routes;
  bool ask = false;
  {
    std::lock_guard lock(c.mu);
    routes = c.routes;
    const auto now = std::chrono::steady_clock::now();
    const auto every = routes ? detail::kRingRefresh : detail::kRingRetry;
    if (now - c.asked >= every && !c.asking.exchange(true)) {
      c.asked = now;
      ask = true;
    }
  }
  if (ask) {  // one caller asks; the others go on with what there is meanwhile
    auto fresh = term_request(*node_, via_, Term("ring"), std::chrono::milliseconds(1000));
    auto r = fresh ? routes_of(*fresh, via_) : nullptr;
    std::lock_guard lock(c.mu);
    if (r || !fresh) c.routes = r;
    routes = c.routes;
    c.asking.store(false);
  }
  if (!routes) return std::nullopt;
  const std::uint32_t p = partition_of(key, routes->ring->partitions());
  if (!routes->here[p]) return std::nullopt;
  return routes->vnode[p];
}

namespace {
Result<KvReply> send_request(Node& node, const std::string& via, std::optional<Dest> vnode,
                             KvRequest req, std::chrono::milliseconds timeout) {
  std::chrono::milliseconds wait = timeout;
  if (wait.count() == 0) {
    // The request's deadline is then the kv.request_timeout of the node it goes to: known for
    // this node; for another, wait as long as any request may (that store answers by then).
    KvState* st = via.empty() ? state_of(node) : nullptr;
    wait = st ? st->options.request_timeout : kMaxRequestTimeout;
  }
  const Dest to = vnode         ? *vnode
                  : via.empty() ? Dest(node.whereis(kServerName))
                                : named(kServerName, via);
  if (!vnode && via.empty() && !to.pid().valid()) {
    return Status(ErrorCode::kNoProc, "the store does not run on this node");
  }
  if (vnode) {
    // The caller's deadline goes with it, in wall-clock ms as between nodes (this node's store's
    // clock when it runs one: a simulation's).
    KvState* st = state_of(node);
    const std::uint64_t wall = st ? st->wall_ms() : HybridClock::system_ms();
    auto r = call_as<KvReply>(
        to, KvDirect{std::move(req), wall + static_cast<std::uint64_t>(wait.count())},
        wait + kMargin);
    if (!r) return status_of(r.error());
    return std::move(*r);
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
  r.ttl_ms = static_cast<std::uint64_t>(std::max<std::int64_t>(o.ttl.count(), 0));
  r.overwrite = o.overwrite;
  return r;
}
}  // namespace

Result<GetResult> Client::get(std::string_view key, const RequestOptions& opts) const {
  auto r = send_request(*node_, via_, vnode_for(key), make(Op::kGet, key, opts), opts.timeout);
  if (!r) return r.error();
  if (r->code != 0) return status_of(*r);
  GetResult g;
  g.values.reserve(r->values.size());
  for (Bin& v : r->values) g.values.push_back(std::move(v));
  g.context = std::move(r->context);
  if (r->ttl_ms >= 0) g.ttl = std::chrono::milliseconds(r->ttl_ms);
  return g;
}

Result<std::string> Client::put(std::string_view key, std::string_view value,
                                const RequestOptions& opts, GetResult* current) const {
  if (opts.ttl.count() < 0) return Status(ErrorCode::kBadArg, "ttl must not be negative");
  if (opts.if_version) return cas(key, kTxnPut, value, opts, current);
  KvRequest req = make(Op::kPut, key, opts);
  req.value.assign(value);
  auto r = send_request(*node_, via_, vnode_for(key), std::move(req), opts.timeout);
  if (!r) return r.error();
  if (r->code != 0) return status_of(*r);
  return std::move(r->context);
}

Result<std::string> Client::del(std::string_view key, const RequestOptions& opts,
                                GetResult* current) const {
  if (opts.if_version) return cas(key, kTxnDelete, {}, opts, current);
  auto r = send_request(*node_, via_, vnode_for(key), make(Op::kDelete, key, opts), opts.timeout);
  if (!r) return r.error();
  if (r->code != 0) return status_of(*r);
  return std::move(r->context);
}

namespace {

// Sends `reqs` without waiting, grouped by partition (`partition[i]`: request i's; the requests
// of one vnode leave back to back), each as send_request would: to `vnode[i]` as a KvDirect when
// given, else to the store. Then gathers the answers, all by one deadline: one per request, in
// order, a KvReply with code 0 or the Status of the error (the store's or the call's).
std::vector<Result<KvReply>> scatter(Node& node, const std::string& via,
                                     const std::vector<std::optional<Dest>>& vnode,
                                     const std::vector<std::uint32_t>& partition,
                                     std::vector<KvRequest> reqs,
                                     std::chrono::milliseconds timeout) {
  std::vector<Result<KvReply>> out(reqs.size(), Result<KvReply>(Status(ErrorCode::kTimeout, "")));
  if (reqs.empty()) return out;
  KvState* st = via.empty() ? state_of(node) : nullptr;
  std::chrono::milliseconds wait = timeout;
  if (wait.count() == 0) wait = st ? st->options.request_timeout : kMaxRequestTimeout;
  const Dest store = via.empty() ? Dest(node.whereis(kServerName)) : named(kServerName, via);
  const std::uint64_t wall = st ? st->wall_ms() : HybridClock::system_ms();
  const std::uint64_t deadline_ms = wall + static_cast<std::uint64_t>(wait.count());
  std::optional<Inbox> inbox;  // a plain thread gets a mailbox for the answers
  if (!has_self()) inbox.emplace(node);
  std::vector<std::size_t> order(reqs.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return partition[a] < partition[b]; });
  std::vector<std::optional<RequestId>> ids(reqs.size());
  for (std::size_t i : order) {
    if (vnode[i]) {
      ids[i] = send_request(*vnode[i], KvDirect{std::move(reqs[i]), deadline_ms});
    } else if (!via.empty() || store.pid().valid()) {
      ids[i] = send_request(store, std::move(reqs[i]));
    } else {
      out[i] = Status(ErrorCode::kNoProc, "the store does not run on this node");
    }
  }
  const auto until = std::chrono::steady_clock::now() + wait + kMargin;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (!ids[i]) continue;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    auto r = receive_response_as<KvReply>(*ids[i], std::max(left, std::chrono::milliseconds(0)));
    if (!r) {
      out[i] = status_of(r.error());
    } else if (r->code != 0) {
      out[i] = status_of(*r);
    } else {
      out[i] = std::move(*r);
    }
  }
  return out;
}

template <class T>
std::vector<Result<T>> all_failed(std::size_t n, const char* what) {
  return std::vector<Result<T>>(
      n, Status(ErrorCode::kBadArg,
                "more than " + std::to_string(Client::kMaxMultiKeys) + " keys in one " + what));
}

std::vector<Result<std::string>> contexts_of(std::vector<Result<KvReply>> replies) {
  std::vector<Result<std::string>> out;
  out.reserve(replies.size());
  for (auto& r : replies) {
    if (r) {
      out.emplace_back(std::move(r->context));
    } else {
      out.emplace_back(r.error());
    }
  }
  return out;
}

}  // namespace

std::vector<Result<GetResult>> Client::multi_get(const std::vector<std::string>& keys,
                                                 const RequestOptions& opts) const {
  if (keys.size() > kMaxMultiKeys) return all_failed<GetResult>(keys.size(), "multi_get");
  RequestOptions o = opts;
  o.context.clear();
  const std::uint32_t q = partitions();
  std::vector<KvRequest> reqs;
  std::vector<std::optional<Dest>> to;
  std::vector<std::uint32_t> parts;
  reqs.reserve(keys.size());
  for (const auto& k : keys) {
    reqs.push_back(make(Op::kGet, k, o));
    to.push_back(vnode_for(k));
    parts.push_back(q ? partition_of(k, q) : 0);
  }
  auto replies = scatter(*node_, via_, to, parts, std::move(reqs), opts.timeout);
  std::vector<Result<GetResult>> out;
  out.reserve(keys.size());
  for (auto& r : replies) {
    if (!r) {
      out.emplace_back(r.error());
      continue;
    }
    GetResult g;
    g.values.reserve(r->values.size());
    for (Bin& v : r->values) g.values.push_back(std::move(v));
    g.context = std::move(r->context);
    if (r->ttl_ms >= 0) g.ttl = std::chrono::milliseconds(r->ttl_ms);
    out.emplace_back(std::move(g));
  }
  return out;
}

std::vector<Result<std::string>> Client::multi_put(
    const std::vector<std::pair<std::string, std::string>>& kvs, const RequestOptions& opts) const {
  if (kvs.size() > kMaxMultiKeys) return all_failed<std::string>(kvs.size(), "multi_put");
  if (opts.ttl.count() < 0) {
    return std::vector<Result<std::string>>(kvs.size(),
                                            Status(ErrorCode::kBadArg, "ttl must not be negative"));
  }
  RequestOptions o = opts;
  o.context.clear();
  const std::uint32_t q = partitions();
  std::vector<KvRequest> reqs;
  std::vector<std::optional<Dest>> to;
  std::vector<std::uint32_t> parts;
  reqs.reserve(kvs.size());
  for (const auto& [k, v] : kvs) {
    reqs.push_back(make(Op::kPut, k, o));
    reqs.back().value.assign(v);
    to.push_back(vnode_for(k));
    parts.push_back(q ? partition_of(k, q) : 0);
  }
  return contexts_of(scatter(*node_, via_, to, parts, std::move(reqs), opts.timeout));
}

std::vector<Result<std::string>> Client::multi_del(const std::vector<std::string>& keys,
                                                   const std::vector<std::string>& contexts,
                                                   const RequestOptions& opts) const {
  if (keys.size() > kMaxMultiKeys) return all_failed<std::string>(keys.size(), "multi_del");
  const std::uint32_t q = partitions();
  std::vector<KvRequest> reqs;
  std::vector<std::optional<Dest>> to;
  std::vector<std::uint32_t> parts;
  reqs.reserve(keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    RequestOptions o = opts;
    o.context = i < contexts.size() ? contexts[i] : std::string();
    reqs.push_back(make(Op::kDelete, keys[i], o));
    to.push_back(vnode_for(keys[i]));
    parts.push_back(q ? partition_of(keys[i], q) : 0);
  }
  return contexts_of(scatter(*node_, via_, to, parts, std::move(reqs), opts.timeout));
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

Result<Term> Client::stats(bool cluster, std::chrono::milliseconds timeout) const {
  auto r = term_request(*node_, via_, cluster ? tuple("stats", "cluster") : Term("stats"),
                        timeout.count() ? timeout : std::chrono::milliseconds(10000));
  if (!r) return r.error();
  auto m = r->match({"ok", _map});
  if (!m) return Status(ErrorCode::kProtocol, "unexpected stats reply " + r->to_string());
  return m[0];
}

// The watch server's name, as watch.hpp (kv/src) has it: acknowledgements go straight to it.
constexpr const char* kWatchServer = "nodus_kv_watch";

Result<Ref> Client::watch(std::string_view pattern, WatchMatch match) const {
  // Held by this node's store when there is one, so the watcher is local to it (its mailbox is
  // what the bound measures, no acknowledgements).
  const std::string via = state_of(*node_) ? std::string() : via_;
  auto r = term_request(*node_, via, tuple("watch", watch_pattern(pattern, match)),
                        std::chrono::milliseconds(5000));
  if (!r) return r.error();
  auto m = r->match({"ok", _ref});
  if (!m) return Status(ErrorCode::kProtocol, "unexpected watch reply " + r->to_string());
  return m[0].as_ref();
}

Status Client::unwatch(const Ref& watch) const {
  const std::string via = state_of(*node_) ? std::string() : via_;
  auto r =
      term_request(*node_, via, tuple("unwatch", Term(watch)), std::chrono::milliseconds(5000));
  if (!r) return r.error();
  if (!(*r == Term("ok"))) {
    return Status(ErrorCode::kProtocol, "unexpected unwatch reply " + r->to_string());
  }
  return Status();
}

void Client::watch_ack(const Ref& watch, std::uint32_t events) const {
  send(named(kWatchServer, watch.node.name()),
       tuple("kv_watch_ack", Term(watch), Term(static_cast<std::int64_t>(events))));
}

}  // namespace nodus::kv

namespace nodus::kv {

std::uint32_t Client::partitions() const {
  if (via_.empty()) {
    KvState* st = state_of(*node_);
    const auto v = st ? st->view() : nullptr;
    return v && v->ready() ? v->ring->partitions() : 0;
  }
  std::lock_guard lock(routes_->mu);
  return routes_->routes ? routes_->routes->ring->partitions() : 0;
}

}  // namespace nodus::kv
