// The store: start it on a node, its options, merge functions, and what it reports.
//
// A Dynamo-style key-value store (DeCandia et al. 2007, and Riak KV where the paper is silent)
// made of nodus processes: per node a `nodus_kv` server that answers client requests (kv::Client
// or terms, docs/protocol.md "The store") and one vnode process per partition, all on one
// storage engine. A put is coordinated by a primary of the key's preference list, which makes
// the new version with its dotted version vector, stores it and sends it to the other replicas;
// a get asks the replicas and answers after R, then repairs the stale ones (read repair).
// Down primaries are replaced by fallbacks that keep the write as a hint and hand it back
// (sloppy quorum, hinted hand-off).
//
// Thread-safety: every function may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nodus/kv/engine.hpp"
#include "nodus/kv/errors.hpp"
#include "nodus/kv/ring.hpp"
#include "nodus/node/node.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::kv {

/// How concurrent writes of one key are kept (kv.conflicts).
enum class Conflicts : std::uint8_t {
  kSiblings,  ///< both kept as siblings until a put with their merged context (default)
  kLww,       ///< last writer wins by hybrid-logical-clock timestamp: LOSES concurrent writes
};

/// The longest a request may wait (its timeout, or kv.request_timeout): a request in flight
/// holds its object until then. Riak's default request timeout.
inline constexpr std::chrono::milliseconds kMaxRequestTimeout{60000};

