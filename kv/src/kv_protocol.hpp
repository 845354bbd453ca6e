// The store's messages between nodes: typed NODUS_MESSAGE structs (MessagePack arrays, fields
// in the order listed), tags 500-519. docs/protocol.md ("The store") describes them; clients in
// other languages use the term requests to `nodus_kv` instead.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nodus/node/process.hpp"
#include "nodus/node/wire.hpp"

namespace nodus::kv {

/// Bytes that travel as a MessagePack bin, not str: decoders bound a str at 1 MiB, and values
/// and objects may be larger (kv.max_value_bytes, kv.max_object_bytes). A std::string otherwise.
struct Bin : std::string {
  Bin() = default;
  Bin(std::string s) : std::string(std::move(s)) {}  // NOLINT: implicit on purpose
  Bin(std::string_view s) : std::string(s) {}        // NOLINT
  Bin(const char* s) : std::string(s) {}             // NOLINT
};

}  // namespace nodus::kv

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {
  template <>
  struct convert<nodus::kv::Bin> {
    const msgpack::object& operator()(const msgpack::object& o, nodus::kv::Bin& v) const {
      if (o.type == msgpack::type::BIN) {
        v.assign(o.via.bin.ptr, o.via.bin.size);
      } else if (o.type == msgpack::type::STR) {
        v.assign(o.via.str.ptr, o.via.str.size);
      } else {
        throw msgpack::type_error();
      }
      return o;
    }
  };
  template <>
  struct pack<nodus::kv::Bin> {
    template <typename Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& o, const nodus::kv::Bin& v) const {
      o.pack_bin(static_cast<std::uint32_t>(v.size()));
      o.pack_bin_body(v.data(), static_cast<std::uint32_t>(v.size()));
      return o;
    }
  };
  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack

namespace nodus::kv {

/// A pid or ref on the wire (node name, creation, id).
struct WireId {
  std::string node;
  std::uint32_t creation = 0;
  std::uint64_t id = 0;
  MSGPACK_DEFINE_ARRAY(node, creation, id)

