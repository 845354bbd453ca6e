// Watches: the hooks vnodes call, and nodus_kv_watch, the per-node server that holds the node's
// watchers, announces their patterns to the other nodes and hands events on (watch.hpp).
#include "watch.hpp"

#include <algorithm>
#include <deque>
#include <list>
#include <set>
#include <unordered_map>

#include "nodus/kv/partition.hpp"
#include "nodus/node/gen_server.hpp"
#include "query.hpp"

namespace nodus::kv {

namespace {

const char* kind_name(WatchKind k) {
  switch (k) {
    case WatchKind::kDelete:
      return "delete";
    case WatchKind::kExpire:
      return "expire";
    default:
      return "put";
  }
}

std::vector<std::uint64_t> flat(const VersionVector& vv) {
  std::vector<std::uint64_t> out;
  out.reserve(vv.size() * 3);
  for (const auto& [a, n] : vv) {
    out.push_back(a.vnode);
    out.push_back(a.epoch);
    out.push_back(n);
  }
  return out;
}

// The version of a KvWatchEvent; nullopt when malformed (not triples, not sorted by actor).
std::optional<VersionVector> unflat(const std::vector<std::uint64_t>& v) {
  if (v.size() % 3 != 0 || v.size() / 3 > kMaxContextActors) return std::nullopt;
  VersionVector out;
  out.reserve(v.size() / 3);
  for (std::size_t i = 0; i < v.size(); i += 3) {
    const Actor a{v[i], v[i + 1]};
    if (!out.empty() && !(out.back().first < a)) return std::nullopt;
    out.emplace_back(a, v[i + 2]);
  }
  return out;
}

Term u(std::uint64_t v) { return Term(static_cast<std::int64_t>(v)); }

}  // namespace

// -- patterns and terms ------------------------------------------------------------------------

bool WatchPattern::matches(std::string_view key) const {
  switch (match) {
    case WatchMatch::kKey:
      return key == text;
    case WatchMatch::kPrefix:
      return key.substr(0, text.size()) == text;
    default:
      return glob_match(text, key);
  }
}

Result<WatchPattern> parse_pattern(const Term& t) {
  WatchPattern p;
  if (t.is_bin()) {
    p.text = t.as_bin();
  } else if (auto k = t.match({"key", _bin})) {
    p.match = WatchMatch::kKey;
    p.text = k[0].as_bin();
  } else if (auto pre = t.match({"prefix", _bin})) {
    p.match = WatchMatch::kPrefix;
    p.text = pre[0].as_bin();
  } else {
    return Status(ErrorCode::kBadArg,
                  "a watch pattern is a binary (a glob), {key, Key} or {prefix, Prefix}");
  }
  if (p.text.size() > kMaxKeyBytes) {
    return Status(ErrorCode::kBadArg, "the watch pattern is " + std::to_string(p.text.size()) +
                                          " bytes, the limit is " + std::to_string(kMaxKeyBytes));
  }
  if (p.text.empty() && p.match != WatchMatch::kPrefix) {
    return Status(ErrorCode::kBadArg, "empty watch pattern (watch everything with \"*\")");
  }
  return p;
}

Term watch_pattern(std::string_view pattern, WatchMatch match) {
  switch (match) {
    case WatchMatch::kKey:
      return tuple("key", bin(std::string(pattern)));
    case WatchMatch::kPrefix:
      return tuple("prefix", bin(std::string(pattern)));
    default:
      return bin(std::string(pattern));
  }
}

std::optional<WatchEvent> watch_event(const Message& msg) {
  if (!msg.is_term()) return std::nullopt;
  auto m = msg.term().match({"kv_event", _atom, _bin, _bin, _bin});
  if (!m) return std::nullopt;
  WatchEvent e;
  const std::string_view kind = m[0].as_atom().name();
  if (kind == "put") {
    e.kind = WatchKind::kPut;
  } else if (kind == "delete") {
    e.kind = WatchKind::kDelete;
  } else if (kind == "expire") {
    e.kind = WatchKind::kExpire;
  } else {
    return std::nullopt;
  }
  e.key = m[1].as_bin();
  e.value = m[2].as_bin();
  e.context = m[3].as_bin();
  return e;
}

std::optional<Term> watch_lost(const Message& msg) {
  if (!msg.is_term()) return std::nullopt;
  auto m = msg.term().match({"kv_watch_lost", _});
  if (!m) return std::nullopt;
  return m[0];
}

Status register_watch_protocol() {
  for (Status s : {register_message<KvWatchEvent>(), register_message<WatchPatterns>(),
                   register_message<WatchPatternsAck>()}) {
    if (!s.ok()) return s;
  }
  return Status();
}

WatchState* watch_state_of(Node& node) { return node.service<WatchState>(); }

Result<WatchStats> watch_stats(Node& node) {
  WatchState* ws = watch_state_of(node);
  if (!ws) return Status(ErrorCode::kNotFound, "the store does not run on this node");
  WatchStats s;
  s.watchers = ws->watchers.load(std::memory_order_relaxed);
  s.events = ws->events.load(std::memory_order_relaxed);
  s.lost = ws->lost.load(std::memory_order_relaxed);
  s.out_of_order = ws->out_of_order.load(std::memory_order_relaxed);
  s.duplicates = ws->duplicates.load(std::memory_order_relaxed);
  return s;
}

// -- hooks -------------------------------------------------------------------------------------

bool watched(Node& node, std::string_view key) {
  WatchState* ws = watch_state_of(node);
  if (!ws || !ws->any()) return false;
  const auto routes = ws->routes();
  for (const auto& [n, patterns] : routes->nodes) {
    for (const WatchPattern& p : patterns) {
      if (p.matches(key)) return true;
    }
  }
  return false;
}

void notify_change(KvState& st, std::string_view key, const Object& object, WatchKind kind,
                   std::string_view value, const VersionVector& seen) {
  WatchState* ws = watch_state_of(st.node);
  if (!ws || !ws->any()) return;
  const auto routes = ws->routes();
  std::optional<KvWatchEvent> event;
  for (const auto& [n, patterns] : routes->nodes) {
    if (std::none_of(patterns.begin(), patterns.end(),
                     [&](const WatchPattern& p) { return p.matches(key); })) {
      continue;
    }
    if (!event) {
      const VersionVector vv = object.join();
      event = KvWatchEvent{static_cast<std::uint8_t>(kind), std::string(key), Bin(value),
                           st.signer.encode(key, vv),       flat(vv),         flat(seen)};
    }
    send(named(kWatchName, n.name()), *event);
  }
}

void notify_expired(KvState& st, std::uint32_t partition, std::string_view key,
                    const Object& object) {
  (void)partition;    // the sweep runs per partition; the event names only the key
  std::string value;  // the newest live value (values() is a copy: keep the bytes, not a pointer)
  std::uint64_t newest = 0;
  bool any = false;
  for (const Sibling& s : object.values()) {
    if (!s.tombstone && (!any || s.timestamp > newest)) {
      value = s.value;
      newest = s.timestamp;
      any = true;
    }
  }
  // After the write that made this version: its `seen` is the version itself.
  notify_change(st, key, object, WatchKind::kExpire, value, object.join());
}

// -- the watch server --------------------------------------------------------------------------

namespace {

// A watch request nodus_kv was called with, handed on with its caller (local only: no wire type).
struct WatchCall {
  Term request;
  From from;
};
// Checks the watch calls waiting for acknowledgements (local only).
struct WatchTimer {};

}  // namespace

bool is_watch_request(const Term& request) {
  return request.is_tuple() && request.size() >= 1 &&
         (request[0].is_atom("watch") || request[0].is_atom("unwatch"));
}

void forward_watch(Node& node, const Term& request, From from) {
  const Pid server = node.whereis(kWatchName);
  if (!server.valid()) {
    reply(from, error_term(ErrorCode::kUnavailable, "the watch server is restarting"));
    return;
  }
  send(server, WatchCall{request, from});
}

namespace {

class WatchServer : public GenServer {
 public:
  Action init(Node* node, KvState* st, WatchState* ws) {
    node_ = node;
    st_ = st;
    ws_ = ws;
    // A predecessor's watchers: what was on its way to it is lost with its mailbox, so they are
    // told, never left waiting for events that do not come.
    for (const auto& [ref, w] : ws_->held) nodus::send(w.first, tuple("kv_watch_lost", w.second));
    ws_->lost.fetch_add(ws_->held.size(), std::memory_order_relaxed);
    ws_->held.clear();
    ws_->watchers.store(0, std::memory_order_relaxed);
    // The other nodes' patterns carry on; this node's are gone (announced empty below).
    if (auto r = ws_->routes()) {
      for (const auto& [n, patterns] : r->nodes) {
        if (n != node_->name()) remote_[n] = patterns;
      }
    }
    monitor_nodes(true);
    announce(true);
    return ok();
  }

