// What a node's store processes share: options, the engine, the ring as last seen with which
// members are up (the View), per-vnode queue counters, merge functions and the counters. One
// per node, in a Node service slot; nodus_kv writes the View, vnodes and routers read it.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fsm.hpp"
#include "hlc.hpp"
#include "kv_protocol.hpp"
#include "lru.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/transport/detail/mutex.hpp"
#include "object.hpp"
#include "ttl.hpp"

namespace nodus::kv {

/// The ring and who is up, as of one moment: immutable, replaced as a whole.
struct View {
  std::shared_ptr<const Ring> ring;
  std::vector<bool> up;     // per ring member: linked to this node now (this node: true)
  std::vector<Atom> names;  // per ring member, as atoms
  int self = -1;            // this node's member index, -1 when not a member
  bool ready() const { return ring && !ring->empty(); }
  /// The member index of node `n`, or -1.
  int index_of(Atom n) const {
    for (std::size_t i = 0; i < names.size(); ++i) {
      if (names[i] == n) return static_cast<int>(i);
    }
    return -1;
  }

  /// The replicas a request for partition `p` goes to, N at most: the primaries that are up,
  /// and for each primary that is down the next up node clockwise that is not already listed
  /// (a fallback holding a hint).
  std::vector<Target> targets(std::uint32_t p, std::uint32_t n) const;
  /// The primaries of `p` (member indexes).
  std::vector<std::uint32_t> primaries(std::uint32_t p, std::uint32_t n) const {
    return ring->preference_list(p, n);
  }
};

struct Counters {
  std::atomic<std::uint64_t> gets{0}, puts{0}, deletes{0}, hits{0}, misses{0}, errors{0},
      overloaded{0}, forwarded{0}, replica_writes{0}, expired_skipped{0}, read_repairs{0},
      read_repairs_skipped{0}, hints{0}, handoffs{0}, tombstones_reaped{0}, siblings_max{0},
      bad_messages{0}, merge_errors{0}, reap_checks{0}, handoff_offers{0};
  std::atomic<std::uint64_t> expired{0};    // keys whose expired values the sweep made tombstones
  std::atomic<std::uint64_t> evictions{0};  // LRU deletes (kv.max_keys / max_memory) that succeeded
};

struct AtomicLatency {
  std::array<std::atomic<std::uint64_t>, Latency::kBuckets> counts{};
  std::atomic<std::uint64_t> count{0}, sum_us{0};
  void record(std::chrono::steady_clock::duration d);
  Latency snapshot() const;
};

/// Per-stage times of coordinated requests (NODUS_KV_TIMING, see kv::StageTiming): sums and
/// quarter-octave histograms, relaxed atomics. Recorded only when KvState::timing is set.
enum class Stage : std::uint8_t {
  kPutRoute,    // nodus_kv took the request -> its vnode starts coordinating it
  kPutLocal,    // the vnode's own work: context, read, update, encode, store, replica sends
  kPutQuorum,   // replica writes sent -> W acks in (the replica round trip)
  kPutTotal,    // nodus_kv took it -> the vnode answers the caller
  kReplicaPut,  // a replica's handling of a ReplicaPut (decode, merge, store, ack)
  kGetRoute,
  kGetQuorum,  // the vnode starts coordinating -> R replies in, answered
  kGetTotal,
  kReplicaGet,
  kCount
};
const char* stage_name(Stage s);

struct StageClock {
  static constexpr std::size_t kBuckets = 96;  // 2^(i/4) us: up to ~16 s
  std::array<std::atomic<std::uint64_t>, kBuckets> counts{};
  std::atomic<std::uint64_t> count{0}, sum_ns{0};
  void record(std::chrono::steady_clock::duration d);
  StageTiming snapshot(Stage s) const;
};

/// What a partition's vnode keeps beyond its own life (a restarted vnode carries on with it).
/// Only the partition's vnode touches it, one vnode at a time.
struct PartitionState {
  explicit PartitionState(std::uint64_t vnode_id) : actors(vnode_id) {}
  PartitionState(PartitionState&& o) noexcept
      : actors(std::move(o.actors)),
        hints(std::move(o.hints)),
        offered(std::move(o.offered)),
        handoff_cursor(std::move(o.handoff_cursor)),
        reap_due(std::move(o.reap_due)),
        reap_queue(std::move(o.reap_queue)),
        expiries(std::move(o.expiries)),
        pid_id(o.pid_id.load()),
        forwarding(o.forwarding.load()) {}

