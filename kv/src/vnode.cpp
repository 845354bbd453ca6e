// The vnode: one process per partition per node. It stores the partition's objects in the
// node's engine, coordinates the puts and gets routed to it (PutFsm / GetFsm, answered straight
// to the caller), serves other coordinators' replica reads and writes, repairs stale replicas
// after a read, keeps hints while it stands in for a down primary and hands them back.
#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <unordered_map>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "nodus/kv/partition.hpp"
#include "nodus/node/gen_server.hpp"
#include "state.hpp"

namespace nodus::kv {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kTick = std::chrono::milliseconds(10);

// Sent to itself by a vnode tombstone_ttl after it coordinated a delete: time to see whether
// every primary holds the tombstone, and reap it.
struct ReapCheck {
  std::string key;
};

class Vnode : public GenServer {
 public:
  Action init(KvState* st, std::uint32_t partition) {
    st_ = st;
    p_ = partition;
    me_ = std::string(st_->node.name().name());
    // A new actor id per incarnation: a node that restarts without its data must not reuse
    // the dots it made before (Riak's vnode epochs, after its kv679 data-loss bugs).
    const std::string seed =
        me_ + "/" + std::to_string(st_->node.creation()) + "/" + std::to_string(partition);
    actor_ = XXH3_64bits(seed.data(), seed.size());
    // Request ids from the same seed (not std::random_device, so a simulated cluster replays
    // from its seed): an incarnation does not take a late answer to its predecessor as its own.
    const std::string req_seed = seed + "/requests";
    next_req_ = XXH3_64bits(req_seed.data(), req_seed.size());
    dest_name_ = vnode_name(partition);
    send_after(self(), Term("handoff"), st_->options.handoff_interval);
    return ok();
  }

  Action handle_info(Message& msg) override {
    if (CoordRequest* cr = msg.get<CoordRequest>()) {
      st_->queued[p_].fetch_sub(1, std::memory_order_relaxed);
      coordinate(*cr);
    } else if (const ReplicaPut* rp = msg.get<ReplicaPut>()) {
      replica_put(*rp);
    } else if (const ReplicaPutAck* ra = msg.get<ReplicaPutAck>()) {
      put_ack(*ra);
    } else if (const ReplicaGet* rg = msg.get<ReplicaGet>()) {
      replica_get(*rg);
    } else if (const ReplicaGetReply* rr = msg.get<ReplicaGetReply>()) {
      get_reply(*rr);
    } else if (const HandoffPut* hp = msg.get<HandoffPut>()) {
      handoff_put(*hp);
    } else if (const HandoffAck* ha = msg.get<HandoffAck>()) {
      handoff_ack(*ha);
    } else if (const ReapCheck* rc = msg.get<ReapCheck>()) {
      reap_check(rc->key);
    } else if (const ReapTombstone* rt = msg.get<ReapTombstone>()) {
      reap(rt->key, rt->object);
    } else if (msg == "tick") {
      tick_armed_ = false;
      expire();
    } else if (msg == "handoff") {
      offer_hints();
      send_after(self(), Term("handoff"), st_->options.handoff_interval);
    }
    return noreply();
  }

  // nodus_kv_query asks for whom this vnode keeps `key` as a fallback (kv explain).
  Action handle_call(Message& msg, From from) override {
    if (auto m = msg.match({"hints_for", _bin})) {
      List out;
      if (auto it = hints_.find(m[0].as_bin()); it != hints_.end()) {
        for (Atom a : it->second) out.push_back(bin(std::string(a.name())));
      }
      return reply(Term(std::move(out)));
    }
    return GenServer::handle_call(msg, from);
  }

  Term format_status() override {
    return map({{"partition", Term(p_)},
                {"puts_in_flight", Term(puts_.size())},
                {"gets_in_flight", Term(gets_.size())},
                {"hinted_keys", Term(hints_.size())}});
  }

