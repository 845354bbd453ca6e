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
// Thread-safety: plain values; distinct objects may be used from distinct threads.
#pragma once

#include <cstdint>
#include <optional>
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

/// The short name of a code ("noproc"), or "unknown" for a number not in the table.
std::string_view error_name(ErrorCode code);
/// The table's message for a code.
std::string_view error_message(ErrorCode code);
/// The code whose short name is `name`, if any.
std::optional<ErrorCode> error_from_name(std::string_view name);
/// The code with this number, if it is in the table (untrusted input from the wire).
std::optional<ErrorCode> error_from_number(std::uint32_t number);

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
