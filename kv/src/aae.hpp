// Active anti-entropy (AAE): per partition replica a TicTac hash tree kept current on every
// write, and exchanges of those trees between the replicas of each preference list that find
// and repair the keys on which they differ, with no client read.
//
// The tree (Riak's kv_index_tictactree, leveled's tictac trees): kSegments segments, each the
// XOR of entry_hash(key, digest of its stored object) over the keys that fall in it; kBranches
// branches, each the XOR of its kSegmentsPerBranch segments; a root, the XOR of all. XOR makes
// a write O(1) with no scan: it XORs out the key's old entry and XORs in the new one. Equal
// stored objects give equal digests (the encoding is canonical), so two replicas that hold the
// same objects have equal trees.
//
// An exchange (Riak's riak_kv_tictacaae_exchange / aae_exchange): the node of a partition's
// replica compares its tree with another primary's, the root first, then the branches, then
// the segments under the branches that differ; it then fetches the keys and digests of the
// differing segments, a batch of segments at a time, from both sides, and repairs each key that
// differs by sending each side's stored object to the other's vnode as a ReplicaPut with no
// ack: the vnode merges it with what it holds exactly as read repair does (Object::sync), so a
// repair never overwrites a newer version, never brings back a value a tombstone superseded
// (nor, since the whole object travels with its causal history, a value that expired).
//
// One `nodus_kv_aae` server per node (started by kv::start when kv.aae is on) starts the
// exchanges of the pairs it is the lower-named side of, each pair once per
// kv.aae_exchange_interval_ms, at most kv.aae_concurrency at a time, repairing at most
// kv.aae_repairs_per_second keys per second; it answers the other nodes' tree and key requests.
// Its work is counted in AaeState (nodus_kv_aae_* in /metrics), and bounded by a CPU budget
// (kv.aae_cpu_percent, AaeBudget): the server's messages and the vnodes' rebuild chunks are
// timed and charged to it, and while it is spent the work waits.
//
// Each tree keeps an index of its replica's keys by segment: the keys of a differing segment
// are listed from it (no fold of the partition), and a vnode that restarts rebuilds its tree
// from it a chunk of segments at a time, interleaved with its requests (riak_kv#1039: vnode
// mailboxes overloaded while Riak's trees were rebuilt).
//
// Thread-safety: PartitionTree may be used from any thread (its vnode writes it, the AAE server
// reads it). TictacTree is a plain value.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kv_protocol.hpp"
#include "nodus/kv/engine.hpp"
#include "nodus/transport/detail/mutex.hpp"
#include "state.hpp"

namespace nodus::kv {

/// The digest of a stored object's bytes (XXH3, 64 bits): what a tree entry hashes with its key.
std::uint64_t object_digest(std::string_view bytes);

/// A TicTac hash tree of one partition replica: kSegments segment hashes under kBranches
/// branch hashes under a root. A plain value; not thread-safe.
class TictacTree {
 public:
  static constexpr std::uint32_t kSegments = 1024;
  static constexpr std::uint32_t kBranches = 32;
  static constexpr std::uint32_t kSegmentsPerBranch = kSegments / kBranches;

  /// The segment `key` falls in (a hash of the whole key, hash tags ignored, with a seed of
  /// its own, so keys of one partition spread over every segment).
  static std::uint32_t segment_of(std::string_view key);
  /// The hash a key holding an object of digest `digest` XORs into its segment.
  static std::uint64_t entry_hash(std::string_view key, std::uint64_t digest);

  /// Adds `key` holding an object of digest `digest`. REQUIRES: the tree holds no entry for it.
  void add(std::string_view key, std::uint64_t digest) { toggle(key, digest); }
  /// Removes the entry of `key` with digest `digest`. REQUIRES: the tree holds exactly it.
  void remove(std::string_view key, std::uint64_t digest) { toggle(key, digest); }
  /// XORs `delta` into segment `segment`, its branch and the root. REQUIRES: segment < kSegments.
  void apply(std::uint32_t segment, std::uint64_t delta);

  std::uint64_t root() const { return root_; }
  std::uint64_t branch(std::uint32_t b) const { return branches_[b]; }
  std::uint64_t segment(std::uint32_t s) const { return segments_[s]; }
  friend bool operator==(const TictacTree&, const TictacTree&) = default;

