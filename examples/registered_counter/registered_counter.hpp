// RegisteredCounter: the UnregisteredCounter under a name; {name, node} reaches it from any node.
#pragma once

#include <string_view>

#include "nodus/node/gen_server.hpp"

namespace registered_counter {

using namespace nodus;

class RegisteredCounter : public GenServer {
 public:
  static constexpr const char* kName = "registered_counter";

  static Result<Pid, Reason> start_link(Node& node) {
    return nodus::start_link<RegisteredCounter>(node, SpawnOptions{.name = kName});
  }
  static CallResult increment() { return call(named(kName), "increment"); }
  static CallResult increment(std::string_view on) { return call(named(kName, on), "increment"); }

  Action handle_call(Message& msg, From from) override {
    if (msg == "increment") return reply(++count_);
    return GenServer::handle_call(msg, from);
  }

 private:
  std::int64_t count_ = 0;
};

}  // namespace registered_counter
