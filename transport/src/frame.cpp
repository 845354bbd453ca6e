// The MessagePack codec of frames (docs/protocol.md, sections 2-5).
//
// A frame is one MessagePack array: the frame kind (uint), then the fields in the order of the
// protocol's table. Pids are ext 2 and refs ext 3 with the WireId payload; nonces, macs and
// payloads are bin; names, listen endpoints, capabilities and reasons are str; an absent
// optional field is nil. The encoder writes the smallest integer format; the decoder accepts
// any width that holds the value.
//
// Decoding untrusted bytes: the frame size is checked first, then msgpack-c's v1 parser runs
// with an unpack_limit (the default v3 `unpack` returns an empty handle without an exception on
// truncated or malformed input, so it cannot tell us what was wrong). str, bin and ext bodies
// within their limits are referenced in the input rather than copied (the input outlives the
// decode); one over its limit is left to msgpack-c, which then throws before allocating. Every
// field is then checked for its type and range, and every failure becomes kProtocol with a
// message naming the frame, the field and the problem. Nothing throws out of this file.
#include "nodus/transport/frame.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <new>
#include <utility>

#include <msgpack.hpp>

#include "nodus/transport/bounded_unpack.hpp"
#include "nodus/transport/curve.hpp"
#include "nodus/transport/scratch_zone.hpp"

namespace nodus::transport {
namespace {

constexpr std::int8_t kExtPid = 2;
constexpr std::int8_t kExtRef = 3;
constexpr std::size_t kWireIdFixed = 1 + 4 + 8;  // name length, creation, id
constexpr std::size_t kMaxExtBytes = 4096;       // a WireId takes at most 268
constexpr std::size_t kMaxDepth = 4;             // frames nest 3 deep (Peers: frame, list, entry)
constexpr std::size_t kFixedArrayElements = 64;  // room for every frame's own fields

/// A msgpack-c write buffer over a std::string.
struct StringSink {
  std::string* out;
  void write(const char* data, std::size_t size) { out->append(data, size); }
};
using Packer = msgpack::packer<StringSink>;

// -- encoding -----------------------------------------------------------------------

void pack_str(Packer& pk, std::string_view s) {
  pk.pack_str(static_cast<std::uint32_t>(s.size()));
  pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
}

void pack_bin(Packer& pk, std::string_view b) {
  pk.pack_bin(static_cast<std::uint32_t>(b.size()));
  pk.pack_bin_body(b.data(), static_cast<std::uint32_t>(b.size()));
}

// The packer writes straight into `out` (no buffering), so the ext body can be appended there.
void pack_id(Packer& pk, std::string& out, std::int8_t type, const WireIdRef& id) {
  pk.pack_ext(kWireIdFixed + id.node.size(), type);
  append_wire_id(id, out);
}

void pack_opt_id(Packer& pk, std::string& out, std::int8_t type,
                 const std::optional<WireIdRef>& id) {
  if (id) {
    pack_id(pk, out, type, *id);
  } else {
    pk.pack_nil();
  }
}

WireIdRef ref_to(const WireId& id) { return {id.node, id.creation, id.id}; }
std::optional<WireIdRef> ref_to(const std::optional<WireId>& id) {
  return id ? std::optional<WireIdRef>(ref_to(*id)) : std::nullopt;
}

void pack_head(Packer& pk, FrameKind kind, std::uint32_t fields) {
  pk.pack_array(1 + fields);
  pk.pack_uint8(static_cast<std::uint8_t>(kind));
}

struct Encoder {
  Packer& pk;
  std::string& out;

