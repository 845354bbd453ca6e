// Node: one nodus runtime. It owns the scheduler threads that run processes, the process
// table, the timers, and (with the nodes issue) the transport to other nodes.
//
// Several Nodes may live in one OS process (tests do this); each has its own name and
// incarnation. Destroying a Node shuts it down (see shutdown()).
//
// Thread-safety: all member functions may be called from any thread, except that the
// destructor and shutdown() must not be called from one of this node's own processes.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nodus/node/process.hpp"
#include "nodus/node/term.hpp"
#include "nodus/node/timeout.hpp"
#include "nodus/transport/clock.hpp"
#include "nodus/transport/curve.hpp"
#include "nodus/transport/transport.hpp"

namespace nodus {

namespace detail {
class Runtime;
struct NodeAccess;  // the runtime's way to a Node's inside (runtime.hpp)
/// A new service slot, once per service type (Node::service<T>). At most 16 in an OS process.
std::size_t new_service_slot();
template <class T>
std::size_t service_slot_of() {
  static const std::size_t slot = new_service_slot();
  return slot;
}
}  // namespace detail

struct NodeOptions {
  /// The node's name, unique in a cluster (config key node.name). Default "nonode".
  std::string name = "nonode";
  /// Scheduler threads (0 = one per core). More threads use more cores; on a small machine
  /// fewer threads mean fewer cross-thread wake-ups, which cost ~20 us each.
  unsigned schedulers = 0;
  /// Stack size of a process's fiber while it is inside a handler. Stacks are pooled and only
  /// held by processes that are running or waiting in call/receive; idle processes hold none.
  std::size_t fiber_stack_size = 256 * 1024;
  /// The node's incarnation; 0 = derived from the clock at start, so a restarted node gets a
  /// new one and old pids stop matching.
  std::uint32_t creation = 0;
  /// No scheduler threads: processes run only when the owner calls step() or
  /// run_until_idle(), one at a time on the caller's thread, in a deterministic order. A plain
  /// thread that waits (call, receive, start) runs the processes itself meanwhile. For tests
  /// that step message by message; timers fire on their own thread (inside step() with `clock`).
  bool manual_scheduling = false;

  // -- networking (node.listen, cluster.seed, cluster.cookie_file) --------------------------
  /// Where peers connect, e.g. "tcp://127.0.0.1:7101" ("tcp://127.0.0.1:*" picks a free port).
  /// Empty: a node without networking (every other node is unreachable).
  std::string listen{};
  /// The endpoint peers are told to reach this node at (node.advertise), when `listen` binds
  /// every address ("tcp://0.0.0.0:7101") or is not reachable as bound; a host name is
  /// allowed. Default "": the bound endpoint. See transport::TransportOptions::advertise.
  std::string advertise{};
  /// The cluster's shared secret (the contents of the cookie file). Nodes with different
  /// cookies refuse each other. REQUIRES: not empty when `listen` is set.
  std::string cookie{};
  /// Nodes to link to at start (any that answers will do), as "tcp://host:port", or with
  /// CURVE on as "tcp://host:port#PUBLICKEY" (the seed's Z85 public key).
  std::vector<std::string> seeds{};
  /// Heartbeat period and the silence after which a peer is declared down.
  std::chrono::milliseconds heartbeat_interval{300};
  std::chrono::milliseconds down_after{2000};
  /// This node's CURVE key pair, Z85 (node.curve_public_key, node.curve_secret_key; make one
  /// with transport::generate_curve_keys). Default none: plaintext links, authenticated by
  /// the cookie alone. Set, links are encrypted and only nodes whose public key is in
  /// `curve_allowed` get in; seeds then need their key (see `seeds`). The cookie handshake
  /// still runs on top. See transport::TransportOptions::curve for the trade-off.
  std::optional<transport::CurveKeys> curve{};
  /// The cluster's public keys, Z85 (cluster.curve_allowed). REQUIRES: empty unless `curve`.
  std::vector<std::string> curve_allowed{};
  /// Link as a hidden node (Erlang's -hidden): the nodes this one links to do not list it in
  /// nodes() or tell other nodes of it, and it links only where connect() or `seeds` say. For
  /// admin tools such as nodusctl. Default off.
  bool hidden = false;
  /// Where the transport's log lines go (refused peers, failed handshakes ...). Default:
  /// stderr. Called on the transport's thread; must not block.
  std::function<void(const std::string& line)> log{};