/// The store's options; the fields are the config keys of the [kv] section.
struct Options {
  /// Q, the ring size (kv.partitions): a power of two, fixed when the cluster is created.
  /// More partitions spread load and hand-off more finely; each costs a vnode process per node.
  std::uint32_t partitions = 64;
  /// N (kv.replicas): copies of each key.
  std::uint32_t replicas = 3;
  /// W and R (kv.write_quorum, kv.read_quorum): replicas that must answer a put or get.
  /// W + R > N makes a read meet a write on some replica only while both reach primaries: a
  /// fallback stands in for a primary that is away and answers a read with what it holds (often
  /// nothing, which counts toward R, as Riak's notfound_ok), so under sloppy quorum a read may
  /// miss an acknowledged write. PW + PR > N (below) makes it so at the price of availability.
  std::uint32_t write_quorum = 2;
  std::uint32_t read_quorum = 2;
  /// PW, DW and PR defaults (kv.primary_write_quorum, kv.durable_write_quorum,
  /// kv.primary_read_quorum): of W, how many must be primaries / have stored durably (on an
  /// engine whose durable() is true: never the memory engine); of R, how many must be
  /// primaries. 0: no demand.
  std::uint32_t primary_write_quorum = 0;
  std::uint32_t durable_write_quorum = 0;
  std::uint32_t primary_read_quorum = 0;
  /// Who forms the ring of a new cluster (kv.initial_members); the ring forms, with no manual
  /// step, once they are all connected. Empty: this node alone.
  std::vector<std::string> initial_members;
  /// kv.conflicts.
  Conflicts conflicts = Conflicts::kSiblings;
  /// Largest value in bytes (kv.max_value_bytes); keys are at most 64 KiB.
  std::size_t max_value_bytes = 1 << 20;
  /// A write that would leave more siblings than this on a key is refused
  /// (too_many_siblings); a write with the context of a read always resolves them.
  std::size_t max_siblings = 100;
  /// Largest stored object in bytes, all its siblings and their versions together
  /// (kv.max_object_bytes; Riak's max_object_size). A write that would make a larger one is
  /// refused (too_many_siblings when it has siblings to resolve, else value_too_large), and a
  /// replica refuses a merge that would, so every object fits the messages between nodes (64 MiB
  /// frames). 0: 8 MiB, or 48 MiB / N when that is less (a get's answer merges up to N
  /// objects). start checks that it exceeds max_value_bytes + 1 KiB and that N times it is at
  /// most 48 MiB.
  std::size_t max_object_bytes = 0;
  /// A request's deadline when it names none (kv.request_timeout_ms), at most
  /// kMaxRequestTimeout, as is a request's own.
  std::chrono::milliseconds request_timeout{5000};
  /// Requests waiting per vnode, and as many coordinated by it at once, before further ones
  /// are answered `overloaded` (kv.vnode_queue). This bounds what reaches any vnode's mailbox
  /// (which the runtime does not bound: a vnode loses no message), including the replica
  /// traffic of other nodes' coordinators.
  std::size_t vnode_queue = 5000;
  /// Read repairs a node starts per second at most (kv.read_repair_per_s): repair under
  /// overload would add load, so beyond this they are skipped (and counted).
  std::uint32_t read_repair_per_s = 20000;
  /// A tombstone is reaped once every primary holds it and this much time passed
  /// (kv.tombstone_ttl_ms).
  std::chrono::milliseconds tombstone_ttl{60000};
  /// How often each vnode sweeps its expired values (kv.ttl_sweep_interval_ms): it turns the
  /// values whose TTL passed into tombstones (reaped by the rules of tombstone_ttl), at most
  /// 1,000 keys per vnode per round. Reads treat an expired value as absent at once, so this
  /// bounds only how long expired bytes take space: shorter frees them sooner, costs more
  /// timer wake-ups.
  std::chrono::milliseconds ttl_sweep_interval{1000};
  /// How often a fallback offers its hints to primaries that are up (kv.handoff_interval_ms).
  std::chrono::milliseconds handoff_interval{1000};
  /// Ownership transfers (hand-off of partitions on a membership change) a node sends at a
  /// time (kv.transfer_limit); the others wait their turn.
  std::uint32_t transfer_limit = 2;
  /// Active anti-entropy (kv.aae): each partition replica keeps a TicTac hash tree current on
  /// every write, and the replicas of each preference list compare theirs and repair the keys
  /// that differ through the versioned merge of read repair, with no client read (Riak's
  /// tictac AAE). Off: no trees, no exchanges.
  bool aae = true;
  /// How often each pair of replicas of a partition is exchanged at most
  /// (kv.aae_exchange_interval_ms); the first round starts one interval after the start.
  std::chrono::milliseconds aae_exchange_interval{10000};
  /// Exchanges a node runs at a time (kv.aae_concurrency); the others wait their turn.
  std::uint32_t aae_concurrency = 1;
  /// Keys a node repairs by anti-entropy per second at most (kv.aae_repairs_per_second); the
  /// rest wait (an exchange holds its place meanwhile).
  std::uint32_t aae_repairs_per_second = 1000;
  /// The share of one core a node's anti-entropy work may take, in percent
  /// (kv.aae_cpu_percent, 1..100): tree rebuilds, key listings, comparisons and repairs are
  /// timed, and once they took more than this share (with a burst of 10 ms per percent) new
  /// work waits; a peer's key request waits at most half of request_timeout.
  std::uint32_t aae_cpu_percent = 10;
  /// Signs causal contexts so clients cannot forge them (kv.context_secret); the same on every
  /// node. Required: start refuses an empty one, since then anyone could sign a context that
  /// claims any history. nodusd passes the cluster cookie when the key is not set (the signing
  /// key is a keyed hash of it, so the cookie itself signs nothing).
  std::string context_secret;
  /// Where the node keeps its data (kv.data_dir): a RocksDB database there
  /// (new_rocksdb_engine), with the ring, so a node restarted (even after kill -9) serves what
  /// it acknowledged and its ring. Empty (default): memory only, nothing survives the process.
  std::string data_dir;
  /// With data_dir: when writes are synced to disk (kv.sync, engine.hpp SyncMode). kAlways
  /// acknowledges a write (toward W and DW) only once synced, its syncs shared by concurrent
  /// writers (group commit); kInterval syncs every sync_interval (kv.sync_interval_ms);
  /// kNone leaves it to the OS.
  SyncMode sync = SyncMode::kAlways;
  std::chrono::milliseconds sync_interval{100};
  /// Events a watcher may leave untaken (kv.watch_queue): one more ends its watch with
  /// {kv_watch_lost, Pattern} (nodus/kv/watch.hpp), so a slow watcher costs bounded memory and
  /// never misses events silently. A watcher on another node (a hidden client) counts the
  /// events it has not acknowledged instead (docs/protocol.md 12.7).
  std::size_t watch_queue = 10000;
  /// Watches one node holds at most (kv.max_watches); more are refused (too_many_watches).
  /// Each event is matched against the node's watches, so this bounds that work too.
  std::size_t max_watches = 10000;
  /// LRU eviction (kv.max_keys, kv.max_memory in bytes; 0: off, the default): a node holding
  /// more live keys than max_keys, or whose engine's memory estimate passes max_memory,
  /// deletes the least recently used keys (a read or write on any replica touches a key) of
  /// the partitions it owns first, cluster-wide, through the normal coordinated delete (a
  /// versioned tombstone that read repair, anti-entropy and hand-off respect), counted in
  /// Stats::evictions; watchers see them as deletes. Checked every 100 ms per vnode, so a node
  /// may be over its bound briefly. max_memory, when set, must be at least 1 MiB.
  std::uint64_t max_keys = 0;
  std::uint64_t max_memory = 0;
  /// Makes the node's engine for `partitions` partitions. Default: new_rocksdb_engine on
  /// data_dir when it is set, else new_memory_engine.
  std::function<std::unique_ptr<Engine>(std::uint32_t partitions)> engine;
  /// For deterministic tests: the clock the node runs on (its NodeOptions::clock, a
  /// simulation's virtual time), which the store's deadlines, timestamps and tombstone ages
  /// then follow too. Default (null): the system's steady and wall clocks.
  std::shared_ptr<transport::Clock> clock;
};

