// The vnode: one process per partition per node. It stores the partition's objects in the
// node's engine, coordinates the puts and gets routed to it (PutFsm / GetFsm, answered straight
// to the caller), serves other coordinators' replica reads and writes, repairs stale replicas
// after a read, keeps hints while it stands in for a down primary and hands them back.
#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <unordered_map>

#include "aae.hpp"
#include "nodus/kv/client.hpp"
#include "nodus/kv/partition.hpp"
#include "nodus/node/gen_server.hpp"
#include "state.hpp"
#include "transfer.hpp"
#include "txn.hpp"
#include "watch.hpp"

namespace nodus::kv {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kTick = std::chrono::milliseconds(10);

// The vnode's timers, sent to itself. Local types that are no wire messages, so no peer can
// send one (a forged periodic timer would re-arm itself and multiply).
struct Tick {};           // expire requests whose deadline passed
struct PeriodicTimer {};  // every handoff_interval: offer hints, run the reap checks due
struct SweepTimer {};     // every ttl_sweep_interval: turn expired values into tombstones
struct EvictTimer {};     // every kEvictInterval with kv.max_keys / max_memory: LRU eviction
struct Synced {           // from the engine's syncer: writes up to `ticket` are synced (or not)
  std::uint64_t ticket;
  bool ok;
};

// Reap checks started per PeriodicTimer at most (the rest wait for the next).
constexpr std::size_t kReapChecksPerRound = 100;
// Hinted keys a vnode has offered to their primaries and not heard back about, at most; and
// hinted keys it looks at per round (when most are offered already or their primary is down).
constexpr std::size_t kHandoffWindow = 100;
constexpr std::size_t kHandoffScan = 10 * kHandoffWindow;
// LRU eviction (lru.hpp): how often each vnode looks at its node's bound, and the most keys a
// node evicts per round (the next round starts once they are answered).
constexpr auto kEvictInterval = std::chrono::milliseconds(100);
constexpr std::uint64_t kEvictPerRound = 1000;

class Vnode : public GenServer {
 public:
  Action init(KvState* st, std::uint32_t partition) {
    st_ = st;
    p_ = partition;
    ps_ = &st_->parts[partition];
    // Request ids start anywhere, so a restarted vnode takes no late answer to its
    // predecessor's requests as its own.
    next_req_ =
        st_->seed("requests/" + std::to_string(partition) + "/" + std::to_string(self().id));
    dest_name_ = vnode_name(partition);
    // Routers now send here; what they counted for a predecessor that crashed is lost with its
    // mailbox, so the count starts again (after the pid is published: see KvState::queued).
    ps_->pid_id.store(self().id, std::memory_order_seq_cst);
    st_->queued[p_].store(0, std::memory_order_seq_cst);
    st_->hinted[p_].store(static_cast<std::uint32_t>(ps_->hints.size()));
    if (st_->aae) {  // anti-entropy: the partition's tree, built again (aae.hpp)
      tree_ = TreeHook(st_->aae->trees[p_].get(), st_->engine.get(), p_);
      if (aae_begin_rebuild(*st_, p_)) send(self(), AaeRebuildStep{});  // a chunk at a time
    }
    refresh_view();
    if (st_->lru) {  // recency of the live keys: kept across restarts, built at start
      if (st_->lru->keys(p_) == 0 && st_->engine->keys(p_) > 0) {
        std::vector<std::string> live;
        st_->engine->fold(p_, [&live](std::string_view key, std::string_view value) {
          Result<Object> o = decode_object(value);
          if (o && !o->empty() && !all_tombstones(*o)) live.emplace_back(key);
          return true;
        });
        for (const auto& k : live) st_->lru->touch(p_, k);
      }
      send_after(self(), EvictTimer{}, kEvictInterval);
    }
    monitor_nodes(true);  // a replica whose node goes down fails the requests waiting for it
    send_after(self(), PeriodicTimer{}, st_->options.handoff_interval);
    send_after(self(), SweepTimer{}, st_->options.ttl_sweep_interval);
    return ok();
  }

  Action handle_info(Message& msg) override {
    refresh_view();
    if (CoordRequest* cr = msg.get<CoordRequest>()) {
      st_->unqueue(p_);
      coordinate(*cr);
      return noreply();
    }
    if (TxnCoord* tc = msg.get<TxnCoord>()) {  // a local type: only nodus_kv sends it
      st_->unqueue(p_);
      coordinate_txn(*tc);
      return noreply();
    }
    if (msg.is<AaeRebuildStep>()) {  // one chunk; the requests queued meanwhile go first
      if (auto after = aae_rebuild_step(*st_, p_)) {
        if (after->count() == 0) {
          send(self(), AaeRebuildStep{});
        } else {
          send_after(self(), AaeRebuildStep{}, *after);
        }
      }
      return noreply();
    }
    if (msg.is<Tick>()) {
      tick_armed_ = false;
      expire();
      return noreply();
    }
    if (const Synced* sy = msg.get<Synced>()) {
      synced(*sy);
      return noreply();
    }
    if (msg.is<PeriodicTimer>()) {
      offer_hints();
      run_reap_checks();
      send_after(self(), PeriodicTimer{}, st_->options.handoff_interval);
      return noreply();
    }
    if (msg.is<SweepTimer>()) {  // ttl.hpp; a key left with tombstones only is reaped later
      const auto write = [this](const std::string& key, const Object& o) {
        return write_local(key, o);
      };
      // The watches' expire event: from the partition's first primary that is up, so that
      // watchers hear of an expiry once although every replica sweeps it.
      const auto expired = [this](const std::string& key, const Object& before) {
        if (first_up_primary_here()) notify_expired(*st_, p_, key, before);
      };
      for (std::string& key : sweep_expired(*st_, p_, write, expired)) {
        schedule_reap(key, st_->now() + st_->options.tombstone_ttl);
      }
      send_after(self(), SweepTimer{}, st_->options.ttl_sweep_interval);
      return noreply();
    }
    if (msg.is<EvictTimer>()) {
      evict_round();
      send_after(self(), EvictTimer{}, kEvictInterval);
      return noreply();
    }
    if (const NodeDown* nd = msg.get<NodeDown>()) {
      node_down(nd->node);
      return noreply();
    }
    if (msg.is<NodeUp>()) return noreply();
    if (const DropCopy* d = msg.get<DropCopy>()) {  // local only: a hand-off is complete
      drop_copy(*d);
      return noreply();
    }
    // Everything else comes from vnodes on ring members (this node included), for this
    // partition; anything else is refused and counted, never trusted.
    const View& v = view();
    const Pid from = sender();
    if (!from.valid() || v.index_of(from.node) < 0) {
      // One exception: a member that has just left the ring sends its last writes on with a
      // final hand-off (transfer.hpp); a merge, so a stale copy overwrites nothing newer.
      const HandoffPut* last = msg.get<HandoffPut>();
      if (!from.valid() || !last || st_->node.is_hidden(from.node) || last->partition != p_ ||
          last->key.size() > kMaxKeyBytes) {
        return refuse();
      }
      handoff_put(*last, from);
      return noreply();
    }
    if (const ReplicaPut* rp = msg.get<ReplicaPut>()) {
      if (rp->partition != p_) return refuse();
      if (st_->timing) {
        const auto t = std::chrono::steady_clock::now();
        replica_put(*rp, from, v);
        st_->stage(Stage::kReplicaPut, std::chrono::steady_clock::now() - t);
        return noreply();
      }
      replica_put(*rp, from, v);
    } else if (const ReplicaTxn* rx = msg.get<ReplicaTxn>()) {
      if (rx->partition != p_) return refuse();
      replica_txn(*rx, from, v);
    } else if (const ReplicaPutAck* ra = msg.get<ReplicaPutAck>()) {
      if (ra->partition != p_) return refuse();
      put_ack(*ra, from);
    } else if (const ReplicaGet* rg = msg.get<ReplicaGet>()) {
      if (rg->partition != p_ || rg->key.size() > kMaxKeyBytes) return refuse();
      if (st_->timing) {
        const auto t = std::chrono::steady_clock::now();
        replica_get(*rg, from);
        st_->stage(Stage::kReplicaGet, std::chrono::steady_clock::now() - t);
        return noreply();
      }
      replica_get(*rg, from);
    } else if (const ReplicaGetReply* rr = msg.get<ReplicaGetReply>()) {
      if (rr->partition != p_) return refuse();
      get_reply(*rr, from);
    } else if (const HandoffPut* hp = msg.get<HandoffPut>()) {
      if (hp->partition != p_ || hp->key.size() > kMaxKeyBytes) return refuse();
      handoff_put(*hp, from);
    } else if (const HandoffAck* ha = msg.get<HandoffAck>()) {
      if (ha->partition != p_) return refuse();
      handoff_ack(*ha, from.node);
    } else if (const TransferDrop* td = msg.get<TransferDrop>()) {
      if (td->partition != p_) return refuse();
      transfer_drop(*td);
    } else if (const ReapTombstone* rt = msg.get<ReapTombstone>()) {
      if (rt->partition != p_) return refuse();
      reap(rt->key, rt->object);
    } else {
      return refuse();
    }
    return noreply();
  }