  Action handle_call(Message& msg, From from) override {
    if (!msg.is_term()) return reply(error_term(ErrorCode::kBadArg, "not a watch request"));
    request(msg.term(), from);
    return noreply();
  }
  Action handle_cast(Message&) override { return refuse(); }

  Action handle_info(Message& msg) override {
    if (WatchCall* c = msg.get<WatchCall>()) {
      if (sender().node != node_->name()) return refuse();  // local only, as its type
      request(c->request, c->from);
      return noreply();
    }
    if (const Down* d = msg.get<Down>()) {
      auto it = by_monitor_.find(d->ref);
      if (it != by_monitor_.end()) {
        const Ref id = it->second;
        by_monitor_.erase(it);
        erase(id);
        announce(false);
      }
      return noreply();
    }
    if (const NodeUp* nu = msg.get<NodeUp>()) {
      if (node_->is_hidden(nu->node)) return noreply();
      send_patterns(nu->node);
      // A member that comes up (back from a partition, or restarted) may have coordinated
      // changes before it has this node's patterns: they reached no watcher here.
      if (is_member(nu->node)) lose_all();
      return noreply();
    }
    if (const NodeDown* nd = msg.get<NodeDown>()) {
      const bool store_node = is_member(nd->node) || acked_.count(nd->node) > 0;
      if (remote_.erase(nd->node) > 0) publish();
      acked_.erase(nd->node);
      for (auto& p : pending_) std::erase(p.waiting, nd->node);
      answer_pending(false);
      // What it coordinated while the link was down (on its side of a partition, with its
      // fallbacks) went nowhere, and it forgot this node's patterns: the watches cannot say
      // they saw every change, so they end as the contract says, never silently short.
      if (store_node) lose_all();
      return noreply();
    }
    if (msg.is<WatchTimer>()) {
      timer_armed_ = false;
      answer_pending(false);
      std::vector<std::string> keys;
      for (const auto& [k, q] : held_) keys.push_back(k);
      for (const auto& k : keys) release(k, false);
      arm_timer();
      return noreply();
    }
    const Pid from = sender();
    if (msg.is_term()) {  // {kv_watch_ack, WatchRef, N}: a remote watcher took N events
      if (auto m = msg.term().match({"kv_watch_ack", _ref, _int})) {
        auto it = watchers_.find(m[0].as_ref());
        if (it == watchers_.end() || !from.valid() || from.node != it->second.pid.node) {
          return noreply();  // ended meanwhile, or not its node's to say
        }
        const auto n = static_cast<std::uint64_t>(std::max<std::int64_t>(0, m[1].as_int()));
        it->second.outstanding -= std::min(n, it->second.outstanding);
        return noreply();
      }
      return refuse();
    }
    // The rest comes from the other nodes' vnodes and watch servers: never from hidden nodes.
    if (!from.valid() || node_->is_hidden(from.node)) return refuse();
    if (KvWatchEvent* e = msg.get<KvWatchEvent>()) {
      event_in(std::move(*e));
    } else if (const WatchPatterns* wp = msg.get<WatchPatterns>()) {
      patterns_in(*wp, from);
    } else if (const WatchPatternsAck* a = msg.get<WatchPatternsAck>()) {
      auto& seen = acked_[from.node];
      seen = std::max(seen, a->seq);
      answer_pending(false);
    } else {
      return refuse();
    }
    return noreply();
  }

