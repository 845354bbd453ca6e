// The ring: which node owns each of the Q partitions (Dynamo section 6.2, strategy 3: Q equal
// partitions, whole partitions per node; Riak's riak_core_ring and its claim).
//
// A Ring is an immutable value with an epoch. One node, the claimant (the lowest member name),
// makes every new ring: from the initial members (Ring::create) or from the previous ring and a
// new member set (Ring::with_members, epoch + 1); every node keeps the one with the highest
// epoch it has seen (gossip). Placement guarantees, for every ring it makes:
//   - balance: the partition counts of any two members differ by at most one (Riak's greedy
//     claim once left one node of five with a quarter of a 64-partition ring, basho/riak#348);
//   - spacing: owners of any N consecutive partitions are distinct wherever Q and the member
//     count allow it (a ring at least as well spaced as a fresh striped one of the same size);
//     where they cannot (64 partitions on 3 nodes), the preference list walks on to the next
//     distinct node, so it still holds N distinct nodes whenever there are N members;
//   - few moves: a membership change keeps every partition it can on its owner; it moves more
//     only when keeping them would leave the ring worse spaced than a fresh one.
//
// Staged changes (Riak's riak_core_claimant): joins, leaves and removes are collected at the
// claimant and applied together by with_changes, which does not move ownership at once: the
// new ring keeps each moving partition's current owner and names its next owner (Riak's `next`
// list), so requests keep going to the current owner until the partition has been handed off;
// then with_transfer_done makes the next owner the owner (epoch + 1). A leaving member stays a
// member, owning less and less, until it owns nothing and receives nothing: then it is dropped.
// A removed member (a dead node) is dropped at once and its partitions get new owners, which
// rebuild them from the other replicas.
//
// Thread-safety: a value; const methods may be used from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nodus/transport/status.hpp"

namespace nodus::kv {

class Ring {
 public:
  /// The most members a ring holds.
  static constexpr std::size_t kMaxMembers = 64;

  /// An empty ring (epoch 0, no partitions): what a node holds before its ring forms.
  Ring() = default;

  /// A fresh ring of `partitions` partitions over `members` (epoch 1), claimed for
  /// `replicas` (N) distinct owners per preference list. Members are sorted and deduplicated.
  /// Errors: kBadConfig when partitions is not a power of two in 1..65536, when there are no
  /// members or more than kMaxMembers, when a name is empty or longer than a node name may be
  /// (255 bytes), or when replicas is 0.
  static Result<Ring> create(std::uint32_t partitions, std::uint32_t replicas,
                             std::vector<std::string> members);

  /// The ring after a membership change (members joining or leaving), epoch + 1: the claim
  /// moves as few partitions as it can. Errors as create.
  Result<Ring> with_members(std::vector<std::string> members) const;

  /// The ring after staged membership changes (epoch + 1): `joins` become members, `leaves`
  /// are marked leaving (they keep what they own until it is handed off), `removes` are
  /// dropped at once (their partitions go straight to new owners). Partitions that move get a
  /// next owner (next_owner) and keep their owner. While partitions of this ring move
  /// (has_transfers()), only removes are taken: moves under way keep their next owner where it
  /// stays a member, and a partition the removed member owned goes to its next owner at once.
  /// Errors: kUnavailable for joins or leaves while partitions move; kBadArg naming the node when a
  /// join names a member, a leave or remove one that is not, or when no member would be left to own
  /// the partitions; kBadConfig as create (too many members, a bad name).
  Result<Ring> with_changes(const std::vector<std::string>& joins,
                            const std::vector<std::string>& leaves,
                            const std::vector<std::string>& removes) const;

  /// The ring after partition `p` was handed to its next owner (epoch + 1): it becomes the
  /// owner; a leaving member left owning and receiving nothing is dropped. Errors: kBadArg when
  /// `p` is out of range or is not moving.
  Result<Ring> with_transfer_done(std::uint32_t p) const;

  /// A ring received from another node (gossip, docs/protocol.md). `next`: empty, or one next
  /// owner per partition; `leaving`: member names, sorted. Errors: kProtocol when the parts are
  /// inconsistent (owner out of range, wrong length, unsorted members ...).
  static Result<Ring> from_parts(std::uint64_t epoch, std::uint32_t partitions,
                                 std::uint32_t replicas, std::vector<std::string> members,
                                 std::vector<std::uint16_t> owners,
                                 std::vector<std::uint16_t> next = {},
                                 std::vector<std::string> leaving = {});

  bool empty() const { return owners_.empty(); }
  std::uint64_t epoch() const { return epoch_; }
  std::uint32_t partitions() const { return static_cast<std::uint32_t>(owners_.size()); }
  /// N, the replica count the claim spaces partitions for.
  std::uint32_t replicas() const { return replicas_; }
  /// The members, sorted by name.
  const std::vector<std::string>& members() const { return members_; }
  /// The claimant: the lowest name among the members that are not leaving. REQUIRES: !empty().
  const std::string& claimant() const;
  /// The members committed to leave, sorted: they hand off what they own, then are dropped.
  const std::vector<std::string>& leaving() const { return leaving_; }
  bool is_leaving(std::string_view name) const;
  /// The index in members() of `name`, or -1.
  int member_index(std::string_view name) const;

  /// The owner of partition `p`, as an index into members(). REQUIRES: p < partitions().
  std::uint32_t owner(std::uint32_t p) const { return owners_[p]; }
  const std::vector<std::uint16_t>& owners() const { return owners_; }
  /// The member partition `p` moves to once handed off (Riak's `next`), as an index into
  /// members(); owner(p) when it does not move. REQUIRES: p < partitions().
  std::uint32_t next_owner(std::uint32_t p) const { return next_.empty() ? owners_[p] : next_[p]; }
  /// Per partition, next_owner(p); empty when no partition moves.
  const std::vector<std::uint16_t>& next() const { return next_; }
  /// True when some partition has a next owner other than its owner.
  bool has_transfers() const { return !next_.empty(); }
  /// The partitions that move, ascending.
  std::vector<std::uint32_t> transfers() const;
  /// Partitions owned per member, in members() order.
  std::vector<std::uint32_t> owned_counts() const;

  /// The primaries of partition `p`: the owners of p, p+1, ... clockwise, skipping members
  /// already listed, until `n` distinct members (or all of them when there are fewer), as
  /// member indexes in preference order. REQUIRES: p < partitions().
  std::vector<std::uint32_t> preference_list(std::uint32_t p, std::uint32_t n) const;

  /// Pairs of partitions less than N apart (clockwise) with the same owner: 0 on a perfectly
  /// spaced ring.
  std::size_t spacing_violations() const;

  friend bool operator==(const Ring&, const Ring&) = default;

 private:
  std::uint64_t epoch_ = 0;
  std::uint32_t replicas_ = 0;
  std::vector<std::string> members_;
  std::vector<std::uint16_t> owners_;
  std::vector<std::uint16_t> next_;   // empty, or a next owner per partition
  std::vector<std::string> leaving_;  // sorted member names

  // Drops `next_` when nothing moves, and the leaving members that own and receive nothing.
  void settle();
};

}  // namespace nodus::kv
