// Nodes on the simulated network (tests/sim/sim_cluster.hpp), stepped from a seed: the
// runtime's timers, timeouts and links run on virtual time, a seed replays its history, and a
// node paused past down_after, or cut off by dropped messages, comes back on every side.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "nodus/node/gen_server.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "sim/sim_cluster.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using testing::SimCluster;

class Echo : public GenServer {
 public:
  Action handle_call(Message& req, From) override {
    if (req == "never") return noreply();  // the caller times out
    return reply(tuple("echo", req.term()));
  }
};

class SimTest : public ::testing::Test {
 protected:
  /// Three nodes meshed through one seed.
  void Mesh(SimCluster& sim) {
    sim.add("a");
    sim.add("b", {"a"});
    sim.add("c", {"a"});
    ASSERT_TRUE(sim.run_until([&] { return sim.meshed(); }, 5s));
  }
};

TEST_F(SimTest, NodesMeshThroughOneSeedInMillisecondsOfVirtualTime) {
  SimCluster sim(1);
  Mesh(sim);
  EXPECT_LT(sim.elapsed(), 50ms);  // a few handshakes at 20-200 us a hop
  EXPECT_EQ(sim["b"].nodes(), (std::vector<Atom>{Atom("a"), Atom("c")}));
}

TEST_F(SimTest, CallsTimersAndTimeoutsRunOnVirtualTime) {
  SimCluster sim(2);
  Mesh(sim);
  Pid echo = start<Echo>(sim["b"]).value();  // a plain thread's wait runs the simulation
  std::vector<std::pair<std::string, std::chrono::milliseconds>> seen;
  sim.spawn("a", [&] {
    auto r = call(echo, "hi");
    seen.emplace_back(r.ok() ? "reply" : "error", sim.elapsed());
    send_after(self(), "tick", 10s);
    (void)receive();
    seen.emplace_back("tick", sim.elapsed());
    auto t = call(echo, "never", 2s);
    seen.emplace_back(!t.ok() && t.error() == reasons::timeout() ? "timeout" : "?", sim.elapsed());
  });
  const auto real_start = std::chrono::steady_clock::now();
  ASSERT_TRUE(sim.run_until([&] { return seen.size() == 3; }, 20s));
  EXPECT_LT(std::chrono::steady_clock::now() - real_start, 2s);  // 12 s of virtual time
  EXPECT_EQ(seen[0].first, "reply");
  EXPECT_EQ(seen[1].first, "tick");
  EXPECT_EQ(seen[1].second - seen[0].second, 10s);  // exactly: nothing else moves the clock
  EXPECT_EQ(seen[2].first, "timeout");
  EXPECT_GE(seen[2].second - seen[1].second, 2s);
  EXPECT_LT(seen[2].second - seen[1].second, 2s + 5ms);
}

// What a run does depends on its seed alone: two runs of one seed see the same history, to the
// microsecond of virtual time.
TEST_F(SimTest, ASeedReplaysItsHistoryExactly) {
  auto history = [](std::uint64_t seed) {
    transport::SimFaults f;
    f.drop = 0.01;
    f.max_latency = 3ms;
    SimCluster sim(seed, f);
    if (std::getenv("SIM_TRACE")) {
      sim.net().set_trace([](const std::string& l) { std::printf("net %s\n", l.c_str()); });
    }
    sim.add("a");
    sim.add("b", {"a"});
    sim.add("c", {"b"});
    std::vector<std::string> h;
    for (const char* n : {"a", "b", "c"}) {
      sim.spawn(n, [&, n] {
        monitor_nodes(true);
        for (int i = 0; i < 40; ++i) {
          auto m = receive(1s);
          const auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                              sim.now() - transport::SimClock().now())
                              .count();
          if (!m) continue;
          if (const NodeUp* up = m->get<NodeUp>()) {
            h.push_back(std::string(n) + " up " + std::string(up->node.name()) + " " +
                        std::to_string(us));
          } else if (const NodeDown* down = m->get<NodeDown>()) {
            h.push_back(std::string(n) + " down " + std::string(down->node.name()) + " " +
                        std::to_string(us));
          }
        }
      });
    }
    sim.run_for(30s);
    if (std::getenv("SIM_TRACE")) {
      for (const auto& l : sim.logs()) std::printf("log %s\n", l.c_str());
    }
    return h;
  };
  const auto one = history(11);
  EXPECT_GT(one.size(), 6u);  // the meshing, and the drops' downs and ups
  if (std::getenv("SIM_PRINT")) {
    for (const auto& l : one) std::printf("%s\n", l.c_str());
  }
  EXPECT_EQ(one, history(11));
  EXPECT_NE(one, history(12));
}