 private:
  struct PendingPut {
    PutFsm fsm;
    Origin origin;
    Op op;
    std::string context;
    Clock::time_point start, deadline;
    std::string key;  // deletes only: for the reap check
  };
  struct PendingGet {
    GetFsm fsm;
    Origin origin;
    std::string key;
    bool answered = false;
    Clock::time_point start, deadline;
    bool reap = false;  // a reap check: nobody to answer
  };

  // -- storage -----------------------------------------------------------------------------

  Result<Object> read_local(std::string_view key) {
    std::string bytes;
    Status s = st_->engine->get(p_, key, &bytes);
    if (s.code() == ErrorCode::kNotFound) return Object();
    if (!s.ok()) return s;
    return decode_object(bytes);
  }
  Status write_local(std::string_view key, const Object& o) {
    scratch_.clear();
    encode_object(o, scratch_);
    return st_->engine->put(p_, key, scratch_);
  }

  void resolve_conflicts(Object& o) {
    if (st_->options.conflicts == Conflicts::kLww && o.value_count() > 1) {
      o.keep_max([](const Sibling& a, const Sibling& b) {
        if (a.timestamp != b.timestamp) return a.timestamp < b.timestamp;
        if (a.tombstone != b.tombstone) return !a.tombstone;  // a delete wins a tie
        return a.value < b.value;
      });
    }
  }

  // -- coordinating ----------------------------------------------------------------------------

  std::vector<Target> targets_for(const View& v) {
    std::vector<Target> t = v.targets(p_, st_->options.replicas);
    const auto self_it = std::find_if(
        t.begin(), t.end(), [&](const Target& x) { return static_cast<int>(x.member) == v.self; });
    if (self_it == t.end() && v.self >= 0) {
      // Coordinating as a fallback (no primary was up): this node stands in for the first
      // primary that has a fallback.
      auto fb = std::find_if(t.begin(), t.end(), [](const Target& x) { return !x.primary; });
      if (fb != t.end()) fb->member = static_cast<std::uint32_t>(v.self);
    }
    // This node first, so its own reply is target 0.
    std::stable_partition(t.begin(), t.end(),
                          [&](const Target& x) { return static_cast<int>(x.member) == v.self; });
    return t;
  }

  Clock::time_point deadline_of(const KvRequest& r, Clock::time_point now) const {
    const auto ms =
        r.timeout_ms ? std::chrono::milliseconds(r.timeout_ms) : st_->options.request_timeout;
    return now + ms;
  }
  std::uint64_t wall_deadline(Clock::time_point deadline) const {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - st_->now()).count();
    return st_->wall_ms() + static_cast<std::uint64_t>(std::max<std::int64_t>(left, 0));
  }

  void coordinate(CoordRequest& cr) {
    const Clock::time_point now = st_->now();
    std::shared_ptr<const View> view = st_->view();
    if (!view || !view->ready()) {
      answer(cr.origin, error_reply(ErrorCode::kUnavailable, "the ring has not formed yet"));
      return;
    }
    if (cr.request.op == static_cast<std::uint8_t>(Op::kGet)) {
      coordinate_get(cr, *view, now);
    } else {
      coordinate_put(cr, *view, now);
    }
  }

