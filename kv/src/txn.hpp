// Compare-and-set and transactions (docs/protocol.md 12.5): conditional multi-key writes of one
// partition, coordinated by that partition's first up primary, checked and applied there in one
// step of its vnode, and replicated as one message per replica that the replica's vnode applies
// in one step. Messages: tags 530-532.
//
// A write coordinated by the first primary's vnode is atomic with respect to every other
// request that vnode handles (the vnode is one process: nothing runs between the check and the
// write). Plain puts coordinated by another primary are not serialized with it: they meet it at
// the replicas as concurrent versions (siblings), never silently lost.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "kv_protocol.hpp"
#include "nodus/node/process.hpp"
#include "object.hpp"

namespace nodus::kv {

struct KvState;
struct PartitionState;

/// What a transaction does with one key. write: 0 none (read or check only), 1 put `value`,
/// 2 delete. cond: 0 none, 1 the key's version at the first primary must equal the causal
/// context `if_version`, 2 the key must be absent there (no live value). Puts only: the value
/// expires ttl_ms after the first primary stores it (0: never), or, with keep_ttl, when the
/// live values it supersedes there expire (the latest of them; never when one never expires or
/// none is live: Redis's INCR and SET KEEPTTL). The two trailing fields are missing from an
/// older sender's op and then read as 0 / false.
struct TxnOp {
  std::string key;
  std::uint8_t write = 0;
  std::uint8_t cond = 0;
  std::string if_version;
  Bin value;
  std::uint64_t ttl_ms = 0;
  bool keep_ttl = false;
  MSGPACK_DEFINE_ARRAY(key, write, cond, if_version, value, ttl_ms, keep_ttl)
};
enum : std::uint8_t { kTxnNone = 0, kTxnPut = 1, kTxnDelete = 2 };
enum : std::uint8_t { kCondNone = 0, kCondVersion = 1, kCondAbsent = 2 };

/// The most keys one transaction names.
inline constexpr std::size_t kMaxTxnKeys = 1000;

/// A transaction, to nodus_kv (a call, answered with a TxnReply). Quorums and timeout 0: the
/// node's defaults. forwarded: sent on by the nodus_kv of another node, which took it as the
/// partition's first up primary; deadline_ms then fixed (wall-clock ms), as in KvForward.
/// hops: how many nodes sent it on so far (a node that sees another first up primary than the
/// sender did sends it on again, at most N - 1 times in all).
struct KvTxn {
  std::vector<TxnOp> ops;
  std::uint32_t w = 0, pw = 0, dw = 0;
  std::uint32_t timeout_ms = 0;
  bool forwarded = false;
  std::uint64_t deadline_ms = 0;
  std::uint8_t hops = 0;
  NODUS_MESSAGE(KvTxn, 530, ops, w, pw, dw, timeout_ms, forwarded, deadline_ms, hops);
};

/// One key of a TxnReply: its live values at the first primary (none: absent) and its causal
/// context (after the write, for keys the transaction wrote).
struct TxnKey {
  std::vector<Bin> values;
  std::string context;
  MSGPACK_DEFINE_ARRAY(values, context)
};

/// The answer to a KvTxn. code 0: committed (or read), `keys` one per op in order. code
/// kVersionMismatch: `message` names the first key whose condition failed, and `keys` hold
/// every key's current state (nothing was written). Other codes: as a KvReply's (no_quorum
/// with quorum/needed/got).
struct TxnReply {
  std::uint16_t code = 0;
  std::string message;
  std::vector<TxnKey> keys;
  std::uint32_t needed = 0, got = 0;
  std::string quorum;
  NODUS_MESSAGE(TxnReply, 531, code, message, keys, needed, got, quorum);
};

/// A committed transaction's objects to one replica, applied there in one step; acknowledged
/// with a ReplicaPutAck as a ReplicaPut. Fields as ReplicaPut's; keys and objects pair up.
struct ReplicaTxn {
  std::uint32_t partition = 0;
  std::uint64_t req_id = 0;
  std::uint8_t target = 0;
  std::uint64_t deadline_ms = 0;
  std::string hint;
  std::vector<std::string> keys;
  std::vector<Bin> objects;
  NODUS_MESSAGE(ReplicaTxn, 532, partition, req_id, target, deadline_ms, hint, keys, objects);
};

/// A transaction as nodus_kv hands it to its partition's vnode (never crosses the wire).
/// How to answer a transaction's caller: a TxnReply, the term of a {txn, ...} request, or the
/// term of a put/delete with if_version ({ok, Context}).
enum class TxnShape : std::uint8_t { kTyped, kTxnTerm, kWriteTerm };

struct TxnCoord {
  KvTxn txn;
  From from;
  TxnShape shape = TxnShape::kTyped;
  std::chrono::steady_clock::time_point deadline;
};

/// A transaction checked against one replica's objects (the first primary's), ready to store.
struct TxnPlan {
  std::vector<Object> objects;       // per op: the key's object, as it will be once written
  std::vector<std::size_t> written;  // the ops that write, in order
  std::vector<std::string> encoded;  // their new objects, encoded (one per written op)
  std::vector<VersionVector> seen;   // what each written op superseded (for its watch event)
};

/// The vnode's check of transaction `t` of partition `p` (of `partitions`): reads every key
/// with `read`, checks every condition, and makes the new objects, each write superseding all
/// the replica holds of its key under an actor of `ps` (`resolve`: the vnode's lww rule).
/// Returns the plan, or the answer to give at once: a read (no write: every key's state), a
/// version_mismatch (every key's state; nothing to write), or an error (badarg for a bad
/// context, value_too_large for an object above kv.max_object_bytes, internal).
std::variant<TxnPlan, TxnReply> plan_txn(
    KvState& st, PartitionState& ps, const KvTxn& t, std::uint32_t p, std::uint32_t partitions,
    const std::function<Result<Object>(const std::string&)>& read,
    const std::function<void(Object&)>& resolve);

/// A key's live values and signed causal context ("" for a key never written), for a TxnReply.
TxnKey txn_key_state(const KvState& st, const std::string& key, const Object& o);

/// Registers the messages above (idempotent).
Status register_txn_protocol();

/// Checks `t` (keys, values, quorums, timeout: badarg / value_too_large naming what is wrong;
/// keys of different partitions: cross_partition) and returns its partition.
Result<std::uint32_t> check_txn(const KvTxn& t, const KvState& st, std::uint32_t partitions);

/// nodus_kv's part: sends `t` to its partition's vnode when this node is the first up primary
/// as it sees the ring, else to that primary's nodus_kv, through a short-lived process here that
/// relays the answer; also a `t` forwarded here by a node that saw this one as the first up
/// primary, when this node sees another (each such hop goes to an earlier primary of the
/// preference list, so at most N - 1 of them: past that, unavailable). Never runs a transaction
/// on a fallback or on a primary that sees an earlier one up: with no primary up it answers
/// unavailable.
void route_txn(KvState& st, KvTxn t, From from, TxnShape shape);

/// Answers a transaction's caller, with a TxnReply or its term (docs/protocol.md 12.5).
void answer_txn(const From& from, TxnShape shape, TxnReply reply);
TxnReply txn_error(ErrorCode code, std::string message = {});

/// A term request that is a transaction: {txn, Ops, Opts}, or a put/delete whose options name
/// if_version. nullopt when `t` is none of these; else the KvTxn (and `shape` set) or the error
/// naming what is wrong.
std::optional<Result<KvTxn>> txn_of_term(const Term& t, TxnShape* shape);

/// {multi_get, [Key...], Opts} and {multi_put, [{Key, Value}...], Opts} (client_txn.cpp):
/// a process on `node` runs them as kv::Client's multi_get / multi_put and answers `from`
/// with {ok, [Result...]}, one per key as get's / put's term reply.
bool is_multi_request(const Term& t);
void start_multi(Node& node, const Term& t, From from);

}  // namespace nodus::kv
