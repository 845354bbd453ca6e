// SlowServer: call timeouts. A call waits 5 s by default; past its timeout it returns the
// error `timeout` (a reply that comes later is dropped); a custom timeout or `infinity` waits
// longer. The caller's process is parked meanwhile, never its scheduler thread.
#pragma once

#include <chrono>

#include "nodus/node/gen_server.hpp"

namespace slow_server {

using namespace nodus;
using std::chrono::milliseconds;

class SlowServer : public GenServer {
 public:
  /// The timeout of slow_operation: gen_server's 5 s. Tests shorten it to stay fast.
  static inline Timeout default_timeout = kDefaultCallTimeout;

  // -- client API (runs in the caller); each answers done or fails with timeout --
  static Result<Pid, Reason> start_link(Node& node) { return nodus::start_link<SlowServer>(node); }
  static CallResult fast_operation(Pid s) { return call(s, "fast", default_timeout); }
  static CallResult slow_operation(Pid s, milliseconds delay) {
    return slow_operation_with_timeout(s, delay, default_timeout);
  }
  static CallResult slow_operation_with_timeout(Pid s, milliseconds delay, Timeout timeout) {
    return call(s, tuple("slow", delay.count()), timeout);
  }
  static CallResult infinite_wait(Pid s, milliseconds delay) {
    return slow_operation_with_timeout(s, delay, infinity);
  }

  // -- server callbacks (run in the server's process) --
  Action handle_call(Message& msg, From from) override {
    if (msg == "fast") return reply("done");
    if (auto m = msg.match({"slow", _int})) {
      sleep_for(milliseconds(m[0].as_int()));
      return reply("done");
    }
    return GenServer::handle_call(msg, from);
  }
};

}  // namespace slow_server