  void coordinate_put(CoordRequest& cr, const View& view, Clock::time_point now) {
    KvRequest& req = cr.request;
    const bool del = req.op == static_cast<std::uint8_t>(Op::kDelete);
    auto& counter = del ? st_->counters.deletes : st_->counters.puts;
    counter.fetch_add(1, std::memory_order_relaxed);
    auto fail = [&](KvReply r) {
      st_->counters.errors.fetch_add(1, std::memory_order_relaxed);
      answer(cr.origin, std::move(r));
    };
    Result<VersionVector> ctx = st_->signer.decode(req.key, req.context);
    if (!ctx) return fail(error_reply(ctx.error().code(), ctx.error().message()));
    Result<Object> local = read_local(req.key);
    if (!local) return fail(error_reply(ErrorCode::kInternal, local.error().to_string()));
    // A delete without a context removes what this replica has seen (Riak reads first).
    VersionVector seen = del && req.context.empty() ? local->join() : std::move(*ctx);
    for (const auto& e : local->entries()) {
      for (const auto& v : e.values) st_->clock.observe(v.timestamp);
    }
    Object next = local->update(
        seen, Sibling{del ? std::string() : std::move(req.value), st_->clock.now(), del}, actor_);
    resolve_conflicts(next);
    if (next.value_count() > 1 && st_->has_merges()) {
      if (auto fn = st_->merge_for(req.key)) {
        std::vector<std::string> vals;
        bool any_tomb = false;
        for (const Sibling& s : next.values()) {
          if (s.tombstone) {
            any_tomb = true;
          } else {
            vals.push_back(s.value);
          }
        }
        if (!any_tomb) next.resolve(Sibling{(*fn)(req.key, vals), st_->clock.now(), false}, actor_);
      }
    }
    if (next.value_count() > st_->options.max_siblings) {
      return fail(error_reply(kv::kTooManySiblings,
                              "key would hold " + std::to_string(next.value_count()) +
                                  " siblings (limit " + std::to_string(st_->options.max_siblings) +
                                  "): write with the context of a get to resolve them"));
    }
    st_->note_siblings(next.value_count());
    if (Status s = write_local(req.key, next); !s.ok()) {
      return fail(error_reply(ErrorCode::kInternal, s.to_string()));
    }
    const std::uint32_t n = st_->options.replicas;
    std::vector<Target> targets = targets_for(view);
    const std::uint32_t w = req.w ? req.w : st_->options.write_quorum;
    const std::uint32_t pw = req.pw ? req.pw : st_->options.primary_write_quorum;
    const std::uint32_t dw = req.dw ? req.dw : st_->options.durable_write_quorum;
    const std::uint64_t id = next_req_++;
    const Clock::time_point deadline = deadline_of(req, now);
    PendingPut pp{PutFsm(targets, w, pw, dw),
                  cr.origin,
                  del ? Op::kDelete : Op::kPut,
                  st_->signer.encode(req.key, next.join()),
                  now,
                  deadline,
                  del ? req.key : std::string()};
    const std::uint64_t dl = wall_deadline(deadline);
    const std::string& bytes = scratch_;  // what write_local just encoded
    for (std::size_t i = 0; i < targets.size(); ++i) {
      const Target& t = targets[i];
      if (static_cast<int>(t.member) == view.self) {
        pp.fsm.ack(i, true);  // stored above; the engine's put returns once it holds it
        if (!t.primary) add_hint(req.key, view.names[t.hint_for]);
        continue;
      }
      send(named(dest_name_, view.names[t.member].name()),
           ReplicaPut{p_, id, static_cast<std::uint8_t>(i), me_, dl,
                      t.primary ? std::string() : std::string(view.names[t.hint_for].name()), true,
                      req.key, bytes});
    }
    (void)n;
    pp.fsm.check();
    if (pp.fsm.outcome() != Outcome::kPending) {
      finish_put(pp);
      return;
    }
    puts_.emplace(id, std::move(pp));
    arm_tick();
  }

  void finish_put(PendingPut& pp) {
    auto& lat = pp.op == Op::kDelete ? st_->delete_latency : st_->put_latency;
    lat.record(st_->now() - pp.start);
    KvReply r;
    switch (pp.fsm.outcome()) {
      case Outcome::kOk:
        r.context = std::move(pp.context);
        break;
      case Outcome::kNoQuorum:
        r = error_reply(ErrorCode::kNoQuorum);
        r.needed = pp.fsm.needed();
        r.got = pp.fsm.got();
        break;
      default:
        r = error_reply(ErrorCode::kTimeout);
        break;
    }
    if (r.code != 0) st_->counters.errors.fetch_add(1, std::memory_order_relaxed);
    answer(pp.origin, std::move(r));
    if (pp.op == Op::kDelete && pp.fsm.outcome() == Outcome::kOk) {
      send_after(self(), ReapCheck{std::move(pp.key)}, st_->options.tombstone_ttl);
    }
  }