  // Vnodes take typed requests straight from clients that route by themselves (kv::Client:
  // docs/protocol.md 12.3), and one more call: nodus_kv_query asks for whom this vnode keeps `key`
  // as a fallback (kv explain). Anything else is an error, not a crash (the defaults stop).
  Action handle_call(Message& msg, From from) override {
    refresh_view();
    if (KvDirect* r = msg.get<KvDirect>()) {
      direct(std::move(r->request), r->deadline_ms, from);
      return noreply();
    }
    if (auto m = msg.match({"hints_for", _bin})) {
      List out;
      if (auto it = ps_->hints.find(m[0].as_bin()); it != ps_->hints.end()) {
        for (Atom a : it->second) out.push_back(bin(std::string(a.name())));
      }
      return reply(Term(std::move(out)));
    }
    st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
    return reply(tuple("error", tuple("badarg", bin("a vnode takes no calls"))));
  }
  Action handle_cast(Message&) override { return refuse(); }

  // A vnode that crashed (a bug: peer input and merge functions cannot throw out of a
  // handler) answers what it coordinated before its supervisor restarts it.
  void terminate(const Reason& reason) override {
    if (reasons::is_clean(reason)) return;
    const std::string why = "the partition's vnode stopped: " + reason.to_string();
    for (auto& [id, pp] : puts_) answer(pp.origin, error_reply(ErrorCode::kInternal, why));
    for (auto& [id, pg] : gets_) {
      if (!pg.answered && !pg.reap) answer(pg.origin, error_reply(ErrorCode::kInternal, why));
    }
  }

  Term format_status() override {
    return map({{"partition", Term(p_)},
                {"puts_in_flight", Term(puts_.size())},
                {"gets_in_flight", Term(gets_.size())},
                {"hinted_keys", Term(ps_->hints.size())}});
  }

 private:
  struct PendingPut {
    PutFsm fsm;
    Origin origin;
    Op op;
    std::string context;
    Clock::time_point start, deadline;
    std::string key;                    // deletes only: for the reap check
    Clock::time_point taken{}, sent{};  // KvState::timing only: real (steady) time
    // A transaction (txn.hpp): how to answer, each key's state once written, the keys deleted.
    std::optional<TxnShape> txn{};
    std::vector<TxnKey> txn_keys{};
    std::vector<std::string> txn_deleted{};
  };
  struct PendingGet {
    GetFsm fsm;
    Origin origin;
    std::string key;
    bool answered = false;
    Clock::time_point start, deadline;
    bool reap = false;                   // a reap check: nobody to answer
    Clock::time_point taken{}, begun{};  // KvState::timing only: real (steady) time
  };

  Action refuse() {
    st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
    return noreply();
  }

  // Takes the view nodus_kv published last, when it moved (one atomic load per message). Only
  // here, at the start of a message, so a View& held while handling it stays valid.
  void refresh_view() {
    const std::uint64_t g = st_->view_generation();
    if (!view_ || g != view_gen_) {
      view_ = st_->view();
      view_gen_ = g;
      if (!view_) view_ = std::make_shared<const View>();  // before nodus_kv published one
    }
  }
  const View& view() const { return *view_; }

  // Where the vnode of this partition runs on `node`.
  Dest peer(Atom node) const { return named(dest_name_, node.name()); }

  // The name of the primary a fallback target stands in for.
  static std::string hint_of(const View& v, const Target& t) {
    return t.primary || t.hint_for >= v.names.size() ? std::string()
                                                     : std::string(v.names[t.hint_for].name());
  }

  // -- storage -----------------------------------------------------------------------------

  Result<Object> read_local(std::string_view key) {
    std::string bytes;
    Status s = st_->engine->get(p_, key, &bytes);
    if (s.code() == ErrorCode::kNotFound) {
      tree_.read(key, nullptr);
      return Object();
    }
    if (!s.ok()) return s;
    tree_.read(key, &bytes);
    if (st_->lru) st_->lru->touch_if_present(p_, key);
    return decode_object(bytes);
  }
  // Encodes `o` into scratch_ and stores it, unless it is larger than kv.max_object_bytes: an
  // object must always fit a replica message (kValueTooLarge, nothing stored).
  Status write_local(std::string_view key, const Object& o) {
    scratch_.clear();
    encode_object(o, scratch_);
    if (scratch_.size() > st_->max_object_bytes) return object_too_large(o, scratch_.size());
    // Every write of the partition passes here or erase_local, which keep its tree current.
    tree_.before_write(key);
    Status s = st_->engine->put(p_, key, scratch_);
    if (s.ok()) {
      tree_.stored(key, scratch_);
      note_expiry(ps_->expiries, key, o);
      note_recency(key, o);
      if (ps_->forwarding.load(std::memory_order_seq_cst)) forward_write(key);
    }
    return s;
  }
  // A hand-off of this partition runs: its sender forwards the write (transfer.hpp). Loaded
  // after the store, so a write the sender's first pass did not see is always forwarded.
  void forward_write(std::string_view key) {
    send(st_->node.whereis(kTransferName), TransferWrite{p_, std::string(key)});
  }
  // True when this node is the first primary of the partition that is up, as it sees the ring.
  bool first_up_primary_here() const {
    std::shared_ptr<const View> v = st_->view();
    if (!v || !v->ready() || v->self < 0) return false;
    for (std::uint32_t m : v->primaries(p_, st_->options.replicas)) {
      if (v->up[m]) return m == static_cast<std::uint32_t>(v->self);
    }
    return false;
  }
  // Stores encoded[i] under keys[i] for every i as one engine write (put_batch: all or none),
  // keeping the partition's tree and expiry index current as write_local does. objects[i] is
  // what encoded[i] encodes.
  Status write_batch_local(const std::vector<std::string_view>& keys,
                           const std::vector<std::string>& encoded,
                           const std::vector<const Object*>& objects) {
    std::vector<std::optional<std::string>> before(keys.size());  // for the tree: what they held
    if (tree_) {
      for (std::size_t i = 0; i < keys.size(); ++i) {
        std::string bytes;
        if (st_->engine->get(p_, keys[i], &bytes).ok()) before[i] = std::move(bytes);
      }
    }
    std::vector<std::pair<std::string_view, std::string_view>> batch;
    for (std::size_t i = 0; i < keys.size(); ++i) batch.emplace_back(keys[i], encoded[i]);
    if (Status s = st_->engine->put_batch(p_, batch); !s.ok()) return s;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      tree_.read(keys[i], before[i] ? &*before[i] : nullptr);
      tree_.stored(keys[i], encoded[i]);
      note_expiry(ps_->expiries, keys[i], *objects[i]);
      note_recency(keys[i], *objects[i]);
    }
    if (ps_->forwarding.load(std::memory_order_seq_cst)) {
      for (std::string_view key : keys) forward_write(key);
    }
    return Status::Ok();
  }
  // Erases `key`, which holds `old` (its stored bytes).
  void erase_local(const std::string& key, const std::string& old) {
    if (st_->engine->erase(p_, key).ok()) {
      tree_.erased(key, old);
      ps_->expiries.note(key, 0);  // gone: nothing of it to sweep
      if (st_->lru) st_->lru->remove(p_, key);
    }
  }
  // LRU eviction: `key` was just written as `o`: the most recently used when it holds a value,
  // forgotten when only tombstones (deleted: nothing to evict).
  void note_recency(std::string_view key, const Object& o) {
    if (!st_->lru) return;
    if (o.empty() || all_tombstones(o)) {
      st_->lru->remove(p_, key);
    } else {
      st_->lru->touch(p_, key);
    }
  }
  Status object_too_large(const Object& o, std::size_t bytes) const {
    return Status(ErrorCode::kValueTooLarge, "the key's object would be " + std::to_string(bytes) +
                                                 " bytes with " + std::to_string(o.value_count()) +
                                                 " values, the limit (kv.max_object_bytes) is " +
                                                 std::to_string(st_->max_object_bytes));
  }

