// UnregisteredCounter: a server without a name, reached through its pid, which every caller
// must be given. (RegisteredCounter, reached by name, waits for the registry layer.)
#pragma once

#include "nodus/node/gen_server.hpp"

namespace unregistered_counter {

using namespace nodus;

class UnregisteredCounter : public GenServer {
 public:
  // -- client API (runs in the caller) --
  static Result<Pid, Reason> start_link(Node& node) {
    return nodus::start_link<UnregisteredCounter>(node);
  }
  /// The new count.
  static CallResult increment(Pid counter) { return call(counter, "increment"); }

  // -- server callbacks (run in the counter's process) --
  Action handle_call(Message& msg, From from) override {
    if (msg == "increment") return reply(++count_);
    return GenServer::handle_call(msg, from);
  }

 private:
  std::int64_t count_ = 0;  // the state starts at 0, as the chapter's init(0)
};

}  // namespace unregistered_counter