  void coordinate_get(CoordRequest& cr, const View& view, Clock::time_point now) {
    KvRequest& req = cr.request;
    st_->counters.gets.fetch_add(1, std::memory_order_relaxed);
    std::vector<Target> targets = targets_for(view);
    const std::uint32_t r = req.r ? req.r : st_->options.read_quorum;
    const std::uint64_t id = next_req_++;
    const Clock::time_point deadline = deadline_of(req, now);
    PendingGet pg{GetFsm(targets, r), cr.origin, std::move(req.key), false, now, deadline};
    const std::uint64_t dl = wall_deadline(deadline);
    for (std::size_t i = 0; i < targets.size(); ++i) {
      const Target& t = targets[i];
      if (static_cast<int>(t.member) == view.self) {
        Result<Object> local = read_local(pg.key);
        if (!local) {
          pg.fsm.fail(i);
        } else if (local->empty()) {
          pg.fsm.reply(i, std::nullopt);
        } else {
          pg.fsm.reply(i, std::move(*local));
        }
        continue;
      }
      send(named(dest_name_, view.names[t.member].name()),
           ReplicaGet{p_, id, static_cast<std::uint8_t>(i), me_, dl, pg.key});
    }
    pg.fsm.check();
    if (pg.fsm.outcome() != Outcome::kPending) answer_get(pg);
    if (pg.fsm.all_answered()) {
      done_get(pg);
      return;
    }
    gets_.emplace(id, std::move(pg));
    arm_tick();
  }

  void answer_get(PendingGet& pg) {
    if (pg.answered) return;
    pg.answered = true;
    if (pg.reap) return;
    st_->get_latency.record(st_->now() - pg.start);
    KvReply r;
    if (pg.fsm.outcome() == Outcome::kOk) {
      const Object& o = pg.fsm.merged();
      for (const Sibling& s : o.values()) {
        if (!s.tombstone) r.values.push_back(s.value);
      }
      if (r.values.empty()) {
        st_->counters.misses.fetch_add(1, std::memory_order_relaxed);
        r = error_reply(ErrorCode::kNotFound);
      } else {
        st_->counters.hits.fetch_add(1, std::memory_order_relaxed);
        if (r.values.size() > 1 && st_->has_merges()) {
          if (auto fn = st_->merge_for(pg.key)) r.values = {(*fn)(pg.key, r.values)};
        }
        r.context = st_->signer.encode(pg.key, o.join());
      }
    } else if (pg.fsm.outcome() == Outcome::kNoQuorum) {
      r = error_reply(ErrorCode::kNoQuorum);
      r.needed = pg.fsm.needed();
      r.got = pg.fsm.got();
      st_->counters.errors.fetch_add(1, std::memory_order_relaxed);
    } else {
      r = error_reply(ErrorCode::kTimeout);
      st_->counters.errors.fetch_add(1, std::memory_order_relaxed);
    }
    answer(pg.origin, std::move(r));
  }