  // A user's merge function: what it returns, or nullopt (counted) when it throws, so that the
  // siblings are kept as they are rather than the vnode crashing.
  std::optional<std::string> run_merge(const MergeFn& fn, std::string_view key,
                                       const std::vector<std::string>& siblings) {
    try {
      return fn(key, siblings);
    } catch (...) {
      st_->counters.merge_errors.fetch_add(1, std::memory_order_relaxed);
      return std::nullopt;
    }
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

  // A request a client sent here itself (kv::Client, which knows the ring): checked and
  // coordinated as nodus_kv would (its deadline fixed now), or handed to nodus_kv when this
  // vnode is not the one to coordinate it (the client's ring is older than ours, or wrong).
  void direct(KvRequest req, std::uint64_t deadline_ms, From from) {
    const Origin origin{from, false, static_cast<Op>(req.op)};
    if (Status s = check_request(req, st_->options); !s.ok()) {
      answer(origin, error_reply(s.code(), s.message()));
      return;
    }
    const View& v = view();
    bool here = v.ready() && v.self >= 0 && partition_of(req.key, v.ring->partitions()) == p_;
    if (here) {
      const auto prim = v.primaries(p_, st_->options.replicas);
      here = std::find(prim.begin(), prim.end(), static_cast<std::uint32_t>(v.self)) != prim.end();
    }
    if (!here) {
      send(st_->node.whereis(kServerName), Reroute{std::move(req), origin});
      return;
    }
    // Its deadline: its timeout from now (as nodus_kv fixes it), or sooner when the caller
    // gives up sooner (it waited here meanwhile): then it is dropped unread in coordinate().
    const Clock::time_point now = st_->now();
    const auto timeout =
        req.timeout_ms ? std::chrono::milliseconds(req.timeout_ms) : st_->options.request_timeout;
    const Clock::time_point deadline = std::min(now + timeout, st_->local_deadline(deadline_ms));
    CoordRequest cr{std::move(req), origin, deadline,
                    st_->timing ? std::chrono::steady_clock::now() : Clock::time_point{}};
    coordinate(cr);
  }

  std::vector<Target> targets_for(const View& v) {
    std::vector<Target> t = v.targets(p_, st_->options.replicas);
    const auto self_it = std::find_if(
        t.begin(), t.end(), [&](const Target& x) { return static_cast<int>(x.member) == v.self; });
    if (self_it == t.end() && v.self >= 0) {
      // Coordinating as a fallback (no primary was up): this node stands in for the first
      // primary that has a fallback.
      auto fb = std::find_if(t.begin(), t.end(), [](const Target& x) { return !x.primary; });
      if (fb != t.end()) {
        fb->member = static_cast<std::uint32_t>(v.self);
        fb->node = v.names[fb->member];
      }
    }
    // This node first, so its own reply is target 0.
    std::stable_partition(t.begin(), t.end(),
                          [&](const Target& x) { return static_cast<int>(x.member) == v.self; });
    return t;
  }

  std::uint64_t wall_deadline(Clock::time_point deadline) const {
    return st_->wall_deadline(deadline);
  }

  void coordinate(CoordRequest& cr) {
    const Clock::time_point now = st_->now();
    if (st_->timing) {
      begun_ = std::chrono::steady_clock::now();
      const bool get = cr.request.op == static_cast<std::uint8_t>(Op::kGet);
      st_->stage(get ? Stage::kGetRoute : Stage::kPutRoute, begun_ - cr.taken);
    }
    const View& v = view();
    if (!v.ready()) {
      answer(cr.origin, error_reply(ErrorCode::kUnavailable, "the ring has not formed yet"));
      return;
    }
    // Its caller gave up while it waited here: nothing is read or stored for it.
    if (cr.deadline <= now) {
      st_->counters.expired_skipped.fetch_add(1, std::memory_order_relaxed);
      answer(cr.origin, error_reply(ErrorCode::kTimeout));
      return;
    }
    // As many in flight as may wait (kv.vnode_queue): this bounds the replica traffic a
    // coordinator causes, and so every replica's mailbox.
    if (puts_.size() + gets_.size() >= st_->options.vnode_queue) {
      st_->counters.overloaded.fetch_add(1, std::memory_order_relaxed);
      answer(cr.origin, error_reply(ErrorCode::kOverloaded));
      return;
    }
    if (cr.request.op == static_cast<std::uint8_t>(Op::kGet)) {
      coordinate_get(cr, v, now);
    } else {
      coordinate_put(cr, v, now);
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
    // A delete without a context removes what this replica has seen (Riak reads first); so
    // does a put with `overwrite` (a blind overwrite: check_request refused it with a context),
    // and a put without a context where everything this replica holds reads as absent (deleted
    // or expired): a fresh value, not a sibling of a tombstone.
    const std::uint64_t now_ms = st_->wall_ms();
    const bool blind_over_absent =
        !del && req.context.empty() && !local->empty() && reads_absent(*local, now_ms);
    VersionVector seen = (del && req.context.empty()) || req.overwrite || blind_over_absent
                             ? local->join()
                             : std::move(*ctx);
    const std::uint64_t expiry = req.ttl_ms ? now_ms + req.ttl_ms : 0;
    for (const auto& e : local->entries()) {
      for (const auto& v : e.values) st_->clock.observe(v.timestamp);
    }
    const Actor actor = ps_->actors.for_write(req.key, *local, seen);
    // Watches (watch.hpp): this coordinator is the one party that reports the change.
    const bool watch = watched(st_->node, req.key);
    const std::string watch_value = watch && !del ? std::string(req.value) : std::string();
    Object next = local->update(
        seen, Sibling{del ? std::string() : std::move(req.value), st_->clock.now(), del, expiry},
        actor);
    resolve_conflicts(next);
    if (next.value_count() > 1 && st_->has_merges()) {
      if (auto fn = st_->merge_for(req.key)) {
        std::vector<std::string> vals;
        bool any_tomb = false;
        for (const Sibling& s : next.values()) {
          if (!is_live(s, now_ms)) {  // deleted or expired: left as they are
            any_tomb = true;
          } else {
            vals.push_back(s.value);
          }
        }
        if (!any_tomb) {
          if (std::optional<std::string> merged = run_merge(*fn, req.key, vals)) {
            next.resolve(Sibling{std::move(*merged), st_->clock.now(), false, expiry}, actor);
          }
        }
      }
    }
    if (next.value_count() > st_->options.max_siblings) {
      return fail(error_reply(kv::kTooManySiblings,
                              "key would hold " + std::to_string(next.value_count()) +
                                  " siblings (limit " + std::to_string(st_->options.max_siblings) +
                                  "): write with the context of a get to resolve them"));
    }
    std::vector<Target> targets = targets_for(view);
    const std::uint32_t w = req.w ? req.w : st_->options.write_quorum;
    const std::uint32_t pw = req.pw ? req.pw : st_->options.primary_write_quorum;
    const std::uint32_t dw = req.dw ? req.dw : st_->options.durable_write_quorum;
    // A put that cannot meet W, PW or DW with the replicas up now is refused before anything is
    // stored (Riak's put FSM: insufficient_vnodes, pw_val_unsatisfied). For DW this node knows
    // only its own engine: the others' may be durable.
    const auto primaries_up = static_cast<std::uint32_t>(
        std::count_if(targets.begin(), targets.end(), [](const Target& t) { return t.primary; }));
    if (targets.size() < w) {
      return fail(no_quorum_reply(Quorum::kW, w, static_cast<std::uint32_t>(targets.size())));
    }
    if (primaries_up < pw) return fail(no_quorum_reply(Quorum::kPw, pw, primaries_up));
    const bool durable = st_->engine->durable();
    const bool self_target = !targets.empty() && static_cast<int>(targets[0].member) == view.self;
    const auto may_be_durable =
        static_cast<std::uint32_t>(targets.size()) - (self_target && !durable ? 1 : 0);
    if (may_be_durable < dw) return fail(no_quorum_reply(Quorum::kDw, dw, may_be_durable));
    if (Status s = write_local(req.key, next); !s.ok()) {
      if (s.code() != ErrorCode::kValueTooLarge) {
        return fail(error_reply(ErrorCode::kInternal, s.to_string()));
      }
      // Too large with siblings: resolving them is the way out; one value alone: too large.
      const bool siblings = next.value_count() > 1;
      return fail(error_reply(
          siblings ? kv::kTooManySiblings : ErrorCode::kValueTooLarge,
          s.message() + (siblings ? ": write with the context of a get to resolve them" : "")));
    }
    st_->note_siblings(next.value_count());
    if (watch) {
      notify_change(*st_, req.key, next, del ? WatchKind::kDelete : WatchKind::kPut, watch_value,
                    seen);
    }
    const std::uint64_t id = next_req_++;
    const Clock::time_point deadline = cr.deadline;
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
        if (st_->engine->acks_after_sync()) {  // stored above, acknowledged once synced
          after_sync([this, id, i](bool ok) { self_synced(id, i, ok); });
        } else {
          pp.fsm.ack(i, durable);  // stored above; the engine's put returns once it holds it
        }
        if (!t.primary) add_hint(req.key, view.names[t.hint_for]);
        continue;
      }
      send(peer(t.node), ReplicaPut{p_, id, static_cast<std::uint8_t>(i), dl, hint_of(view, t),
                                    true, req.key, bytes});
    }
    if (st_->timing) {
      pp.taken = cr.taken;
      pp.sent = std::chrono::steady_clock::now();
      st_->stage(Stage::kPutLocal, pp.sent - begun_);
    }
    pp.fsm.check();
    if (pp.fsm.outcome() != Outcome::kPending) {
      finish_put(pp);
      return;
    }
    puts_.emplace(id, std::move(pp));
    arm_tick();
  }

