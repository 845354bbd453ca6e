// The admin server: the built-in GenServer (local name `nodus_admin`) that nodusd runs on every
// node and nodusctl talks to (the requests are listed below). nodusctl links to one node
// as a hidden node and asks it; requests about other nodes are relayed to their admin servers.
//
// Requests (terms) and replies, each {ok, Value} or {error, Code, Name, Message}: Code the
// number of an error_definitions.hpp code, Name its short name (an atom) and Message one line
// (a binary) for people. nodusctl picks its exit status from Code.
//   ping                       -> pong
//   self                       -> #{name, endpoint, creation, processes, peers, uptime_ms,
//                                   kv (the store runs), partitions (owned), keys, ring_epoch ...}
//   nodes                      -> [#{name, endpoint, state}] (this node included)
//   status                     -> #{cluster, nodes => [... with partitions, keys], ring =>
//                                   #{partitions, replicas, epoch}} (the store's ring once formed)
//   procs                      -> [#{pid, name, behaviour, type, mailbox, handled, memory ...}]
//   {info, PidText}            -> that process's info with its format_status
//   names                      -> [#{name, pid}] (local names)
//   global_names               -> [#{name, pid, node, epoch, registrar}] (this node's copy of
//                                 the table; the fencing epoch is (epoch, registrar))
//   {relay, Node, Request}     -> Request answered by Node's admin server
//   {call, Target, Req, Ms}    -> the reply of a call; Target is {local, Name, Node} or
//                                 {global, Name} or {pid, PidText}
//   {cast, Target, Req}        -> ok
//   {global_register, Name, register | re_register}
//                              -> #{pid, epoch, registrar}: a holder process started on this
//                                 node registered itself as the global name Name (a binary)
//                                 with register_global (re_register_global), at that fencing
//                                 epoch (the counter, and the node that registered it).
//                                 For hidden clients, which cannot hold a global name
//                                 themselves (docs/protocol.md section 11). The holder exits
//                                 when it loses the name: told it lost a conflict, or this
//                                 node's table no longer names it (checked every 500 ms: a
//                                 re-registration took it). Errors: register_global's
//                                 (already_started naming the holder, no_quorum, timeout),
//                                 badarg, overloaded with kMaxGlobalHolders holders alive.
// A PidText is a pid as Pid::to_string writes it, "<n1.4.0>" (parse_pid_text).
// Anything that waits on another process runs in a helper process, so the admin server stays
// responsive.
//
// Thread-safety: a GenServer; start it once per node.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "nodus/node/gen_server.hpp"
#include "nodus/node/node.hpp"

namespace nodus::tools {

inline constexpr const char* kAdminName = "nodus_admin";
/// Holders of {global_register ...} alive on one node at most; more are refused (overloaded).
inline constexpr std::size_t kMaxGlobalHolders = 1024;

struct AdminOptions {
  Node* node = nullptr;
  std::string cluster;
  /// The configured ring shape, shown by status before (or without) the store's ring.
  std::uint32_t kv_partitions = 64;
  std::uint32_t kv_replicas = 3;
};

class AdminServer : public GenServer {
 public:
  Action init(AdminOptions options);
  Action handle_call(Message& request, From from) override;
  Action handle_info(Message& msg) override;
  void terminate(const Reason& reason) override;

 private:
  Term self_info();
  Term nodes_view();
  void refresh_peers();

  AdminOptions opt_;
  std::chrono::steady_clock::time_point started_;
  std::map<std::string, std::string> known_;  // every non-hidden peer seen: name -> endpoint
  std::set<Pid> holders_;                     // the global_register holders alive (monitored)
};

// -- the admin protocol's parts, shared by the server and nodusctl -----------------------------

/// A pid's text, "<n1.4.0>": node name, process table slot, slot reuse count.
struct PidText {
  std::string node;
  std::uint32_t slot = 0;
  std::uint32_t serial = 0;
};
/// Parses a pid's text as Pid::to_string writes it (a node name may hold dots: the last two
/// dot-separated fields are the numbers). Errors: kBadArg saying it is not a pid.
Result<PidText> parse_pid_text(std::string_view text);

/// The error-definitions code of a failure reason: a reason that is a code's short name, or a
/// tuple starting with one (timeout, noproc, nodedown, overloaded, calling_self,
/// {already_started, Pid} ...) has that code; any other reason (a process's exit) is kExited.
ErrorCode code_of(const Reason& reason);

/// The admin server's error reply {error, Code, Name, Message} for `status` (not ok).
Term error_reply(const Status& status);

/// An error reply, taken apart. `name` is the reply's own (a code this build does not know
/// still has one).
struct AdminError {
  ErrorCode code;
  std::string name;
  std::string message;
};
/// The error in `reply`, or nullopt when it is not an error reply.
std::optional<AdminError> admin_error(const Term& reply);

/// Per-process figures summed over a node: for /metrics and `self`.
struct MailboxFigures {
  std::size_t processes = 0;
  std::size_t total = 0;
  std::size_t max = 0;
};
MailboxFigures mailbox_figures(const Node& node);

}  // namespace nodus::tools
