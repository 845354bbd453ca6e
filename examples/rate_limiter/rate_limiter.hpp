// RateLimiter: a token bucket. Each request spends tokens; a timer (handle_info) puts
// `refill_rate` tokens back every `refill_every` (default 1 s: the rate is per second), up to
// the bucket's size.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "nodus/node/gen_server.hpp"

namespace rate_limiter {

using namespace nodus;

struct Bucket {
  std::int64_t max_tokens;
  std::int64_t refill_rate;  // tokens per refill_every
  std::chrono::milliseconds refill_every{1000};
};

class RateLimiter : public GenServer {
 public:
  // -- client API (runs in the caller) --
  static Result<Pid, Reason> start_link(Node& node, Bucket bucket) {
    return nodus::start_link<RateLimiter>(node, bucket);
  }
  /// true if `cost` tokens were available (and are now spent).
  static bool allow(Pid limiter, std::int64_t cost = 1) {
    return call(limiter, tuple("allow", cost)).value_or(false) == true;
  }
  /// #{tokens => T, max => M}.
  static CallResult status(Pid limiter) { return call(limiter, "status"); }

  // -- server callbacks (run in the limiter's process) --
  Action init(Bucket bucket) {
    bucket_ = bucket;
    tokens_ = bucket.max_tokens;
    send_after(self(), "refill", bucket_.refill_every);
    return ok();
  }

  Action handle_call(Message& msg, From from) override {
    if (auto m = msg.match({"allow", _int})) {
      if (tokens_ < m[0].as_int()) return reply(false);
      tokens_ -= m[0].as_int();
      return reply(true);
    }
    if (msg == "status") return reply(map({{"tokens", tokens_}, {"max", bucket_.max_tokens}}));
    return GenServer::handle_call(msg, from);
  }

  Action handle_info(Message& msg) override {
    if (msg == "refill") {
      tokens_ = std::min(tokens_ + bucket_.refill_rate, bucket_.max_tokens);
      send_after(self(), "refill", bucket_.refill_every);
    }
    return noreply();
  }

 private:
  Bucket bucket_{};
  std::int64_t tokens_ = 0;
};

}  // namespace rate_limiter
