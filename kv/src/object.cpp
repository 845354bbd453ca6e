#include "object.hpp"

#include <sodium.h>

#include <cstring>

#include "nodus/node/wire.hpp"

namespace nodus::kv {

namespace {

using Packer = msgpack::packer<detail::StringSink>;

constexpr std::size_t kMacBytes = 16;
constexpr std::uint8_t kObjectVersion = 2;
constexpr std::uint8_t kObjectVersionWithExpiry = 3;  // values carry expiry_ms
constexpr char kContextVersion = '\x02';

// Reads MessagePack objects without throwing on a wrong type.
bool read_u64(const msgpack::object& o, std::uint64_t* v) {
  if (o.type != msgpack::type::POSITIVE_INTEGER) return false;
  *v = o.via.u64;
  return true;
}

msgpack::object_handle unpack_limited(std::string_view bytes) {
  msgpack::unpack_limit limits(1 << 20, 1 << 10, 1 << 20, 64 << 20, 1 << 10, 8);
  return msgpack::unpack(bytes.data(), bytes.size(), nullptr, nullptr, limits);
}

}  // namespace

void encode_object(const Object& o, std::string& out) {
  detail::StringSink sink{&out};
  Packer pk(sink);
  bool expiry = false;
  for (const auto& e : o.entries()) {
    for (const auto& v : e.values) expiry |= v.expiry_ms != 0;
  }
  pk.pack_array(2);
  pk.pack_uint8(expiry ? kObjectVersionWithExpiry : kObjectVersion);
  pk.pack_array(static_cast<std::uint32_t>(o.entries().size()));
  for (const auto& e : o.entries()) {
    pk.pack_array(4);
    pk.pack_uint64(e.id.vnode);
    pk.pack_uint64(e.id.epoch);
    pk.pack_uint64(e.counter);
    pk.pack_array(static_cast<std::uint32_t>(e.values.size()));
    for (const auto& v : e.values) {
      pk.pack_array(expiry ? 4 : 3);
      pk.pack_uint64(v.timestamp);
      pk.pack_uint8(v.tombstone ? 1 : 0);
      pk.pack_bin(static_cast<std::uint32_t>(v.value.size()));
      pk.pack_bin_body(v.value.data(), static_cast<std::uint32_t>(v.value.size()));
      if (expiry) pk.pack_uint64(v.expiry_ms);
    }
  }
}

std::string encode_object(const Object& o) {
  std::string out;
  encode_object(o, out);
  return out;
}

Result<Object> decode_object(std::string_view bytes) {
  const Status bad(ErrorCode::kProtocol, "malformed stored object");
  try {
    msgpack::object_handle oh = unpack_limited(bytes);
    const msgpack::object& root = oh.get();
    std::uint64_t version = 0;
    if (root.type != msgpack::type::ARRAY || root.via.array.size != 2 ||
        !read_u64(root.via.array.ptr[0], &version) ||
        (version != kObjectVersion && version != kObjectVersionWithExpiry) ||
        root.via.array.ptr[1].type != msgpack::type::ARRAY) {
      return bad;
    }
    const std::uint32_t fields = version == kObjectVersionWithExpiry ? 4 : 3;
    const msgpack::object_array& es = root.via.array.ptr[1].via.array;
    std::vector<Object::Entry> entries;
    entries.reserve(es.size);
    for (std::uint32_t i = 0; i < es.size; ++i) {
      const msgpack::object& eo = es.ptr[i];
      if (eo.type != msgpack::type::ARRAY || eo.via.array.size != 4) return bad;
      Object::Entry e;
      if (!read_u64(eo.via.array.ptr[0], &e.id.vnode) ||
          !read_u64(eo.via.array.ptr[1], &e.id.epoch) ||
          !read_u64(eo.via.array.ptr[2], &e.counter) ||
          eo.via.array.ptr[3].type != msgpack::type::ARRAY) {
        return bad;
      }
      const msgpack::object_array& vs = eo.via.array.ptr[3].via.array;
      if (e.counter == 0 || e.counter > kMaxCounter || vs.size > e.counter) return bad;
      if (!entries.empty() && entries.back().id >= e.id) return bad;
      for (std::uint32_t j = 0; j < vs.size; ++j) {
        const msgpack::object& vo = vs.ptr[j];
        if (vo.type != msgpack::type::ARRAY || vo.via.array.size != fields) return bad;
        Sibling s;
        std::uint64_t flags = 0;
        if (!read_u64(vo.via.array.ptr[0], &s.timestamp) ||
            !read_u64(vo.via.array.ptr[1], &flags) ||
            vo.via.array.ptr[2].type != msgpack::type::BIN) {
          return bad;
        }
        if (fields == 4 && !read_u64(vo.via.array.ptr[3], &s.expiry_ms)) return bad;
        s.tombstone = (flags & 1) != 0;
        s.value.assign(vo.via.array.ptr[2].via.bin.ptr, vo.via.array.ptr[2].via.bin.size);
        e.values.push_back(std::move(s));
      }
      entries.push_back(std::move(e));
    }
    return Object(std::move(entries));
  } catch (const std::exception&) {
    return bad;
  }
}

bool all_tombstones(const Object& o) {
  for (const auto& e : o.entries()) {
    for (const auto& v : e.values) {
      if (!v.tombstone) return false;
    }
  }
  return true;
}

ContextSigner::ContextSigner(std::string_view secret) {
  static const bool ready = sodium_init() >= 0;
  (void)ready;
  // The signing key is a keyed hash of the secret (often the cluster cookie), so the key is
  // the store's own and the secret never signs anything itself.
  static constexpr unsigned char kDomain[] = "nodus kv causal context v2";
  crypto_generichash(key_, sizeof(key_), reinterpret_cast<const unsigned char*>(secret.data()),
                     secret.size(), kDomain, sizeof(kDomain) - 1);
}

namespace {
void mac(const unsigned char* k, std::string_view key, std::string_view body,
         unsigned char out[kMacBytes]) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, k, 32, kMacBytes);
  const auto ks = static_cast<std::uint32_t>(key.size());
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(&ks), sizeof(ks));
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(key.data()), key.size());
  crypto_generichash_update(&st, reinterpret_cast<const unsigned char*>(body.data()), body.size());
  crypto_generichash_final(&st, out, kMacBytes);
}
}  // namespace