 private:
  void toggle(std::string_view key, std::uint64_t digest) {
    apply(segment_of(key), entry_hash(key, digest));
  }
  std::uint64_t root_ = 0;
  std::array<std::uint64_t, kBranches> branches_{};
  std::array<std::uint64_t, kSegments> segments_{};
};

/// Branches whose hashes differ between `a` and `b` (each kBranches long), ascending; and the
/// same for segments: `a` and `b` hold the segments of `branches` in order, kSegmentsPerBranch
/// each; returns segment numbers.
std::vector<std::uint32_t> differing_branches(const std::vector<std::uint64_t>& a,
                                              const std::vector<std::uint64_t>& b);
std::vector<std::uint32_t> differing_segments(const std::vector<std::uint32_t>& branches,
                                              const std::vector<std::uint64_t>& a,
                                              const std::vector<std::uint64_t>& b);

/// The CPU budget of a node's anti-entropy work (kv.aae_cpu_percent): a token bucket of time.
/// Work earns `share` us of credit per us of (steady) time, up to `burst`; each piece of work
/// spends what it took. While the credit is below zero, new work waits (wait() says how long).
/// Pure arithmetic on the time points given, so a test drives it with a clock of its own.
/// Thread-safe (the AAE server and every vnode's tree rebuild spend from one budget).
class AaeBudget {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  /// `share`: the fraction of one core AAE work may take (0 < share <= 1); full credit at `now`.
  AaeBudget(double share, std::chrono::microseconds burst, TimePoint now);
  /// How long work must wait at `now` before it may start (zero: it may start now).
  std::chrono::microseconds wait(TimePoint now) NODUS_EXCLUDES(mu_);
  /// Work that took `took` ended at `now`.
  void spend(std::chrono::microseconds took, TimePoint now) NODUS_EXCLUDES(mu_);

 private:
  void refill(TimePoint now) NODUS_REQUIRES(mu_);
  const double share_;
  const double burst_us_;
  nodus::detail::Mutex mu_;
  double credit_us_ NODUS_GUARDED_BY(mu_);
  TimePoint last_ NODUS_GUARDED_BY(mu_);
};

/// The tree of one partition replica, shared between its vnode (which keeps it current) and
/// the AAE server (which reads it). Beside the tree, an index of the replica's keys by segment
/// (each segment's keys packed in one buffer, a one to three byte length before each key: a
/// key costs its bytes plus about 1 to 3 bytes), so the keys of a differing segment are listed
/// without a scan of the partition, and the tree can be rebuilt a few segments at a time.
/// Not ready (no tree served) until the vnode built it.
class PartitionTree {
 public:
  /// Replaces the index and the tree by ones made from every entry of `partition` in `engine`
  /// (one fold of the partition, digests only: nothing is decoded), and marks it ready.
  /// Returns the keys.
  std::uint64_t rebuild(const Engine& engine, std::uint32_t partition) NODUS_EXCLUDES(mu_);
  /// True once rebuild() made the index (it is kept current after).
  bool indexed() const NODUS_EXCLUDES(mu_);
  /// Starts a rebuild of the tree from the index (not ready until rebuild_step() ends it); the
  /// index stays. REQUIRES: indexed().
  void begin_rebuild() NODUS_EXCLUDES(mu_);
  /// Hashes the objects of the next segments' keys (read from `engine`): whole segments, until
  /// at least `max_keys` keys or the last segment. Returns true when the tree is built (ready).
  /// A key in the index the engine no longer holds leaves the index. REQUIRES: called by the
  /// partition's vnode (its only writer), after begin_rebuild().
  bool rebuild_step(const Engine& engine, std::uint32_t partition, std::size_t max_keys)
      NODUS_EXCLUDES(mu_);
  /// `key` changed from `old_digest` (nullptr: absent) to `new_digest` (nullptr: erased).
  void change(std::string_view key, const std::uint64_t* old_digest,
              const std::uint64_t* new_digest) NODUS_EXCLUDES(mu_);
  /// The root then the kBranches branch hashes; false (nothing written) when not ready.
  bool top(std::vector<std::uint64_t>* out) const NODUS_EXCLUDES(mu_);
  /// The kSegmentsPerBranch segment hashes of each of `branches`, in order; false when not
  /// ready. REQUIRES: each branch < kBranches.
  bool segments(const std::vector<std::uint32_t>& branches, std::vector<std::uint64_t>* out) const
      NODUS_EXCLUDES(mu_);
  /// Appends the keys of segment `segment` to `*out`; false (nothing appended) when there is
  /// no index yet. REQUIRES: segment < kSegments.
  bool keys(std::uint32_t segment, std::vector<std::string>* out) const NODUS_EXCLUDES(mu_);
  /// Bytes the index holds (its buffers' capacity and their handles).
  std::uint64_t index_bytes() const { return index_bytes_.load(std::memory_order_relaxed); }
  /// A copy of the tree (for tests); nullopt when not ready.
  std::optional<TictacTree> copy() const NODUS_EXCLUDES(mu_);

