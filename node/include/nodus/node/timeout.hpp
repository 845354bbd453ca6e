// Timeout: a duration or infinity, as taken by call, receive and stop.
#pragma once

#include <chrono>
#include <cstdint>

namespace nodus {

class Timeout {
 public:
  /// Any std::chrono duration: 5s, 200ms. Negative durations count as zero.
  template <class Rep, class Period>
  constexpr Timeout(std::chrono::duration<Rep, Period> d)  // NOLINT: implicit on purpose
      : ms_(d < d.zero() ? 0 : std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) {}
  static constexpr Timeout infinity() { return Timeout(kInfinite); }

  bool is_infinite() const { return ms_ == kInfinite; }
  /// REQUIRES: !is_infinite().
  std::chrono::milliseconds duration() const { return std::chrono::milliseconds(ms_); }
  std::int64_t millis() const { return ms_; }
  /// now + duration, or time_point::max() for infinity.
  std::chrono::steady_clock::time_point deadline_from_now() const {
    if (is_infinite()) return std::chrono::steady_clock::time_point::max();
    return std::chrono::steady_clock::now() + duration();
  }

 private:
  static constexpr std::int64_t kInfinite = -1;
  constexpr explicit Timeout(std::int64_t ms) : ms_(ms) {}
  std::int64_t ms_;
};

/// No deadline: `call(pid, req, infinity)`.
inline constexpr Timeout infinity = Timeout::infinity();
/// gen_server's default call timeout.
inline constexpr Timeout kDefaultCallTimeout = std::chrono::seconds(5);

}  // namespace nodus
