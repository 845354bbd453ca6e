// SimNetwork: an in-memory network that connects the transports of several nodes in one OS
// process, for deterministic tests (FoundationDB's simulation, CAF's deterministic fixture).
//
// Each node's transport is a SimTransport (make them with factory(), given to
// NodeOptions::transport_factory) running the same link logic as the ZeroMQ transport
// (transport/src/link_table.hpp): the same handshake, heartbeats, down_after, backoff and
// gossip, over connections that behave like ZeroMQ's -- one per direction of a pair, ordered,
// re-established behind the sender's back when they break. Time is the network's SimClock
// (give it to NodeOptions::clock too), which moves only when the simulation advances it; every
// choice (latency, faults, the order of events due at the same time) comes from one generator
// seeded by the test. No wall clock, no threads: a run is reproducible from its seed.
//
// Faults: latency per message; a message dropped (its connection breaks, as a reset TCP
// connection does, and ZeroMQ reconnects it silently); duplicated or reordered (beyond what TCP
// does, for tests that want it); partitions between groups of nodes; a node paused (it reads,
// sends and ticks nothing, as under SIGSTOP, and finds its input waiting when resumed).
//
// Driving: step() does one thing that is due now (deliver a message, run a transport's tick);
// next_due() says when the next thing is due; advance_to() moves the clock. A node-level driver
// (tests/sim/sim_cluster.hpp) interleaves these with the nodes' own steps.
//
// Thread-safety: none. One thread drives the network and every node on it; the network must
// outlive its transports.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "nodus/transport/clock.hpp"
#include "nodus/transport/transport.hpp"

namespace nodus::transport {

/// The virtual clock of a simulation. Starts at an arbitrary fixed time; moves only by
/// advance_to().
class SimClock final : public Clock {
 public:
  SimClock();
  time_point now() const override { return now_; }
  void wake_at(time_point when) override;
  /// Runs the driver set by set_driver (one event of the simulation); false without one.
  bool advance() override;

  /// The earliest wake-up after now, if any.
  std::optional<time_point> next_wakeup() const;
  /// Moves the clock to `t`, forgetting the wake-ups up to it. REQUIRES: t >= now().
  void advance_to(time_point t);
  /// What advance() runs: whoever drives the whole simulation (nodes and network).
  void set_driver(std::function<bool()> driver) { driver_ = std::move(driver); }

 private:
  time_point now_;
  std::multiset<time_point> wakeups_;
  std::function<bool()> driver_;
};

/// What can go wrong with a message, drawn per message from the network's generator.
struct SimFaults {
  /// One-way latency, uniform in [min_latency, max_latency].
  std::chrono::microseconds min_latency{20};
  std::chrono::microseconds max_latency{200};
  /// Probability that a message is lost and its connection breaks (a reset TCP connection).
  /// ZeroMQ reconnects behind the sender's back: what it sends next arrives, after
  /// `reconnect`, on a connection the receiver never authenticated.
  double drop = 0;
  /// Probability that a message arrives twice (beyond TCP: for protocols' idempotence).
  double duplicate = 0;
  /// Probability that a message may overtake the ones before it on its connection (beyond
  /// TCP).
  double reorder = 0;
  /// How long a broken connection takes to come back (ZeroMQ's reconnect interval).
  std::chrono::milliseconds reconnect{100};
};

/// Counts of what the network did, since it was made.
struct SimStats {
  std::uint64_t sent = 0;         ///< messages handed to the network
  std::uint64_t delivered = 0;    ///< messages that reached a transport
  std::uint64_t dropped = 0;      ///< lost to SimFaults::drop (each broke its connection)
  std::uint64_t partitioned = 0;  ///< lost to a partition (each broke its connection)
  std::uint64_t unroutable = 0;   ///< to an endpoint nobody listens on, or a closed connection
  std::uint64_t duplicated = 0;
  std::uint64_t reordered = 0;
  std::uint64_t held = 0;  ///< waited for a paused node
};

class SimTransport;

class SimNetwork {
 public:
  using TimePoint = Clock::time_point;

  explicit SimNetwork(std::uint64_t seed, SimFaults faults = {});
  ~SimNetwork();
  SimNetwork(const SimNetwork&) = delete;
  SimNetwork& operator=(const SimNetwork&) = delete;

  std::uint64_t seed() const { return seed_; }
  /// The generator every random choice of the simulation comes from (tests may draw too).
  std::mt19937_64& random() { return rng_; }
  /// The virtual clock: give it to NodeOptions::clock.
  const std::shared_ptr<SimClock>& clock() const { return clock_; }
  TimePoint now() const { return clock_->now(); }

