// Status and Result<T>: how every nodus layer reports success or failure.
//
// A Status is either ok or an error code from the one table in error_definitions.hpp plus an
// optional message with the details of this occurrence. It is a small value: cheap to copy,
// comparable, serialisable (code number + message) so a remote node can return it.
// Result<T, E> holds either a T or an error E (Status unless said otherwise), like
// std::expected. Both are [[nodiscard]]: a dropped error is a bug.
//
// Why not std::error_code: our codes cross the wire and must keep their number and name in
// every process and language; one table of our own says that plainly.
//
// A layer above transport adds codes of its own without editing transport, in its range of
// 5000-9999 (error_definitions.hpp), as CAF lets each module bring its error category:
//
//     // kv/include/nodus/kv/errors.hpp: the table, and the constants
//     #define NODUS_KV_ERRORS(X) X(kSiblingLimit, 6000, "sibling_limit", "too many siblings")
//     namespace nodus::kv { NODUS_DECLARE_ERRORS(NODUS_KV_ERRORS) }
//     // kv/src/store.cpp (a source file every user of the layer links): the registration
//     NODUS_DEFINE_ERRORS(kv, 6000, 6999, NODUS_KV_ERRORS);
//
// Status(kv::kSiblingLimit, ...) then prints, parses and crosses the wire like any code.
//
// Thread-safety: plain values; distinct objects may be used from distinct threads.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace nodus {

enum class ErrorCode : std::uint16_t {
#define NODUS_ERROR(e, n, name, msg) e = n,
#include "nodus/transport/error_definitions.hpp"
#undef NODUS_ERROR
};

/// The short name of a code ("noproc"), or "unknown" for a number in no table.
std::string_view error_name(ErrorCode code);
/// The table's message for a code.
std::string_view error_message(ErrorCode code);
/// The code whose short name is `name`, if any (the main table's or a registered layer's).
std::optional<ErrorCode> error_from_name(std::string_view name);
/// The code with this number, if a table has it (untrusted input from the wire).
std::optional<ErrorCode> error_from_number(std::uint32_t number);

/// One code of a layer's own table.
struct ErrorInfo {
  ErrorCode code;
  std::string_view name;
  std::string_view message;
};

class [[nodiscard]] Status {
 public:
  /// An ok status.
  Status() = default;
  explicit Status(ErrorCode code, std::string message = {})
      : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  /// This occurrence's details; may be empty (then to_string shows the table's message).
  const std::string& message() const { return message_; }
  /// "noproc: no such process" or "timeout: call to <n1.7> after 5000 ms".
  std::string to_string() const;

  friend bool operator==(const Status& a, const Status& b) { return a.code_ == b.code_; }
  friend bool operator==(const Status& a, ErrorCode c) { return a.code_ == c; }

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

/// Writes s.to_string().
std::ostream& operator<<(std::ostream& os, const Status& s);

/// Adds a layer's codes, numbered within [first, last], to what error_name, error_message,
/// error_from_name and error_from_number know. `codes` must outlive every lookup (a static
/// table: NODUS_DEFINE_ERRORS makes one and registers it before main). At most 16 ranges.
/// Errors (and nothing registered): kBadArg when the range is not inside 5000-9999 or overlaps
/// one registered already, a code lies outside it, or a name is taken (by the main table,
/// another layer or this table). Thread-safe; lookups never wait for it.
Status register_error_range(std::uint16_t first, std::uint16_t last,
                            std::span<const ErrorInfo> codes);

/// Either a value or an error. REQUIRES for value(): has_value(); for error(): !has_value().
template <class T, class E = Status>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Result(E error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit
  template <class... A>
  static Result value_of(A&&... a) {
    return Result(std::in_place_index<0>, std::forward<A>(a)...);
  }
  static Result error_of(E e) { return Result(std::in_place_index<1>, std::move(e)); }

  bool has_value() const { return v_.index() == 0; }
  bool ok() const { return has_value(); }
  explicit operator bool() const { return has_value(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  template <class U>
  T value_or(U&& fallback) const& {
    return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
  }

  const E& error() const& { return std::get<1>(v_); }
  E&& error() && { return std::get<1>(std::move(v_)); }

 private:
  template <std::size_t I, class... A>
  explicit Result(std::in_place_index_t<I> i, A&&... a) : v_(i, std::forward<A>(a)...) {}
  std::variant<T, E> v_;
};

}  // namespace nodus

// A layer's table is a macro TABLE(X) that applies X(Enumerator, number, "name", "message") to
// each code, the form of error_definitions.hpp. NODUS_DECLARE_ERRORS(TABLE), inside the layer's
// namespace in a public header, declares each Enumerator as an ErrorCode constant;
// NODUS_DEFINE_ERRORS(layer, first, last, TABLE);, at namespace scope in one source file of
// the layer, registers the table at static initialisation (a static library drops an object
// file nothing refers to, so choose a file every user of the layer links).
#define NODUS_ERROR_CODE_CONSTANT(e, n, name, msg) inline constexpr ::nodus::ErrorCode e{n};
#define NODUS_ERROR_INFO_ENTRY(e, n, name, msg) \
  ::nodus::ErrorInfo{::nodus::ErrorCode{n}, name, msg},
#define NODUS_DECLARE_ERRORS(TABLE) TABLE(NODUS_ERROR_CODE_CONSTANT)
#define NODUS_DEFINE_ERRORS(layer, first, last, TABLE)                                          \
  static const ::nodus::ErrorInfo kNodusErrorTable_##layer[] = {TABLE(NODUS_ERROR_INFO_ENTRY)}; \
  [[maybe_unused]] static const bool kNodusErrorTableRegistered_##layer =                       \
      ::nodus::register_error_range(first, last, kNodusErrorTable_##layer).ok()