 private:
  void index_add(std::uint32_t segment, std::string_view key) NODUS_REQUIRES(mu_);
  void index_remove(std::uint32_t segment, std::string_view key) NODUS_REQUIRES(mu_);
  void count_index() NODUS_REQUIRES(mu_);

  mutable nodus::detail::Mutex mu_;
  TictacTree tree_ NODUS_GUARDED_BY(mu_);
  bool ready_ NODUS_GUARDED_BY(mu_) = false;
  // Segments below built_ hold their hashes while a rebuild runs (kSegments once ready).
  std::uint32_t built_ NODUS_GUARDED_BY(mu_) = 0;
  // By segment: [varint size][key bytes]...; empty until the first rebuild().
  std::vector<std::vector<char>> index_ NODUS_GUARDED_BY(mu_);
  std::uint64_t index_capacity_ NODUS_GUARDED_BY(mu_) = 0;
  std::atomic<std::uint64_t> index_bytes_{0};
};

/// A vnode's side of its tree: what its partition's engine entries hold, as it reads and
/// writes them. The vnode calls read() when it read a key (so the write that usually follows
/// knows the old digest without reading again), and stored() / erased() after each change to
/// the engine. Used by the one vnode only.
class TreeHook {
 public:
  TreeHook() = default;
  TreeHook(PartitionTree* tree, const Engine* engine, std::uint32_t partition)
      : tree_(tree), engine_(engine), p_(partition) {}
  explicit operator bool() const { return tree_ != nullptr; }
  /// The engine holds `bytes` under `key` now (nullptr: nothing).
  void read(std::string_view key, const std::string* bytes);
  /// Before a write of `key`: reads what the engine holds unless read() or a write just told.
  void before_write(std::string_view key);
  /// `bytes` was just stored under `key`. REQUIRES: before_write(key) came first, and the
  /// engine was not written for `key` since other than through this hook.
  void stored(std::string_view key, std::string_view bytes);
  /// `key`, which held `old_bytes`, was just erased.
  void erased(std::string_view key, std::string_view old_bytes);

