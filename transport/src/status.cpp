#include "nodus/transport/status.hpp"

#include <array>

namespace nodus {
namespace {

struct Entry {
  ErrorCode code;
  std::string_view name;
  std::string_view message;
};

constexpr Entry kTable[] = {
#define NODUS_ERROR(e, n, name, msg) {ErrorCode::e, name, msg},
#include "nodus/transport/error_definitions.hpp"
#undef NODUS_ERROR
};

const Entry* find(ErrorCode code) {
  for (const Entry& e : kTable) {
    if (e.code == code) return &e;
  }
  return nullptr;
}

}  // namespace

std::string_view error_name(ErrorCode code) {
  const Entry* e = find(code);
  return e ? e->name : std::string_view("unknown");
}

std::string_view error_message(ErrorCode code) {
  const Entry* e = find(code);
  return e ? e->message : std::string_view("unknown error code");
}

std::optional<ErrorCode> error_from_name(std::string_view name) {
  for (const Entry& e : kTable) {
    if (e.name == name) return e.code;
  }
  return std::nullopt;
}

std::optional<ErrorCode> error_from_number(std::uint32_t number) {
  for (const Entry& e : kTable) {
    if (static_cast<std::uint32_t>(e.code) == number) return e.code;
  }
  return std::nullopt;
}

std::string Status::to_string() const {
  std::string out(error_name(code_));
  out += ": ";
  out += message_.empty() ? std::string(error_message(code_)) : message_;
  return out;
}

}  // namespace nodus