  void operator()(const Hello& f) const {
    pack_head(pk, FrameKind::kHello, 6);
    pk.pack_uint32(f.version);
    pack_str(pk, f.name);
    pk.pack_uint32(f.creation);
    pack_str(pk, f.listen);
    pk.pack_array(static_cast<std::uint32_t>(f.capabilities.size()));
    for (const std::string& c : f.capabilities) pack_str(pk, c);
    pack_bin(pk, f.nonce);
  }
  void operator()(const Challenge& f) const {
    pack_head(pk, FrameKind::kChallenge, 5);
    pk.pack_uint32(f.version);
    pack_str(pk, f.name);
    pk.pack_uint32(f.creation);
    pack_bin(pk, f.nonce);
    pack_bin(pk, f.mac);
  }
  void operator()(const Proof& f) const {
    pack_head(pk, FrameKind::kProof, 1);
    pack_bin(pk, f.mac);
  }
  void operator()(const Welcome&) const { pack_head(pk, FrameKind::kWelcome, 0); }
  void operator()(const Refuse& f) const {
    pack_head(pk, FrameKind::kRefuse, 1);
    pack_str(pk, f.reason);
  }
  void operator()(const Data& f) const {
    DataRef d;
    d.kind = f.kind;
    d.from = ref_to(f.from);
    if (const auto* name = std::get_if<std::string>(&f.to)) {
      d.to = std::string_view(*name);
    } else {
      d.to = ref_to(std::get<WireId>(f.to));
    }
    d.ref = ref_to(f.ref);
    d.budget_us = f.budget_us;
    d.tag = f.tag;
    d.payload = f.payload;
    encode_data_frame(d, out);
  }
  void operator()(const Heartbeat& f) const {
    pack_head(pk, FrameKind::kHeartbeat, 1);
    pk.pack_uint64(f.seq);
  }
  void operator()(const Bye& f) const {
    pack_head(pk, FrameKind::kBye, 1);
    pack_str(pk, f.reason);
  }
  void operator()(const Peers& f) const {
    pack_head(pk, FrameKind::kPeers, 1);
    pk.pack_array(static_cast<std::uint32_t>(f.nodes.size()));
    for (const Peers::Entry& e : f.nodes) {
      pk.pack_array(e.public_key.empty() ? 2 : 3);
      pack_str(pk, e.name);
      pack_str(pk, e.endpoint);
      if (!e.public_key.empty()) pack_str(pk, e.public_key);
    }
  }
};

// -- decoding -----------------------------------------------------------------------

std::string_view bytes_of(const char* p, std::size_t n) {
  return n == 0 ? std::string_view() : std::string_view(p, n);
}

// msgpack-c asks this whether to reference a str/bin/ext body in the input. Bodies over their
// limit are not referenced, so msgpack-c's copying path checks the limit and throws before it
// allocates. For ext, `length` counts the type byte too.
bool reference_within_limit(msgpack::type::object_type type, std::size_t length, void* data) {
  const auto& bounds = *static_cast<const UnpackBounds*>(data);
  switch (type) {
    case msgpack::type::STR:
      return length <= bounds.max_str;
    case msgpack::type::BIN:
      return length <= bounds.max_bin;
    case msgpack::type::EXT:
      return length <= bounds.max_ext + 1;
    default:
      return false;
  }
}

const char* type_name(msgpack::type::object_type t) {
  switch (t) {
    case msgpack::type::NIL:
      return "nil";
    case msgpack::type::BOOLEAN:
      return "bool";
    case msgpack::type::POSITIVE_INTEGER:
      return "uint";
    case msgpack::type::NEGATIVE_INTEGER:
      return "negative int";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64:
      return "float";
    case msgpack::type::STR:
      return "str";
    case msgpack::type::BIN:
      return "bin";
    case msgpack::type::ARRAY:
      return "array";
    case msgpack::type::MAP:
      return "map";
    case msgpack::type::EXT:
      return "ext";
  }
  return "unknown type";
}

const char* frame_name(std::uint64_t kind) {
  switch (kind) {
    case 1:
      return "HELLO";
    case 2:
      return "CHALLENGE";
    case 3:
      return "PROOF";
    case 4:
      return "WELCOME";
    case 5:
      return "REFUSE";
    case 16:
      return "DATA";
    case 17:
      return "HEARTBEAT";
    case 18:
      return "BYE";
    case 19:
      return "PEERS";
    default:
      return nullptr;
  }
}

// Number of fields after the kind, per frame kind.
std::uint32_t field_count(std::uint64_t kind) {
  switch (static_cast<FrameKind>(kind)) {
    case FrameKind::kHello:
      return 6;
    case FrameKind::kChallenge:
      return 5;
    case FrameKind::kProof:
      return 1;
    case FrameKind::kWelcome:
      return 0;
    case FrameKind::kRefuse:
      return 1;
    case FrameKind::kData:
      return 7;
    case FrameKind::kHeartbeat:
      return 1;
    case FrameKind::kBye:
      return 1;
    case FrameKind::kPeers:
      return 1;
  }
  return 0;
}

class Decoder {
 public:
  explicit Decoder(const FrameLimits& limits) : limits_(limits) {}

