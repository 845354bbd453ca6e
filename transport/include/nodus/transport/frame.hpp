// Frames: the units nodes exchange over ZeroMQ (docs/protocol.md, sections 2-4), and their
// MessagePack codec with the limits applied to every untrusted frame.
//
// The transport knows nothing of terms or behaviours: process addresses are WireIds (the
// fields of a pid or ref) and payloads are opaque bytes that the node layer encodes.
//
// Thread-safety: plain values and free functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "nodus/transport/status.hpp"

namespace nodus::transport {

inline constexpr std::uint32_t kProtocolVersion = 1;
inline constexpr std::size_t kNonceBytes = 32;
inline constexpr std::size_t kMacBytes = 32;
inline constexpr std::size_t kMaxNameBytes = 255;
/// Bytes in any other str of a frame (listen endpoint, capability, reason).
inline constexpr std::size_t kMaxStrBytes = 4096;

/// The fields of a pid or ref: which node incarnation, and which id there.
struct WireId {
  std::string node;
  std::uint32_t creation = 0;
  std::uint64_t id = 0;
  friend bool operator==(const WireId&, const WireId&) = default;
};

/// A WireId's fields by reference, for encoding without copying the name.
struct WireIdRef {
  std::string_view node;
  std::uint32_t creation = 0;
  std::uint64_t id = 0;
};

/// Appends the ext payload layout of a pid/ref (u8 name length, name, u32 creation, u64 id,
/// big-endian) to `out`. REQUIRES: id.node.size() <= kMaxNameBytes.
void append_wire_id(const WireIdRef& id, std::string& out);
void append_wire_id(const WireId& id, std::string& out);
/// Parses that layout; kProtocol naming the problem if `bytes` is not exactly one WireId.
Result<WireId> parse_wire_id(std::string_view bytes);

enum class FrameKind : std::uint8_t {
  kHello = 1,
  kChallenge = 2,
  kProof = 3,
  kWelcome = 4,
  kRefuse = 5,
  kData = 16,
  kHeartbeat = 17,
  kBye = 18,
  kPeers = 19,
};

struct Hello {
  std::uint32_t version = kProtocolVersion;
  std::string name;
  std::uint32_t creation = 0;
  std::string listen;
  std::vector<std::string> capabilities;
  std::string nonce;  // kNonceBytes
  friend bool operator==(const Hello&, const Hello&) = default;
};
struct Challenge {
  std::uint32_t version = kProtocolVersion;
  std::string name;
  std::uint32_t creation = 0;
  std::string nonce;  // kNonceBytes
  std::string mac;    // kMacBytes
  friend bool operator==(const Challenge&, const Challenge&) = default;
};
struct Proof {
  std::string mac;  // kMacBytes
  friend bool operator==(const Proof&, const Proof&) = default;
};
struct Welcome {
  friend bool operator==(const Welcome&, const Welcome&) = default;
};
struct Refuse {
  std::string reason;
  friend bool operator==(const Refuse&, const Refuse&) = default;
};
/// An envelope: one message or signal between processes (docs/protocol.md section 4).
struct Data {
  std::uint8_t kind = 0;
  std::optional<WireId> from;
  /// The receiver: a process, or a name registered on the receiving node.
  std::variant<WireId, std::string> to;
  std::optional<WireId> ref;
  std::uint64_t budget_us = 0;  ///< 0 = no deadline
  std::uint32_t tag = 0;        ///< 0 = the payload is a term
  std::string payload;          ///< MessagePack bytes, opaque to the transport
  friend bool operator==(const Data&, const Data&) = default;
};
struct Heartbeat {
  std::uint64_t seq = 0;
  friend bool operator==(const Heartbeat&, const Heartbeat&) = default;
};
struct Bye {
  std::string reason;
  friend bool operator==(const Bye&, const Bye&) = default;
};

/// The nodes the sender is linked to, so the receiver can link to them too (full mesh).
struct Peers {
  struct Entry {
    std::string name;
    std::string endpoint;
    /// The node's CURVE public key (Z85, kCurveKeyChars), or "" on a plaintext cluster. On the
    /// wire an entry without a key is [name, endpoint], one with a key [name, endpoint, key].
    std::string public_key;
    friend bool operator==(const Entry&, const Entry&) = default;
  };
  std::vector<Entry> nodes;
  friend bool operator==(const Peers&, const Peers&) = default;
};

using Frame = std::variant<Hello, Challenge, Proof, Welcome, Refuse, Data, Heartbeat, Bye, Peers>;

/// Limits on one decoded frame (every frame from the network is untrusted).
struct FrameLimits {
  std::size_t max_frame = 64u << 20;    ///< bytes in one frame (also ZMQ_MAXMSGSIZE)
  std::size_t max_payload = 64u << 20;  ///< bytes in a Data payload
  std::size_t max_capabilities = 64;    ///< entries in Hello.capabilities
  std::size_t max_peers = 1024;         ///< entries in Peers.nodes
};

/// Appends the MessagePack form of `f` to `out`. REQUIRES: every WireId's node name is at most
/// kMaxNameBytes (as append_wire_id). Other fields are written as given; one decode_frame would
/// refuse (a name over kMaxNameBytes, another str over kMaxStrBytes, a nonce or mac not of
/// kNonceBytes / kMacBytes) makes the receiver drop the frame.
void encode_frame(const Frame& f, std::string& out);
std::string encode_frame(const Frame& f);

/// A DATA frame's fields by reference: what a sender encodes straight from its own objects,
/// without building a Data first.
struct DataRef {
  std::uint8_t kind = 0;
  std::optional<WireIdRef> from;
  std::variant<WireIdRef, std::string_view> to;  ///< a process, or a name on the receiver
  std::optional<WireIdRef> ref;
  std::uint64_t budget_us = 0;
  std::uint32_t tag = 0;
  std::string_view payload;
};
/// Appends the DATA frame of `d` to `out`: the bytes encode_frame writes for the same Data.
/// REQUIRES: as encode_frame.
void encode_data_frame(const DataRef& d, std::string& out);

/// Decodes one frame. Never throws or aborts: errors are kProtocol with a message naming what
/// was wrong (truncated, trailing bytes, unknown kind, a field of the wrong type or size, a
/// limit exceeded).
Result<Frame> decode_frame(std::string_view bytes, const FrameLimits& limits = {});

/// Decodes the frame at the front of `rest` and removes its bytes from `rest`: for a ZeroMQ
/// message that carries several frames back to back (a batch; docs/protocol.md section 2).
/// `limits.max_frame` bounds the whole of `rest`. Errors: as decode_frame, except that bytes
/// after the frame are left in `rest` rather than refused; after an error `rest` is unchanged
/// and the rest of the message cannot be resynchronised.
Result<Frame> decode_next_frame(std::string_view& rest, const FrameLimits& limits = {});

}  // namespace nodus::transport
