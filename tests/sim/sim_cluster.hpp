// SimCluster: several Nodes in one OS process on a simulated network, run step by step from a
// seed (FoundationDB's simulation; CAF's deterministic fixture). For tests of the layers above
// the transport: links, global names, and the store's replication and fault tests.
//
// Every node runs with manual scheduling on the network's virtual clock and transport
// (nodus/transport/sim.hpp): no scheduler or timer thread, no wall clock. run_one() does one
// thing -- a slice of one node's processes, one message or tick of the network, or time moving
// on to the next due moment -- choosing among what can happen now with the network's seeded
// generator, so a seed is one interleaving and replays exactly. Heartbeats, down_after, backoff,
// call timeouts and send_after all run on virtual time, so seconds of a cluster's life take
// milliseconds.
//
//   SimCluster sim(seed);
//   Node& a = sim.add("a");
//   Node& b = sim.add("b", {"a"});              // links to a
//   ASSERT_TRUE(sim.run_until([&] { return sim.meshed(); }, 5s));
//   sim.spawn("a", [] { ... call(...) ... });   // processes run on virtual time
//   sim.pause("b");  sim.run_for(7s);  sim.resume("b");
//
// A plain thread may call into a node too (call, start, register_global): while it waits, the
// simulation moves on (SimClock::advance runs run_one()).
//
// Thread-safety: none; one thread (the test's) drives everything.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "nodus/node/node.hpp"
#include "nodus/transport/sim.hpp"

namespace nodus::testing {

class SimCluster {
 public:
  using TimePoint = transport::Clock::time_point;

  explicit SimCluster(std::uint64_t seed, transport::SimFaults faults = {});
  /// Stops every node (in reverse order of start), then the network.
  ~SimCluster();
  SimCluster(const SimCluster&) = delete;
  SimCluster& operator=(const SimCluster&) = delete;

  /// Starts node `name` listening on "sim://NAME", linking to the nodes named in `seeds`. `name`
  /// names the member here; `tweak` may give the node another name (a copy of a node).
  /// Options: manual scheduling, the virtual clock and the simulated transport, a creation
  /// counted from 1, the cookie "sim"; `tweak` may change the rest (heartbeat, down_after,
  /// hidden, curve ...). Logs go to logs(). REQUIRES: no live node of that name.
  Node& add(const std::string& name, const std::vector<std::string>& seeds = {},
            const std::function<void(NodeOptions&)>& tweak = {});
  /// The live node `name`. REQUIRES: it exists.
  Node& node(const std::string& name);
  Node& operator[](const std::string& name) { return node(name); }
  /// Names of the live nodes, in order of start.
  std::vector<std::string> names() const;

  transport::SimNetwork& net() { return *net_; }
  std::mt19937_64& random() { return net_->random(); }
  TimePoint now() const { return net_->now(); }
  /// Virtual time since the cluster was made.
  std::chrono::milliseconds elapsed() const;

  // -- running -----------------------------------------------------------------------------
  /// One event: a slice of one node's processes, a message or tick of the network, or the
  /// clock moved to the next due moment. False if nothing can ever happen again.
  bool run_one();
  /// Runs until `done()` holds (checked after every event) or `limit` of virtual time passed;
  /// true if it held.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit);
  /// Runs `d` of virtual time.
  void run_for(std::chrono::milliseconds d);
  /// True if every live node that is not paused lists every other such node in nodes().
  bool meshed() const;

  // -- faults ------------------------------------------------------------------------------
  /// `name` stops as under SIGSTOP: its processes, timers and transport do nothing, messages
  /// to it wait; resume() lets it read them, then run.
  void pause(const std::string& name);
  void resume(const std::string& name);
  bool paused(const std::string& name) const { return net_->paused(name); }
  /// Cuts every node of `a` from every node of `b`, both ways, until heal().
  void partition(const std::vector<std::string>& a, const std::vector<std::string>& b) {
    net_->partition(a, b);
  }
  void heal() { net_->heal(); }
  /// Stops `name` as nodusd does on SIGTERM: its processes stop, it says BYE to its peers, and
  /// it is gone. add() may start it again, as a new incarnation.
  void stop(const std::string& name);
  /// Stops `name` as a crash would, seen from the others: it says nothing (no BYE) and is
  /// gone. add() may start it again, as a new incarnation.
  void crash(const std::string& name);

  // -- processes ---------------------------------------------------------------------------
  /// Spawns `body` as a process on node `name`.
  Pid spawn(const std::string& name, std::function<void()> body);

  /// What the nodes logged, each line prefixed with its node's name.
  const std::vector<std::string>& logs() const { return logs_; }

 private:
  struct Member {
    std::string name;
    std::unique_ptr<Node> node;
  };
  Member* find(const std::string& name);
  const Member* find(const std::string& name) const;

  std::unique_ptr<transport::SimNetwork> net_;
  const TimePoint start_;
  std::vector<Member> members_;  // live nodes, in order of start
  std::uint32_t next_creation_ = 1;
  std::vector<std::string> logs_;
  std::vector<std::size_t> order_;  // run_one's scratch
};

}  // namespace nodus::testing
