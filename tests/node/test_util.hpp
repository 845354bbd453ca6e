// Test helpers for the node layer: the shared ones (tests/test_support.hpp), readable failure
// output for terms, the next message of the current process, and a networked node on loopback.
#pragma once

#include <chrono>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

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

/// Options for a node listening on a free loopback port with fast heartbeats.
inline NodeOptions loopback_options(
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
  return o;
}

/// A node started with loopback_options.
inline std::unique_ptr<Node> start_loopback_node(
    const std::string& name, const std::string& cookie = "test-cookie",
    std::chrono::milliseconds down_after = std::chrono::milliseconds(1000),
    unsigned schedulers = 2) {
  auto n = Node::start(loopback_options(name, cookie, down_after, schedulers));
  EXPECT_TRUE(n.ok()) << (n.ok() ? "" : n.error().to_string());
  return n.ok() ? std::move(n.value()) : nullptr;
}

/// Loopback nodes named `names`, each linking to the first (which then introduces them to each
/// other: a full mesh soon after). Fails the test if one does not start; waiting for the mesh
/// is the caller's.
inline std::vector<std::unique_ptr<Node>> start_loopback_star(
    std::initializer_list<const char*> names, const std::string& cookie,
    std::chrono::milliseconds down_after) {
  std::vector<std::unique_ptr<Node>> nodes;
  for (const char* name : names) {
    nodes.push_back(start_loopback_node(name, cookie, down_after));
    if (!nodes.back()) {
      ADD_FAILURE() << "node " << name << " did not start";
      return {};
    }
    if (nodes.size() > 1) nodes.back()->connect(nodes.front()->endpoint());
  }
  return nodes;
}

}  // namespace testing
}  // namespace nodus
