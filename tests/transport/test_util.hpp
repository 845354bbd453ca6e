// Test helpers for the transport layer: the shared ones (tests/test_support.hpp), a minimal
// MessagePack writer so tests can build frames, valid or not, without the codec under test, and
// the handshake's HMAC as docs/protocol.md defines it.
#pragma once

#include <gtest/gtest.h>
#include <sodium.h>

#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "../test_support.hpp"
#include "nodus/transport/status.hpp"

namespace nodus {

namespace testing::mp {

// Each returns the MessagePack bytes of one value, in the smallest format that holds it.

inline std::string Bytes(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s += static_cast<char>(b);
  return s;
}

/// `n` in `width` bytes, big-endian.
inline std::string BigEndian(std::uint64_t n, int width) {
  std::string s;
  for (int i = width - 1; i >= 0; --i) s += static_cast<char>(n >> (8 * i));
  return s;
}

inline std::string Uint(std::uint64_t n) {
  if (n < 0x80) return BigEndian(n, 1);
  if (n <= 0xff) return "\xcc" + BigEndian(n, 1);
  if (n <= 0xffff) return "\xcd" + BigEndian(n, 2);
  if (n <= 0xffffffff) return "\xce" + BigEndian(n, 4);
  return "\xcf" + BigEndian(n, 8);
}

/// A negative integer, as int 64 (any width is valid MessagePack).
inline std::string Negative(std::int64_t n) {
  return "\xd3" + BigEndian(static_cast<std::uint64_t>(n), 8);
}

inline std::string Nil() { return "\xc0"; }
inline std::string True() { return "\xc3"; }
/// The float 64 1.0.
inline std::string FloatOne() { return "\xcb" + BigEndian(0x3ff0000000000000, 8); }

inline std::string Str(std::string_view s) {
  std::string h;
  if (s.size() < 32) {
    h = BigEndian(0xa0 | s.size(), 1);
  } else if (s.size() <= 0xff) {
    h = "\xd9" + BigEndian(s.size(), 1);
  } else if (s.size() <= 0xffff) {
    h = "\xda" + BigEndian(s.size(), 2);
  } else {
    h = "\xdb" + BigEndian(s.size(), 4);
  }
  h.append(s.data(), s.size());
  return h;
}

inline std::string Bin(std::string_view b) {
  std::string h;
  if (b.size() <= 0xff) {
    h = "\xc4" + BigEndian(b.size(), 1);
  } else if (b.size() <= 0xffff) {
    h = "\xc5" + BigEndian(b.size(), 2);
  } else {
    h = "\xc6" + BigEndian(b.size(), 4);
  }
  h.append(b.data(), b.size());
  return h;
}

/// The header of an array of `n` elements (the elements follow it).
inline std::string Array(std::uint32_t n) {
  if (n < 16) return BigEndian(0x90 | n, 1);
  if (n <= 0xffff) return "\xdc" + BigEndian(n, 2);
  return "\xdd" + BigEndian(n, 4);
}

/// The header of a map of `n` pairs.
inline std::string Map(std::uint32_t n) {
  if (n < 16) return BigEndian(0x80 | n, 1);
  return "\xde" + BigEndian(n, 2);
}

inline std::string Ext(int type, std::string_view payload) {
  const std::string t = BigEndian(static_cast<std::uint8_t>(type), 1);
  std::string h;
  switch (payload.size()) {
    case 1:
      h = "\xd4" + t;
      break;
    case 2:
      h = "\xd5" + t;
      break;
    case 4:
      h = "\xd6" + t;
      break;
    case 8:
      h = "\xd7" + t;
      break;
    case 16:
      h = "\xd8" + t;
      break;
    default:
      if (payload.size() <= 0xff) {
        h = "\xc7" + BigEndian(payload.size(), 1) + t;
      } else {
        h = "\xc8" + BigEndian(payload.size(), 2) + t;
      }
  }
  return h + std::string(payload);
}

/// A pid/ref ext payload: u8 name length, name, u32 creation, u64 id.
inline std::string IdPayload(std::string_view node, std::uint32_t creation, std::uint64_t id) {
  return BigEndian(node.size(), 1) + std::string(node) + BigEndian(creation, 4) + BigEndian(id, 8);
}

}  // namespace testing::mp

namespace testing {

// HMAC-SHA-256 of the concatenated `parts` under `key`, written from the spec (libsodium), not
// with the code under test.
inline std::string spec_hmac(const std::string& key, const std::vector<std::string>& parts) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  for (const auto& p : parts) {
    crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(p.data()), p.size());
  }
  std::string out(32, '\0');
  crypto_auth_hmacsha256_final(&st, reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

}  // namespace testing
}  // namespace nodus