  /// Makes transports on this network (NodeOptions::transport_factory). TransportOptions::listen
  /// names the node on the network ("sim://n1"); errors: kBadConfig when it is taken or empty.
  TransportFactory factory();
  Result<std::unique_ptr<Transport>> start(TransportOptions options, TransportCallbacks callbacks);

  // -- driving -----------------------------------------------------------------------------------
  /// Does one thing that is due by now(): delivers the next message, or runs the tick of a
  /// transport whose tick is due (a paused node's messages wait; its ticks are skipped). False
  /// if nothing is due.
  bool step();
  /// When the next message or tick is due (never before now()); nullopt if none. Does not
  /// include the clock's wake-ups (SimClock::next_wakeup).
  std::optional<TimePoint> next_due() const;
  /// Moves the clock to `t` (see SimClock::advance_to).
  void advance_to(TimePoint t) { clock_->advance_to(t); }

  // -- faults ------------------------------------------------------------------------------------
  void set_faults(const SimFaults& faults) { faults_ = faults; }
  const SimFaults& faults() const { return faults_; }
  /// Cuts every pair of nodes (by name) with one in `a` and one in `b`, both ways: messages
  /// between them are lost and their connections break. Until heal().
  void partition(const std::vector<std::string>& a, const std::vector<std::string>& b);
  /// Cuts one pair, both ways.
  void cut(const std::string& a, const std::string& b);
  /// Restores every pair.
  void heal();
  bool cut_between(const std::string& a, const std::string& b) const;
  /// A paused node (by name) reads nothing and runs no tick; messages to it wait in order until
  /// resume(). Its own processes are the node-level driver's to stop.
  void pause(const std::string& node);
  void resume(const std::string& node);
  bool paused(const std::string& node) const { return paused_.count(node) > 0; }
  /// Breaks every connection from or to `node` now (a network blip).
  void break_connections(const std::string& node);
  /// `node`'s transport stops as its process would crash: it sends nothing more (no BYE) and
  /// takes nothing in; its peers find out by down_after. The transport stays the node's to
  /// destroy (its close() is then a no-op).
  void crash(const std::string& node);

  const SimStats& stats() const { return stats_; }
  /// Called with a line per event (sends, deliveries, faults) when set: a failing seed's story.
  void set_trace(std::function<void(const std::string&)> trace) { trace_ = std::move(trace); }

 private:
  friend class SimTransport;

  /// One direction-pair connection: a connector's outgoing connection to an endpoint. Its
  /// `incarnation` changes when it breaks, and with it the routing id the acceptor sees.
  struct Pipe {
    SimTransport* from = nullptr;  // null once the connector closed it
    std::string from_name;
    std::uint64_t conn = 0;  // the connector's ConnId
    std::string endpoint;
    std::uint64_t incarnation = 0;
    TimePoint down_until{};  // broken: nothing gets through before
    TimePoint last_out{};    // latest delivery time towards the acceptor (order)
    TimePoint last_back{};   // latest delivery time towards the connector
  };
  struct Event {
    TimePoint at;
    std::uint64_t seq;
    bool to_acceptor;
    std::uint64_t pipe;
    std::uint64_t incarnation;
    std::string to;  // the receiving node's name
    std::string bytes;
    bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };

  // For SimTransport.
  void attach(SimTransport* t);
  void detach(SimTransport* t);
  std::uint64_t open_pipe(SimTransport* from, std::uint64_t conn, const std::string& endpoint);
  void close_pipe(std::uint64_t pipe);
  void transmit(std::uint64_t pipe, std::string_view bytes);
  void answer(const std::string& routing_id, std::string_view bytes);
  void send_event(Pipe& p, std::uint64_t pipe_id, bool to_acceptor, const std::string& to,
                  std::string_view bytes);
  void break_pipe(Pipe& p, std::uint64_t id, const char* why);
  SimTransport* listener(const std::string& endpoint) const;
  std::string node_at(const std::string& endpoint) const;
  void deliver(Event& e);
  void trace(const std::string& line);

  const std::uint64_t seed_;
  std::mt19937_64 rng_;
  std::shared_ptr<SimClock> clock_;
  SimFaults faults_;
  SimStats stats_;
  std::function<void(const std::string&)> trace_;

  std::map<std::string, SimTransport*> listeners_;  // by endpoint
  std::map<std::uint64_t, Pipe> pipes_;
  std::uint64_t next_pipe_ = 1;
  std::uint64_t next_seq_ = 1;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  std::map<std::string, std::deque<Event>> held_;       // per paused node, in order
  std::set<std::pair<std::string, std::string>> cuts_;  // (a, b) with a < b
  std::set<std::string> paused_;
};

}  // namespace nodus::transport