  const std::string& error() const { return error_; }
  std::size_t consumed() const { return consumed_; }

  /// Decodes the frame at the front of `bytes`. With `whole`, it must fill them exactly;
  /// otherwise consumed() tells how many bytes it took.
  bool decode(std::string_view bytes, Frame& out, bool whole = true) {
    if (bytes.size() > limits_.max_frame) {
      return fail("frame of " + std::to_string(bytes.size()) + " bytes exceeds max_frame (" +
                  std::to_string(limits_.max_frame) + ")");
    }
    msgpack::object o;
    if (!unpack(bytes, o, whole)) return false;
    if (o.type != msgpack::type::ARRAY) {
      return fail(std::string("a frame is an array, got ") + type_name(o.type));
    }
    if (o.via.array.size == 0) return fail("empty array: no frame kind");
    const msgpack::object* f = o.via.array.ptr;
    if (f[0].type != msgpack::type::POSITIVE_INTEGER) {
      return fail(std::string("frame kind must be a uint, got ") + type_name(f[0].type));
    }
    const std::uint64_t kind = f[0].via.u64;
    frame_ = frame_name(kind);
    if (frame_ == nullptr) return fail("unknown frame kind " + std::to_string(kind));
    const std::uint32_t fields = o.via.array.size - 1;
    if (fields != field_count(kind)) {
      return fail(std::string(frame_) + ": " + std::to_string(fields) + " fields, expected " +
                  std::to_string(field_count(kind)));
    }
    ++f;  // the fields after the kind
    switch (static_cast<FrameKind>(kind)) {
      case FrameKind::kHello:
        return decode_hello(f, out);
      case FrameKind::kChallenge:
        return decode_challenge(f, out);
      case FrameKind::kProof: {
        Proof p;
        if (!read_bin_exact(f[0], "mac", kMacBytes, p.mac)) return false;
        out = std::move(p);
        return true;
      }
      case FrameKind::kWelcome:
        out = Welcome{};
        return true;
      case FrameKind::kRefuse: {
        Refuse r;
        if (!read_str(f[0], "reason", kMaxStrBytes, r.reason)) return false;
        out = std::move(r);
        return true;
      }
      case FrameKind::kData:
        return decode_data(f, out);
      case FrameKind::kHeartbeat: {
        Heartbeat h;
        if (!read_uint(f[0], "seq", std::numeric_limits<std::uint64_t>::max(), h.seq)) {
          return false;
        }
        out = h;
        return true;
      }
      case FrameKind::kBye: {
        Bye b;
        if (!read_str(f[0], "reason", kMaxStrBytes, b.reason)) return false;
        out = std::move(b);
        return true;
      }
      case FrameKind::kPeers:
        return decode_peers(f, out);
    }
    return fail("unknown frame kind " + std::to_string(kind));  // not reached
  }

 private:
  bool fail(std::string message) {
    error_ = std::move(message);
    return false;
  }
  bool field_error(const char* field, const std::string& what) {
    return fail(std::string(frame_) + ": field " + field + ": " + what);
  }
  bool wrong_type(const char* field, const char* expected, const msgpack::object& o) {
    return field_error(field, std::string("expected ") + expected + ", got " + type_name(o.type));
  }

  bool unpack(std::string_view bytes, msgpack::object& o, bool whole) {
    UnpackBounds bounds{array_limit(), 0,        kMaxStrBytes, limits_.max_payload,
                        kMaxExtBytes,  kMaxDepth};
    std::size_t off = 0;
    if (auto e = unpack_bounded(zone_.zone(), bytes, bounds, &reference_within_limit, &bounds,
                                "frame", o, off)) {
      if (e->kind == UnpackError::Kind::kBin) {  // bins are bounded by max_payload
        return fail("bin longer than max_payload (" + std::to_string(limits_.max_payload) + ")");
      }
      if (e->kind == UnpackError::Kind::kMap) return fail("a frame holds no maps");
      return fail(std::move(e->message));
    }
    consumed_ = off;
    if (whole && off != bytes.size()) {
      return fail(std::to_string(bytes.size() - off) + " trailing bytes after the frame");
    }
    return true;
  }