  ActorSource actors;  // the actors of this node's writes in this partition
  std::map<std::string, std::vector<Atom>> hints;  // keys kept for down primaries, and for whom
  std::map<std::string, std::chrono::steady_clock::time_point> offered;  // handed back, unacked
  std::string handoff_cursor;  // the last hinted key offered: the next round goes on after it
  // Tombstones to check for reaping, and when: one entry per key (reap_queue views the keys
  // of reap_due, whose nodes do not move).
  std::map<std::string, std::chrono::steady_clock::time_point> reap_due;
  std::set<std::pair<std::chrono::steady_clock::time_point, std::string_view>> reap_queue;
  ExpiryIndex expiries;                  // keys holding values that expire (ttl.hpp)
  std::atomic<std::uint64_t> pid_id{0};  // the running vnode's Pid::id (routers read it)
  /// Set by nodus_kv_transfer while it hands this partition off (transfer.hpp): the vnode
  /// tells it of every key it stores (TransferWrite), to forward to the receivers.
  std::atomic<bool> forwarding{false};
};

struct AaeState;  // aae.hpp

struct KvState {
  KvState(Node& n, Options o);

  /// The time deadlines are measured in: the steady clock, or Options::clock.
  std::chrono::steady_clock::time_point now() const {
    return options.clock ? options.clock->now() : std::chrono::steady_clock::now();
  }
  /// Wall-clock ms since 1970 (deadlines between nodes, timestamps): the system's, or with
  /// Options::clock a fixed date plus its time, the same on every node of a simulation.
  std::uint64_t wall_ms() const {
    if (!options.clock) return HybridClock::system_ms();
    return kSimulatedEpochMs +
           static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          options.clock->now().time_since_epoch())
                                          .count());
  }
  static constexpr std::uint64_t kSimulatedEpochMs = 1'700'000'000'000;
  /// A deadline as wall-clock ms, for messages to other nodes, and back (0: none, which a
  /// request never has: nodus_kv gives each one when it takes it).
  std::uint64_t wall_deadline(std::chrono::steady_clock::time_point deadline) const {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now()).count();
    return wall_ms() + static_cast<std::uint64_t>(std::max<std::int64_t>(left, 0));
  }
  std::chrono::steady_clock::time_point local_deadline(std::uint64_t deadline_ms) const {
    const std::uint64_t wall = wall_ms();
    return now() + std::chrono::milliseconds(deadline_ms > wall ? deadline_ms - wall : 0);
  }
  /// A seed for one of the store's random choices (vnode ids, request ids, gossip targets):
  /// from std::random_device on a real node; with Options::clock (a simulation) a hash of the
  /// node's name, its incarnation and `purpose`, so a simulated run replays from its seed.
  std::uint64_t seed(std::string_view purpose) const;

  Node& node;
  const Options options;
  /// NODUS_KV_TIMING was set at start: the stages below are measured.
  const bool timing;
  std::array<StageClock, static_cast<std::size_t>(Stage::kCount)> stages;
  void stage(Stage s, std::chrono::steady_clock::duration d) {
    stages[static_cast<std::size_t>(s)].record(d);
  }
  const std::size_t max_object_bytes;  // options.max_object_bytes, or its default for N
  std::unique_ptr<Engine> engine;
  ContextSigner signer;
  HybridClock clock;
  Counters counters;
  AtomicLatency get_latency, put_latency, delete_latency;
  std::vector<PartitionState> parts;  // by partition
  /// The vnode of partition `p` now (a restarted one has a new pid; between its crash and its
  /// restart, the old pid, to which a send is dropped).
  Pid vnode(std::uint32_t p) const {
    return Pid{node.name(), node.creation(), parts[p].pid_id.load(std::memory_order_seq_cst)};
  }
  /// Requests routed to each vnode and not yet taken (nodus_kv answers `overloaded` beyond
  /// kv.vnode_queue). A router adds first and then reads the vnode's pid; a vnode publishes
  /// its pid and then resets the count: so a restart never leaves requests counted that its
  /// predecessor's mailbox took to the grave, at worst one uncounted (hence unqueue's floor).
  std::unique_ptr<std::atomic<std::uint32_t>[]> queued;
  /// One request of partition `p` left the count (taken, or never sent); never below zero.
  void unqueue(std::uint32_t p) {
    std::uint32_t cur = queued[p].load(std::memory_order_relaxed);
    while (cur > 0 && !queued[p].compare_exchange_weak(cur, cur - 1, std::memory_order_relaxed)) {
    }
  }
  std::unique_ptr<std::atomic<std::uint32_t>[]> hinted;  // keys each vnode keeps hints for
  /// LRU eviction (lru.hpp): on when kv.max_keys or kv.max_memory is set; then the node's
  /// live keys by recency (else null), and whether a round of evictions is running (one at a
  /// time per node).
  bool evicts() const { return options.max_keys > 0 || options.max_memory > 0; }
  std::unique_ptr<NodeLru> lru;
  std::atomic<bool> evict_running{false};
  /// The bytes of the per-key indexes beside the engine: every partition's TTL index, the
  /// LRU list and anti-entropy's per-segment key index. With the engine's estimate
  /// (EngineStats::memory_bytes), what kv.max_memory bounds and Stats::memory_bytes says.
  /// Any thread (server.cpp).
  std::uint64_t index_bytes() const;
  std::uint64_t memory_bytes() const { return engine->stats().memory_bytes + index_bytes(); }
  /// Active anti-entropy's trees and counters (aae.hpp); null when kv.aae is off.
  std::shared_ptr<AaeState> aae;

  std::shared_ptr<const View> view() const NODUS_EXCLUDES(view_mu_) {
    nodus::detail::MutexLock lock(view_mu_);
    return view_;
  }
  void set_view(std::shared_ptr<const View> v) NODUS_EXCLUDES(view_mu_) {
    nodus::detail::MutexLock lock(view_mu_);
    view_ = std::move(v);
    view_gen_.fetch_add(1, std::memory_order_release);
  }
  /// Changes each time set_view runs: a vnode keeps its copy of the view until it moves.
  std::uint64_t view_generation() const { return view_gen_.load(std::memory_order_acquire); }

  /// The merge function for `key`, or nullptr.
  std::shared_ptr<const MergeFn> merge_for(std::string_view key) const NODUS_EXCLUDES(merge_mu_);
  void add_merge(std::string prefix, MergeFn fn) NODUS_EXCLUDES(merge_mu_);
  bool has_merges() const { return has_merges_.load(std::memory_order_relaxed); }

  /// Takes one read-repair token (rate bound per second); false when there is none.
  bool take_repair_token() NODUS_EXCLUDES(repair_mu_);
  void note_siblings(std::size_t n) {
    std::uint64_t cur = counters.siblings_max.load(std::memory_order_relaxed);
    while (n > cur && !counters.siblings_max.compare_exchange_weak(cur, n)) {
    }
  }

 private:
  // Guards view_: nodus_kv replaces it, every router and vnode reads it per request.
  // view_gen_ is read without it (an atomic, bumped under it).
  mutable nodus::detail::Mutex view_mu_;
  std::shared_ptr<const View> view_ NODUS_GUARDED_BY(view_mu_);
  std::atomic<std::uint64_t> view_gen_{0};
  // Guards merges_ (registered rarely, read per request when any exist). has_merges_ is read
  // without it (an atomic, set under it), so that no request takes it while there are none.
  mutable nodus::detail::Mutex merge_mu_;
  std::vector<std::pair<std::string, std::shared_ptr<const MergeFn>>> merges_
      NODUS_GUARDED_BY(merge_mu_);
  std::atomic<bool> has_merges_{false};
  // Guards the repair window (read repairs allowed per second, Options::read_repair_per_s).
  nodus::detail::Mutex repair_mu_;
  std::chrono::steady_clock::time_point repair_window_ NODUS_GUARDED_BY(repair_mu_){};
  std::uint32_t repairs_in_window_ NODUS_GUARDED_BY(repair_mu_) = 0;
};

