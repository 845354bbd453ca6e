// Process groups' messages (private): between the scope servers of two nodes, and from the
// API (pg.hpp) to a node's scope server. Each is a typed message (nodus/node/wire.hpp): a stable
// tag and one field list, which is the wire form, field by field, of docs/protocol.md section
// 10. Tags 120-139 (wire.hpp reserves 100-199 for registry/).
//
// A scope S's servers address each other by the local name "nodus_pg_S" (envelope kind 0, a
// plain send), so messages between two nodes arrive in the order sent. `node` is the sender's
// node name: a server ignores (and counts) messages whose `node` is a hidden peer.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "nodus/node/term.hpp"
#include "nodus/node/wire.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::pg_protocol {

/// The local name of scope `scope`'s server on every node.
inline std::string server_name(std::string_view scope) {
  std::string n = "nodus_pg_";
  n += scope;
  return n;
}

/// One group's members on one node. A pid appears once per join.
struct Members {
  Term group;
  std::vector<Pid> pids;
  NODUS_FIELDS(group, pids);
};

// -- between scope servers -------------------------------------------------------------------

/// Sent when a link comes up (and at start): every local member of the sender, by group, and
/// its scope server (monitored by the receiver). The receiver makes its copy of the sender's
/// members equal to `groups` (telling its watchers only of the difference) and answers with
/// its own when the sender was new to it or `want_answer`.
struct Discover {
  Atom node;
  std::vector<Members> groups;
  bool want_answer = false;
  Pid server;
  NODUS_MESSAGE(Discover, 120, node, groups, want_answer, server);
};

/// Local processes of `node` joined `group` (one entry per join).
struct Join {
  Atom node;
  Term group;
  std::vector<Pid> pids;
  NODUS_MESSAGE(Join, 121, node, group, pids);
};

/// Local processes of `node` left `group` (or exited).
struct Leave {
  Atom node;
  Term group;
  std::vector<Pid> pids;
  NODUS_MESSAGE(Leave, 122, node, group, pids);
};

// -- from the API to a node's scope server (a call; it crosses the wire when the caller is
// another node's process) ----------------------------------------------------------------------

/// pg::join: `pid` (a process of the server's node) joins `group`. Answered with a Reply.
struct JoinRequest {
  Term group;
  Pid pid;
  NODUS_MESSAGE(JoinRequest, 130, group, pid);
};

/// pg::leave: one membership of `pid` in `group` ends. Answered with a Reply (not_found when
/// it was no member).
struct LeaveRequest {
  Term group;
  Pid pid;
  NODUS_MESSAGE(LeaveRequest, 131, group, pid);
};

/// pg::monitor: `watcher` is told of `group`'s joins and leaves from now on. Answered with a
/// Reply holding the members now.
struct MonitorRequest {
  Term group;
  Pid watcher;
  NODUS_MESSAGE(MonitorRequest, 132, group, watcher);
};

/// pg::demonitor. Answered with a Reply.
struct DemonitorRequest {
  Term group;
  Pid watcher;
  NODUS_MESSAGE(DemonitorRequest, 133, group, watcher);
};

/// The outcome of a request, with the members for a MonitorRequest.
struct Reply {
  Status status;
  std::vector<Pid> members;
  NODUS_MESSAGE(Reply, 134, status, members);
};

/// Makes every message above decodable from other nodes (wire.hpp). Idempotent.
inline Status register_messages() {
  for (Status s : {register_message<Discover>(), register_message<Join>(),
                   register_message<Leave>(), register_message<JoinRequest>(),
                   register_message<LeaveRequest>(), register_message<MonitorRequest>(),
                   register_message<DemonitorRequest>(), register_message<Reply>()}) {
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace nodus::pg_protocol
