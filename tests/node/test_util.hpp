// Test helpers for the node layer: the shared ones (tests/test_support.hpp), readable failure
// output for terms, the next message of the current process, and a networked node on loopback.
#pragma once

#include <chrono>
#include <memory>
#include <ostream>
#include <string>
#include <utility>

#include "../test_support.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "nodus/node/term.hpp"

namespace nodus {

// Found by GoogleTest through argument-dependent lookup.
inline void PrintTo(const Term& t, std::ostream* os) { *os << t.to_string(); }

namespace testing {

/// The current process's next message; fails the test (and returns `no_message`) when none
/// arrives within `t`.
inline Message next_message(Timeout t = std::chrono::seconds(5)) {
  auto m = receive(t);
  EXPECT_TRUE(m.has_value()) << "no message within the deadline";
  return m ? std::move(*m) : Message(atom("no_message"));
}

/// A node listening on a free loopback port with fast heartbeats.
inline std::unique_ptr<Node> start_loopback_node(
    const std::string& name, const std::string& cookie = "test-cookie",
    std::chrono::milliseconds down_after = std::chrono::milliseconds(1000),
    unsigned schedulers = 2) {
  NodeOptions o;
  o.name = name;
  o.schedulers = schedulers;
  o.listen = "tcp://127.0.0.1:*";
  o.cookie = cookie;
  o.heartbeat_interval = std::chrono::milliseconds(50);
  o.down_after = down_after;
  auto n = Node::start(std::move(o));
  EXPECT_TRUE(n.ok()) << (n.ok() ? "" : n.error().to_string());
  return n.ok() ? std::move(n.value()) : nullptr;
}

}  // namespace testing
}  // namespace nodus
