// InitExamples: four ways to start. init overloads take the start arguments: none (simple), a
// value (params), a value to validate (start fails with the reason init stops with), or a
// request to defer (init returns at once; handle_continue loads before the next message).
#pragma once

#include <chrono>
#include <cstdint>

#include "nodus/node/gen_server.hpp"

namespace init_examples {

using namespace nodus;

class InitExamples : public GenServer {
 public:
  struct Validate {
    std::int64_t value;
  };
  struct Deferred {
    std::chrono::milliseconds load_time;  // how long the "expensive" load takes
  };

  // -- client API (runs in the caller) --
  static Result<Pid, Reason> start_simple(Node& node) { return start_link<InitExamples>(node); }
  static Result<Pid, Reason> start_with_params(Node& node, Term value) {
    return start_link<InitExamples>(node, std::move(value));
  }
  static Result<Pid, Reason> start_with_validation(Node& node, std::int64_t value) {
    return start_link<InitExamples>(node, Validate{value});
  }
  static Result<Pid, Reason> start_deferred(Node& node, Deferred d = {std::chrono::seconds(3)}) {
    return start_link<InitExamples>(node, d);
  }
  /// #{type => Type, value => Value}.
  static Result<Term, Reason> state(Pid server) { return call(server, "state"); }

  // -- server callbacks (run in the server's process) --
  Action init() { return set("simple", 0); }
  Action init(Term value) { return set("params", std::move(value)); }
  Action init(Validate v) {
    if (v.value <= 0) return stop("invalid_initial_value");
    return set("validated", v.value);
  }
  Action init(Deferred d) {
    load_time_ = d.load_time;
    type_ = "deferred";
    return ok(Continue{"load_data"});
  }

  Action handle_continue(Term& arg) override {
    if (arg != "load_data") return GenServer::handle_continue(arg);
    sleep_for(load_time_);  // the expensive setup
    value_ = bin("expensive data");
    return noreply();
  }

  Action handle_call(Message& msg, From from) override {
    if (msg == "state") return reply(map({{"type", type_}, {"value", value_}}));
    return GenServer::handle_call(msg, from);
  }

 private:
  Action set(Term type, Term value) {
    type_ = std::move(type);
    value_ = std::move(value);
    return ok();
  }

  Term type_;
  Term value_;  // undefined until loaded
  std::chrono::milliseconds load_time_{0};
};

}  // namespace init_examples
