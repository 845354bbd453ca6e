// Runs the RateLimiter exercise: 10 tokens, refilled 2 per second.
#include <chrono>

#include "nodus/node/format.hpp"
#include "rate_limiter.hpp"

int main() {
  using namespace rate_limiter;
  using namespace std::chrono_literals;
  Node node(NodeOptions{.name = "demo"});
  Inbox me(node);
  Pid limiter = RateLimiter::start_link(node, Bucket{.max_tokens = 10, .refill_rate = 2}).value();
  fmt::print("allow?(5)  -> {}\n", RateLimiter::allow(limiter, 5) ? "true" : "false");
  fmt::print("status()   -> {}\n", *RateLimiter::status(limiter));
  fmt::print("allow?(10) -> {}\n", RateLimiter::allow(limiter, 10) ? "true" : "false");
  sleep_for(3s + 100ms);  // the third refill is due at 3 s
  fmt::print("after 3 s: status() -> {}\n", *RateLimiter::status(limiter));
  return 0;
}
