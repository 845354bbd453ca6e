// Declaring typed messages that can cross the wire: the one public header that brings in
// msgpack-c, for user-defined message types.
//
//     struct Push {
//       std::int64_t item;
//       NODUS_MESSAGE(Push, 101, item);   // name, stable numeric tag, the field list
//     };
//
// The tag identifies the type on the wire, so it must never change or be reused; the field
// list is the one place that says what is serialised, in order (as a MessagePack array).
// Field types are anything msgpack-c can pack: numbers, strings, std::vector, std::map,
// std::optional, and other NODUS_MESSAGE structs. Tags below 1000 are reserved for nodus.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <msgpack.hpp>

#include "nodus/node/message.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::detail {

/// A msgpack-c write buffer over a std::string (msgpack's sbuffer would add a copy).
struct StringSink {
  std::string* out;
  void write(const char* data, std::size_t size) { out->append(data, size); }
};

}  // namespace nodus::detail

// The expansion ends in a declaration without its semicolon, so that the `;` written after
// NODUS_MESSAGE(...) completes it (no -Wpedantic "extra ';'"). An empty field list is allowed.
#define NODUS_MESSAGE(Type, tag, ...)              \
  MSGPACK_DEFINE_ARRAY(__VA_ARGS__)                \
  void nodus_encode(std::string& out) const {      \
    ::nodus::detail::StringSink sink{&out};        \
    ::msgpack::pack(sink, *this);                  \
  }                                                \
  static constexpr const char* kNodusName = #Type; \
  static constexpr std::uint32_t kNodusTag = (tag)

namespace nodus {

/// Decodes a typed message of type T from its MessagePack form (as written by
/// Message::encode). Errors: kBadArg naming the type when the bytes do not fit T. Applies the
/// same size limits as decode_term.
/// Makes typed messages of type T decodable when they arrive from another node. Call it once
/// per type at start-up on every node (a message whose tag is not registered is answered with
/// badarg). Errors: kBadArg if another type already uses T's tag.
template <class T>
Status register_message();

template <class T>
Result<T> decode_message(std::string_view bytes) {
  try {
    msgpack::unpack_limit limits(1 << 20, 1 << 20, 1 << 20, 64 << 20, 1 << 20, 64);
    msgpack::object_handle oh =
        msgpack::unpack(bytes.data(), bytes.size(), nullptr, nullptr, limits);
    return oh.get().as<T>();
  } catch (const std::exception& e) {
    return Status(ErrorCode::kBadArg,
                  std::string("cannot decode ") + T::kNodusName + ": " + e.what());
  }
}

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