  Term format_status() override {
    return map({{"watchers", u(watchers_.size())},
                {"held", u(held_count_)},
                {"remote_nodes", u(remote_.size())},
                {"pending", u(pending_.size())}});
  }

 private:
  struct Watcher {
    Pid pid;
    Term pattern_term;  // as the watcher gave it: kv_watch_lost names it so
    WatchPattern pattern;
    Ref monitor;
    bool local = false;
    std::uint64_t outstanding = 0;  // events sent and not known to be taken (see deliver)
  };
  // A watch call answered once the members up acknowledged the patterns `seq`; refused at its
  // deadline when one has not (it may coordinate changes the watch would not see).
  struct Pending {
    From from;
    Ref id;  // the watch
    Term reply;
    std::uint64_t seq = 0;
    std::vector<Atom> waiting;
    std::chrono::steady_clock::time_point deadline;
  };

  Action refuse() {
    st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
    return noreply();
  }

  void request(const Term& t, From from) {
    if (auto m = t.match({"watch", _})) {
      watch(m[0], from);
    } else if (auto un = t.match({"unwatch", _ref})) {
      if (watchers_.count(un[0].as_ref()) > 0) {
        drop(un[0].as_ref());
        announce(false);
      }
      nodus::reply(from, Term("ok"));
    } else {
      nodus::reply(
          from, error_term(ErrorCode::kBadArg, "expected {watch, Pattern} or {unwatch, WatchRef}"));
    }
  }

