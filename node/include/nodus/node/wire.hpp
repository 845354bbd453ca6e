// Typed messages that can cross the wire: the one public header that brings in msgpack-c, for
// message types declared with NODUS_MESSAGE.
//
//     struct Push {
//       std::int64_t item;
//       Pid from;
//       NODUS_MESSAGE(Push, 1101, item, from);   // name, stable numeric tag, the field list
//     };
//
// The tag identifies the type on the wire, so it must never change or be reused; the field
// list is the one place that says what is serialised, in order, as a MessagePack array (the
// envelope's `tag` says which type; docs/protocol.md section 4). Field types are what
// msgpack-c packs (integers, bool, double, std::string as str, std::vector as array, std::map
// as map, std::optional as the value or nil, structs with NODUS_FIELDS or NODUS_MESSAGE as
// arrays) and the nodus types adapted below, each encoded as in a term
// (docs/protocol.md section 5): Atom as str, Pid as ext 2 (an invalid Pid as nil), Ref as
// ext 3 (an invalid Ref as nil), Term as its MessagePack form, Bytes as bin, Status as
// [code, message].
//
// Tags below 1000 are reserved for nodus, by layer: 100-199 registry (global names 100-119,
// process groups 120-139), 300-399 tools, 500-599 the store (kv/src/kv_protocol.hpp).
// Applications use 1000 and up.
//
// Thread-safety: the functions here share no state, but register_message writes the process's
// table of decoders (call it at start-up).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include <msgpack.hpp>

#include "nodus/node/codec.hpp"
#include "nodus/node/message.hpp"
#include "nodus/node/term.hpp"
#include "nodus/transport/status.hpp"

namespace nodus {

/// A field that holds bytes rather than text: packed as MessagePack bin, where std::string is
/// str (which other languages' decoders read as UTF-8 text). Global names are Bytes (and so
/// will the store's keys and values be). Decodes from bin or str.
struct Bytes : std::string {
  using std::string::string;
  Bytes() = default;
  Bytes(std::string s) : std::string(std::move(s)) {}  // NOLINT: implicit on purpose
  Bytes(std::string_view s) : std::string(s) {}        // NOLINT
  const std::string& str() const { return *this; }
};

namespace detail {

/// A msgpack-c write buffer over a std::string (msgpack's sbuffer would add a copy).
struct StringSink {
  std::string* out;
  void write(const char* data, std::size_t size) { out->append(data, size); }
};

/// msgpack-c's unpack limits for `limits` (codec.hpp): what every decode of a typed message
/// applies, as decode_term does for terms.
inline msgpack::unpack_limit unpack_limit_of(const DecodeLimits& limits) {
  return msgpack::unpack_limit(limits.max_array, limits.max_map, limits.max_str, limits.max_bin,
                               limits.max_ext, limits.max_depth);
}

/// The Term a msgpack object holds (the mapping of docs/protocol.md section 5), checked
/// against the default DecodeLimits. Errors: kProtocol naming what was wrong. (codec.cpp)
Result<Term> term_from_object(const msgpack::object& o);

/// The MessagePack form of a pid or ref (ext type 2 or 3), for the adaptors below.
std::string id_payload(Atom node, std::uint32_t creation, std::uint64_t id);
/// Reads a pid or ref ext payload. Throws msgpack::type_error when malformed (a field that
/// does not decode fails decode_message, which catches it).
void parse_id_payload(const msgpack::object& o, std::int8_t type, Atom& node,
                      std::uint32_t& creation, std::uint64_t& id);

}  // namespace detail
}  // namespace nodus

// NODUS_MESSAGE(Type, tag, fields...): inside a struct, declares it a typed message with a
// stable wire tag and its field list (an empty list is allowed). NODUS_FIELDS(fields...): the
// field list alone, for a struct that is a field of typed messages (an array inside theirs).
// Each expansion ends in a declaration without its semicolon, so that the `;` written after
// it completes it (no -Wpedantic "extra ';'").
#define NODUS_FIELDS(...)           \
  MSGPACK_DEFINE_ARRAY(__VA_ARGS__) \
  static_assert(true, "NODUS_FIELDS")
#define NODUS_MESSAGE(Type, tag, ...)              \
  MSGPACK_DEFINE_ARRAY(__VA_ARGS__)                \
  void nodus_encode(std::string& out) const {      \
    ::nodus::detail::StringSink sink{&out};        \
    ::msgpack::pack(sink, *this);                  \
  }                                                \
  static constexpr const char* kNodusName = #Type; \
  static constexpr std::uint32_t kNodusTag = (tag)

namespace nodus {

/// Decodes a typed message of type T from its MessagePack form (as Message::encode writes it),
/// within `limits` (the defaults are those of every frame from another node). Errors: kBadArg
/// naming the type when the bytes do not fit T or exceed a limit.
template <class T>
Result<T> decode_message(std::string_view bytes, const DecodeLimits& limits = {}) {
  try {
    msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size(), nullptr, nullptr,
                                                detail::unpack_limit_of(limits));
    return oh.get().as<T>();
  } catch (const std::exception& e) {
    return Status(ErrorCode::kBadArg,
                  std::string("cannot decode ") + T::kNodusName + ": " + e.what());
  }
}