  // -- deterministic simulation, for tests (nodus/transport/sim.hpp) -------------------------
  /// Makes this node's transport in place of ZeroMQ's (Transport::start), given the options
  /// above as TransportOptions: the simulation's in-memory network, where `listen` names the
  /// node ("sim://n1"). Default: ZeroMQ.
  transport::TransportFactory transport_factory{};
  /// The time source of every timer, timeout and deadline of this node. Default (null): the
  /// system's steady clock. A simulation's virtual clock makes timers fire inside step() and
  /// never on a thread of their own. REQUIRES: manual_scheduling when set.
  std::shared_ptr<transport::Clock> clock{};
};

/// One peer node as the transport sees it.
struct PeerStats {
  Atom name;
  std::string endpoint;
  bool up = false;                ///< linked now
  bool hidden = false;            ///< a hidden node (see NodeOptions::hidden); not in nodes()
  std::uint64_t messages_in = 0;  ///< DATA frames received from it since this node started
  std::uint64_t messages_out = 0;
};

/// Latency of calls to processes on other nodes, as a histogram (local calls are not timed:
/// they are too cheap to time without slowing them).
struct CallLatency {
  /// Upper bounds of the buckets, in microseconds; the last bucket is everything above.
  static constexpr std::uint64_t kBoundsUs[] = {50,   100,   250,   500,    1000,   2500,
                                                5000, 10000, 50000, 250000, 1000000};
  static constexpr std::size_t kBuckets = sizeof(kBoundsUs) / sizeof(kBoundsUs[0]) + 1;
  std::uint64_t counts[kBuckets] = {};  ///< calls per bucket (not cumulative)
  std::uint64_t count = 0;
  std::uint64_t sum_us = 0;
};

/// Counters of the node's links to other nodes (zero without networking).
struct NetworkStats {
  std::uint64_t frames_in = 0;
  std::uint64_t frames_out = 0;
  std::uint64_t frames_rejected = 0;    ///< malformed, oversized or unauthenticated frames
  std::uint64_t auth_failures = 0;      ///< handshakes refused either way
  std::uint64_t curve_refused = 0;      ///< connections refused by CURVE (key not allowed ...)
  std::uint64_t messages_rejected = 0;  ///< well-formed frames with an undecodable message
  std::uint64_t node_up_events = 0;     ///< peers that came up (hidden ones excluded)
  std::uint64_t node_down_events = 0;   ///< peers that went down (hidden ones excluded)
  std::uint64_t hidden_up_events = 0;   ///< hidden peers (nodusctl, clients) that came up
  /// Hidden peers that went down; the node keeps nothing of them after (no redial, no stats).
  std::uint64_t hidden_down_events = 0;
  /// Connections closed before they authenticated: not done within down_after of connecting,
  /// or too many waiting at once (docs/protocol.md section 1).
  std::uint64_t connections_closed = 0;
};

/// What introspection shows about one process.
struct ProcessInfo {
  Pid pid;
  std::string registered_name;  ///< empty if none
  std::string behaviour;        ///< "gen_server", "supervisor", "process", "inbox"
  std::string type;             ///< the server's C++ type or the process's label
  std::size_t mailbox_length = 0;
  std::uint64_t messages_handled = 0;
  std::size_t memory_bytes = 0;  ///< an estimate: the process, its state object and mailbox
  bool waiting = false;          ///< parked in call/receive
  bool trap_exit = false;
  std::size_t links = 0;
  std::size_t monitors = 0;
  std::uint64_t dropped = 0;   ///< messages dropped or rejected by a bounded mailbox
  std::optional<Term> status;  ///< format_status output (process_info only)
};

class Node {
 public:
  /// Starts a node: its scheduler threads, its timers, and with `options.listen` set its
  /// networking (listening, then linking to the seeds in the background). The way to start a
  /// node: it returns why it could not (kBadConfig naming the endpoint that cannot be bound, an
  /// empty cookie, a bad CURVE key ...).
  static Result<std::unique_ptr<Node>> start(NodeOptions options);
  /// A node without networking, which cannot fail to start: for tests, benchmarks and
  /// single-node programs that keep it on the stack. REQUIRES: options.listen is empty (a
  /// networked node starts with start(), which says why it could not; here that aborts).
  explicit Node(NodeOptions options = {});
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  Atom name() const;
  std::uint32_t creation() const;
  unsigned schedulers() const;

