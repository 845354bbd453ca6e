// RegisteredCounter: the UnregisteredCounter under a name; {name, node} reaches it from any node,
// and under a global name ({:global, name}) any node of the cluster reaches it by name alone.
#pragma once

#include <string_view>

#include "nodus/node/gen_server.hpp"
#include "nodus/registry/global.hpp"

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

  /// Cluster-wide: REQUIRES start_global(node) on the nodes that take part.
  static Result<Pid, Reason> start_link_global(Node& node) {
    return nodus::start_link<RegisteredCounter>(node, SpawnOptions{.name = global(kName)});
  }
  static CallResult increment_global() { return call(global(kName), "increment"); }

  Action handle_call(Message& msg, From from) override {
    if (msg == "increment") return reply(++count_);
    return GenServer::handle_call(msg, from);
  }

 private:
  std::int64_t count_ = 0;
};

}  // namespace registered_counter
