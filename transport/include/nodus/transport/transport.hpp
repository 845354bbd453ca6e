// Transport: this node's links to its peers (docs/protocol.md), as an interface the node talks
// to, and the production implementation over ZeroMQ (Transport::start).
//
// The link logic (handshake, heartbeats, failure detection, reconnects, the full mesh) is one
// piece of code without I/O (transport/src/link_table.hpp) that every implementation drives:
// the ZeroMQ transport below, and the in-memory one that connects several nodes in one OS
// process for deterministic tests (nodus/transport/sim.hpp). Why an interface: so that a test
// can run a cluster step by step from a seed, and inject faults by swapping the bottom layer,
// as leveldb's tests swap its Env (helpers/memenv) -- not for a choice of production transports.
//
// The ZeroMQ transport: one ROUTER socket receives from every peer; one DEALER socket per peer
// sends to it. Each direction of a pair authenticates with a challenge-response over the shared
// cookie (HMAC-SHA-256; the cookie never crosses the wire) before it carries data. Peers that
// fall silent are declared down; links to known peers are re-established with backoff.
//
// Optionally (TransportOptions::curve) every link is also encrypted and authenticated with
// ZeroMQ's CURVE, and a ZAP handler admits only the cluster's public keys; the cookie handshake
// still runs on top, so a peer needs both a cluster key pair and the cookie.
//
// Threading (ZeroMQ): one I/O thread runs handshakes and heartbeats and receives, and calls the
// callbacks (which must not block); an idle thread may receive instead, in receive(), and the
// callbacks then run on it. They never run on two threads at once. send() may be called from any
// thread: once a peer is up, the sending thread hands frames to the peer's socket itself, under
// that link's mutex, so a message to a peer does not wait for the I/O thread to wake up.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "nodus/transport/curve.hpp"
#include "nodus/transport/frame.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::transport {

struct TransportOptions {
  /// This node's name and incarnation (sent in the handshake).
  std::string name;
  std::uint32_t creation = 0;
  /// Where to listen, e.g. "tcp://127.0.0.1:7101"; "tcp://127.0.0.1:*" picks a free port
  /// (read it back with endpoint()). "tcp://0.0.0.0:7101" or "tcp://[::]:7101" listens on every
  /// address of the machine, and then needs `advertise`.
  std::string listen;
  /// The endpoint peers are told to reach this node at, when it is not the bound one: a node
  /// listening on every address (0.0.0.0, [::]) or behind NAT advertises the address its peers
  /// can route to, as etcd separates --listen-peer-urls from --initial-advertise-peer-urls.
  /// "tcp://HOST:PORT"; HOST may be a DNS name (peers resolve it each time they connect).
  /// Default "": the bound endpoint (endpoint()). Errors (start): kBadConfig when `listen` is
  /// a wildcard address and this is empty, or when it is not tcp://HOST:PORT.
  std::string advertise;
  /// The cluster's shared secret. REQUIRES: not empty.
  std::string cookie;
  /// How often an idle link sends a heartbeat. Shorter detects failures sooner and costs a
  /// little traffic.
  std::chrono::milliseconds heartbeat_interval{300};
  /// A peer silent for this long is declared down (Erlang's net_ticktime is a minute; nodes
  /// here should notice a dead peer within seconds).
  std::chrono::milliseconds down_after{2000};
  /// Frames queued for one peer before send() refuses more with kOverloaded: bounded memory
  /// when a peer stops reading.
  std::size_t max_queued_frames = 200000;
  FrameLimits limits;

  // -- encryption (docs/protocol.md section 8) ----------------------------------------------
  /// This node's CURVE key pair. Default: none, and links are plaintext: the cookie still
  /// authenticates peers, but anyone on the path can read frames and hijack a connection after
  /// the handshake. Set, every link is CURVE-encrypted and authenticated (some CPU per byte),
  /// only clients whose public key is in `curve_allowed` are admitted, plaintext peers are
  /// refused, and this node links only to peers whose public key it knows (see connect()).
  /// Why per-node pairs and not one cluster pair: a leaked node's key can be dropped from
  /// everyone's `curve_allowed` without re-keying the rest.
  std::optional<CurveKeys> curve;
  /// The public keys (Z85) admitted when `curve` is set: the cluster's. This node's own key is
  /// always admitted. Default empty: a single-node cluster. REQUIRES: empty unless `curve` is
  /// set. Every node must list every other node's key, since links go both ways.
  std::vector<std::string> curve_allowed;

  /// Link as a hidden node (docs/protocol.md section 11), like Erlang's hidden nodes: the
  /// peers it links to do not tell others about it (no PEERS entry) and do not count it as a
  /// cluster member (PeerInfo::hidden), and it tells no one about anyone. For admin tools
  /// (nodusctl) that must authenticate like a node without joining the cluster. Default off.
  bool hidden = false;

  /// Where log lines go (default: stderr). Called where the callbacks are.
  std::function<void(const std::string& line)> log;
};

/// A peer whose link is up.
struct PeerInfo {
  std::string name;
  std::uint32_t creation = 0;
  std::string endpoint;
  std::string public_key;  ///< its CURVE public key, "" on plaintext links
  bool hidden = false;     ///< it linked as a hidden node (TransportOptions::hidden)
};

/// DATA frames exchanged with one peer since this transport started (kept after it goes down).
struct PeerTraffic {
  std::uint64_t data_in = 0;
  std::uint64_t data_out = 0;
};