 private:
  PartitionTree* tree_ = nullptr;
  const Engine* engine_ = nullptr;
  std::uint32_t p_ = 0;
  // The last key read or written and its digest then (has_ false: absent).
  std::string key_;
  std::uint64_t digest_ = 0;
  bool known_ = false, has_ = false;
};

/// A node's anti-entropy state: the trees, the CPU budget and the counters.
struct AaeState {
  /// `cpu_percent`: kv.aae_cpu_percent (1..100); `now`: the store's clock.
  AaeState(std::uint32_t partitions, std::uint32_t cpu_percent,
           std::chrono::steady_clock::time_point now);
  /// Bytes the trees' key indexes hold, over all partitions.
  std::uint64_t index_bytes() const;
  std::vector<std::unique_ptr<PartitionTree>> trees;  // by partition
  AaeBudget budget;
  std::atomic<std::uint64_t> exchanges{0};           // exchanges finished (compared to the end)
  std::atomic<std::uint64_t> exchanges_failed{0};    // ended early: peer down, timeout, refused
  std::atomic<std::uint64_t> segments_differing{0};  // segments found differing
  std::atomic<std::uint64_t> keys_repaired{0};       // keys found differing and sent both ways
  std::atomic<std::uint64_t> busy_us{0};             // time AAE work took (server, rebuilds)
  std::atomic<std::uint64_t> throttled{0};           // times AAE work waited for the budget
  std::atomic<std::uint64_t> rebuild_steps{0};       // chunks of tree rebuilds done
  std::atomic<std::uint64_t> running{0};             // exchanges under way now
};

// -- messages between AAE servers (tags 540-549; docs/protocol.md, "Active anti-entropy") ----

/// Asks for a partition's tree: with no branches, the root and the kBranches branch hashes;
/// else the segment hashes of the branches named (at most kBranches, each < kBranches).
struct AaeTreeRequest {
  std::uint64_t id = 0;
  std::uint32_t partition = 0;
  std::vector<std::uint32_t> branches;
  NODUS_MESSAGE(AaeTreeRequest, 540, id, partition, branches);
};
/// code 0 and the hashes asked for; else an error code (unavailable: the tree is not built).
struct AaeTreeReply {
  std::uint64_t id = 0;
  std::uint32_t partition = 0;
  std::uint16_t code = 0;
  std::vector<std::uint64_t> hashes;
  NODUS_MESSAGE(AaeTreeReply, 541, id, partition, code, hashes);
};
/// Asks for the keys of a partition's replica in the segments named (at most kSegments, each
/// < kSegments), with their object digests.
struct AaeKeysRequest {
  std::uint64_t id = 0;
  std::uint32_t partition = 0;
  std::vector<std::uint32_t> segments;
  NODUS_MESSAGE(AaeKeysRequest, 542, id, partition, segments);
};
/// keys[i] holds an object of digest digests[i]; more: the reply was cut at kAaeKeysPerReply
/// keys or kAaeReplyBytes bytes of keys (the rest come in a later exchange).
struct AaeKeysReply {
  std::uint64_t id = 0;
  std::uint32_t partition = 0;
  std::uint16_t code = 0;
  std::vector<std::string> keys;
  std::vector<std::uint64_t> digests;
  bool more = false;
  NODUS_MESSAGE(AaeKeysReply, 543, id, partition, code, keys, digests, more);
};
/// Asks the receiver to send its objects of `keys` (at most kAaePushKeys) in `partition` to
/// the sender's vnode of that partition, each as a ReplicaPut with no ack (a repair).
struct AaePush {
  std::uint32_t partition = 0;
  std::vector<std::string> keys;
  NODUS_MESSAGE(AaePush, 544, partition, keys);
};

inline constexpr const char* kAaeName = "nodus_kv_aae";
inline constexpr std::size_t kAaeKeysPerReply = 20000;
inline constexpr std::size_t kAaeReplyBytes = 4 << 20;
inline constexpr std::size_t kAaePushKeys = 256;
/// Differing segments whose keys one step of an exchange fetches.
inline constexpr std::size_t kAaeSegmentsPerBatch = 256;

Status register_aae_protocol();

/// Sent by a vnode to itself while its tree is rebuilt a chunk at a time (a local type, never
/// on the wire): each chunk is one message, so the requests queued meanwhile are served
/// between chunks (riak_kv#1039: vnode mailboxes overloaded while trees were built).
struct AaeRebuildStep {};
/// Keys a rebuild hashes per chunk (whole segments: a chunk may take a few more).
inline constexpr std::size_t kAaeRebuildChunkKeys = 2000;

/// Starts the rebuild of `partition`'s tree by its vnode (at the vnode's start): when the
/// node has no index for it yet, builds index and tree in one fold and returns false; else
/// starts a rebuild from the index and returns true: the vnode then sends itself an
/// AaeRebuildStep and calls aae_rebuild_step for each. REQUIRES: st.aae is set.
bool aae_begin_rebuild(KvState& st, std::uint32_t partition);
/// One chunk of `partition`'s rebuild, when the CPU budget allows. Returns nullopt when the
/// tree is built; else the time after which the vnode sends itself the next step (zero: at
/// once; more while the budget is spent, counted in throttled). REQUIRES: st.aae is set.
std::optional<std::chrono::milliseconds> aae_rebuild_step(KvState& st, std::uint32_t partition);

/// Starts `nodus_kv_aae` on `node`, linked to the caller (the store's supervisor).
/// REQUIRES: st->aae is set.
Result<Pid, Reason> start_aae_server(Node& node, KvState* st);

}  // namespace nodus::kv