  void watch(const Term& pattern_term, From from) {
    Result<WatchPattern> p = parse_pattern(pattern_term);
    if (!p) {
      nodus::reply(from, error_term(p.error().code(), p.error().message()));
      return;
    }
    if (!from.pid.valid()) {
      nodus::reply(from, error_term(ErrorCode::kBadArg, "a watch needs a calling process"));
      return;
    }
    if (watchers_.size() >= st_->options.max_watches) {
      nodus::reply(from, error_term(kTooManyWatches, "this node holds kv.max_watches = " +
                                                         std::to_string(st_->options.max_watches) +
                                                         " watches"));
      return;
    }
    const Ref id = node_->make_ref();
    Watcher w{from.pid, pattern_term, std::move(*p), monitor(from.pid),
              from.pid.node == node_->name()};
    by_monitor_.emplace(w.monitor, id);
    ws_->held.emplace(id, std::pair{w.pid, w.pattern_term});
    watchers_.emplace(id, std::move(w));
    ws_->watchers.store(watchers_.size(), std::memory_order_relaxed);
    announce(false);
    // Answered once every member up has the patterns as of now.
    Pending pending{from, id, tuple("ok", Term(id)), seq_, {}, st_->now() + kWatchAckWait};
    if (auto v = st_->view(); v && v->ready()) {
      const std::vector<Atom> linked = node_->nodes();
      for (std::size_t i = 0; i < v->names.size(); ++i) {
        const Atom n = v->names[i];
        // Up as the store sees it, or linked already (the store may not have heard yet).
        if (n == node_->name() ||
            (!v->up[i] && std::find(linked.begin(), linked.end(), n) == linked.end())) {
          continue;
        }
        auto a = acked_.find(n);
        if (a == acked_.end() || a->second < seq_) pending.waiting.push_back(n);
      }
    }
    if (pending.waiting.empty()) {
      nodus::reply(from, pending.reply);
      return;
    }
    pending_.push_back(std::move(pending));
    arm_timer();
  }

  void erase(Ref id) {  // a copy: callers pass keys of watchers_, which this erases
    watchers_.erase(id);
    ws_->held.erase(id);
    ws_->watchers.store(watchers_.size(), std::memory_order_relaxed);
  }

