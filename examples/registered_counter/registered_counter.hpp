// RegisteredCounter: the UnregisteredCounter with a name. Callers on this node use the name;
// callers on another node use {name, node}. (A cluster-wide global name comes with the
// global registry.)
#pragma once

#include <string_view>

#include "nodus/node/gen_server.hpp"

namespace registered_counter {

using namespace nodus;

class RegisteredCounter : public GenServer {
 public:
  static constexpr const char* kName = "registered_counter";

  // -- client API (runs in the caller) --
  static Result<Pid, Reason> start_link(Node& node) {
    return nodus::start_link<RegisteredCounter>(node, SpawnOptions{.name = kName});
  }
  /// The new count, from a caller on the counter's node.
  static CallResult increment() { return call(named(kName), "increment"); }
  /// The new count, from a caller on any node.
  static CallResult increment(std::string_view node) {
    return call(named(kName, node), "increment");
  }

  // -- server callbacks (run in the counter's process) --
  Action handle_call(Message& msg, From from) override {
    if (msg == "increment") return reply(++count_);
    return GenServer::handle_call(msg, from);
  }

 private:
  std::int64_t count_ = 0;
};

}  // namespace registered_counter
