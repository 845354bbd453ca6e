// Process groups, cluster-wide, like Erlang/OTP's pg.
//
// A scope is an independent set of groups: every node that runs the scope (pg::start) keeps a
// full copy of its membership. A process joins or leaves a group on its own node, which tells
// every other node running the scope; members() and local_members() are local reads. A member
// that exits leaves every group; a node that goes down takes its members with it, and a node
// that comes up (or back after a partition) sends its local members again, so membership
// follows node up/down. Groups are terms; a process may join a group more than once (it then
// appears as often, as in pg).
//
// monitor(scope, group) subscribes the current process to a group's changes:
// {pg_join, Scope, Group, [Pid]} and {pg_leave, Scope, Group, [Pid]} (Scope an atom).
//
// Thread-safety: every function may be called from any thread.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "nodus/node/term.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::pg {

/// The scope used when none is named.
inline constexpr std::string_view kDefaultScope = "default";

/// Starts `scope` on `node` (a GenServer registered locally as "nodus_pg_<scope>").
/// Idempotent while that server runs. If it exited, a new one starts afresh: the node's members
/// join again, and the other nodes, which dropped them when the old server went, learn of them.
Status start(Node& node, std::string_view scope = kDefaultScope);
/// Adds `pid` (a process of `node`) to `group`. Errors: kNotFound when the scope does not run
/// here; kBadArg when pid is not on this node.
Status join(Node& node, std::string_view scope, const Term& group, const Pid& pid);
/// Removes one membership of `pid` in `group`. Errors: kNotFound (not a member, or no scope).
Status leave(Node& node, std::string_view scope, const Term& group, const Pid& pid);
/// Every member of `group` in the cluster (as this node knows it), grouped by node.
std::vector<Pid> members(Node& node, std::string_view scope, const Term& group);
/// The members of `group` on `node` itself.
std::vector<Pid> local_members(Node& node, std::string_view scope, const Term& group);
/// The groups that have members, sorted.
std::vector<Term> which_groups(Node& node, std::string_view scope);
/// Subscribes the current process to `group`'s joins and leaves; returns the members now.
/// Errors: kNotFound when the scope does not run here. REQUIRES: has_self().
Result<std::vector<Pid>> monitor(Node& node, std::string_view scope, const Term& group);
/// Ends the current process's subscription to `group`.
void demonitor(Node& node, std::string_view scope, const Term& group);

/// Counters of `scope`'s server on `node` since it started (zero when the scope does not run).
struct Stats {
  /// Discover messages handled: each replaces a peer's members by the difference.
  std::uint64_t discovers = 0;
  /// Messages ignored because they came from a hidden node, which is no member
  /// (docs/protocol.md section 11); also a member's Discover that arrived before its link
  /// counted as up here (its state comes again).
  std::uint64_t ignored = 0;
};
Stats stats(Node& node, std::string_view scope = kDefaultScope);

}  // namespace nodus::pg