// Issue 10, with nodes: a node paused past down_after (SIGSTOP) is down at its peers, their
// monitors of its processes fire; once it resumes, every node sees every other up again within
// a bounded time, and calls go through both ways.
TEST_F(SimTest, APausedNodeIsDownThenUpAgainEverywhereSoonAfterItResumes) {
  SimCluster sim(3);
  Mesh(sim);
  Pid on_b = start<Echo>(sim["b"]).value();
  Pid on_a = start<Echo>(sim["a"]).value();
  std::optional<Reason> down_reason;
  sim.spawn("a", [&] {
    Ref r = monitor(on_b);
    down_reason = await_down(r, infinity);
  });
  sim.run_for(100ms);
  sim.pause("b");
  ASSERT_TRUE(sim.run_until([&] { return down_reason.has_value(); }, 3s));
  EXPECT_EQ(*down_reason, Reason(atom("noconnection")));
  sim.run_for(5s);  // 7 s in all, as in the issue
  sim.resume("b");
  ASSERT_TRUE(sim.run_until([&] { return sim.meshed(); }, 8s));
  sim.run_for(10s);
  EXPECT_TRUE(sim.meshed());
  int replies = 0;
  sim.spawn("a", [&] { replies += call(on_b, "x").ok(); });
  sim.spawn("b", [&] { replies += call(on_a, "y").ok(); });
  ASSERT_TRUE(sim.run_until([&] { return replies == 2; }, 5s));
}

// Drops break connections (ZeroMQ reconnects them behind the sender's back) while the nodes
// call each other without pause. Whatever the interleaving, once the network behaves the
// cluster is meshed within a bounded time and calls succeed again.
TEST_F(SimTest, DroppedMessagesAndReconnectsConvergeForEverySeed) {
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    SimCluster sim(seed);
    Mesh(sim);
    std::vector<Pid> echoes;
    for (const char* n : {"a", "b", "c"}) echoes.push_back(start<Echo>(sim[n]).value());
    int ok = 0, failed = 0;
    bool stop = false;
    for (const char* n : {"a", "b", "c"}) {
      sim.spawn(n, [&] {
        for (int i = 0; !stop; ++i) {
          (call(echoes[i % 3], i, 500ms).ok() ? ok : failed)++;
          sleep_for(20ms);
        }
      });
    }
    transport::SimFaults f;
    f.drop = 0.05;
    sim.net().set_faults(f);
    sim.run_for(10s);
    sim.net().set_faults({});
    ASSERT_TRUE(sim.run_until([&] { return sim.meshed(); }, 10s)) << "seed " << seed;
    const int ok_before = ok;
    sim.run_for(2s);
    EXPECT_GT(ok, ok_before) << "seed " << seed;
    EXPECT_GT(failed, 0) << "seed " << seed;  // the drops did bite
    stop = true;
    sim.run_for(1s);
  }
}

TEST_F(SimTest, ACrashedNodeIsDownAtItsPeersAndMayStartAgain) {
  SimCluster sim(4);
  Mesh(sim);
  sim.crash("c");
  const auto crashed = sim.elapsed();
  ASSERT_TRUE(sim.run_until([&] { return sim["a"].nodes() == std::vector<Atom>{Atom("b")}; }, 3s));
  EXPECT_GE(sim.elapsed() - crashed, 2s);  // no BYE: down_after
  sim.add("c", {"b"});
  ASSERT_TRUE(sim.run_until([&] { return sim.meshed(); }, 5s));
  EXPECT_EQ(sim["a"].nodes(), (std::vector<Atom>{Atom("b"), Atom("c")}));
}

}  // namespace
}  // namespace nodus
