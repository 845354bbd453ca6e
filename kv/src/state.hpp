// What a node's store processes share: options, the engine, the ring as last seen with which
// members are up (the View), per-vnode queue counters, merge functions and the counters. One
// per node, in a Node service slot; nodus_kv writes the View, vnodes and routers read it.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fsm.hpp"
#include "hlc.hpp"
#include "kv_protocol.hpp"
#include "nodus/kv/kv.hpp"
#include "object.hpp"

namespace nodus::kv {

/// The ring and who is up, as of one moment: immutable, replaced as a whole.
struct View {
  std::shared_ptr<const Ring> ring;
  std::vector<bool> up;     // per ring member: linked to this node now (this node: true)
  std::vector<Atom> names;  // per ring member, as atoms
  int self = -1;            // this node's member index, -1 when not a member
  bool ready() const { return ring && !ring->empty(); }

  /// The replicas a request for partition `p` goes to, N at most: the primaries that are up,
  /// and for each primary that is down the next up node clockwise that is not already listed
  /// (a fallback holding a hint). With `self_first`, this node's slot comes first.
  std::vector<Target> targets(std::uint32_t p, std::uint32_t n) const;
  /// The primaries of `p` (member indexes).
  std::vector<std::uint32_t> primaries(std::uint32_t p, std::uint32_t n) const {
    return ring->preference_list(p, n);
  }
};

struct Counters {
  std::atomic<std::uint64_t> gets{0}, puts{0}, deletes{0}, hits{0}, misses{0}, errors{0},
      overloaded{0}, forwarded{0}, replica_writes{0}, expired_skipped{0}, read_repairs{0},
      read_repairs_skipped{0}, hints{0}, handoffs{0}, tombstones_reaped{0}, siblings_max{0};
};

struct AtomicLatency {
  std::array<std::atomic<std::uint64_t>, Latency::kBuckets> counts{};
  std::atomic<std::uint64_t> count{0}, sum_us{0};
  void record(std::chrono::steady_clock::duration d);
  Latency snapshot() const;
};

struct KvState {
  KvState(Node& n, Options o);

  Node& node;
  const Options options;
  std::unique_ptr<Engine> engine;
  ContextSigner signer;
  HybridClock clock;
  Counters counters;
  AtomicLatency get_latency, put_latency, delete_latency;
  Pid server;
  std::vector<Pid> vnodes;  // by partition; written before the first request is routed
  std::unique_ptr<std::atomic<std::uint32_t>[]> queued;  // requests sent to each vnode, not taken
  std::unique_ptr<std::atomic<std::uint32_t>[]> hinted;  // keys each vnode keeps hints for

  /// Now on the store's time source (Options::clock, else the steady clock).
  std::chrono::steady_clock::time_point now() const {
    return options.clock ? options.clock->now() : std::chrono::steady_clock::now();
  }
  /// Wall-clock milliseconds since the epoch (with Options::clock: since that clock's epoch).
  std::uint64_t wall_ms() const;

  std::shared_ptr<const View> view() const {
    std::lock_guard lock(view_mu_);
    return view_;
  }
  void set_view(std::shared_ptr<const View> v) {
    std::lock_guard lock(view_mu_);
    view_ = std::move(v);
  }

  /// The merge function for `key`, or nullptr.
  std::shared_ptr<const MergeFn> merge_for(std::string_view key) const;
  void add_merge(std::string prefix, MergeFn fn);
  bool has_merges() const { return has_merges_.load(std::memory_order_relaxed); }

  /// Takes one read-repair token (rate bound per second); false when there is none.
  bool take_repair_token();
  void note_siblings(std::size_t n) {
    std::uint64_t cur = counters.siblings_max.load(std::memory_order_relaxed);
    while (n > cur && !counters.siblings_max.compare_exchange_weak(cur, n)) {
    }
  }

 private:
  // Guards view_: nodus_kv replaces it, every router and vnode reads it per request.
  mutable std::mutex view_mu_;
  std::shared_ptr<const View> view_;
  // Guards merges_ (registered rarely, read per request when any exist).
  mutable std::mutex merge_mu_;
  std::vector<std::pair<std::string, std::shared_ptr<const MergeFn>>> merges_;
  std::atomic<bool> has_merges_{false};
  // Guards the repair window.
  std::mutex repair_mu_;
  std::chrono::steady_clock::time_point repair_window_{};
  std::uint32_t repairs_in_window_ = 0;
};

/// The store on `node`, or nullptr.
KvState* state_of(Node& node);

/// Local names.
inline constexpr const char* kServerName = "nodus_kv";
std::string vnode_name(std::uint32_t partition);

/// Starts the vnode of `partition` (vnode.cpp).
Result<Pid, Reason> start_vnode(Node& node, KvState* st, std::uint32_t partition);

/// A request as the vnode gets it from a router on its own node (never crosses the wire).
struct Origin {
  From from;
  bool term = false;  // answer with a term (the caller sent one), else a KvReply
  Op op = Op::kGet;
};
struct CoordRequest {
  KvRequest request;
  Origin origin;
};

/// Answers a request's caller with `reply`, as a term or a KvReply as the caller asked.
void answer(const Origin& origin, KvReply reply);
KvReply error_reply(ErrorCode code, std::string message = {});

}  // namespace nodus::kv
