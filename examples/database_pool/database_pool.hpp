// DatabasePool: answering a call later. checkout with no free connection keeps the caller's
// From and returns noreply; the next checkin hands that caller the connection with reply().
#pragma once

#include <deque>

#include "nodus/node/gen_server.hpp"

namespace database_pool {

using namespace nodus;

class DatabasePool : public GenServer {
 public:
  // -- client API (runs in the caller) --
  static Result<Pid, Reason> start_link(Node& node, int max_connections) {
    return nodus::start_link<DatabasePool>(node, max_connections);
  }
  /// {ok, Connection}, waiting as long as it takes.
  static CallResult checkout(Pid pool) { return call(pool, "checkout", infinity); }
  static void checkin(Pid pool, Term connection) {
    cast(pool, tuple("checkin", std::move(connection)));
  }
  /// #{available => A, waiting => W, total => T}.
  static CallResult status(Pid pool) { return call(pool, "status"); }

  // -- server callbacks (run in the pool's process) --
  Action init(int max_connections) {
    for (int i = 1; i <= max_connections; ++i) connections_.push_back(tuple("conn", i));
    max_connections_ = max_connections;
    return ok();
  }

  Action handle_call(Message& msg, From from) override {
    if (msg == "checkout") {
      if (connections_.empty()) {
        waiting_.push_back(from);  // answered by a later checkin
        return noreply();
      }
      Term conn = connections_.front();
      connections_.pop_front();
      return reply(tuple("ok", conn));
    }
    if (msg == "status") {
      return reply(map({{"available", connections_.size()},
                        {"waiting", waiting_.size()},
                        {"total", max_connections_}}));
    }
    return GenServer::handle_call(msg, from);
  }

  Action handle_cast(Message& msg) override {
    if (auto m = msg.match({"checkin", _})) {
      if (waiting_.empty()) {
        connections_.push_front(m[0]);
      } else {
        reply(waiting_.front(), tuple("ok", m[0]));
        waiting_.pop_front();
      }
    }
    return noreply();
  }

 private:
  std::deque<Term> connections_;  // free ones
  std::deque<From> waiting_;      // callers of checkout, oldest first
  int max_connections_ = 0;
};

}  // namespace database_pool
