// The claimant's staged membership changes (Riak's riak_core_claimant): `{cluster, join, Node}`,
// `{cluster, leave, Node}`, `{cluster, remove, Node}` collect changes, `{cluster, plan}` shows
// the ring they would make and the partitions that would move, `{cluster, commit}` makes that
// ring (Ring::with_changes), `{cluster, clear}` drops them. Only the claimant (Ring::claimant)
// holds staged changes; nodus_kv on any other node hands these requests to it.
//
// With kv.data_dir the staged changes are kept beside the ring (record "staged", written on every
// change to them and read when nodus_kv starts), so a claimant restarted before `cluster commit`
// (killed, or its nodus_kv restarted by the supervisor) still shows them in `cluster plan` and
// commits them. Riak keeps its staged changes in the ring it gossips (riak_core_claimant's
// `staged` field); here they stay on the claimant's disk, as no other node acts on them.
//
// Thread-safety: a Claimant belongs to the claimant's nodus_kv process; use it from there.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "nodus/kv/ring.hpp"
#include "nodus/node/term.hpp"

namespace nodus::kv {

/// The name of the claimant's record of staged changes beside the ring (Engine::put_meta).
inline constexpr std::string_view kStagedRecord = "staged";

/// True when `request` has the shape `{cluster, ...}`.
bool is_cluster_request(const Term& request);

/// What the claimant knows when it answers a cluster request.
struct ClusterContext {
  const Ring* ring = nullptr;          // the ring now
  std::string self;                    // this node's name
  const std::set<std::string>* up;     // nodes linked to this one now (not this one)
  const std::set<std::string>* store;  // of those, the ones running the store
};

class Claimant {
 public:
  struct Outcome {
    Term reply;
    std::optional<Ring> ring;  // a committed ring, to adopt and gossip
  };
  /// Answers one cluster request (REQUIRES: is_cluster_request). A malformed one or a change
  /// that cannot be staged gets `{error, {badarg, Message}}` naming what was wrong.
  Outcome handle(const Term& request, const ClusterContext& ctx);

  /// The staged changes as a record (record.hpp), to keep with Engine::put_meta under
  /// kStagedRecord; empty when nothing is staged.
  std::string staged_record() const;
  /// Takes the staged changes of a record staged_record made. Returns false (and stages
  /// nothing) when `record` is not one.
  bool restore(std::string_view record);
  /// Counts changes to the staged changes: a caller keeping them saves when it moved.
  std::uint64_t version() const { return version_; }

  /// Drops staged changes that no longer apply to `ring` (a join of a node that became a
  /// member, a leave or remove of one that is gone): a newer ring came by gossip.
  void prune(const Ring& ring);

  /// Node `from` has every hand-off it sends for switching partition `x` of `ring` (N = `n`)
  /// acknowledged (TransferDone). Returns the ring with x switched to its next owner once
  /// every sender of those hand-offs said so, else nullopt (also for a stale report).
  std::optional<Ring> transfer_done(const Ring& ring, std::uint32_t x, const std::string& from,
                                    std::uint32_t n);
  /// The ring with one moving partition switched whose switch needs no hand-off, or nullopt.
  std::optional<Ring> switch_idle(const Ring& ring, std::uint32_t n) const;

 private:
  struct Change {
    std::string kind;  // join, leave, remove
    std::string node;
  };
  Result<Ring> plan(const Ring& ring) const;
  Term plan_term(const ClusterContext& ctx) const;

  std::vector<Change> staged_;
  std::uint64_t version_ = 0;                            // + 1 on every change to staged_
  std::uint64_t done_epoch_ = 0;                         // the ring the reports are for
  std::map<std::uint32_t, std::set<std::string>> done_;  // moving partition -> senders done
};

/// The partitions that move from ring `from` to ring `to` (by owner, then next owner), as
/// `[#{partition, from, to, kind => transfer|rebuild}]`: rebuild when the owner was dropped.
Term moves_term(const Ring& from, const Ring& to);

}  // namespace nodus::kv