  static WireId of(const Pid& p) { return {std::string(p.node.name()), p.creation, p.id}; }
  static WireId of(const Ref& r) { return {std::string(r.node.name()), r.creation, r.id}; }
  /// As a pid or ref of a node this one has heard of; nullopt for any other node name, which
  /// is never interned (atoms are never freed: a peer could grow the table without bound).
  std::optional<Pid> pid() const {
    const std::optional<Atom> n = Atom::existing(node);
    if (!n) return std::nullopt;
    return Pid{*n, creation, id};
  }
  std::optional<Ref> ref() const {
    const std::optional<Atom> n = Atom::existing(node);
    if (!n) return std::nullopt;
    return Ref{*n, creation, id};
  }
};

enum class Op : std::uint8_t { kGet = 1, kPut = 2, kDelete = 3 };

/// A client request (kv::Client sends it to `nodus_kv`; the term requests become one).
/// Quorums and timeout 0 mean the node's defaults. ttl_ms (puts): the value expires this long
/// after the coordinator stores it (0: never). with_ttl (gets): a term reply carries the key's
/// time left (ttl.hpp). overwrite (puts and deletes, with no context): the write supersedes
/// everything the coordinating vnode holds of the key when it coordinates it (a blind
/// overwrite: RequestOptions::overwrite); missing from an older sender: false.
struct KvRequest {
  std::uint8_t op = 0;
  std::string key;
  Bin value;
  std::string context;
  std::uint32_t r = 0, w = 0, pw = 0, dw = 0;
  std::uint32_t timeout_ms = 0;
  std::uint32_t pr = 0;
  std::uint64_t ttl_ms = 0;
  bool with_ttl = false;
  bool overwrite = false;
  NODUS_MESSAGE(KvRequest, 500, op, key, value, context, r, w, pw, dw, timeout_ms, pr, ttl_ms,
                with_ttl, overwrite);
};

/// The answer to a KvRequest. code: an ErrorCode number (0 ok); for no_quorum, which quorum
/// ("r", "pr", "w", "pw" or "dw"), how many it needed and how many counted toward it. A get
/// that found the key: values (the siblings, tombstones and expired values left out), context,
/// and ttl_ms, how long the key lives on (ms; -1: it does not expire).
struct KvReply {
  std::uint16_t code = 0;
  std::string message;
  std::vector<Bin> values;
  std::string context;
  std::uint32_t needed = 0, got = 0;
  std::string quorum;
  std::int64_t ttl_ms = -1;
  NODUS_MESSAGE(KvReply, 501, code, message, values, context, needed, got, quorum, ttl_ms);
};

/// A request handed to a primary on another node, which answers the caller directly. Taken
/// from ring members only. deadline_ms: when the caller gives up, as in ReplicaPut (the node
/// that took the request first fixed it); past it, the request is dropped (and counted).
struct KvForward {
  KvRequest request;
  WireId reply_pid;
  WireId reply_ref;
  bool term_reply = false;
  std::uint64_t deadline_ms = 0;
  NODUS_MESSAGE(KvForward, 502, request, reply_pid, reply_ref, term_reply, deadline_ms);
};

/// A request a client sends straight to the vnode of the key's partition on a primary
/// (kv::Client routes by the ring: docs/protocol.md 12.3), as a call answered with a KvReply.
/// deadline_ms: when the caller gives up, wall-clock ms since the epoch, as in KvForward: a
/// request that waited in the vnode's queue past it is dropped (and counted).
struct KvDirect {
  KvRequest request;
  std::uint64_t deadline_ms = 0;
  NODUS_MESSAGE(KvDirect, 514, request, deadline_ms);
};

// Between vnodes: replies go to the pid that sent the request (its node is the one the link
// authenticated, see nodus::sender), never to a node named in a field. A vnode takes these
// from ring members only, for its own partition only.

/// A coordinator's write to one replica (also read repair and hand-off, without an ack).
/// deadline_ms: when the caller gives up, wall-clock ms since the epoch (0: never); a replica
/// skips work past it (a clock skew between nodes beyond the request timeout defeats this).
/// hint: the primary a fallback keeps this for (empty on a primary), a ring member's name.
struct ReplicaPut {
  std::uint32_t partition = 0;
  std::uint64_t req_id = 0;
  std::uint8_t target = 0;
  std::uint64_t deadline_ms = 0;
  std::string hint;
  bool want_ack = false;
  std::string key;
  Bin object;
  NODUS_MESSAGE(ReplicaPut, 503, partition, req_id, target, deadline_ms, hint, want_ack, key,
                object);
};

struct ReplicaPutAck {
  std::uint32_t partition = 0;
  std::uint64_t req_id = 0;
  std::uint8_t target = 0;
  std::uint16_t code = 0;
  bool durable = false;
  NODUS_MESSAGE(ReplicaPutAck, 504, partition, req_id, target, code, durable);
};

struct ReplicaGet {
  std::uint32_t partition = 0;
  std::uint64_t req_id = 0;
  std::uint8_t target = 0;
  std::uint64_t deadline_ms = 0;
  std::string key;
  NODUS_MESSAGE(ReplicaGet, 505, partition, req_id, target, deadline_ms, key);
};

/// object: the replica's encoded object, empty when it has none.
struct ReplicaGetReply {
  std::uint32_t partition = 0;
  std::uint64_t req_id = 0;
  std::uint8_t target = 0;
  std::uint16_t code = 0;
  Bin object;
  NODUS_MESSAGE(ReplicaGetReply, 506, partition, req_id, target, code, object);
};

/// A node's ring (epoch 0: "send me yours"), to `nodus_kv`; the answer goes to the sender's
/// node. next: empty, or per partition the member it moves to (Ring::next_owner); leaving:
/// the members committed to leave.
struct RingGossip {
  std::uint64_t epoch = 0;
  std::uint32_t partitions = 0;
  std::uint32_t replicas = 0;
  std::vector<std::string> members;
  std::vector<std::uint16_t> owners;
  std::vector<std::uint16_t> next;
  std::vector<std::string> leaving;
  NODUS_MESSAGE(RingGossip, 507, epoch, partitions, replicas, members, owners, next, leaving);
};

/// A fallback hands a hinted object back to the primary it kept it for (hinted hand-off);
/// the primary answers the sender with HandoffAck once stored.
struct HandoffPut {
  std::uint32_t partition = 0;
  std::string key;
  Bin object;
  NODUS_MESSAGE(HandoffPut, 508, partition, key, object);
};
struct HandoffAck {
  std::uint32_t partition = 0;
  std::string key;
  Bin object;  // what was acknowledged, so a newer local write is not dropped
  NODUS_MESSAGE(HandoffAck, 509, partition, key, object);
};

/// Every primary holds this tombstone and its time to live has passed: drop it if the stored
/// object is still exactly this one (a newer write keeps it).
struct ReapTombstone {
  std::uint32_t partition = 0;
  std::string key;
  Bin object;
  NODUS_MESSAGE(ReapTombstone, 510, partition, key, object);
};

/// Registers every message above with the node runtime (idempotent).
Status register_protocol();

}  // namespace nodus::kv