  std::size_t array_limit() const {
    const std::size_t caps = std::max(limits_.max_capabilities, limits_.max_peers);
    return caps > std::numeric_limits<std::size_t>::max() - kFixedArrayElements
               ? std::numeric_limits<std::size_t>::max()
               : kFixedArrayElements + caps;
  }

  // -- fields ---------------------------------------------------------------------

  template <class T>
  bool read_uint(const msgpack::object& o, const char* field, std::uint64_t max, T& out) {
    if (o.type != msgpack::type::POSITIVE_INTEGER) return wrong_type(field, "uint", o);
    if (o.via.u64 > max) {
      return field_error(field, std::to_string(o.via.u64) + " exceeds " + std::to_string(max));
    }
    out = static_cast<T>(o.via.u64);
    return true;
  }

  bool read_str(const msgpack::object& o, const char* field, std::size_t max, std::string& out) {
    if (o.type != msgpack::type::STR) return wrong_type(field, "str", o);
    if (o.via.str.size > max) {
      return field_error(field, "str of " + std::to_string(o.via.str.size) + " bytes, at most " +
                                    std::to_string(max));
    }
    out.assign(bytes_of(o.via.str.ptr, o.via.str.size));
    return true;
  }

  bool read_name(const msgpack::object& o, const char* field, std::string& out) {
    return read_str(o, field, kMaxNameBytes, out);
  }

  bool read_bin(const msgpack::object& o, const char* field, std::size_t max, std::string& out) {
    if (o.type != msgpack::type::BIN) return wrong_type(field, "bin", o);
    if (o.via.bin.size > max) {
      return field_error(field, "bin of " + std::to_string(o.via.bin.size) + " bytes, at most " +
                                    std::to_string(max));
    }
    out.assign(bytes_of(o.via.bin.ptr, o.via.bin.size));
    return true;
  }

  bool read_bin_exact(const msgpack::object& o, const char* field, std::size_t size,
                      std::string& out) {
    if (o.type != msgpack::type::BIN) return wrong_type(field, "bin", o);
    if (o.via.bin.size != size) {
      return field_error(
          field, std::to_string(o.via.bin.size) + " bytes, expected " + std::to_string(size));
    }
    out.assign(bytes_of(o.via.bin.ptr, o.via.bin.size));
    return true;
  }

  bool read_id(const msgpack::object& o, const char* field, std::int8_t type, WireId& out) {
    const char* expected = type == kExtPid ? "a pid (ext 2)" : "a ref (ext 3)";
    if (o.type != msgpack::type::EXT) return wrong_type(field, expected, o);
    if (o.via.ext.type() != type) {
      return field_error(field, std::string("expected ") + expected + ", got ext " +
                                    std::to_string(o.via.ext.type()));
    }
    Result<WireId> id = parse_wire_id(bytes_of(o.via.ext.data(), o.via.ext.size));
    if (!id) return field_error(field, id.error().message());
    out = std::move(id).value();
    return true;
  }

  bool read_opt_id(const msgpack::object& o, const char* field, std::int8_t type,
                   std::optional<WireId>& out) {
    if (o.type == msgpack::type::NIL) {
      out.reset();
      return true;
    }
    return read_id(o, field, type, out.emplace());
  }

  // -- frames ---------------------------------------------------------------------

  bool decode_hello(const msgpack::object* f, Frame& out) {
    constexpr auto kU32 = std::numeric_limits<std::uint32_t>::max();
    Hello h;
    if (!read_uint(f[0], "version", kU32, h.version)) return false;
    if (!read_name(f[1], "name", h.name)) return false;
    if (!read_uint(f[2], "creation", kU32, h.creation)) return false;
    if (!read_str(f[3], "listen", kMaxStrBytes, h.listen)) return false;
    if (f[4].type != msgpack::type::ARRAY) return wrong_type("capabilities", "array", f[4]);
    const msgpack::object_array& caps = f[4].via.array;
    if (caps.size > limits_.max_capabilities) {
      return field_error("capabilities", std::to_string(caps.size) + " entries, at most " +
                                             std::to_string(limits_.max_capabilities));
    }
    h.capabilities.resize(caps.size);
    for (std::uint32_t i = 0; i < caps.size; ++i) {
      if (!read_str(caps.ptr[i], "capabilities", kMaxStrBytes, h.capabilities[i])) return false;
    }
    if (!read_bin_exact(f[5], "nonce", kNonceBytes, h.nonce)) return false;
    out = std::move(h);
    return true;
  }

