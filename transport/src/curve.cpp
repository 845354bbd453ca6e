// CURVE key pairs and peer addresses (nodus/transport/curve.hpp), on libzmq's Z85 and
// Curve25519 helpers.
#include "nodus/transport/curve.hpp"

#include <sodium.h>
#include <zmq.h>

#include <cstdint>

namespace nodus::transport {

Result<CurveKeys> generate_curve_keys() {
  char pub[kCurveKeyChars + 1];
  char sec[kCurveKeyChars + 1];
  if (zmq_curve_keypair(pub, sec) != 0) {
    return Status(ErrorCode::kInternal,
                  std::string("cannot make a CURVE key pair: ") + zmq_strerror(zmq_errno()));
  }
  CurveKeys keys{std::string(pub, kCurveKeyChars), std::string(sec, kCurveKeyChars)};
  sodium_memzero(sec, sizeof(sec));
  return keys;
}

bool is_curve_key(std::string_view key) {
  if (key.size() != kCurveKeyChars) return false;
  const std::string text(key);  // zmq_z85_decode reads a NUL-terminated string
  std::uint8_t raw[32];
  return zmq_z85_decode(raw, text.c_str()) != nullptr;
}

Result<std::string> curve_public_key_of(const std::string& secret_key) {
  if (!is_curve_key(secret_key)) {
    return Status(ErrorCode::kBadConfig, "the CURVE secret key is not 40 characters of Z85");
  }
  char derived[kCurveKeyChars + 1];
  if (zmq_curve_public(derived, secret_key.c_str()) != 0) {
    return Status(ErrorCode::kInternal,
                  std::string("cannot derive a CURVE public key: ") + zmq_strerror(zmq_errno()));
  }
  return std::string(derived, kCurveKeyChars);
}

Status check_curve_keys(const CurveKeys& keys) {
  if (!is_curve_key(keys.public_key)) {
    return Status(ErrorCode::kBadConfig,
                  "the CURVE public key \"" + keys.public_key + "\" is not 40 characters of Z85");
  }
  auto derived = curve_public_key_of(keys.secret_key);
  if (!derived.ok()) return derived.error();
  if (keys.public_key != *derived) {
    return Status(ErrorCode::kBadConfig, "the CURVE public key \"" + keys.public_key +
                                             "\" does not belong to the secret key");
  }
  return Status::Ok();
}

PeerAddress parse_peer_address(std::string_view address) {
  const std::size_t hash = address.find('#');
  if (hash == std::string_view::npos) return PeerAddress{std::string(address), {}};
  return PeerAddress{std::string(address.substr(0, hash)), std::string(address.substr(hash + 1))};
}

}  // namespace nodus::transport
