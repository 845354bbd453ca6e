// The global name service's messages (private): between the servers of two nodes, and from
// the API (global.hpp) to a node's server. Each is a typed message (nodus/node/wire.hpp): a
// stable tag and one field list, which is the wire form, field by field, of
// docs/protocol.md section 9. Tags 100-119 (wire.hpp reserves 100-199 for registry/).
//
// Servers address each other by the local name "nodus_global" (envelope kind 0, a plain send),
// so messages between two nodes arrive in the order sent. Fields named `node` are the sender's
// node name: a server ignores (and counts) messages whose `node` is a hidden peer.
#pragma once

#include <cstdint>
#include <vector>

#include "nodus/node/term.hpp"
#include "nodus/node/wire.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::global_protocol {

/// The local name of every node's global name server.
inline constexpr const char* kServerName = "nodus_global";

/// One claim on a name, as a node's record holds it: `name` was given to `pid` at fencing epoch
/// (`epoch`, `by`): the counter and the node that registered it (GlobalEpoch), at Lamport time
/// `clock`. `gone` once the claim ended (unregistered, its holder exited, or it lost a
/// conflict): kept, so that the claim cannot come back. `replaced` is the
/// holder a re-registration took the name from on purpose (invalid otherwise): that one is not
/// told it lost.
struct Claim {
  Bytes name;
  Pid pid;
  std::uint64_t epoch = 0;
  std::uint64_t clock = 0;
  bool gone = false;
  Pid replaced;
  Atom by;  // last: a claim from a node that does not send it reads as by `undefined`
  NODUS_FIELDS(name, pid, epoch, clock, gone, replaced, by);
};

/// The highest epoch a node has seen for `name`, claims it keeps no record of included (of
/// processes on nodes it is not linked to): kept after the name is gone, so that an epoch
/// never comes round again.
struct Seen {
  Bytes name;
  std::uint64_t epoch = 0;
  NODUS_FIELDS(name, epoch);
};

// -- between servers -------------------------------------------------------------------------

/// Sent to a peer's server when the link comes up (and when the service starts): the sender's
/// record of every name (the claims of the name's highest epoch it keeps, ended ones
/// included), its server (monitored by the receiver), and every epoch it has seen. The receiver
/// answers with its own when the sender was new to it or `want_answer`.
struct Hello {
  Atom node;
  std::vector<Claim> claims;
  std::uint64_t clock = 0;  ///< the sender's Lamport clock
  bool want_answer = false;
  Pid server;
  std::vector<Seen> seen;
  NODUS_MESSAGE(Hello, 100, node, claims, clock, want_answer, server, seen);
};

/// Asks for the lock on `name` for round `req` of registrar `node`.
struct Lock {
  Bytes name;
  std::uint64_t req = 0;
  Atom node;
  NODUS_MESSAGE(Lock, 101, name, req, node);
};

/// The answer to a Lock: granted or not, with the answering node's holder of `name` (invalid
/// when none) and the highest epoch it has seen for it.
struct LockReply {
  Bytes name;
  std::uint64_t req = 0;
  Atom node;
  bool granted = false;
  Pid holder;
  std::uint64_t epoch = 0;
  NODUS_MESSAGE(LockReply, 102, name, req, node, granted, holder, epoch);
};

/// `name` is now `pid`'s at epoch (`epoch`, `by`) (taken from `replaced` on purpose, when
/// valid); releases the lock of round (`node`, `req`) (`req` 0: no lock was taken, the claim is
/// told again or raised).
struct Commit {
  Bytes name;
  Pid pid;
  std::uint64_t epoch = 0;
  std::uint64_t clock = 0;
  std::uint64_t req = 0;
  Atom node;
  Pid replaced;
  Atom by;
  NODUS_MESSAGE(Commit, 103, name, pid, epoch, clock, req, node, replaced, by);
};

/// Releases the lock of round (`node`, `req`) without a change.
struct Release {
  Bytes name;
  std::uint64_t req = 0;
  Atom node;
  NODUS_MESSAGE(Release, 104, name, req, node);
};

/// The claim of `pid` on `name` at epoch (`epoch`, `by`) ended; releases the lock of round (`node`,
/// `req`)
/// (`req` 0: no lock was taken: the holder exited or lost a conflict).
struct Unregister {
  Bytes name;
  Pid pid;
  std::uint64_t epoch = 0;
  std::uint64_t req = 0;
  Atom node;
  Atom by;
  NODUS_MESSAGE(Unregister, 105, name, pid, epoch, req, node, by);
};

// -- from the API to a node's server (a call; it crosses the wire when the caller is another
// node's process) ------------------------------------------------------------------------------

/// register_global / re_register_global. Answered with a Reply.
struct RegisterRequest {
  Bytes name;
  Pid pid;
  bool re_register = false;
  NODUS_MESSAGE(RegisterRequest, 110, name, pid, re_register);
};

/// unregister_global. Answered with a Reply.
struct UnregisterRequest {
  Bytes name;
  NODUS_MESSAGE(UnregisterRequest, 111, name);
};

/// The outcome of a request: ok with the registration's epoch (`epoch`, `by`), or the error;
/// `holder` is the process holding the name when the error is already_started.
struct Reply {
  Status status;
  std::uint64_t epoch = 0;
  Pid holder;
  Atom by;
  NODUS_MESSAGE(Reply, 112, status, epoch, holder, by);
};

/// Makes every message above decodable from other nodes (wire.hpp). Idempotent.
inline Status register_messages() {
  for (Status s :
       {register_message<Hello>(), register_message<Lock>(), register_message<LockReply>(),
        register_message<Commit>(), register_message<Release>(), register_message<Unregister>(),
        register_message<RegisterRequest>(), register_message<UnregisterRequest>(),
        register_message<Reply>()}) {
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace nodus::global_protocol
