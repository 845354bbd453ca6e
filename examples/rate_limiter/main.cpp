// Runs the RateLimiter exercise: 10 tokens, refilled 2 per second.
#include <chrono>
#include <cstdio>

#include "rate_limiter.hpp"

int main() {
  using namespace rate_limiter;
  using namespace std::chrono_literals;
  Node node(NodeOptions{.name = "demo"});
  Inbox me(node);
  Pid limiter = RateLimiter::start_link(node, Bucket{.max_tokens = 10, .refill_rate = 2}).value();
  std::printf("allow?(5)  -> %s\n", RateLimiter::allow(limiter, 5) ? "true" : "false");
  std::printf("status()   -> %s\n", RateLimiter::status(limiter)->to_string().c_str());
  std::printf("allow?(10) -> %s\n", RateLimiter::allow(limiter, 10) ? "true" : "false");
  sleep_for(3s + 100ms);  // the third refill is due at 3 s
  std::printf("after 3 s: status() -> %s\n", RateLimiter::status(limiter)->to_string().c_str());
  return 0;
}