struct TransportStats {
  std::uint64_t frames_in = 0;
  std::uint64_t frames_out = 0;
  std::uint64_t frames_rejected = 0;  ///< malformed, oversized, unauthenticated
  std::uint64_t auth_failures = 0;
  /// Connections refused by CURVE before any frame: a client key not in curve_allowed, a
  /// plaintext client, a failed CURVE handshake. Zero without `curve`.
  std::uint64_t curve_refused = 0;
  /// Connections closed before they authenticated: not done within down_after of connecting,
  /// or too many waiting at once (docs/protocol.md section 1).
  std::uint64_t connections_closed = 0;
};

struct TransportCallbacks {
  /// A DATA frame from an authenticated peer.
  std::function<void(const std::string& peer, Data&& data)> on_data;
  /// A peer's link became usable (both directions authenticated).
  std::function<void(const PeerInfo& peer)> on_peer_up;
  /// A peer went away: "timeout" (silent), "bye" (it left), "closed".
  std::function<void(const std::string& peer, const std::string& reason)> on_peer_down;
};

/// A node's links to its peers. Implementations: the ZeroMQ one (start()), and the simulation's
/// (nodus/transport/sim.hpp). Thread-safety: every member may be called from any thread.
class Transport {
 public:
  /// The production transport: binds the listen endpoint over ZeroMQ and starts the I/O
  /// thread. Errors: kBadConfig naming the endpoint (bad syntax, address in use), an empty
  /// cookie, an invalid CURVE key pair or allowed key, curve_allowed without curve. Once
  /// started, no error of ZeroMQ's or the system's ends the process (out of descriptors, a link
  /// is retried with its backoff): it sets SIGPIPE to be ignored if the program left it at its
  /// default, since libzmq writes to sockets without MSG_NOSIGNAL. A connection to the listener
  /// that has not authenticated within down_after is closed, as is one beyond 256 waiting at
  /// once (docs/protocol.md section 1, "Before authentication").
  static Result<std::unique_ptr<Transport>> start(TransportOptions options,
                                                  TransportCallbacks callbacks);
  /// Closes (see close()).
  virtual ~Transport() = default;
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  /// The bound endpoint ("tcp://127.0.0.1:40123", "sim://n1").
  virtual const std::string& endpoint() const = 0;
  /// Starts linking to the node listening at `endpoint` (asynchronous; on_peer_up follows).
  /// Retried with backoff until it answers. With `curve` set, `server_public_key` is the key
  /// that node must prove it holds, and must be in curve_allowed; a connect without one (or
  /// with a key not allowed) is logged and ignored. Without `curve` the key is ignored.
  virtual void connect(const std::string& endpoint, const std::string& server_public_key) = 0;
  void connect(const std::string& endpoint) { connect(endpoint, std::string()); }
  /// Sends `data` to `peer`: handed to the link's socket on the calling thread, or queued
  /// when ZeroMQ's own queue is full. At most once, in order per peer (for sends from one
  /// thread, or ordered by the caller). Errors: kNodeDown when no link to `peer` is up,
  /// kOverloaded when its queue is full.
  Status send(const std::string& peer, Data data);
  /// As send, for `count` frames already encoded back to back (encode_frame) into `frames`, at
  /// most batch_bytes() long but for a single frame: they travel as one message.
  virtual Status send_frames(const std::string& peer, std::string_view frames,
                             std::size_t count) = 0;
  /// How many bytes of frames a sender should gather for one send_frames.
  virtual std::size_t batch_bytes() const = 0;
  /// True while `peer` can be sent to (what send would find now): from the moment it proved it
  /// holds the cookie and we sent our proof, which may be a little before it counts as up.
  virtual bool is_up(const std::string& peer) const = 0;
  /// For a thread that would otherwise sleep (an idle scheduler thread): waits at most
  /// `max_wait` for input on this node's socket or for `wake_fd` to become readable, and reads
  /// and handles what arrived, running the callbacks on this thread. Then the thread can run
  /// what the callbacks handed it at once, with no hand-off from the I/O thread. False (at
  /// once) after close(), and from a transport that is not driven by input (the simulation).
  virtual bool receive(int wake_fd, std::chrono::milliseconds max_wait) = 0;
  virtual std::vector<PeerInfo> peers() const = 0;
  /// DATA frames in and out per peer name, for every peer ever linked (hidden peers only while
  /// they are up).
  virtual std::map<std::string, PeerTraffic> traffic() const = 0;
  /// Frames queued for `peer` and not yet handed to the socket; senders use it to slow down
  /// before the queue is full (back-pressure, like Erlang's busy distribution port).
  virtual std::size_t queued(const std::string& peer) const = 0;
  virtual std::size_t max_queued() const = 0;
  virtual TransportStats stats() const = 0;
  /// Cuts traffic with `peer` (by node name) as a network partition would: nothing is sent to
  /// it or taken from it, heartbeats and handshakes included, so both sides declare the other
  /// down within down_after. unblock_peer restores it; the link comes back with the reconnect
  /// backoff. An operator's quarantine of a node, and how multi-process tests partition real
  /// node processes (in-process tests may partition the simulated network instead:
  /// SimNetwork::partition).
  virtual void block_peer(const std::string& peer) = 0;
  virtual void unblock_peer(const std::string& peer) = 0;
  /// Tells the peers that are up (BYE), stops the transport's threads and closes its
  /// connections; the callbacks are not called after it returns. Idempotent.
  virtual void close() = 0;

 protected:
  Transport() = default;
};

/// What makes a node's transport (NodeOptions::transport_factory): Transport::start, or a
/// test's own (nodus/transport/sim.hpp).
using TransportFactory =
    std::function<Result<std::unique_ptr<Transport>>(TransportOptions, TransportCallbacks)>;

}  // namespace nodus::transport