  bool decode_peers(const msgpack::object* f, Frame& out) {
    if (f[0].type != msgpack::type::ARRAY) return wrong_type("nodes", "array", f[0]);
    const msgpack::object_array& list = f[0].via.array;
    if (list.size > limits_.max_peers) {
      return field_error("nodes", std::to_string(list.size) + " entries, at most " +
                                      std::to_string(limits_.max_peers));
    }
    Peers p;
    p.nodes.resize(list.size);
    for (std::uint32_t i = 0; i < list.size; ++i) {
      const msgpack::object& e = list.ptr[i];
      if (e.type != msgpack::type::ARRAY || e.via.array.size < 2 || e.via.array.size > 3) {
        return field_error("nodes", "each entry is [name, endpoint] or [name, endpoint, key]");
      }
      if (!read_name(e.via.array.ptr[0], "nodes", p.nodes[i].name)) return false;
      if (!read_str(e.via.array.ptr[1], "nodes", kMaxStrBytes, p.nodes[i].endpoint)) return false;
      if (e.via.array.size == 3) {
        std::string& key = p.nodes[i].public_key;
        if (!read_str(e.via.array.ptr[2], "nodes", kCurveKeyChars, key)) return false;
        if (!key.empty() && key.size() != kCurveKeyChars) {
          return field_error("nodes", "a public key of " + std::to_string(key.size()) +
                                          " characters, expected " +
                                          std::to_string(kCurveKeyChars));
        }
      }
    }
    out = std::move(p);
    return true;
  }

  bool decode_challenge(const msgpack::object* f, Frame& out) {
    constexpr auto kU32 = std::numeric_limits<std::uint32_t>::max();
    Challenge c;
    if (!read_uint(f[0], "version", kU32, c.version)) return false;
    if (!read_name(f[1], "name", c.name)) return false;
    if (!read_uint(f[2], "creation", kU32, c.creation)) return false;
    if (!read_bin_exact(f[3], "nonce", kNonceBytes, c.nonce)) return false;
    if (!read_bin_exact(f[4], "mac", kMacBytes, c.mac)) return false;
    out = std::move(c);
    return true;
  }

  bool decode_data(const msgpack::object* f, Frame& out) {
    Data d;
    if (!read_uint(f[0], "kind", std::numeric_limits<std::uint8_t>::max(), d.kind)) return false;
    if (!read_opt_id(f[1], "from", kExtPid, d.from)) return false;
    if (f[2].type == msgpack::type::STR) {
      std::string name;
      if (!read_name(f[2], "to", name)) return false;
      d.to = std::move(name);
    } else if (f[2].type == msgpack::type::EXT) {
      WireId to;
      if (!read_id(f[2], "to", kExtPid, to)) return false;
      d.to = std::move(to);
    } else {
      return wrong_type("to", "a pid (ext 2) or a name (str)", f[2]);
    }
    if (!read_opt_id(f[3], "ref", kExtRef, d.ref)) return false;
    if (!read_uint(f[4], "budget", std::numeric_limits<std::uint64_t>::max(), d.budget_us)) {
      return false;
    }
    if (!read_uint(f[5], "tag", std::numeric_limits<std::uint32_t>::max(), d.tag)) return false;
    if (!read_bin(f[6], "payload", limits_.max_payload, d.payload)) return false;
    out = std::move(d);
    return true;
  }