/// Makes typed messages of type T decodable when they arrive from another node. Call it once
/// per type at start-up on every node (a message whose tag is not registered is refused: a
/// call gets {badarg, ...}, anything else is dropped and counted). Registering the same type
/// again is harmless. Errors: kBadArg if another type already uses T's tag.
template <class T>
Status register_message() {
  return detail::register_message_decoder(
      T::kNodusTag, T::kNodusName, [](std::string_view bytes) -> Result<Message, Status> {
        Result<T> r = decode_message<T>(bytes);
        if (!r.ok()) return Result<Message, Status>::error_of(r.error());
        return Result<Message, Status>::value_of(std::move(r.value()));
      });
}

}  // namespace nodus

// -- msgpack-c adaptors for the nodus types used as fields ---------------------------------

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {

  template <>
  struct pack<nodus::Atom> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const nodus::Atom& a) const {
      const std::string_view name = a.name();  // at most kMaxAtomLength bytes
      o.pack_str(static_cast<std::uint32_t>(name.size()));
      return o.pack_str_body(name.data(), static_cast<std::uint32_t>(name.size()));
    }
  };
  template <>
  struct convert<nodus::Atom> {
    const msgpack::object& operator()(const msgpack::object& o, nodus::Atom& a) const {
      if (o.type != type::STR || o.via.str.size > nodus::kMaxAtomLength) throw type_error();
      // Decoded from another node's message: refused once the table holds its wire share.
      auto atom = nodus::detail::atom_from_wire(std::string_view(o.via.str.ptr, o.via.str.size));
      if (!atom) throw type_error();
      a = *atom;
      return o;
    }
  };

  template <>
  struct pack<nodus::Bytes> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const nodus::Bytes& b) const {
      o.pack_bin(static_cast<std::uint32_t>(b.size()));
      return o.pack_bin_body(b.data(), static_cast<std::uint32_t>(b.size()));
    }
  };
  template <>
  struct convert<nodus::Bytes> {
    const msgpack::object& operator()(const msgpack::object& o, nodus::Bytes& b) const {
      if (o.type == type::BIN) {
        b.assign(o.via.bin.ptr, o.via.bin.size);
      } else if (o.type == type::STR) {
        b.assign(o.via.str.ptr, o.via.str.size);
      } else {
        throw type_error();
      }
      return o;
    }
  };

  // Pid and Ref: ext 2 and 3 as in a term; an invalid one as nil.
  template <>
  struct pack<nodus::Pid> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const nodus::Pid& p) const {
      if (!p) return o.pack_nil();
      const std::string payload = nodus::detail::id_payload(p.node, p.creation, p.id);
      o.pack_ext(payload.size(), 2);
      return o.pack_ext_body(payload.data(), static_cast<std::uint32_t>(payload.size()));
    }
  };
  template <>
  struct convert<nodus::Pid> {
    const msgpack::object& operator()(const msgpack::object& o, nodus::Pid& p) const {
      if (o.is_nil()) {
        p = nodus::Pid{};
      } else {
        nodus::detail::parse_id_payload(o, 2, p.node, p.creation, p.id);
      }
      return o;
    }
  };
  template <>
  struct pack<nodus::Ref> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const nodus::Ref& r) const {
      if (!r) return o.pack_nil();
      const std::string payload = nodus::detail::id_payload(r.node, r.creation, r.id);
      o.pack_ext(payload.size(), 3);
      return o.pack_ext_body(payload.data(), static_cast<std::uint32_t>(payload.size()));
    }
  };
  template <>
  struct convert<nodus::Ref> {
    const msgpack::object& operator()(const msgpack::object& o, nodus::Ref& r) const {
      if (o.is_nil()) {
        r = nodus::Ref{};
      } else {
        nodus::detail::parse_id_payload(o, 3, r.node, r.creation, r.id);
      }
      return o;
    }
  };

  // Term: its MessagePack form (codec.hpp), written as it is: the packer has no call for bytes
  // that are already MessagePack, and a *_body call appends its bytes unchanged.
  template <>
  struct pack<nodus::Term> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const nodus::Term& t) const {
      const std::string encoded = nodus::encode_term(t);
      return o.pack_bin_body(encoded.data(), static_cast<std::uint32_t>(encoded.size()));
    }
  };
  template <>
  struct convert<nodus::Term> {
    const msgpack::object& operator()(const msgpack::object& o, nodus::Term& t) const {
      nodus::Result<nodus::Term> r = nodus::detail::term_from_object(o);
      if (!r) throw type_error();
      t = std::move(r.value());
      return o;
    }
  };

  // Status: [code, message], so a remote node can return one (an unknown code reads as
  // protocol_error naming it).
  template <>
  struct pack<nodus::Status> {
    template <class Stream>
    packer<Stream>& operator()(packer<Stream>& o, const nodus::Status& s) const {
      o.pack_array(2);
      o.pack(static_cast<std::uint32_t>(s.code()));
      return o.pack(s.message());
    }
  };
  template <>
  struct convert<nodus::Status> {
    const msgpack::object& operator()(const msgpack::object& o, nodus::Status& s) const {
      if (o.type != type::ARRAY || o.via.array.size != 2) throw type_error();
      const auto number = o.via.array.ptr[0].as<std::uint32_t>();
      std::string message = o.via.array.ptr[1].as<std::string>();
      if (auto code = nodus::error_from_number(number)) {
        s = nodus::Status(*code, std::move(message));
      } else {
        s = nodus::Status(nodus::ErrorCode::kProtocol,
                          "unknown error code " + std::to_string(number) + ": " + message);
      }
      return o;
    }
  };

  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack
