// CURVE keys: the per-node key pairs that encrypt and authenticate links when a cluster turns
// encryption on (docs/protocol.md section 8), and the "endpoint#PUBLICKEY" form in which a
// peer's address carries the key that its listener proves it holds.
//
// Keys are Z85 text (ZeroMQ's printable encoding of 32-byte Curve25519 keys), so they fit in
// config files and on command lines. A node uses one pair both as the server of its listening
// socket and as the client of its outgoing links, so its public key names it either way.
//
// Thread-safety: plain values and free functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "nodus/transport/status.hpp"

namespace nodus::transport {

/// Characters in a Z85 CURVE key (40 for 32 bytes).
inline constexpr std::size_t kCurveKeyChars = 40;

/// One node's CURVE key pair, Z85 text. The secret key never leaves the node.
struct CurveKeys {
  std::string public_key;
  std::string secret_key;
  friend bool operator==(const CurveKeys&, const CurveKeys&) = default;
};

/// A fresh random key pair (what `nodusctl keygen` prints). Errors: kInternal if libzmq was
/// built without CURVE support.
Result<CurveKeys> generate_curve_keys();

/// OK if `keys` is a valid pair: both are Z85 keys and the public key is the secret key's.
/// Errors: kBadConfig naming what is wrong (never the secret key itself).
Status check_curve_keys(const CurveKeys& keys);

/// The public key (Z85) of a Z85 CURVE secret key. Errors: kBadConfig when `secret_key` is not
/// 40 characters of Z85 (the key itself is never in the message), kInternal when libzmq cannot
/// derive one (built without CURVE).
Result<std::string> curve_public_key_of(const std::string& secret_key);

/// True if `key` is a Z85 CURVE key (40 characters of the Z85 alphabet).
bool is_curve_key(std::string_view key);

/// A peer's address: its listen endpoint, and the CURVE public key it must prove it holds
/// ("" if none was given: fine for plaintext links only).
struct PeerAddress {
  std::string endpoint;
  std::string public_key;
  friend bool operator==(const PeerAddress&, const PeerAddress&) = default;
};

/// Splits "tcp://host:port#PUBLICKEY" at its first '#' (a tcp endpoint has none; the Z85
/// alphabet does, so a key may); an address without '#' is all endpoint. Does not validate
/// either part.
PeerAddress parse_peer_address(std::string_view address);

}  // namespace nodus::transport