  static KvReply no_quorum_reply(Quorum which, std::uint32_t needed, std::uint32_t got) {
    KvReply r = error_reply(ErrorCode::kNoQuorum);
    r.quorum = quorum_name(which);
    r.needed = needed;
    r.got = got;
    return r;
  }
  template <class Fsm>
  static KvReply no_quorum_reply(const Fsm& fsm) {
    return no_quorum_reply(fsm.which(), fsm.needed(), fsm.got());
  }

  void finish_put(PendingPut& pp) {
    auto& lat = pp.op == Op::kDelete ? st_->delete_latency : st_->put_latency;
    lat.record(st_->now() - pp.start);
    if (st_->timing && pp.fsm.outcome() == Outcome::kOk) {
      const auto t = std::chrono::steady_clock::now();
      st_->stage(Stage::kPutQuorum, t - pp.sent);
      st_->stage(Stage::kPutTotal, t - pp.taken);
    }
    KvReply r;
    switch (pp.fsm.outcome()) {
      case Outcome::kOk:
        r.context = std::move(pp.context);
        break;
      case Outcome::kNoQuorum:
        r = no_quorum_reply(pp.fsm);
        break;
      default:
        r = error_reply(ErrorCode::kTimeout);
        break;
    }
    if (r.code != 0) st_->counters.errors.fetch_add(1, std::memory_order_relaxed);
    if (pp.txn) {
      finish_txn(pp, std::move(r));
      return;
    }
    answer(pp.origin, std::move(r));
    if (pp.op == Op::kDelete && pp.fsm.outcome() == Outcome::kOk) {
      schedule_reap(pp.key, st_->now() + st_->options.tombstone_ttl);
    }
  }

  // -- transactions and compare-and-set (txn.hpp) ----------------------------------------------
  //
  // The conditions are checked against this replica's objects and every write is stored here in
  // one step of this process, so no other request this vnode coordinates or serves sees the
  // keys in between; each replica gets all the objects in one ReplicaTxn, applied in one step.

  void finish_txn(PendingPut& pp, KvReply r) {
    TxnReply t = txn_error(static_cast<ErrorCode>(r.code), std::move(r.message));
    t.needed = r.needed;
    t.got = r.got;
    t.quorum = std::move(r.quorum);
    if (r.code == 0) t.keys = std::move(pp.txn_keys);
    answer_txn(pp.origin.from, *pp.txn, std::move(t));
    if (r.code == 0) {
      for (const auto& k : pp.txn_deleted) {
        schedule_reap(k, st_->now() + st_->options.tombstone_ttl);
      }
    }
  }

  void coordinate_txn(TxnCoord& tc) {
    const Clock::time_point now = st_->now();
    auto fail = [&](ErrorCode code, std::string message) {
      st_->counters.errors.fetch_add(1, std::memory_order_relaxed);
      answer_txn(tc.from, tc.shape, txn_error(code, std::move(message)));
    };
    const View& view = this->view();
    if (!view.ready()) return fail(ErrorCode::kUnavailable, "the ring has not formed yet");
    if (tc.deadline <= now) {
      st_->counters.expired_skipped.fetch_add(1, std::memory_order_relaxed);
      return fail(ErrorCode::kTimeout, "");
    }
    if (puts_.size() + gets_.size() >= st_->options.vnode_queue) {
      st_->counters.overloaded.fetch_add(1, std::memory_order_relaxed);
      return fail(ErrorCode::kOverloaded, "");
    }
    KvTxn& t = tc.txn;
    const auto prim = view.primaries(p_, st_->options.replicas);
    if (view.self < 0 ||
        std::find(prim.begin(), prim.end(), static_cast<std::uint32_t>(view.self)) == prim.end()) {
      return fail(ErrorCode::kUnavailable, "this node is no primary of partition " +
                                               std::to_string(p_) + " any more: retry");
    }
    auto planned = plan_txn(
        *st_, *ps_, t, p_, view.ring->partitions(),
        [this](const std::string& key) { return read_local(key); },
        [this](Object& o) { resolve_conflicts(o); });
    if (TxnReply* r = std::get_if<TxnReply>(&planned)) {  // refused, or a read: answered now
      if (r->code != 0) st_->counters.errors.fetch_add(1, std::memory_order_relaxed);
      answer_txn(tc.from, tc.shape, std::move(*r));
      return;
    }
    TxnPlan& plan = std::get<TxnPlan>(planned);
    std::vector<Target> targets = targets_for(view);
    const std::uint32_t w = t.w ? t.w : st_->options.write_quorum;
    const std::uint32_t pw = t.pw ? t.pw : st_->options.primary_write_quorum;
    const std::uint32_t dw = t.dw ? t.dw : st_->options.durable_write_quorum;
    const auto primaries_up = static_cast<std::uint32_t>(
        std::count_if(targets.begin(), targets.end(), [](const Target& x) { return x.primary; }));
    auto quorum_fail = [&](Quorum q, std::uint32_t needed, std::uint32_t got) {
      KvReply nq = no_quorum_reply(q, needed, got);
      TxnReply r = txn_error(ErrorCode::kNoQuorum);
      r.quorum = nq.quorum;
      r.needed = needed;
      r.got = got;
      st_->counters.errors.fetch_add(1, std::memory_order_relaxed);
      answer_txn(tc.from, tc.shape, std::move(r));
    };
    if (targets.size() < w) {
      return quorum_fail(Quorum::kW, w, static_cast<std::uint32_t>(targets.size()));
    }
    if (primaries_up < pw) return quorum_fail(Quorum::kPw, pw, primaries_up);
    const bool durable = st_->engine->durable();
    const auto may_be_durable = static_cast<std::uint32_t>(targets.size()) - (durable ? 0 : 1);
    if (may_be_durable < dw) return quorum_fail(Quorum::kDw, dw, may_be_durable);
    std::vector<std::string_view> batch_keys;
    std::vector<const Object*> batch_objects;
    for (std::size_t n = 0; n < plan.written.size(); ++n) {
      batch_keys.emplace_back(t.ops[plan.written[n]].key);
      batch_objects.push_back(&plan.objects[plan.written[n]]);
    }
    if (Status s = write_batch_local(batch_keys, plan.encoded, batch_objects); !s.ok()) {
      return fail(ErrorCode::kInternal, s.to_string());
    }
    for (std::size_t n = 0; n < plan.written.size(); ++n) {  // one watch event per key written
      const TxnOp& op = t.ops[plan.written[n]];
      if (!watched(st_->node, op.key)) continue;
      const bool del = op.write == kTxnDelete;
      notify_change(*st_, op.key, plan.objects[plan.written[n]],
                    del ? WatchKind::kDelete : WatchKind::kPut,
                    del ? std::string() : std::string(op.value), plan.seen[n]);
    }
    st_->counters.puts.fetch_add(plan.written.size(), std::memory_order_relaxed);
    const std::uint64_t id = next_req_++;
    PendingPut pp{PutFsm(targets, w, pw, dw),
                  Origin{tc.from, false, Op::kPut},
                  Op::kPut,
                  {},
                  now,
                  tc.deadline,
                  {}};
    pp.txn = tc.shape;
    if (st_->timing) pp.taken = pp.sent = std::chrono::steady_clock::now();
    for (std::size_t j = 0; j < t.ops.size(); ++j) {
      pp.txn_keys.push_back(txn_key_state(*st_, t.ops[j].key, plan.objects[j]));
      if (t.ops[j].write == kTxnDelete) pp.txn_deleted.push_back(t.ops[j].key);
    }
    ReplicaTxn rt{p_, id, 0, wall_deadline(tc.deadline), {}, {}, {}};
    for (std::size_t n = 0; n < plan.written.size(); ++n) {
      rt.keys.push_back(t.ops[plan.written[n]].key);
      rt.objects.emplace_back(std::move(plan.encoded[n]));
    }
    for (std::size_t i = 0; i < targets.size(); ++i) {
      const Target& x = targets[i];
      if (static_cast<int>(x.member) == view.self) {
        if (st_->engine->acks_after_sync()) {
          after_sync([this, id, i](bool ok) { self_synced(id, i, ok); });
        } else {
          pp.fsm.ack(i, durable);
        }
        continue;
      }
      rt.target = static_cast<std::uint8_t>(i);
      rt.hint = hint_of(view, x);
      send(peer(x.node), rt);
    }
    pp.fsm.check();
    if (pp.fsm.outcome() != Outcome::kPending) {
      finish_put(pp);
      return;
    }
    puts_.emplace(id, std::move(pp));
    arm_tick();
  }