/// Starts the store on `node`: the `nodus_kv` server and one vnode per partition, registered
/// locally as `nodus_kv` and `nodus_kv_vnode_<P>`, under a supervisor `nodus_kv_sup`
/// (one_for_one) that restarts any that crashes; a restarted vnode keeps its partition's data,
/// hints and epochs, a restarted nodus_kv its ring. The store lives as long as the node: it is
/// not linked to the caller. Returns at once; requests are answered `unavailable` until the
/// ring has formed. Errors: kBadConfig naming the option (partitions not a power of two, R or
/// W above N, no context_secret, ...); kAlreadyStarted when the store runs there.
Status start(Node& node, Options options);

/// The checks `start` makes of `options`, without starting anything (nodusd runs them when it
/// reads its config). Returns kBadConfig with a message that begins with the config key at
/// fault ("kv.read_quorum must be in ..."), or OK.
Status check_options(const Options& options);

/// Merges siblings of keys that start with `prefix`, instead of returning them: a get gets
/// fn(key, values) as its one value, and a put coordinated here replaces them by it. Register
/// the same function on every node. Longest prefix wins. `fn` runs on the vnodes' processes,
/// several at once (one per partition), so it must be thread-safe; it should be quick, since
/// its partition waits meanwhile. One that throws is caught: the siblings are kept as they are
/// (a get returns them all) and Stats::merge_errors counts it. Errors: kNotFound when the store
/// does not run on `node`.
using MergeFn =
    std::function<std::string(std::string_view key, const std::vector<std::string>& siblings)>;
Status register_merge(Node& node, std::string prefix, MergeFn fn);

/// The ring `node` holds now (empty before it formed), or nullopt without the store.
std::optional<Ring> ring(Node& node);

/// Latency histogram of one operation, coordinator side, in microseconds.
struct Latency {
  static constexpr std::uint64_t kBoundsUs[] = {100,  250,   500,   1000,   2500,
                                                5000, 10000, 50000, 250000, 1000000};
  static constexpr std::size_t kBuckets = sizeof(kBoundsUs) / sizeof(kBoundsUs[0]) + 1;
  std::uint64_t counts[kBuckets] = {};  ///< per bucket, not cumulative; last: above all
  std::uint64_t count = 0;
  std::uint64_t sum_us = 0;
};

/// Where a coordinated request's time went, one stage: only measured while the environment
/// variable NODUS_KV_TIMING is set (to anything but 0) when the store starts, since it reads the
/// clock a few more times per request. Times in microseconds; p50/p99 from quarter-octave
/// buckets (within ~19 %).
struct StageTiming {
  std::string name;  ///< e.g. "put.route": docs in bench/README.md, "The store"
  std::uint64_t count = 0;
  double mean_us = 0, p50_us = 0, p99_us = 0;
};