  // Answers the watch calls whose patterns every member waited for has (or, with `all`,
  // regardless). Past its deadline, a call some member did not answer for is refused and its
  // watch dropped: that member could coordinate changes the watch would never see.
  void answer_pending(bool all) {
    const auto now = st_->now();
    bool dropped = false;
    for (auto it = pending_.begin(); it != pending_.end();) {
      std::erase_if(it->waiting, [&](Atom n) {
        auto a = acked_.find(n);
        return a != acked_.end() && a->second >= it->seq;
      });
      if (all || it->waiting.empty()) {
        nodus::reply(it->from, it->reply);
        it = pending_.erase(it);
      } else if (it->deadline <= now) {
        std::string who;
        for (Atom n : it->waiting) who += (who.empty() ? "" : ", ") + std::string(n.name());
        nodus::reply(it->from,
                     error_term(ErrorCode::kUnavailable,
                                "no acknowledgement of the watch from " + who + " within " +
                                    std::to_string(kWatchAckWait.count()) + " ms; retry"));
        drop(it->id);
        dropped = true;
        it = pending_.erase(it);
      } else {
        ++it;
      }
    }
    if (dropped) announce(false);
    arm_timer();
  }

  bool is_member(Atom n) const {
    auto v = st_->view();
    return v && v->ready() && std::find(v->names.begin(), v->names.end(), n) != v->names.end();
  }

  // Ends every watch with kv_watch_lost (answered watch calls only: one still waiting for
  // acknowledgements is answered after the patterns reach the members anew).
  void lose_all() {
    std::vector<Ref> ids;
    for (const auto& entry : watchers_) {
      const Ref& id = entry.first;  // not a structured binding: the lambda captures it (clang 14)
      if (std::none_of(pending_.begin(), pending_.end(),
                       [&](const Pending& p) { return p.id == id; })) {
        ids.push_back(id);
      }
    }
    if (ids.empty()) return;
    for (const Ref& id : ids) lose(id);
    announce(false);
  }

  // This node's distinct patterns, sorted.
  std::vector<WatchPattern> local_patterns() const {
    std::set<WatchPattern> s;
    for (const auto& [id, w] : watchers_) s.insert(w.pattern);
    return {s.begin(), s.end()};
  }

  // Tells every other node the patterns, when they changed (or `force`).
  void announce(bool force) {
    std::vector<WatchPattern> now = local_patterns();
    if (!force && now == announced_) return;
    announced_ = std::move(now);
    ++seq_;
    publish();
    for (Atom n : node_->nodes()) send_patterns(n);
  }

  void send_patterns(Atom to) {
    WatchPatterns m;
    m.seq = seq_;
    for (const WatchPattern& p : announced_) {
      m.kinds.push_back(static_cast<std::uint8_t>(p.match));
      m.patterns.push_back(p.text);
    }
    send(named(kWatchName, to.name()), std::move(m));
  }

  void patterns_in(const WatchPatterns& m, const Pid& from) {
    if (m.kinds.size() != m.patterns.size() || m.patterns.size() > kMaxAnnouncedPatterns) {
      (void)refuse();
      return;
    }
    std::vector<WatchPattern> patterns;
    patterns.reserve(m.patterns.size());
    for (std::size_t i = 0; i < m.patterns.size(); ++i) {
      if (m.kinds[i] > static_cast<std::uint8_t>(WatchMatch::kPrefix)) {
        (void)refuse();
        return;
      }
      patterns.push_back(WatchPattern{static_cast<WatchMatch>(m.kinds[i]), m.patterns[i]});
    }
    if (patterns.empty()) {
      remote_.erase(from.node);
    } else {
      remote_[from.node] = std::move(patterns);
    }
    publish();
    send(from, WatchPatternsAck{m.seq});
  }

  // The routes vnodes read: this node's patterns and every other node's.
  void publish() {
    auto r = std::make_shared<WatchRoutes>();
    if (!announced_.empty()) r->nodes.emplace_back(node_->name(), announced_);
    for (const auto& [n, patterns] : remote_) r->nodes.emplace_back(n, patterns);
    ws_->set_routes(std::move(r));
  }

  // -- delivery ---------------------------------------------------------------------------------

  // An event held until the events it follows were passed on (see release).
  struct Held {
    KvWatchEvent event;
    VersionVector version, seen;
    std::chrono::steady_clock::time_point due;
  };