  /// Where this node listens ("" without networking).
  std::string endpoint() const;
  /// Starts linking to the node listening at `endpoint` and returns at once (see nodes(), and
  /// the overload below that waits); with CURVE on, `endpoint` is "tcp://host:port#PUBLICKEY".
  /// The transport keeps trying, with backoff, until the node answers.
  void connect(const std::string& endpoint);
  /// Links to the node listening at `endpoint` and waits until the link is up in both
  /// directions (Erlang's net_kernel:connect_node), at most `timeout`: ok at once if it is up
  /// already, or when `endpoint` is this node's own. `endpoint` is the peer's listen endpoint
  /// as the peer reports it (its endpoint()), "#PUBLICKEY" appended with CURVE on. Called from
  /// a process, only that process waits. Errors: kTimeout (the link may still come up later:
  /// the transport keeps trying, as connect(endpoint) does); kAuth when, before the link came
  /// up, a handshake of this node failed authentication (NetworkStats::auth_failures grew: a
  /// different cookie or CURVE key, here or at the peer; on a busy node it may be another
  /// peer's); kBadConfig when this node has no networking.
  Status connect(const std::string& endpoint, Timeout timeout);
  /// The nodes this one is linked to (hidden ones excepted).
  std::vector<Atom> nodes() const;
  /// True while `node` is linked to this one as a hidden node (NodeOptions::hidden): no
  /// cluster member, so the cluster's protocols (global names, pg) ignore what it sends.
  bool is_hidden(Atom node) const;
  NetworkStats network_stats() const;
  /// Every peer linked since start, hidden ones included, sorted by name.
  std::vector<PeerStats> peers() const;
  /// Latency of this node's calls to other nodes since start.
  CallLatency call_latency() const;

  /// Local names (see register_name in process.hpp): register, look up, list.
  NameStatus register_name(std::string_view name, const Pid& pid);
  bool unregister_name(std::string_view name);
  /// The process holding `name` here, or an invalid Pid.
  Pid whereis(std::string_view name) const;
  /// Every name registered on this node, sorted.
  std::vector<std::string> registered() const;

  // -- services of other layers ---------------------------------------------------------
  /// The service of type T attached to this node (set_service), or nullptr. A lock-free read
  /// (one atomic load): what makes whereis_global a local read with no lock on the node. A
  /// layer keeps its per-node state so (registry/ its global name table and its pg scopes),
  /// each under a type of its own. Thread-safe.
  template <class T>
  T* service() const {
    return static_cast<T*>(service_slot(detail::service_slot_of<T>()));
  }
  /// Attaches `service` as this node's T unless one is attached already; returns the one
  /// attached (a caller that raced with another gets the other's). The node keeps it alive
  /// until it is destroyed, after its processes have stopped. At most 16 service types in an
  /// OS process. Thread-safe.
  template <class T>
  T* set_service(std::shared_ptr<T> service) {
    return static_cast<T*>(set_service_slot(detail::service_slot_of<T>(), std::move(service)));
  }

  // -- fault injection, for tests -------------------------------------------------------
  /// Cuts traffic with `node`: nothing is sent to it or taken from it (handshakes included), so
  /// both sides declare the other down within down_after, as in a network partition.
  void block_peer(std::string_view node);
  /// Restores traffic with `node`; the link comes back with the transport's reconnect backoff.
  void unblock_peer(std::string_view node);

  /// A new reference, unique on this node incarnation.
  Ref make_ref();

  /// Manual scheduling: runs the next runnable process for one slice; false if none was
  /// runnable. REQUIRES: NodeOptions::manual_scheduling, and one stepping thread at a time.
  bool step();
  /// Manual scheduling: steps until nothing is runnable (or `max_steps`); the steps taken.
  std::size_t run_until_idle(std::size_t max_steps = 1000000);

  /// True while `pid` is a process of this node that has not exited, Erlang's
  /// is_process_alive: false from the moment its exit begins (its mailbox closes, its name is
  /// gone, before its links and monitors hear of it), and for a pid of an earlier incarnation
  /// of this node. A lock-free read. REQUIRES: pid.node == name() (a pid of another node can
  /// only be asked of that node; nodus answers false).
  bool is_process_alive(const Pid& pid) const;
  /// Live processes (Inboxes included).
  std::size_t process_count() const;
  /// A snapshot of every live process, without format_status (cheap: reads counters).
  std::vector<ProcessInfo> processes() const;
  /// One process, including its format_status output (asks the process; waits at most
  /// `timeout` for it). Errors: noproc, timeout.
  Result<ProcessInfo, Reason> process_info(const Pid& pid, Timeout timeout = kDefaultCallTimeout);

  /// Stops every process: top-level processes first get a shutdown exit (supervisors stop
  /// their children in reverse start order, GenServers run terminate), then whatever remains
  /// after `grace` is killed. Then the scheduler threads stop. Idempotent.
  void shutdown(Timeout grace = std::chrono::seconds(5));

 private:
  friend struct detail::NodeAccess;
  struct NoStart {};
  Node(NodeOptions options, NoStart);
  void* service_slot(std::size_t slot) const;
  void* set_service_slot(std::size_t slot, std::shared_ptr<void> owner);

  std::unique_ptr<detail::Runtime> rt_;
};

}  // namespace nodus