  const FrameLimits& limits_;
  ScratchZone zone_;
  std::size_t consumed_ = 0;
  const char* frame_ = "frame";  // the frame's name, for messages
  std::string error_;
};

}  // namespace

// -- WireId ---------------------------------------------------------------------------

void append_wire_id(const WireId& id, std::string& out) { append_wire_id(ref_to(id), out); }

void append_wire_id(const WireIdRef& id, std::string& out) {
  if (id.node.size() > kMaxNameBytes) {
    std::fprintf(stderr, "nodus: invariant failed: %s (%s:%d)\n", "id.node.size() <= kMaxNameBytes",
                 __FILE__, __LINE__);
    std::abort();
  }
  char buf[kWireIdFixed + kMaxNameBytes];
  std::size_t n = 0;
  buf[n++] = static_cast<char>(id.node.size());
  std::memcpy(buf + n, id.node.data(), id.node.size());
  n += id.node.size();
  for (int shift = 24; shift >= 0; shift -= 8) buf[n++] = static_cast<char>(id.creation >> shift);
  for (int shift = 56; shift >= 0; shift -= 8) buf[n++] = static_cast<char>(id.id >> shift);
  out.append(buf, n);
}

Result<WireId> parse_wire_id(std::string_view bytes) {
  if (bytes.empty()) return Status(ErrorCode::kProtocol, "empty id payload");
  const auto n = static_cast<std::size_t>(static_cast<unsigned char>(bytes[0]));
  if (bytes.size() != kWireIdFixed + n) {
    return Status(ErrorCode::kProtocol, "id payload of " + std::to_string(bytes.size()) +
                                            " bytes, expected " + std::to_string(kWireIdFixed + n) +
                                            " for a node name of " + std::to_string(n));
  }
  WireId id;
  id.node.assign(bytes.substr(1, n));
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data()) + 1 + n;
  for (int i = 0; i < 4; ++i) id.creation = (id.creation << 8) | p[i];
  for (int i = 4; i < 12; ++i) id.id = (id.id << 8) | p[i];
  return id;
}

// -- frames ---------------------------------------------------------------------------

void encode_data_frame(const DataRef& d, std::string& out) {
  StringSink sink{&out};
  Packer pk(sink);
  pack_head(pk, FrameKind::kData, 7);
  pk.pack_uint8(d.kind);
  pack_opt_id(pk, out, kExtPid, d.from);
  if (const auto* name = std::get_if<std::string_view>(&d.to)) {
    pack_str(pk, *name);
  } else {
    pack_id(pk, out, kExtPid, std::get<WireIdRef>(d.to));
  }
  pack_opt_id(pk, out, kExtRef, d.ref);
  pk.pack_uint64(d.budget_us);
  pk.pack_uint32(d.tag);
  pack_bin(pk, d.payload);
}

void encode_frame(const Frame& f, std::string& out) {
  StringSink sink{&out};
  Packer pk(sink);
  std::visit(Encoder{pk, out}, f);
}

std::string encode_frame(const Frame& f) {
  std::string out;
  encode_frame(f, out);
  return out;
}

Result<Frame> decode_frame(std::string_view bytes, const FrameLimits& limits) {
  try {
    Decoder decoder(limits);
    Frame f;
    if (!decoder.decode(bytes, f)) return Status(ErrorCode::kProtocol, decoder.error());
    return f;
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::kProtocol, "out of memory decoding the frame");
  } catch (const std::exception& e) {
    return Status(ErrorCode::kProtocol, std::string("cannot decode: ") + e.what());
  }
}

namespace {

// A DATA frame in the shapes this implementation writes (and other encoders usually do) is read
// straight off the bytes, without building msgpack-c objects: most frames on a busy link are
// DATA. Any other shape, valid or not, returns false and goes the general way, which accepts
// the same frames, gives the same Data and words the errors. Tested against it in
// tests/transport/frame_test.cpp and tests/fuzz/frame_fuzz.cpp.
class FastData {
 public:
  explicit FastData(std::string_view b) : b_(b) {}
  std::size_t consumed() const { return pos_; }

  bool read(const FrameLimits& limits, Data& d) {
    if (b_.size() > limits.max_frame) return false;
    if (!byte(0x98) || !byte(static_cast<unsigned char>(FrameKind::kData))) return false;
    std::uint64_t v = 0;
    if (!uint(v) || v > 0xff) return false;
    d.kind = static_cast<std::uint8_t>(v);
    if (!opt_id(kExtPid, d.from)) return false;
    if (peek_str()) {
      std::string_view name;
      if (!str(name) || name.size() > kMaxNameBytes) return false;
      d.to = std::string(name);
    } else {
      WireId to;
      if (!id(kExtPid, to)) return false;
      d.to = std::move(to);
    }
    if (!opt_id(kExtRef, d.ref)) return false;
    if (!uint(d.budget_us)) return false;
    if (!uint(v) || v > 0xffffffffu) return false;
    d.tag = static_cast<std::uint32_t>(v);
    std::string_view payload;
    if (!bin(payload) || payload.size() > limits.max_payload) return false;
    d.payload.assign(payload);
    return true;
  }

