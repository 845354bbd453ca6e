// The store's queries over more than one key's replicas: `{keys, Pattern, Opts}` (a coverage
// query, Riak's list-keys: one replica of every partition, in a stable order, paged by cursor)
// and `{explain, Key}` (what every replica of one key holds, and which hints are kept for it).
//
// A query reaching `nodus_kv` is run by a short-lived process on that node, so the server stays
// responsive; it asks the `nodus_kv_query` server of the nodes involved (one per node, started
// by kv::start) with the typed messages below, answers the caller and ends.
//
// Thread-safety: the functions may be called from any process.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nodus/node/process.hpp"
#include "nodus/node/wire.hpp"
#include "state.hpp"

namespace nodus::kv {

/// The per-node server that answers the messages below, registered locally under this name.
inline constexpr const char* kQueryName = "nodus_kv_query";

/// Keys a page holds at most (`limit` above is refused) and when none is asked for.
inline constexpr std::uint32_t kMaxKeysLimit = 10000;
inline constexpr std::uint32_t kDefaultKeysLimit = 1000;
/// A page of keys stops growing at this many bytes of keys (the rest follows by cursor).
inline constexpr std::size_t kMaxKeysPageBytes = 4u << 20;

/// Asks one replica for the live keys of `partition` that match `pattern` and sort after
/// `after` (bytewise; empty: from the start), at most `limit`, in key order.
struct PartitionKeys {
  std::uint32_t partition = 0;
  std::string pattern;
  std::string after;
  std::uint32_t limit = 0;
  NODUS_MESSAGE(PartitionKeys, 511, partition, pattern, after, limit);
};
/// code: an ErrorCode number (0 ok); `more` when keys matching remain beyond these.
struct PartitionKeysReply {
  std::uint16_t code = 0;
  std::string message;
  std::vector<std::string> keys;
  bool more = false;
  NODUS_MESSAGE(PartitionKeysReply, 512, code, message, keys, more);
};

/// Asks a node what its vnode of `partition` holds for `key`, and for whom it keeps hints. The
/// answer is the term {ok, Object, [Primary...]}: Object the stored object (docs/protocol.md
/// 12.5, an empty binary when none), each Primary a node name (binary) this node keeps the key
/// for as a fallback; or {error, Code}. A term, so that one process can ask every node at once
/// (send_request / wait_response carry term replies only).
struct ReplicaInfo {
  std::uint32_t partition = 0;
  std::string key;
  NODUS_MESSAGE(ReplicaInfo, 513, partition, key);
};

/// An error as the store's term requests answer it (docs/protocol.md 12.3): {error, Code} for
/// not_found, timeout, overloaded and unavailable, else {error, {Code, Message}} (the code's
/// own message when `message` is empty). no_quorum, which names its counts, is the caller's.
Term error_term(ErrorCode code, const std::string& message);

/// True when `request` is a query this file answers: `{keys, ...}` or `{explain, ...}`.
bool is_query(const Term& request);

/// Answers a query on `node` to `from`, from a process of its own (or at once when it is
/// malformed). REQUIRES: is_query(request).
void start_query(Node& node, KvState* st, const Term& request, From from);

/// Registers the messages above (kv::start does, before it starts the servers).
Status register_query_protocol();
/// Starts `nodus_kv_query` on `node`, linked to the caller (nodus_kv_sup, which restarts it).
Result<Pid, Reason> start_query_server(Node& node, KvState* st);

/// Glob matching as Redis's KEYS: `*` any bytes, `?` one byte, `[abc]`, `[a-z]`, `[^a]` one of
/// (or none of) a set, `\x` the byte x itself. An unclosed `[` stands for itself.
bool glob_match(std::string_view pattern, std::string_view text);

/// A keys cursor: where the next page starts (partition, and the last key already returned).
struct KeysCursor {
  std::uint32_t partitions = 0;  ///< Q of the ring it was made for
  std::uint32_t partition = 0;
  std::string after;
};
std::string encode_cursor(const KeysCursor& c);
/// Errors: kBadArg "malformed cursor".
Result<KeysCursor> decode_cursor(std::string_view bytes);

}  // namespace nodus::kv
