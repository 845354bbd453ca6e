// Message: what a process receives. Either a dynamic Term or a typed message (any movable C++
// value, usually a plain struct declared with NODUS_MESSAGE so it can also cross the wire).
//
// Local messages are moved, never serialised: a Message owns its value in place (small values
// live inside the Message, larger ones on the heap). Dispatch reads like the Elixir clauses it
// replaces:
//     return msg.visit([&](const Push& p) { ... },          // a typed message
//                      [&](const Term& t) { ... });         // any dynamic term
//     if (msg == "pop") ...                                 // an atom
//     if (auto m = msg.match({"push", _})) ...              // a term's shape (see term.hpp)
//
// Which to use: a protocol the project owns (between its servers on different nodes, and from
// an API to its own server) is typed messages, each a struct with named fields declared with
// NODUS_MESSAGE (wire.hpp), dispatched with visit: the compiler checks every field, the wire
// form is one field list, and docs/protocol.md documents it field by field (registry/src's
// global_protocol.hpp and pg_protocol.hpp are the models). Terms are for data whose shape is
// only known at run time: what users send their own processes, requests typed by people
// (nodusctl call), notifications whose receiver matches them (`{pg_join, Scope, Group, Pids}`).
//
// Thread-safety: a value; one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "nodus/node/detail/message_storage.hpp"
#include "nodus/node/term.hpp"
#include "nodus/transport/status.hpp"

namespace nodus {

/// Decodes a typed message's MessagePack form (see wire.hpp: register_message<T>()).
using MessageDecoder = Result<Message, Status> (*)(std::string_view bytes);

namespace detail {
/// Registers the decoder for a wire tag. Errors: kBadArg if another type has the tag.
Status register_message_decoder(std::uint32_t tag, const char* name, MessageDecoder decode);
/// The decoder registered for `tag`, or nullptr.
MessageDecoder message_decoder(std::uint32_t tag);
}  // namespace detail

/// Thrown by Message::visit when no handler accepts the message. In a handler it ends the
/// process with reason {bad_message, TypeName}, like a function_clause in Erlang.
class BadMessage : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Message {
 public:
  /// The atom `undefined`.
  Message() : Message(Term()) {}
  /// A dynamic term (also: an atom from a literal, a number, a pid ...).
  template <detail::TermLike T>
  Message(T&& t) {  // NOLINT: implicit on purpose
    emplace<Term>(Term(std::forward<T>(t)));
  }
  /// A typed message. REQUIRES: T is movable.
  template <detail::TypedPayload T>
  Message(T&& value) {  // NOLINT: implicit on purpose
    emplace<std::remove_cvref_t<T>>(std::forward<T>(value));
  }
  /// Leaves `o` moved-from: it may only be destroyed, assigned to or moved again.
  Message(Message&& o) noexcept : vt_(o.vt_) {
    if (vt_) vt_->move(o.buf_, buf_);
    o.vt_ = nullptr;
  }
  Message& operator=(Message&& o) noexcept {
    if (this != &o) {
      reset();
      vt_ = o.vt_;
      if (vt_) vt_->move(o.buf_, buf_);
      o.vt_ = nullptr;
    }
    return *this;
  }
  Message(const Message&) = delete;
  Message& operator=(const Message&) = delete;
  ~Message() { reset(); }

  // -- what it holds --------------------------------------------------------
  bool is_term() const { return vt_ && vt_->key == detail::type_key<Term>(); }
  /// REQUIRES: is_term().
  const Term& term() const { return *get_unchecked<Term>(); }
  Term& term() { return *get_unchecked<Term>(); }
  template <class T>
  bool is() const {
    return vt_ && vt_->key == detail::type_key<T>();
  }
  /// The value if it is a T, else nullptr.
  template <class T>
  const T* get() const {
    return is<T>() ? get_unchecked<T>() : nullptr;
  }
  template <class T>
  T* get() {
    return is<T>() ? get_unchecked<T>() : nullptr;
  }
  /// The held type's name ("Term", "Push", ...).
  const char* type_name() const { return !vt_ ? "moved-from" : is_term() ? "Term" : vt_->name; }
  /// The wire tag of a typed message declared with NODUS_MESSAGE; 0 otherwise.
  std::uint32_t wire_tag() const { return vt_ ? vt_->wire_tag : 0; }
  /// Appends the MessagePack form of the value; false if the type cannot cross the wire.
  bool encode(std::string& out) const {
    if (!vt_ || !vt_->encode) return false;
    vt_->encode(ptr(), out);
    return true;
  }

  // -- term conveniences (false / nullopt for typed messages) ----------------
  friend bool operator==(const Message& m, const Term& t) { return m.is_term() && m.term() == t; }
  friend bool operator==(const Message& m, const char* atom_name) {
    return m.is_term() && m.term().is_atom(atom_name);
  }
  Match match(const Pattern& p) const {
    if (!is_term()) return Match();
    return term().match(p);
  }
  /// The term's text, or "#Type{}" for a typed message. (operator<< writes the same.)
  std::string to_string() const {
    return is_term() ? term().to_string() : std::string("#") + type_name() + "{}";
  }

  /// Calls the first handler whose parameter type is the held type: `const Push&` for a typed
  /// message, `const Term&` for any term, `Message&` / `const Message&` for anything. Returns
  /// what that handler returns. Throws BadMessage when none accepts it.
  template <class... F>
  decltype(auto) visit(F&&... handlers) {
    using R = std::common_type_t<std::invoke_result_t<F, detail::handler_arg_t<F>&>...>;
    std::optional<std::conditional_t<std::is_void_v<R>, bool, R>> out;
    bool done = (try_one<R>(out, handlers) || ...);
    if (!done) throw BadMessage(std::string("no handler for message ") + to_string());
    if constexpr (!std::is_void_v<R>) return R(std::move(*out));
  }

 private:
  template <class R, class O, class F>
  bool try_one(O& out, F& f) {
    using A = detail::handler_arg_t<F>;
    A* arg = nullptr;
    if constexpr (std::is_same_v<A, Message>) {
      arg = this;
    } else if (is<A>()) {
      arg = get_unchecked<A>();
    }
    if (!arg) return false;
    if constexpr (std::is_void_v<R>) {
      f(*arg);
      out = true;
    } else {
      out.emplace(f(*arg));
    }
    return true;
  }

  template <class T, class... A>
  void emplace(A&&... a) {
    vt_ = detail::vtable_for<T>();
    if constexpr (detail::kInlineMessage<T>) {
      ::new (static_cast<void*>(buf_)) T(std::forward<A>(a)...);
    } else {
      T* p = new T(std::forward<A>(a)...);
      std::memcpy(buf_, &p, sizeof(p));
    }
  }
  void reset() {
    if (vt_) vt_->destroy(buf_);
    vt_ = nullptr;
  }
  const void* ptr() const {
    if (vt_->inline_storage) return buf_;
    void* p;
    std::memcpy(&p, buf_, sizeof(p));
    return p;
  }
  template <class T>
  T* get_unchecked() const {
    return static_cast<T*>(const_cast<void*>(ptr()));
  }

  const detail::MessageVTable* vt_ = nullptr;
  alignas(std::max_align_t) unsigned char buf_[detail::kMessageInlineSize];
};

std::ostream& operator<<(std::ostream& os, const Message& m);

}  // namespace nodus
