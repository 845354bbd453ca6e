#include "nodus/transport/status.hpp"

#include <array>
#include <atomic>
#include <ostream>

#include "nodus/transport/detail/mutex.hpp"

namespace nodus {
namespace {

constexpr ErrorInfo kTable[] = {
#define NODUS_ERROR(e, n, name, msg) {ErrorCode::e, name, msg},
#include "nodus/transport/error_definitions.hpp"
#undef NODUS_ERROR
};

constexpr std::uint16_t kFirstLayerCode = 5000;
constexpr std::uint16_t kLastLayerCode = 9999;

// The layers' tables. A range is written once, before `ranges_used` counts it, and never
// changed, so lookups read the first `ranges_used` without the lock (hence g_ranges is not
// NODUS_GUARDED_BY(g_ranges_mu): the release store of g_ranges_used publishes each entry).
struct Range {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
  std::span<const ErrorInfo> codes;
};
constinit std::array<Range, 16> g_ranges{};
constinit std::atomic<std::size_t> g_ranges_used{0};
// Guards registration: one writer at a time appends to g_ranges.
constinit detail::Mutex g_ranges_mu;

std::span<const Range> layer_ranges() {
  return std::span<const Range>(g_ranges.data(), g_ranges_used.load(std::memory_order_acquire));
}

template <class Pred>
const ErrorInfo* find_if(Pred pred) {
  for (const ErrorInfo& e : kTable) {
    if (pred(e)) return &e;
  }
  for (const Range& r : layer_ranges()) {
    for (const ErrorInfo& e : r.codes) {
      if (pred(e)) return &e;
    }
  }
  return nullptr;
}

const ErrorInfo* find(ErrorCode code) {
  const auto n = static_cast<std::uint32_t>(code);
  if (n < kFirstLayerCode) {
    for (const ErrorInfo& e : kTable) {
      if (e.code == code) return &e;
    }
    return nullptr;
  }
  for (const Range& r : layer_ranges()) {
    if (n < r.first || n > r.last) continue;
    for (const ErrorInfo& e : r.codes) {
      if (e.code == code) return &e;
    }
  }
  return nullptr;
}

}  // namespace

std::string_view error_name(ErrorCode code) {
  const ErrorInfo* e = find(code);
  return e ? e->name : std::string_view("unknown");
}

std::string_view error_message(ErrorCode code) {
  const ErrorInfo* e = find(code);
  return e ? e->message : std::string_view("unknown error code");
}

std::optional<ErrorCode> error_from_name(std::string_view name) {
  const ErrorInfo* e = find_if([&](const ErrorInfo& i) { return i.name == name; });
  return e ? std::optional<ErrorCode>(e->code) : std::nullopt;
}

std::optional<ErrorCode> error_from_number(std::uint32_t number) {
  if (number > 0xffff) return std::nullopt;
  const ErrorInfo* e = find(static_cast<ErrorCode>(number));
  return e ? std::optional<ErrorCode>(e->code) : std::nullopt;
}

Status register_error_range(std::uint16_t first, std::uint16_t last,
                            std::span<const ErrorInfo> codes) {
  auto refuse = [&](const std::string& why) {
    return Status(ErrorCode::kBadArg,
                  "error codes " + std::to_string(first) + "-" + std::to_string(last) + ": " + why);
  };
  if (first > last || first < kFirstLayerCode || last > kLastLayerCode) {
    return refuse("a layer's range lies inside 5000-9999");
  }
  detail::MutexLock lock(g_ranges_mu);
  const std::size_t used = g_ranges_used.load(std::memory_order_relaxed);
  if (used == g_ranges.size()) return refuse("no room for another range");
  for (const Range& r : layer_ranges()) {
    if (first <= r.last && r.first <= last) {
      return refuse("overlaps " + std::to_string(r.first) + "-" + std::to_string(r.last));
    }
  }
  for (std::size_t i = 0; i < codes.size(); ++i) {
    const ErrorInfo& c = codes[i];
    const auto n = static_cast<std::uint32_t>(c.code);
    if (n < first || n > last) return refuse("code " + std::to_string(n) + " lies outside");
    bool taken = error_from_name(c.name).has_value();
    for (std::size_t j = 0; j < i; ++j) {
      if (codes[j].code == c.code) return refuse("code " + std::to_string(n) + " twice");
      taken = taken || codes[j].name == c.name;
    }
    if (taken) return refuse("the name " + std::string(c.name) + " is taken");
  }
  g_ranges[used] = Range{first, last, codes};
  g_ranges_used.store(used + 1, std::memory_order_release);
  return Status::Ok();
}

std::ostream& operator<<(std::ostream& os, const Status& s) { return os << s.to_string(); }

std::string Status::to_string() const {
  std::string out(error_name(code_));
  out += ": ";
  out += message_.empty() ? std::string(error_message(code_)) : message_;
  return out;
}

}  // namespace nodus