 private:
  bool have(std::size_t n) const { return b_.size() - pos_ >= n; }
  unsigned char at(std::size_t i) const { return static_cast<unsigned char>(b_[pos_ + i]); }
  std::uint64_t be(std::size_t offset, std::size_t n) const {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v = v << 8 | at(offset + i);
    return v;
  }
  bool byte(unsigned char c) {
    if (!have(1) || at(0) != c) return false;
    ++pos_;
    return true;
  }
  // Unsigned formats only; a non-negative value in a signed format goes the general way.
  bool uint(std::uint64_t& v) {
    if (!have(1)) return false;
    const unsigned char c = at(0);
    std::size_t n = 0;
    if (c <= 0x7f) {
      v = c;
      ++pos_;
      return true;
    }
    if (c == 0xcc) n = 1;
    if (c == 0xcd) n = 2;
    if (c == 0xce) n = 4;
    if (c == 0xcf) n = 8;
    if (n == 0 || !have(1 + n)) return false;
    v = be(1, n);
    pos_ += 1 + n;
    return true;
  }
  bool peek_str() const {
    if (!have(1)) return false;
    const unsigned char c = at(0);
    return (c >= 0xa0 && c <= 0xbf) || c == 0xd9;
  }
  bool sized(std::size_t header, std::size_t length, std::string_view& out) {
    if (!have(header + length)) return false;
    out = b_.substr(pos_ + header, length);
    pos_ += header + length;
    return true;
  }
  bool str(std::string_view& out) {
    const unsigned char c = at(0);
    if (c >= 0xa0 && c <= 0xbf) return sized(1, c & 0x1f, out);
    if (c == 0xd9 && have(2)) return sized(2, at(1), out);
    return false;
  }
  bool bin(std::string_view& out) {
    if (!have(1)) return false;
    const unsigned char c = at(0);
    if (c == 0xc4 && have(2)) return sized(2, at(1), out);
    if (c == 0xc5 && have(3)) return sized(3, be(1, 2), out);
    if (c == 0xc6 && have(5)) return sized(5, be(1, 4), out);
    return false;
  }
  bool id(std::int8_t type, WireId& out) {
    if (!have(1)) return false;
    const unsigned char c = at(0);
    std::size_t header = 0, length = 0;
    if (c == 0xd8) {  // fixext 16
      header = 1;
      length = 16;
    } else if (c == 0xc7 && have(2)) {  // ext 8
      header = 2;
      length = at(1);
    } else {
      return false;
    }
    if (!have(header + 1 + length) || static_cast<std::int8_t>(at(header)) != type) return false;
    Result<WireId> parsed = parse_wire_id(b_.substr(pos_ + header + 1, length));
    if (!parsed.ok()) return false;
    out = std::move(parsed).value();
    pos_ += header + 1 + length;
    return true;
  }
  bool opt_id(std::int8_t type, std::optional<WireId>& out) {
    if (have(1) && at(0) == 0xc0) {
      ++pos_;
      out.reset();
      return true;
    }
    return id(type, out.emplace());
  }

  std::string_view b_;
  std::size_t pos_ = 0;
};

}  // namespace

Result<Frame> decode_next_frame(std::string_view& rest, const FrameLimits& limits) {
  {
    FastData fast(rest);
    Data d;
    if (fast.read(limits, d)) {
      rest.remove_prefix(fast.consumed());
      return Frame(std::move(d));
    }
  }
  try {
    Decoder decoder(limits);
    Frame f;
    if (!decoder.decode(rest, f, /*whole=*/false)) {
      return Status(ErrorCode::kProtocol, decoder.error());
    }
    rest.remove_prefix(decoder.consumed());
    return f;
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::kProtocol, "out of memory decoding the frame");
  } catch (const std::exception& e) {
    return Status(ErrorCode::kProtocol, std::string("cannot decode: ") + e.what());
  }
}

}  // namespace nodus::transport