/// A node's counters since the store started there.
struct Stats {
  std::uint64_t keys = 0;          ///< objects in this node's engine (all partitions)
  std::uint64_t data_bytes = 0;    ///< their key and value bytes
  std::uint64_t memory_bytes = 0;  ///< the engine's estimate of its memory, and the TTL, LRU
                                   ///< and anti-entropy key indexes' bytes (what
                                   ///< kv.max_memory bounds)
  std::uint64_t gets = 0, puts = 0, deletes = 0;  ///< coordinated here
  std::uint64_t hits = 0, misses = 0;             ///< gets that found the key or not
  std::uint64_t errors = 0;                       ///< coordinated requests that failed
  std::uint64_t overloaded = 0;                   ///< requests refused with `overloaded`
  std::uint64_t forwarded = 0;                    ///< requests sent to a primary elsewhere
  std::uint64_t replica_writes = 0;               ///< writes stored for other coordinators
  std::uint64_t expired_skipped = 0;              ///< replica work skipped: caller gave up
  std::uint64_t read_repairs = 0;                 ///< repairs sent
  std::uint64_t read_repairs_skipped = 0;         ///< repairs left out over the rate bound
  std::uint64_t hints = 0;                        ///< keys kept here for a down primary
  std::uint64_t handoffs = 0;                     ///< hinted keys handed back
  std::uint64_t hints_pending = 0;                ///< keys with hints not yet handed back
  std::uint64_t tombstones_reaped = 0;
  std::uint64_t expired = 0;       ///< keys whose expired values the sweep made tombstones
  std::uint64_t siblings_max = 0;  ///< most siblings seen on one key
  std::uint64_t evictions = 0;     ///< keys this node deleted by LRU (kv.max_keys, max_memory)
  std::uint64_t live_keys = 0;     ///< keys with a live value, as LRU eviction counts them
                                   ///< (0 when it is off)
  std::uint64_t bad_messages = 0;  ///< messages from peers refused: malformed, from a node
                                   ///< outside the ring, for another partition, naming an
                                   ///< unknown node, or answering for another replica
  std::uint64_t merge_errors = 0;  ///< merge functions that threw (the siblings were kept)
  // The engine's log (kv.data_dir; all 0 on the memory engine).
  std::uint64_t syncs = 0;        ///< syncs of the log to disk
  std::uint64_t sync_writes = 0;  ///< writes made to the log (writes per sync: / syncs)
  std::uint64_t sync_us = 0;      ///< time the syncs took, summed (us)
  std::uint64_t sync_waits = 0;   ///< waiting writers' batches each sync woke, summed
  std::uint32_t partitions = 0;   ///< Q
  std::uint32_t replicas = 0;     ///< N
  std::uint64_t ring_epoch = 0;
  std::vector<std::uint64_t> partition_keys;   ///< keys per partition, this node
  std::vector<std::uint64_t> partition_bytes;  ///< their key and value bytes per partition
  std::vector<std::uint32_t> vnode_queue;      ///< requests queued per vnode now
  Latency get_latency, put_latency, delete_latency;
  std::vector<StageTiming> stages;  ///< empty unless NODUS_KV_TIMING is set (see StageTiming)
  // Active anti-entropy (kv.aae; all 0 when it is off).
  std::uint64_t aae_exchanges = 0;           ///< exchanges finished (compared to the end)
  std::uint64_t aae_exchanges_failed = 0;    ///< ended early: peer down, timeout, tree not built
  std::uint64_t aae_segments_differing = 0;  ///< tree segments found differing
  std::uint64_t aae_keys_repaired = 0;       ///< keys found differing and sent both ways to merge
  std::uint64_t aae_busy_us = 0;             ///< time the node's anti-entropy work took (us)
  std::uint64_t aae_throttled = 0;           ///< times that work waited for kv.aae_cpu_percent
  std::uint64_t aae_index_bytes = 0;         ///< bytes of the trees' key indexes (in memory_bytes)
};

/// `node`'s stats. Errors: kNotFound when the store does not run there.
Result<Stats> stats(Node& node);

}  // namespace nodus::kv
