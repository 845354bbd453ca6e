// Ownership transfer (hand-off on a membership change; Riak's riak_core_handoff_sender and
// _receiver, ownership_transfer). A committed ring names a next owner for each moving partition
// (Ring::next_owner). Switching partition X to its next owner changes the preference lists of X
// and of the partitions before it: each list that gains a node loses one. Before the switch,
// the node each list loses streams that partition's keys to the node it gains, as hinted
// hand-off does (HandoffPut to the receiver's vnode, merged through the versioned write path,
// so nothing newer is overwritten; a key counts as sent once its HandoffAck came back), in a
// window of kTransferWindow keys, while it keeps serving. A pass over the partition is followed
// by passes over what changed since it was sent (writes that arrived during the transfer),
// at most kTransferPasses. Besides, while a hand-off of a partition runs, every write its vnode
// stores is forwarded at once (the vnode tells nodus_kv_transfer: TransferWrite), so a write
// acknowledged during the transfer reaches the new owner without waiting for a pass. When every
// hand-off a node sends for X, forwards included, is acknowledged it tells the claimant
// (TransferDone; a write that reaches it after that and before the switch reaches the
// coordinators is forwarded too, and lands a moment after the switch); once every such node did,
// the claimant makes the ring with X's next owner as owner (epoch + 1). A hand-off whose receiver
// goes down starts again from the beginning: sending a key twice is harmless, skipping one is
// not. A sender with kv.data_dir keeps each hand-off's acknowledged keys (and digests) beside
// its data every second; restarted, it resumes: its first pass sends the keys not acknowledged
// or changed since (without kv.data_dir it starts again, with nothing to hand off but what
// its restarted vnodes hold). After the switch a last pass sends what still changed here; then
// this node's copies, acknowledged and unchanged, are dropped (DropCopy to its own vnode) unless it
// is still a replica.
//
// One `nodus_kv_transfer` server per node (started by kv::start) sends that node's hand-offs,
// at most kv.transfer_limit at a time, and answers `status` for `nodusctl transfers`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "nodus/kv/ring.hpp"
#include "nodus/node/process.hpp"
#include "nodus/node/wire.hpp"
#include "state.hpp"

namespace nodus::kv {

inline constexpr const char* kTransferName = "nodus_kv_transfer";
/// Keys a hand-off has sent and not yet seen acknowledged, at most.
inline constexpr std::size_t kTransferWindow = 64;
/// Passes over a partition at most: the first sends everything, the others what changed.
inline constexpr int kTransferPasses = 3;

/// One stream of partition `partition`'s keys from node `from` to node `to`, which switching
/// partition `moving` to its next owner needs.
struct Handoff {
  std::uint32_t moving = 0;
  std::uint32_t partition = 0;
  std::string from, to;
};

/// The hand-offs switching partition `x` of `ring` needs (N = `n`): for each partition whose
/// preference list gains a node, from the node it loses (where it loses none, its first
/// primary) to the one it gains. REQUIRES: x is moving in `ring`.
std::vector<Handoff> handoffs_for(const Ring& ring, std::uint32_t x, std::uint32_t n);

/// Every hand-off node (the sender) sends for switching partition `partition` in ring `epoch`
/// is acknowledged; to the claimant's `nodus_kv`, from a ring member only.
struct TransferDone {
  std::uint32_t partition = 0;
  std::uint64_t epoch = 0;
  NODUS_MESSAGE(TransferDone, 515, partition, epoch);
};

/// To the receiver's vnode of `partition`, from a sender whose hand-off was called off before
/// its switch (a later switch changed the plan, so the receiver gains the partition no more):
/// drop `key` if it is what the sender handed off (XXH3-64 of the object is `digest`), the
/// receiver is no primary of the partition and no hand-off of it to the receiver is pending
/// in its ring (copy_unwanted). Copies of a hand-off that stops half-way are no one's else.
struct TransferDrop {
  std::uint32_t partition = 0;
  std::string key;
  std::uint64_t digest = 0;
  NODUS_MESSAGE(TransferDrop, 545, partition, key, digest);
};

/// True when node `self` (member index in `v`) holds partition `p`'s keys for no one: it is
/// no primary of p, and no hand-off pending in v's ring (N = `n`) brings p to it.
bool copy_unwanted(const View& v, std::uint32_t p, std::uint32_t n);
/// The digest TransferDrop names an object by.
std::uint64_t transfer_digest(std::string_view object);

/// To this node's vnode of `partition`, from nodus_kv_transfer once a hand-off's last pass is
/// acknowledged: drop `key` if it still holds exactly `object`, holds no hint for it and this
/// node is no primary of the partition. A local message: it never crosses the wire.
struct DropCopy {
  std::string key;
  std::string object;
};

/// To this node's nodus_kv_transfer, from the vnode of `partition` while
/// PartitionState::forwarding is set: it stored `key` (a write taken during a hand-off, which
/// the transfer forwards to the receivers). A local message: it never crosses the wire.
struct TransferWrite {
  std::uint32_t partition = 0;
  std::string key;
};

Status register_transfer_protocol();

/// Starts `nodus_kv_transfer` on `node`, linked to the caller (the store's supervisor).
Result<Pid, Reason> start_transfer_server(Node& node, KvState* st);

/// The claimant of `ring` as a node that sees `up` up: the lowest-named member that is up
/// (this node: `self`) and not leaving; the ring's claimant when none is.
std::string acting_claimant(const Ring& ring, const std::string& self,
                            const std::function<bool(const std::string&)>& up);

}  // namespace nodus::kv