std::string ContextSigner::encode(std::string_view key, const VersionVector& vv) const {
  std::string out(1, kContextVersion);
  detail::StringSink sink{&out};
  Packer pk(sink);
  pk.pack_array(static_cast<std::uint32_t>(vv.size()));
  for (const auto& [a, n] : vv) {
    pk.pack_array(3);
    pk.pack_uint64(a.vnode);
    pk.pack_uint64(a.epoch);
    pk.pack_uint64(n);
  }
  unsigned char m[kMacBytes];
  mac(key_, key, std::string_view(out).substr(1), m);
  out.append(reinterpret_cast<const char*>(m), kMacBytes);
  return out;
}

Result<VersionVector> ContextSigner::decode(std::string_view key, std::string_view context) const {
  if (context.empty()) return VersionVector{};
  const Status malformed(ErrorCode::kBadArg, "malformed causal context");
  if (context.size() < 1 + kMacBytes + 1 || context[0] != kContextVersion) return malformed;
  const std::string_view body = context.substr(1, context.size() - 1 - kMacBytes);
  unsigned char m[kMacBytes];
  mac(key_, key, body, m);
  if (sodium_memcmp(m, context.data() + context.size() - kMacBytes, kMacBytes) != 0) {
    return Status(ErrorCode::kBadArg, "causal context forged, altered, or of another key");
  }
  try {
    msgpack::object_handle oh = unpack_limited(body);
    const msgpack::object& root = oh.get();
    if (root.type != msgpack::type::ARRAY) return malformed;
    if (root.via.array.size > kMaxContextActors) {
      return Status(ErrorCode::kBadArg,
                    "causal context names " + std::to_string(root.via.array.size) +
                        " actors, the limit is " + std::to_string(kMaxContextActors));
    }
    VersionVector vv;
    vv.reserve(root.via.array.size);
    for (std::uint32_t i = 0; i < root.via.array.size; ++i) {
      const msgpack::object& p = root.via.array.ptr[i];
      Actor a;
      std::uint64_t n = 0;
      if (p.type != msgpack::type::ARRAY || p.via.array.size != 3 ||
          !read_u64(p.via.array.ptr[0], &a.vnode) || !read_u64(p.via.array.ptr[1], &a.epoch) ||
          !read_u64(p.via.array.ptr[2], &n) || n == 0) {
        return malformed;
      }
      if (n > kMaxCounter) {
        return Status(ErrorCode::kBadArg, "causal context counter above 2^62");
      }
      if (!vv.empty() && !(vv.back().first < a)) return malformed;
      vv.emplace_back(a, n);
    }
    return vv;
  } catch (const std::exception&) {
    return malformed;
  }
}

}  // namespace nodus::kv