  void event_in(KvWatchEvent e) {
    std::optional<VersionVector> version = unflat(e.version);
    std::optional<VersionVector> seen = unflat(e.seen);
    if (!version || !seen || e.kind < 1 || e.kind > 3 || e.key.size() > kMaxKeyBytes) {
      (void)refuse();
      return;
    }
    if (std::none_of(watchers_.begin(), watchers_.end(),
                     [&](const auto& w) { return w.second.pattern.matches(e.key); })) {
      return;  // unwatched meanwhile
    }
    const std::string key = e.key;
    held_[key].push_back(
        Held{std::move(e), std::move(*version), std::move(*seen), st_->now() + kWatchHoldWait});
    ++held_count_;
    release(key, false);
    if (held_count_ > st_->options.watch_queue) {  // bounded: the oldest go on regardless
      std::vector<std::string> keys;
      for (const auto& [k, q] : held_) keys.push_back(k);
      for (const auto& k : keys) release(k, true);
    }
    arm_timer();
  }

  // Passes on the held events of `key` that may go now: an event goes once the versions passed
  // on cover what its writer had seen (its `seen`), and after every held event of the key that
  // its version descends from (those happened before it; of equal versions, as they came).
  // Under the order check a key never met has no past: its events go at once. Past their time
  // (kWatchHoldWait), or with `force`, they go regardless, in the order they came.
  void release(const std::string& key, bool force) {
    auto it = held_.find(key);
    if (it == held_.end()) return;
    auto& q = it->second;
    const auto now = st_->now();
    while (!q.empty()) {
      std::size_t go = q.size();
      for (std::size_t i = 0; i < q.size() && go == q.size(); ++i) {
        if (ready(key, q, i)) go = i;
      }
      if (go == q.size()) {
        if (!force && q.front().due > now) break;
        go = 0;
      }
      Held h = std::move(q[go]);
      q.erase(q.begin() + static_cast<std::ptrdiff_t>(go));
      --held_count_;
      deliver(h);
    }
    if (q.empty()) held_.erase(it);
  }

  bool ready(const std::string& key, const std::deque<Held>& q, std::size_t i) const {
    const Held& h = q[i];
    for (std::size_t j = 0; j < q.size(); ++j) {
      if (j == i || !descends(h.version, q[j].version)) continue;
      if (j < i || !descends(q[j].version, h.version)) return false;  // q[j] comes first
    }
    if (h.seen.empty()) return true;
    auto o = order_.find(key);
    return o == order_.end() || o->second.passed.empty() || descends(o->second.passed, h.seen);
  }

  void arm_timer() {
    if (timer_armed_ || (pending_.empty() && held_.empty())) return;
    timer_armed_ = true;
    send_after(self(), WatchTimer{}, std::chrono::milliseconds(100));
  }

