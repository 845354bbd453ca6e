// ServerProcess: a generic server written by hand on raw processes, before GenServer. The
// loop (generic) receives {Request, Caller}, asks the callback "module" (specific) what to
// answer, and sends back {response, Response}. Counter is such a callback module.
#pragma once

#include <utility>

#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"

namespace server_process {

using namespace nodus;

// The generic part: the loop runs in the server's process, call in the caller's.
struct ServerProcess {
  template <class Callback>
  static Pid start(Node& node) {
    return spawn(node, [] {
      auto state = Callback::init();
      for (;;) {
        Message msg = receive();
        if (auto m = msg.match({_, _pid})) {
          auto [response, new_state] = Callback::handle_call(m[0], std::move(state));
          send(m[1].as_pid(), tuple("response", std::move(response)));
          state = std::move(new_state);
        }
      }
    });
  }

  // REQUIRES: the caller is a process or has an Inbox.
  static Term call(Pid server, Term request) {
    send(server, tuple(std::move(request), self()));
    for (;;) {
      Message msg = receive();
      if (auto m = msg.match({"response", _})) return m[0];
    }
  }
};

// The specific part: a callback module.
struct Counter {
  static int init() { return 0; }
  static std::pair<Term, int> handle_call(const Term& request, int count) {
    if (request == "increment") return {"ok", count + 1};
    return {count, count};  // get
  }
};

}  // namespace server_process