  // apply() of several keys as one engine write (put_batch): all of them or none.
  Status apply_all(const std::vector<std::string>& keys, const std::vector<Object>& incoming,
                   Atom hint) {
    std::vector<std::string> encoded;
    std::vector<std::string_view> changed;
    std::vector<Object> merged_objects;
    merged_objects.reserve(keys.size());  // (no reallocation: `objects` points into it)
    std::vector<const Object*> objects;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      Result<Object> local = read_local(keys[i]);
      if (!local) return local.error();
      ps_->actors.on_merge(keys[i], *local, incoming[i]);
      Object merged = Object::sync(*local, incoming[i]);
      resolve_conflicts(merged);
      if (merged == *local) continue;
      std::string bytes;
      encode_object(merged, bytes);
      if (bytes.size() > st_->max_object_bytes) return object_too_large(merged, bytes.size());
      encoded.push_back(std::move(bytes));
      changed.emplace_back(keys[i]);
      merged_objects.push_back(std::move(merged));
      objects.push_back(&merged_objects.back());
    }
    if (!changed.empty()) {
      if (Status s = write_batch_local(changed, encoded, objects); !s.ok()) return s;
    }
    if (hint != Atom()) {
      for (const auto& k : keys) add_hint(k, hint);
    }
    return Status();
  }

  // Acknowledges a replica write (ReplicaPut, ReplicaTxn) with its outcome `s`: at once, or on
  // an engine that acknowledges only synced data, once the sync that holds it is done.
  void ack_replica_write(const Pid& from, std::uint64_t req_id, std::uint8_t target,
                         const Status& s) {
    ReplicaPutAck ack{p_, req_id, target, static_cast<std::uint16_t>(s.code()),
                      s.ok() && st_->engine->durable()};
    if (!s.ok() || !st_->engine->acks_after_sync()) {
      send(from, ack);
      return;
    }
    after_sync([from, ack](bool ok) mutable {
      if (!ok) {
        ack.code = static_cast<std::uint16_t>(ErrorCode::kInternal);
        ack.durable = false;
      }
      send(from, ack);
    });
  }

  // What a replica write (ReplicaPut, ReplicaTxn) checks first: false when its caller gave up
  // (past `deadline_ms`: skipped and counted); else `hint` is the member the write is a hint for
  // (none: Atom()), and `s` is badarg when `hint_text` names no member.
  bool replica_write_wanted(std::uint64_t deadline_ms, const std::string& hint_text, const View& v,
                            Atom& hint, Status& s) {
    if (deadline_ms && st_->wall_ms() > deadline_ms) {
      st_->counters.expired_skipped.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    if (!hint_text.empty()) {
      const std::optional<Atom> h = Atom::existing(hint_text);
      if (h) hint = *h;
      if (!h || v.index_of(hint) < 0) s = Status(ErrorCode::kBadArg, "the hint names no member");
    }
    return true;
  }

  void replica_txn(const ReplicaTxn& m, const Pid& from, const View& v) {
    Status s;
    Atom hint;
    if (!replica_write_wanted(m.deadline_ms, m.hint, v, hint, s)) return;
    if (m.keys.size() != m.objects.size() || m.keys.size() > kMaxTxnKeys ||
        std::set<std::string_view>(m.keys.begin(), m.keys.end()).size() != m.keys.size()) {
      s = Status(ErrorCode::kBadArg, "keys and objects do not pair up");
    }
    // Every object decoded before any is applied: all of it or none.
    std::vector<Object> incoming;
    for (std::size_t i = 0; s.ok() && i < m.keys.size(); ++i) {
      if (m.keys[i].empty() || m.keys[i].size() > kMaxKeyBytes) {
        s = Status(ErrorCode::kBadArg, "bad key");
        break;
      }
      Result<Object> o = decode_object(m.objects[i]);
      if (!o) {
        s = o.error();
        break;
      }
      incoming.push_back(std::move(*o));
    }
    if (!s.ok()) {
      st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
    } else {
      s = apply_all(m.keys, incoming, hint);
      st_->counters.replica_writes.fetch_add(1, std::memory_order_relaxed);
    }
    ack_replica_write(from, m.req_id, m.target, s);
  }

  void coordinate_get(CoordRequest& cr, const View& view, Clock::time_point now) {
    KvRequest& req = cr.request;
    st_->counters.gets.fetch_add(1, std::memory_order_relaxed);
    const std::uint32_t r = req.r ? req.r : st_->options.read_quorum;
    const std::uint32_t pr = req.pr ? req.pr : st_->options.primary_read_quorum;
    cr.origin.with_ttl = req.with_ttl;
    PendingGet pg{
        GetFsm(targets_for(view), r, pr), cr.origin, std::move(req.key), false, now, cr.deadline};
    if (st_->timing) {
      pg.taken = cr.taken;
      pg.begun = begun_;
    }
    fan_out_get(std::move(pg), view);
  }

  // Asks a get's targets (this node's replica is read here, the others get a ReplicaGet) and
  // keeps it until every replica answered or its deadline passed.
  void fan_out_get(PendingGet pg, const View& view) {
    const std::uint64_t id = next_req_++;
    const std::uint64_t dl = wall_deadline(pg.deadline);
    const std::vector<Target>& targets = pg.fsm.targets();
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
      send(peer(t.node), ReplicaGet{p_, id, static_cast<std::uint8_t>(i), dl, pg.key});
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
    if (st_->timing && pg.fsm.outcome() == Outcome::kOk) {
      const auto t = std::chrono::steady_clock::now();
      st_->stage(Stage::kGetQuorum, t - pg.begun);
      st_->stage(Stage::kGetTotal, t - pg.taken);
    }
    KvReply r;
    if (pg.fsm.outcome() == Outcome::kOk) {
      const Object& o = pg.fsm.merged();
      // Replicas that each kept one value of concurrent writes merge into siblings: under
      // lww the answer is the latest of them, as the replicas keep once repaired.
      Object latest;
      const Object* answer = &o;
      if (st_->options.conflicts == Conflicts::kLww && o.value_count() > 1) {
        latest = o;
        resolve_conflicts(latest);
        answer = &latest;
      }
      // Deleted and expired values are left out (ttl.hpp: expired reads as absent at once).
      const std::uint64_t now_ms = st_->wall_ms();
      for (const Sibling& s : answer->values()) {
        if (is_live(s, now_ms)) r.values.push_back(s.value);
      }
      if (const auto left = ttl_left_ms(*answer, now_ms); left && *left > 0) {
        r.ttl_ms = static_cast<std::int64_t>(*left);
      }
      if (r.values.empty()) {
        st_->counters.misses.fetch_add(1, std::memory_order_relaxed);
        r = error_reply(ErrorCode::kNotFound);
      } else {
        st_->counters.hits.fetch_add(1, std::memory_order_relaxed);
        if (r.values.size() > 1 && st_->has_merges()) {
          if (auto fn = st_->merge_for(pg.key)) {
            const std::vector<std::string> siblings(r.values.begin(), r.values.end());
            if (std::optional<std::string> merged = run_merge(*fn, pg.key, siblings)) {
              r.values = {Bin(std::move(*merged))};
            }
          }
        }
        r.context = st_->signer.encode(pg.key, o.join());
      }
    } else if (pg.fsm.outcome() == Outcome::kNoQuorum) {
      r = no_quorum_reply(pg.fsm);
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
    const View& v = view();
    std::string bytes;
    for (std::size_t i : stale) {
      if (!st_->take_repair_token()) {
        st_->counters.read_repairs_skipped.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      st_->counters.read_repairs.fetch_add(1, std::memory_order_relaxed);
      const Target& t = pg.fsm.targets()[i];
      if (t.node == st_->node.name()) {
        (void)apply(pg.key, pg.fsm.merged(), Atom());
        continue;
      }
      if (bytes.empty()) encode_object(pg.fsm.merged(), bytes);
      send(peer(t.node),
           ReplicaPut{p_, 0, static_cast<std::uint8_t>(i), 0, hint_of(v, t), false, pg.key, bytes});
    }
  }

  // Every replica answered: repair the stale ones (a reap check's too: a primary that missed
  // the delete gets the tombstone), and reap a tombstone that all primaries hold once its time
  // to live has passed; a reap check that could not reap tries again later.
  void done_get(PendingGet& pg) {
    read_repair(pg);
    if (!maybe_reap(pg) && pg.reap) retry_reap(pg.key);
  }

  // -- tombstones --------------------------------------------------------------------------
  //
  // A tombstone is dropped only when every primary of its key holds exactly it (so no primary
  // can bring an older value back through read repair or hand-off) and tombstone_ttl has
  // passed since the delete (its hybrid-clock timestamp). The check is a read of all primaries,
  // run by a primary: tombstone_ttl after a delete it coordinated or a tombstone handed back
  // to it, and again while a primary is away or missed the delete (the check repairs it), until
  // the tombstone is reaped or superseded; also after any read that found a tombstone on every
  // primary. Checks wait in PartitionState::reap_queue (one per key, kept across restarts of
  // the vnode) and run from the periodic timer, a bounded number per round.

  void schedule_reap(const std::string& key, Clock::time_point due) {
    auto [it, fresh] = ps_->reap_due.emplace(key, due);
    if (fresh) ps_->reap_queue.emplace(due, std::string_view(it->first));
  }
  // Checks again later: tombstone_ttl from now, at least handoff_interval, at most 60 s.
  void retry_reap(const std::string& key) {
    const auto wait = std::clamp(st_->options.tombstone_ttl, st_->options.handoff_interval,
                                 std::chrono::milliseconds(60000));
    schedule_reap(key, st_->now() + wait);
  }
  void run_reap_checks() {
    const Clock::time_point now = st_->now();
    for (std::size_t n = 0; n < kReapChecksPerRound && !ps_->reap_queue.empty(); ++n) {
      auto first = ps_->reap_queue.begin();
      if (first->first > now) break;
      auto due = ps_->reap_due.find(std::string(first->second));
      std::string key = due->first;
      ps_->reap_queue.erase(first);
      ps_->reap_due.erase(due);
      st_->counters.reap_checks.fetch_add(1, std::memory_order_relaxed);
      reap_check(key);
    }
  }

  void reap_check(const std::string& key) {
    const View& v = view();
    if (!v.ready() || v.self < 0) return;
    Result<Object> local = read_local(key);
    if (!local || local->empty() || !all_tombstones(*local)) return;  // reaped or superseded
    const auto prim = v.primaries(p_, st_->options.replicas);
    if (std::find(prim.begin(), prim.end(), static_cast<std::uint32_t>(v.self)) == prim.end()) {
      return;  // no primary here: a fallback hands its copy back instead
    }
    std::vector<Target> targets;
    for (std::uint32_t m : prim) {
      if (!v.up[m]) {  // a primary away: keep the tombstone, and look again later
        retry_reap(key);
        return;
      }
      targets.push_back(Target{m, true, m, v.names[m]});
    }
    const Clock::time_point now = st_->now();
    const auto all = static_cast<std::uint32_t>(targets.size());
    fan_out_get(PendingGet{GetFsm(std::move(targets), all), Origin{}, key, false, now,
                           now + st_->options.request_timeout, true},
                v);
  }

  // Reaps the tombstone `pg` read on every primary, if its time to live passed; true if so.
  bool maybe_reap(PendingGet& pg) {
    if (pg.fsm.outcome() != Outcome::kOk || !pg.fsm.all_answered()) return false;
    const Object& merged = pg.fsm.merged();
    if (merged.empty() || !all_tombstones(merged) || !pg.fsm.stale().empty()) return false;
    const View& v = view();
    const auto prim = v.primaries(p_, st_->options.replicas);
    const auto& targets = pg.fsm.targets();
    if (targets.size() != prim.size()) return false;
    for (const Target& t : targets) {
      if (!t.primary) return false;
    }
    // Too young (since its delete, or the expiry of the value it was): a check comes later.
    const auto ttl = static_cast<std::uint64_t>(st_->options.tombstone_ttl.count());
    if (tombstone_age_from(merged) + ttl > st_->wall_ms()) return false;
    const std::string bytes = encode_object(merged);
    for (const Target& t : targets) {
      if (t.node == st_->node.name()) {
        reap(pg.key, bytes);
      } else {
        send(peer(t.node), ReapTombstone{p_, pg.key, bytes});
      }
    }
    return true;
  }

  void reap(const std::string& key, const std::string& object) {
    std::string bytes;
    if (!st_->engine->get(p_, key, &bytes).ok()) return;
    Result<Object> local = decode_object(bytes);
    Result<Object> asked = decode_object(object);
    if (!local || !asked || !all_tombstones(*local) || local->join() != asked->join()) return;
    erase_local(key, bytes);
    st_->counters.tombstones_reaped.fetch_add(1, std::memory_order_relaxed);
  }

  // -- replica side ---------------------------------------------------------------------------

  // Merges `incoming` into the stored object; records a hint when kept for `hint` (a member).
  Status apply(const std::string& key, const Object& incoming, Atom hint) {
    Result<Object> local = read_local(key);
    if (!local) return local.error();
    ps_->actors.on_merge(key, *local, incoming);
    Object merged = Object::sync(*local, incoming);
    resolve_conflicts(merged);
    if (!(merged == *local)) {
      if (Status s = write_local(key, merged); !s.ok()) return s;
    }
    if (hint != Atom()) add_hint(key, hint);
    return Status();
  }

  void replica_put(const ReplicaPut& m, const Pid& from, const View& v) {
    Status s;
    Atom hint;
    if (!replica_write_wanted(m.deadline_ms, m.hint, v, hint, s)) return;
    if (m.key.empty() || m.key.size() > kMaxKeyBytes) s = Status(ErrorCode::kBadArg, "bad key");
    Result<Object> incoming = s.ok() ? decode_object(m.object) : Result<Object>(s);
    if (!incoming) {
      s = incoming.error();
      st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
    } else {
      s = apply(m.key, *incoming, hint);
      st_->counters.replica_writes.fetch_add(1, std::memory_order_relaxed);
      // A repair (read repair, anti-entropy) that brought a tombstone: see to its reaping.
      if (s.ok() && !m.want_ack && all_tombstones(*incoming)) {
        schedule_reap(m.key, st_->now() + st_->options.tombstone_ttl);
      }
    }
    if (!m.want_ack) return;
    ack_replica_write(from, m.req_id, m.target, s);
  }

  // -- sync = always (group commit) ------------------------------------------------------------
  //
  // With an engine that acknowledges after its sync, every acknowledgement of a write (this
  // vnode's own for a put it coordinates, a ReplicaPutAck, a HandoffAck) waits in unsynced_
  // with the engine's write ticket; the vnode asks the engine once for the newest ticket, and
  // the engine's syncer answers with a Synced message after the one sync that covers them all.
  // The vnode never waits on the disk itself, so its scheduler thread runs other vnodes.

  void after_sync(std::function<void(bool ok)> fn) {
    unsynced_.emplace_back(st_->engine->write_ticket(), std::move(fn));
    ask_sync();
  }
  void ask_sync() {
    if (sync_asked_ || unsynced_.empty()) return;
    sync_asked_ = true;
    const Pid me = self();
    const std::uint64_t ticket = unsynced_.back().first;
    st_->engine->when_synced(ticket, [me, ticket](Status s) {
      nodus::send(me, Synced{ticket, s.ok()});
    });
  }
  void synced(const Synced& m) {
    sync_asked_ = false;
    while (!unsynced_.empty() && unsynced_.front().first <= m.ticket) {
      auto fn = std::move(unsynced_.front().second);
      unsynced_.pop_front();
      fn(m.ok);
    }
    ask_sync();
  }
  // This node's replica of put `id` (target `i`) is synced, or its sync failed.
  void self_synced(std::uint64_t id, std::size_t i, bool ok) {
    auto it = puts_.find(id);
    if (it == puts_.end()) return;  // answered already (its deadline passed)
    if (ok) {
      it->second.fsm.ack(i, true);
    } else {
      it->second.fsm.fail(i);
    }
    if (it->second.fsm.outcome() != Outcome::kPending) {
      finish_put(it->second);
      puts_.erase(it);
    }
  }

  // Is the reply to target `i` of a request from the node that target is? (Acks and replies
  // are matched by request id and target index; a node may answer only for itself.)
  template <class Fsm>
  bool from_target(const Fsm& fsm, std::size_t i, const Pid& from) {
    if (i < fsm.targets().size() && fsm.targets()[i].node == from.node) return true;
    st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
    return false;
  }

  void put_ack(const ReplicaPutAck& m, const Pid& from) {
    auto it = puts_.find(m.req_id);
    if (it == puts_.end() || !from_target(it->second.fsm, m.target, from)) return;
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

  void replica_get(const ReplicaGet& m, const Pid& from) {
    if (m.deadline_ms && st_->wall_ms() > m.deadline_ms) {
      st_->counters.expired_skipped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    ReplicaGetReply r{p_, m.req_id, m.target, 0, {}};
    Status s = st_->engine->get(p_, m.key, &r.object);
    if (!s.ok() && s.code() != ErrorCode::kNotFound) r.code = static_cast<std::uint16_t>(s.code());
    if (s.ok() && st_->lru) st_->lru->touch_if_present(p_, m.key);
    send(from, std::move(r));
  }

  void get_reply(const ReplicaGetReply& m, const Pid& from) {
    auto it = gets_.find(m.req_id);
    if (it == gets_.end() || !from_target(it->second.fsm, m.target, from)) return;
    PendingGet& pg = it->second;
    if (m.code != 0) {
      pg.fsm.fail(m.target);
    } else if (m.object.empty()) {
      pg.fsm.reply(m.target, std::nullopt);
    } else if (Result<Object> o = decode_object(m.object); o) {
      pg.fsm.reply(m.target, std::move(*o));
    } else {
      st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
      pg.fsm.fail(m.target);
    }
    if (pg.fsm.outcome() != Outcome::kPending) answer_get(pg);
    if (pg.fsm.all_answered()) {
      done_get(pg);
      gets_.erase(it);
    }
  }

  // -- failures --------------------------------------------------------------------------------

  // Node `n` went down: every request still waiting for a replica there counts it as failed
  // now (Riak's FSMs hear of a dead vnode the same way), so a quorum that can no longer be met
  // is answered no_quorum at once rather than timeout at its deadline.
  void node_down(Atom n) {
    for (auto it = puts_.begin(); it != puts_.end();) {
      PutFsm& fsm = it->second.fsm;
      for (std::size_t i = 0; i < fsm.targets().size(); ++i) {
        if (fsm.targets()[i].node == n) fsm.fail(i);
      }
      if (fsm.outcome() != Outcome::kPending) {
        finish_put(it->second);
        it = puts_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = gets_.begin(); it != gets_.end();) {
      PendingGet& pg = it->second;
      for (std::size_t i = 0; i < pg.fsm.targets().size(); ++i) {
        if (pg.fsm.targets()[i].node == n) pg.fsm.fail(i);
      }
      if (pg.fsm.outcome() != Outcome::kPending) answer_get(pg);
      if (pg.fsm.all_answered()) {
        done_get(pg);
        it = gets_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // -- deadlines -------------------------------------------------------------------------------

  void arm_tick() {
    if (tick_armed_) return;
    tick_armed_ = true;
    send_after(self(), Tick{}, kTick);
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
        read_repair(it->second);
        if (it->second.reap) retry_reap(it->second.key);
        it = gets_.erase(it);
      } else {
        ++it;
      }
    }
    if (!puts_.empty() || !gets_.empty()) arm_tick();
  }

  // -- LRU eviction (kv.max_keys, kv.max_memory; lru.hpp) ---------------------------------------
  //
  // Every vnode's timer may start a round; one runs at a time per node (KvState::
  // evict_running). A round works out the node's excess (live keys beyond max_keys, or what the
  // memory beyond max_memory is worth in keys at its bytes per key now: the engine's estimate
  // and the TTL and LRU indexes', KvState::memory_bytes), takes its share
  // of it (excess / copies: when every node is over, each deleting that much brings them all
  // down at once, a delete removing the key from every replica; one node alone over gets there
  // in a few rounds), and deletes that many of the node's least recently used keys, of the
  // partitions it owns first, through the normal coordinated delete with the causal context this
  // node's replica holds: a write that raced the eviction is not covered by it and survives as
  // the key's value. A process of its own sends them (kv::Client, so the vnode keeps serving);
  // the next round starts once they are answered.

  void evict_round() {
    NodeLru& lru = *st_->lru;
    const View& v = view();
    if (!v.ready() || v.self < 0) return;
    const std::uint64_t live = lru.size();
    std::uint64_t excess = 0;
    const std::uint64_t max_keys = st_->options.max_keys;
    if (max_keys && live > max_keys) excess = live - max_keys;
    if (st_->options.max_memory && live > 0) {
      const std::uint64_t mem = st_->memory_bytes();
      if (mem > st_->options.max_memory) {
        const std::uint64_t per_key = std::max<std::uint64_t>(1, mem / live);
        excess = std::max(excess, (mem - st_->options.max_memory + per_key - 1) / per_key);
      }
    }
    if (excess == 0 || st_->evict_running.exchange(true, std::memory_order_acq_rel)) return;
    const auto self = static_cast<std::uint32_t>(v.self);
    const std::uint32_t q = v.ring->partitions();
    const std::uint32_t n = st_->options.replicas;
    std::vector<bool> owned(q), primary(q);
    for (std::uint32_t p = 0; p < q; ++p) {
      owned[p] = v.ring->owner(p) == self;
      const auto prim = v.primaries(p, n);
      primary[p] = std::find(prim.begin(), prim.end(), self) != prim.end();
    }
    const auto copies =
        std::min<std::uint32_t>(n, static_cast<std::uint32_t>(v.ring->members().size()));
    const std::uint64_t round = std::min(kEvictPerRound, (excess + copies - 1) / copies);
    auto victims = lru.oldest(
        round, [&](std::uint32_t p) { return p < q && owned[p]; },
        [&](std::uint32_t p) { return p < q && primary[p]; }, 20 * round + 1000);
    std::vector<std::pair<std::string, std::string>> jobs;  // key, its context here
    for (auto& [p, key] : victims) {
      std::string bytes;
      if (!st_->engine->get(p, key, &bytes).ok()) continue;
      Result<Object> o = decode_object(bytes);
      if (!o) continue;
      std::string context = st_->signer.encode(key, o->join());
      jobs.emplace_back(std::move(key), std::move(context));
    }
    if (jobs.empty()) {
      st_->evict_running.store(false, std::memory_order_release);
      return;
    }
    KvState* st = st_;
    spawn(st_->node, [st, jobs = std::move(jobs)] {
      const Client client(st->node);
      for (const auto& [key, context] : jobs) {
        RequestOptions o;
        o.context = context;
        if (client.del(key, o)) st->counters.evictions.fetch_add(1, std::memory_order_relaxed);
      }
      st->evict_running.store(false, std::memory_order_release);
    });
  }

  // -- hinted hand-off -------------------------------------------------------------------------

  // The copy of a key handed to its new replica (transfer.cpp), if nothing changed since and
  // this node is no replica of the partition any more (nor keeps a hint for the key).
  void drop_copy(const DropCopy& d) {
    if (ps_->hints.count(d.key)) return;
    const View& v = view();
    if (!v.ready()) return;
    const auto prim = v.primaries(p_, st_->options.replicas);
    if (v.self >= 0 &&
        std::find(prim.begin(), prim.end(), static_cast<std::uint32_t>(v.self)) != prim.end()) {
      return;
    }
    std::string bytes;
    if (!st_->engine->get(p_, d.key, &bytes).ok() || bytes != d.object) return;
    erase_local(d.key, bytes);
  }

  // A hand-off to this node was called off (transfer.hpp): its copy goes if nobody needs it.
  void transfer_drop(const TransferDrop& d) {
    if (drop_gen_ != view_gen_ + 1) {  // once per view: it walks the ring's pending hand-offs
      drop_unwanted_ = copy_unwanted(view(), p_, st_->options.replicas);
      drop_gen_ = view_gen_ + 1;
    }
    if (ps_->hints.count(d.key) || !drop_unwanted_) return;
    std::string bytes;
    if (!st_->engine->get(p_, d.key, &bytes).ok() || transfer_digest(bytes) != d.digest) return;
    erase_local(d.key, bytes);
  }

  void add_hint(const std::string& key, Atom primary) {
    auto& owners = ps_->hints[key];
    if (owners.empty()) st_->hinted[p_].store(static_cast<std::uint32_t>(ps_->hints.size()));
    if (std::find(owners.begin(), owners.end(), primary) == owners.end()) {
      owners.push_back(primary);
      st_->counters.hints.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // Offers hinted objects back to their primaries that are up; a hint stays until its primary
  // acknowledged (HandoffAck). At most kHandoffWindow keys are offered and unanswered at once;
  // an offer unanswered for a request timeout is made again. Each round goes on from the key
  // after the last one offered, so keys whose hand-off keeps failing do not starve the rest.
  void offer_hints() {
    if (ps_->hints.empty()) return;
    const View& v = view();
    if (!v.ready()) return;
    const Clock::time_point now = st_->now();
    const auto resend = std::max(st_->options.request_timeout, st_->options.handoff_interval);
    for (auto it = ps_->offered.begin(); it != ps_->offered.end();) {
      it = it->second + resend <= now ? ps_->offered.erase(it) : std::next(it);
    }
    auto it = ps_->hints.upper_bound(ps_->handoff_cursor);
    for (std::size_t seen = 0;
         seen < std::min(ps_->hints.size(), kHandoffScan) && ps_->offered.size() < kHandoffWindow;
         ++seen, ++it) {
      if (it == ps_->hints.end()) it = ps_->hints.begin();
      const std::string& key = it->first;
      ps_->handoff_cursor = key;
      if (ps_->offered.count(key)) continue;
      std::string bytes;
      for (Atom primary : it->second) {
        const int idx = v.index_of(primary);
        if (idx < 0 || !v.up[idx]) continue;
        if (bytes.empty() && !st_->engine->get(p_, key, &bytes).ok()) break;
        send(peer(primary), HandoffPut{p_, key, bytes});
        st_->counters.handoff_offers.fetch_add(1, std::memory_order_relaxed);
        ps_->offered.emplace(key, now);
      }
    }
  }

  void handoff_put(const HandoffPut& m, const Pid& from) {
    Result<Object> incoming = decode_object(m.object);
    if (!incoming) {
      st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (!apply(m.key, *incoming, Atom()).ok()) return;
    if (st_->engine->acks_after_sync()) {  // the fallback drops its copy on this ack
      after_sync([from, ack = HandoffAck{p_, m.key, m.object}](bool ok) {
        if (ok) send(from, ack);
      });
    } else {
      send(from, HandoffAck{p_, m.key, m.object});
    }
    // A delete this primary missed: it sees to the reaping (reap_check looks again).
    if (all_tombstones(*incoming)) schedule_reap(m.key, st_->now() + st_->options.tombstone_ttl);
  }

  // `primary` (the node that sent the ack) stored what this vnode offered it.
  void handoff_ack(const HandoffAck& m, Atom primary) {
    auto it = ps_->hints.find(m.key);
    if (it == ps_->hints.end()) return;
    std::string bytes;
    const bool unchanged = st_->engine->get(p_, m.key, &bytes).ok() && bytes == m.object;
    if (!unchanged) {  // a newer write came since the offer: the hint stays, offered again
      ps_->offered.erase(m.key);
      return;
    }
    auto& owners = it->second;
    owners.erase(std::remove(owners.begin(), owners.end(), primary), owners.end());
    st_->counters.handoffs.fetch_add(1, std::memory_order_relaxed);
    if (!owners.empty()) return;
    ps_->hints.erase(it);
    ps_->offered.erase(m.key);
    st_->hinted[p_].store(static_cast<std::uint32_t>(ps_->hints.size()));
    // Not a primary here: drop the copy.
    const View& v = view();
    const auto prim = v.primaries(p_, st_->options.replicas);
    const bool primary_here =
        v.self >= 0 &&
        std::find(prim.begin(), prim.end(), static_cast<std::uint32_t>(v.self)) != prim.end();
    if (!primary_here) erase_local(m.key, bytes);
  }

  KvState* st_ = nullptr;
  PartitionState* ps_ = nullptr;
  std::uint32_t p_ = 0;
  std::string dest_name_;
  std::shared_ptr<const View> view_;
  std::uint64_t view_gen_ = 0;
  std::uint64_t next_req_ = 1;
  bool tick_armed_ = false;
  Clock::time_point begun_{};  // KvState::timing: when the request now coordinated was taken
  std::string scratch_;
  TreeHook tree_;  // the partition's anti-entropy tree (kv.aae), kept current by every write
  std::unordered_map<std::uint64_t, PendingPut> puts_;
  std::unordered_map<std::uint64_t, PendingGet> gets_;
  // Acknowledgements waiting for the engine's sync, by write ticket (nondecreasing).
  std::deque<std::pair<std::uint64_t, std::function<void(bool ok)>>> unsynced_;
  bool sync_asked_ = false;     // a Synced message is on its way
  std::uint64_t drop_gen_ = 0;  // view_gen_ + 1 when drop_unwanted_ was found
  bool drop_unwanted_ = false;  // copy_unwanted for this partition, in that view
};

}  // namespace

std::string vnode_name(std::uint32_t partition) {
  return "nodus_kv_vnode_" + std::to_string(partition);
}

Result<Pid, Reason> start_vnode(Node& node, KvState* st, std::uint32_t partition) {
  SpawnOptions o;
  o.name = vnode_name(partition);
  // No bound in the runtime: a full mailbox refuses plain messages silently, and a vnode must
  // lose none (a request counted as queued and never taken left its partition `overloaded`
  // for good; a timer lost left its requests pending for good). The store bounds what it
  // sends instead: requests wait and run up to kv.vnode_queue per vnode, which bounds the
  // replica traffic every coordinator causes (see KvState::queued and Vnode::coordinate).
  o.max_mailbox = 0;
  return start_link<Vnode>(node, o, st, partition);
}

}  // namespace nodus::kv