  void deliver(const Held& h) {
    const KvWatchEvent& e = h.event;
    std::vector<Ref> matching;
    for (const auto& [id, w] : watchers_) {
      if (w.pattern.matches(e.key)) matching.push_back(id);
    }
    if (matching.empty()) return;
    // An expiry carries the version of the write it ends: the order check is for writes. Each
    // sweeping replica that takes itself for the first primary up sends one; with a split
    // between two of them (each sees the other down) both do: one is passed on.
    if (e.kind == static_cast<std::uint8_t>(WatchKind::kExpire)) {
      if (!first_expiry(e.key, h.version)) {
        ws_->duplicates.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    } else if (!in_order(e.key, h.version)) {
      // A newer version of the key went out already: this one cannot be passed on in order.
      for (const Ref& id : matching) {
        ws_->out_of_order.fetch_add(1, std::memory_order_relaxed);
        lose(id);
      }
      announce(false);
      return;
    }
    const Term event = tuple("kv_event", kind_name(static_cast<WatchKind>(e.kind)), bin(e.key),
                             bin(e.value), bin(e.context));
    const std::uint64_t bound = st_->options.watch_queue;
    bool lost = false;
    for (const Ref& id : matching) {
      Watcher& w = watchers_.at(id);
      nodus::send(w.pid, event);
      ws_->events.fetch_add(1, std::memory_order_relaxed);
      if (++w.outstanding <= bound) continue;
      // Past the bound by count: a local watcher's mailbox says how many it has not taken
      // (counted again only every `bound` events, while it keeps up); a remote one's acks do.
      if (w.local) w.outstanding = mailbox_length(w.pid);
      if (w.outstanding > bound) {
        lose(id);
        lost = true;
      }
    }
    if (lost) announce(false);
  }

  // True when `version` is not older than what was passed on for `key` (remembered for the
  // kWatchOrderKeys keys seen last): each event's version holds its own write, so a version
  // that the join of those passed on already covers was overtaken by a later one.
  bool in_order(const std::string& key, const VersionVector& version) {
    Seen& seen = seen_of(key);
    if (!seen.passed.empty() && descends(seen.passed, version)) return false;
    seen.passed = vv_merge(seen.passed, version);
    return true;
  }

  // True when no expiry of `key` at `version` (the version of the write it ends) was passed on
  // yet (remembered as in_order's versions are); it is then remembered.
  bool first_expiry(const std::string& key, const VersionVector& version) {
    Seen& seen = seen_of(key);
    if (seen.expired == version) return false;
    seen.expired = version;
    return true;
  }

  struct Seen {
    VersionVector passed;   // the join of the versions of the writes passed on
    VersionVector expired;  // the version of the last expiry passed on
    std::list<std::string>::iterator at;
  };
  // What was passed on for `key`, made the most recently seen (added when new).
  Seen& seen_of(const std::string& key) {
    auto it = order_.find(key);
    if (it != order_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.at);
      return it->second;
    }
    lru_.push_front(key);
    if (order_.size() >= kWatchOrderKeys) {
      order_.erase(lru_.back());
      lru_.pop_back();
    }
    return order_.emplace(key, Seen{{}, {}, lru_.begin()}).first->second;
  }

  std::uint64_t mailbox_length(const Pid& pid) const {
    for (const ProcessInfo& p : node_->processes()) {
      if (p.pid == pid) return p.mailbox_length;
    }
    return 0;  // gone: its Down comes
  }

  void lose(const Ref& id) {
    auto it = watchers_.find(id);
    if (it == watchers_.end()) return;
    nodus::send(it->second.pid, tuple("kv_watch_lost", it->second.pattern_term));
    ws_->lost.fetch_add(1, std::memory_order_relaxed);
    drop(id);
  }

  // Forgets a watch without a word to its watcher.
  void drop(Ref id) {  // a copy, as erase's
    auto it = watchers_.find(id);
    if (it == watchers_.end()) return;
    demonitor(it->second.monitor);
    by_monitor_.erase(it->second.monitor);
    erase(id);
  }

  Node* node_ = nullptr;
  KvState* st_ = nullptr;
  WatchState* ws_ = nullptr;
  std::map<Ref, Watcher> watchers_;  // by watch ref
  std::map<Ref, Ref> by_monitor_;    // monitor ref -> watch ref
  std::vector<WatchPattern> announced_;
  std::uint64_t seq_ = 0;
  std::map<Atom, std::vector<WatchPattern>> remote_;  // other nodes' patterns
  std::map<Atom, std::uint64_t> acked_;               // the latest seq each node acknowledged
  std::vector<Pending> pending_;
  bool timer_armed_ = false;
  // Events waiting for the events they follow, per key in the order they came (release).
  std::map<std::string, std::deque<Held>> held_;
  std::size_t held_count_ = 0;
  // The order check and the expiries passed on, per key, least recently seen last.
  std::list<std::string> lru_;
  std::unordered_map<std::string, Seen> order_;
};

}  // namespace

Result<Pid, Reason> start_watch_server(Node& node, KvState* st) {
  WatchState* ws = node.set_service(std::make_shared<WatchState>());
  SpawnOptions o;
  o.name = kWatchName;
  // Unbounded, as a vnode: an event or an acknowledgement it refused would be lost silently.
  // What reaches it is bounded by the vnodes' own bounds (one event per coordinated change).
  return start_link<WatchServer>(node, o, &node, st, ws);
}

}  // namespace nodus::kv
