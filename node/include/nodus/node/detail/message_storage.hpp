// The machinery behind Message (message.hpp): how it stores a value of any type, moves and
// destroys it, and finds the handler visit() calls. Not part of the API: use Message.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "nodus/node/term.hpp"

namespace nodus {

class Message;

namespace detail {

template <class T>
struct TypeKey {
  static constexpr char id = 0;
};
template <class T>
constexpr const void* type_key() {
  return &TypeKey<std::remove_cvref_t<T>>::id;
}

/// The operations a Message needs on the value it holds.
struct MessageVTable {
  const void* key;
  const char* name;                    // the type's name, for errors ("Push" or a mangled name)
  std::uint32_t wire_tag;              // 0: not a wire message (Term, or a local-only type)
  void (*move)(void* from, void* to);  // move-construct into `to`, destroy `from`
  void (*destroy)(void* p);
  void (*encode)(const void* p, std::string& out);  // nullptr unless a wire message
  bool inline_storage;
};

inline constexpr std::size_t kMessageInlineSize = 48;

template <class T>
constexpr bool kInlineMessage =
    sizeof(T) <= kMessageInlineSize &&
    alignof(T) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<T>;

template <class T>
const char* message_type_name() {
  if constexpr (requires { T::kNodusName; }) {
    return T::kNodusName;
  } else {
    return typeid(T).name();
  }
}

void encode_term_payload(const void* p, std::string& out);  // codec.cpp

template <class T>
const MessageVTable* vtable_for() {
  static const MessageVTable vt = [] {
    MessageVTable v{};
    v.key = type_key<T>();
    v.name = message_type_name<T>();
    v.inline_storage = kInlineMessage<T>;
    if constexpr (kInlineMessage<T>) {
      v.move = [](void* from, void* to) {
        T* f = static_cast<T*>(from);
        ::new (to) T(std::move(*f));
        f->~T();
      };
      v.destroy = [](void* p) { static_cast<T*>(p)->~T(); };
    } else {
      v.move = [](void* from, void* to) { std::memcpy(to, from, sizeof(T*)); };
      v.destroy = [](void* p) { delete *static_cast<T**>(p); };
    }
    if constexpr (std::is_same_v<T, Term>) {
      v.encode = &encode_term_payload;
    } else if constexpr (requires(const T& t, std::string& s) {
                           T::kNodusTag;
                           t.nodus_encode(s);
                         }) {
      v.wire_tag = T::kNodusTag;
      v.encode = [](const void* p, std::string& out) {
        static_cast<const T*>(p)->nodus_encode(out);
      };
    }
    return v;
  }();
  return &vt;
}

template <class F>
struct FirstArg;
template <class R, class C, class A>
struct FirstArg<R (C::*)(A) const> {
  using type = std::remove_cvref_t<A>;
};
template <class R, class C, class A>
struct FirstArg<R (C::*)(A)> {
  using type = std::remove_cvref_t<A>;
};
template <class F>
using handler_arg_t = typename FirstArg<decltype(&std::remove_cvref_t<F>::operator())>::type;

/// Converts to a Term: held as a dynamic term.
template <class T>
concept TermLike =
    std::is_constructible_v<Term, T&&> && !std::is_same_v<std::remove_cvref_t<T>, ::nodus::Message>;
/// Anything else that can be moved: held as a typed message.
template <class T>
concept TypedPayload = !std::is_constructible_v<Term, T&&> &&
                       !std::is_same_v<std::remove_cvref_t<T>, ::nodus::Message> &&
                       std::is_move_constructible_v<std::remove_cvref_t<T>>;

}  // namespace detail

}  // namespace nodus
