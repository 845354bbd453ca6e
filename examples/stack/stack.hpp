// Stack: the classic first GenServer, registered under the name "stack" so callers need no
// pid. push is a cast; pop and peek are calls that answer {ok, Item} or {error, empty}.
#pragma once

#include <vector>

#include "nodus/node/gen_server.hpp"

namespace stack {

using namespace nodus;

class Stack : public GenServer {
 public:
  // -- client API (runs in the caller) --
  static Result<Pid, Reason> start_link(Node& node, List initial = {}) {
    return nodus::start_link<Stack>(node, SpawnOptions{.name = "stack"}, std::move(initial));
  }
  static void push(Term item) { cast(named("stack"), tuple("push", std::move(item))); }
  static Term pop() { return call(named("stack"), "pop").value_or(tuple("error", "noproc")); }
  static Term peek() { return call(named("stack"), "peek").value_or(tuple("error", "noproc")); }

  // -- server callbacks (run in the stack's process) --
  Action init(List initial) {
    items_ = std::move(initial);
    return ok();
  }

  Action handle_cast(Message& msg) override {
    if (auto m = msg.match({"push", _})) items_.push_back(m[0]);
    return noreply();
  }

  Action handle_call(Message& msg, From from) override {
    if (msg != "pop" && msg != "peek") return GenServer::handle_call(msg, from);
    if (items_.empty()) return reply(tuple("error", "empty"));
    Term top = items_.back();
    if (msg == "pop") items_.pop_back();
    return reply(tuple("ok", top));
  }

 private:
  List items_;  // the top is the back
};

}  // namespace stack