/// The store on `node`, or nullptr.
KvState* state_of(Node& node);

/// The default of kv.max_object_bytes, and what N of them (a get's merged answer) may take.
inline constexpr std::size_t kDefaultMaxObjectBytes = 8 << 20;
inline constexpr std::size_t kGetReplyBytes = 48 << 20;

/// Local names.
inline constexpr const char* kServerName = "nodus_kv";
inline constexpr const char* kSupervisorName = "nodus_kv_sup";
std::string vnode_name(std::uint32_t partition);

/// With a durable engine (durable.cpp): stores `ring`, the one nodus_kv adopted; and at start,
/// before the vnodes run, takes the stored ring as the view and recovers the hints of the
/// partitions this node keeps as a fallback. Errors: the engine's; kBadConfig when the stored
/// ring is of another shape than the options.
Status save_ring(KvState& st, const Ring& ring);
Status restore_durable_state(KvState& st);

/// Starts the vnode of `partition` linked to the caller (its supervisor) (vnode.cpp).
Result<Pid, Reason> start_vnode(Node& node, KvState* st, std::uint32_t partition);

/// Who asked for a request, and how to answer.
struct Origin {
  From from;
  bool term = false;  // answer with a term (the caller sent one), else a KvReply
  Op op = Op::kGet;
  bool with_ttl = false;  // a get's term answer carries the key's time left
};
/// A request as the vnode gets it from a router on its own node (never crosses the wire).
/// `deadline`: when its caller gives up, fixed by the first nodus_kv that took it.
struct CoordRequest {
  KvRequest request;
  Origin origin;
  std::chrono::steady_clock::time_point deadline;
  std::chrono::steady_clock::time_point taken{};  // when nodus_kv took it (KvState::timing)
};

/// A request a vnode was called with directly (a client that routed by itself) that it does not
/// coordinate (this node is no primary of the key by its view, or the key is of another
/// partition): handed to its node's nodus_kv, which routes it as if it had been called. Never
/// crosses the wire.
struct Reroute {
  KvRequest request;
  Origin origin;
};

/// The checks every request passes before it is routed or coordinated: an operation, a key
/// and value within bounds, quorums at most N, a timeout within kMaxRequestTimeout. Returns
/// kBadArg or kValueTooLarge naming what is wrong.
Status check_request(const KvRequest& r, const Options& o);

/// `node`'s stats as the term `{stats}` answers (docs/protocol.md 12.3; empty map without the
/// store), and the cluster-wide sum of several nodes' (`{stats, cluster}`): per node its name
/// and its term, or nullopt when it did not answer (listed as down).
Term node_stats_term(Node& node);
Term sum_stats(const std::vector<std::pair<std::string, std::optional<Term>>>& each);

/// Answers a request's caller with `reply`, as a term or a KvReply as the caller asked.
void answer(const Origin& origin, KvReply reply);
KvReply error_reply(ErrorCode code, std::string message = {});

}  // namespace nodus::kv