  // After a get: replicas that answered with less than the merge get the merge (best effort,
  // at most read_repair_per_s per node, counted).
  void read_repair(PendingGet& pg) {
    const std::vector<std::size_t> stale = pg.fsm.stale();
    if (stale.empty()) return;
    std::shared_ptr<const View> view = st_->view();
    std::string bytes;
    for (std::size_t i : stale) {
      if (!st_->take_repair_token()) {
        st_->counters.read_repairs_skipped.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      st_->counters.read_repairs.fetch_add(1, std::memory_order_relaxed);
      const Target& t = pg.fsm.targets()[i];
      if (static_cast<int>(t.member) == view->self) {
        (void)apply(pg.key, pg.fsm.merged(), std::string());
        continue;
      }
      if (bytes.empty()) encode_object(pg.fsm.merged(), bytes);
      send(named(dest_name_, view->names[t.member].name()),
           ReplicaPut{p_, 0, static_cast<std::uint8_t>(i), me_, 0,
                      t.primary ? std::string() : std::string(view->names[t.hint_for].name()),
                      false, pg.key, bytes});
    }
  }

  // Every replica answered: repair the stale ones, and reap a tombstone that all primaries
  // hold once its time to live has passed.
  void done_get(PendingGet& pg) {
    if (!pg.reap) read_repair(pg);
    maybe_reap(pg);
  }

  // -- tombstones --------------------------------------------------------------------------
  //
  // A tombstone is dropped only when every primary of its key holds exactly it (so no primary
  // can bring an older value back through read repair or hand-off) and tombstone_ttl has
  // passed since the delete (its hybrid-clock timestamp). The check is a read of all primaries:
  // tombstone_ttl after a delete this vnode coordinated, and after any read that found a
  // tombstone on every primary.

  void reap_check(const std::string& key) {
    std::shared_ptr<const View> view = st_->view();
    if (!view || !view->ready() || view->self < 0) return;
    const auto prim = view->primaries(p_, st_->options.replicas);
    std::vector<Target> targets;
    for (std::uint32_t m : prim) {
      if (!view->up[m]) return;  // a primary away: keep the tombstone
      targets.push_back(Target{m, true, m});
    }
    std::stable_partition(targets.begin(), targets.end(), [&](const Target& t) {
      return static_cast<int>(t.member) == view->self;
    });
    if (targets.empty() || static_cast<int>(targets[0].member) != view->self) return;
    const Clock::time_point now = st_->now();
    const std::uint64_t id = next_req_++;
    PendingGet pg{GetFsm(targets, static_cast<std::uint32_t>(targets.size())),
                  Origin{},
                  key,
                  false,
                  now,
                  now + st_->options.request_timeout,
                  true};
    Result<Object> local = read_local(key);
    if (!local || local->empty() || !all_tombstones(*local)) return;
    pg.fsm.reply(0, std::move(*local));
    const std::uint64_t dl = wall_deadline(pg.deadline);
    for (std::size_t i = 1; i < targets.size(); ++i) {
      send(named(dest_name_, view->names[targets[i].member].name()),
           ReplicaGet{p_, id, static_cast<std::uint8_t>(i), me_, dl, key});
    }
    pg.fsm.check();
    if (pg.fsm.all_answered()) {
      done_get(pg);
      return;
    }
    gets_.emplace(id, std::move(pg));
    arm_tick();
  }

  void maybe_reap(PendingGet& pg) {
    if (pg.fsm.outcome() != Outcome::kOk || !pg.fsm.all_answered()) return;
    const Object& merged = pg.fsm.merged();
    if (merged.empty() || !all_tombstones(merged) || !pg.fsm.stale().empty()) return;
    std::shared_ptr<const View> view = st_->view();
    const auto prim = view->primaries(p_, st_->options.replicas);
    const auto& targets = pg.fsm.targets();
    if (targets.size() != prim.size()) return;
    for (const Target& t : targets) {
      if (!t.primary) return;
    }
    std::uint64_t newest = 0;
    for (const Sibling& s : merged.values()) newest = std::max(newest, s.timestamp);
    const auto ttl = static_cast<std::uint64_t>(st_->options.tombstone_ttl.count());
    // Too young: the delete's own check comes later.
    if (HybridClock::millis(newest) + ttl > st_->wall_ms()) return;
    const std::string bytes = encode_object(merged);
    for (const Target& t : targets) {
      if (static_cast<int>(t.member) == view->self) {
        reap(pg.key, bytes);
      } else {
        send(named(dest_name_, view->names[t.member].name()), ReapTombstone{p_, pg.key, bytes});
      }
    }
  }

  void reap(const std::string& key, const std::string& object) {
    std::string bytes;
    if (!st_->engine->get(p_, key, &bytes).ok()) return;
    Result<Object> local = decode_object(bytes);
    Result<Object> asked = decode_object(object);
    if (!local || !asked || !all_tombstones(*local) || local->join() != asked->join()) return;
    (void)st_->engine->erase(p_, key);
    st_->counters.tombstones_reaped.fetch_add(1, std::memory_order_relaxed);
  }

  // -- replica side ---------------------------------------------------------------------------

  // Merges `incoming` into the stored object; records a hint when kept for another node.
  Status apply(const std::string& key, const Object& incoming, const std::string& hint) {
    Result<Object> local = read_local(key);
    if (!local) return local.error();
    Object merged = Object::sync(*local, incoming);
    resolve_conflicts(merged);
    if (!(merged == *local)) {
      if (Status s = write_local(key, merged); !s.ok()) return s;
    }
    if (!hint.empty()) add_hint(key, atom(hint));
    return Status();
  }

  void replica_put(const ReplicaPut& m) {
    if (m.deadline_ms && st_->wall_ms() > m.deadline_ms) {
      st_->counters.expired_skipped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    Status s;
    Result<Object> incoming = decode_object(m.object);
    if (!incoming) {
      s = incoming.error();
    } else {
      s = apply(m.key, *incoming, m.hint);
      st_->counters.replica_writes.fetch_add(1, std::memory_order_relaxed);
    }
    if (m.want_ack) {
      send(named(dest_name_, m.coordinator),
           ReplicaPutAck{p_, m.req_id, m.target, static_cast<std::uint16_t>(s.code()), s.ok()});
    }
  }

  void put_ack(const ReplicaPutAck& m) {
    auto it = puts_.find(m.req_id);
    if (it == puts_.end()) return;
    if (m.code == 0) {
      it->second.fsm.ack(m.target, m.durable);
    } else {
      it->second.fsm.fail(m.target);
    }
    if (it->second.fsm.outcome() != Outcome::kPending) {
      finish_put(it->second);
      puts_.erase(it);
    }
  }

  void replica_get(const ReplicaGet& m) {
    if (m.deadline_ms && st_->wall_ms() > m.deadline_ms) {
      st_->counters.expired_skipped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    ReplicaGetReply r{p_, m.req_id, m.target, 0, {}};
    Status s = st_->engine->get(p_, m.key, &r.object);
    if (!s.ok() && s.code() != ErrorCode::kNotFound) r.code = static_cast<std::uint16_t>(s.code());
    send(named(dest_name_, m.coordinator), std::move(r));
  }

  void get_reply(const ReplicaGetReply& m) {
    auto it = gets_.find(m.req_id);
    if (it == gets_.end()) return;
    PendingGet& pg = it->second;
    if (m.code != 0) {
      pg.fsm.fail(m.target);
    } else if (m.object.empty()) {
      pg.fsm.reply(m.target, std::nullopt);
    } else if (Result<Object> o = decode_object(m.object); o) {
      pg.fsm.reply(m.target, std::move(*o));
    } else {
      pg.fsm.fail(m.target);
    }
    if (pg.fsm.outcome() != Outcome::kPending) answer_get(pg);
    if (pg.fsm.all_answered()) {
      done_get(pg);
      gets_.erase(it);
    }
  }

  // -- deadlines -------------------------------------------------------------------------------

  void arm_tick() {
    if (tick_armed_) return;
    tick_armed_ = true;
    send_after(self(), Term("tick"), kTick);
  }

  void expire() {
    const Clock::time_point now = st_->now();
    for (auto it = puts_.begin(); it != puts_.end();) {
      if (it->second.deadline <= now) {
        it->second.fsm.expire();
        finish_put(it->second);
        it = puts_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = gets_.begin(); it != gets_.end();) {
      if (it->second.deadline <= now) {
        it->second.fsm.expire();
        answer_get(it->second);
        if (!it->second.reap) read_repair(it->second);
        it = gets_.erase(it);
      } else {
        ++it;
      }
    }
    if (!puts_.empty() || !gets_.empty()) arm_tick();
  }

  // -- hinted hand-off -------------------------------------------------------------------------

  void add_hint(const std::string& key, Atom primary) {
    auto& owners = hints_[key];
    if (owners.empty()) st_->hinted[p_].store(static_cast<std::uint32_t>(hints_.size()));
    if (std::find(owners.begin(), owners.end(), primary) == owners.end()) {
      owners.push_back(primary);
      st_->counters.hints.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // Sends every hinted object whose primary is up back to it; the hint stays until the
  // primary acknowledged (HandoffAck).
  void offer_hints() {
    if (hints_.empty()) return;
    std::shared_ptr<const View> view = st_->view();
    if (!view || !view->ready()) return;
    std::size_t sent = 0;
    for (const auto& [key, primaries] : hints_) {
      for (Atom primary : primaries) {
        const int idx = view->ring->member_index(primary.name());
        if (idx < 0 || !view->up[idx]) continue;
        std::string bytes;
        if (!st_->engine->get(p_, key, &bytes).ok()) continue;
        send(named(dest_name_, primary.name()), HandoffPut{p_, me_, key, std::move(bytes)});
        if (++sent >= 1000) return;  // a bounded batch per interval
      }
    }
  }

  void handoff_put(const HandoffPut& m) {
    Result<Object> incoming = decode_object(m.object);
    if (!incoming) return;
    if (!apply(m.key, *incoming, std::string()).ok()) return;
    send(named(dest_name_, m.from), HandoffAck{p_, me_, m.key, m.object});
  }

  void handoff_ack(const HandoffAck& m) {
    auto it = hints_.find(m.key);
    if (it == hints_.end()) return;
    std::shared_ptr<const View> view = st_->view();
    auto& owners = it->second;
    const Atom from = atom(m.from);
    owners.erase(std::remove(owners.begin(), owners.end(), from), owners.end());
    st_->counters.handoffs.fetch_add(1, std::memory_order_relaxed);
    if (!owners.empty()) return;
    hints_.erase(it);
    st_->hinted[p_].store(static_cast<std::uint32_t>(hints_.size()));
    // Not a primary here: drop the copy, unless a newer write arrived since the offer.
    const auto prim = view->primaries(p_, st_->options.replicas);
    const bool primary_here =
        view->self >= 0 &&
        std::find(prim.begin(), prim.end(), static_cast<std::uint32_t>(view->self)) != prim.end();
    std::string bytes;
    if (!primary_here && st_->engine->get(p_, m.key, &bytes).ok() && bytes == m.object) {
      (void)st_->engine->erase(p_, m.key);
    }
  }

  KvState* st_ = nullptr;
  std::uint32_t p_ = 0;
  std::string me_;
  std::string dest_name_;
  std::uint64_t actor_ = 0;
  std::uint64_t next_req_ = 1;
  bool tick_armed_ = false;
  std::string scratch_;
  std::unordered_map<std::uint64_t, PendingPut> puts_;
  std::unordered_map<std::uint64_t, PendingGet> gets_;
  std::map<std::string, std::vector<Atom>> hints_;
};

}  // namespace

std::string vnode_name(std::uint32_t partition) {
  return "nodus_kv_vnode_" + std::to_string(partition);
}

Result<Pid, Reason> start_vnode(Node& node, KvState* st, std::uint32_t partition) {
  SpawnOptions o;
  o.name = vnode_name(partition);
  o.max_mailbox = st->options.vnode_queue * 4;
  o.overflow = Overflow::kReject;
  return start<Vnode>(node, o, st, partition);
}

}  // namespace nodus::kv
