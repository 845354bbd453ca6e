// LinkTable: a node's links to its peers, without I/O (docs/protocol.md sections 3, 6, 7).
//
// Per peer it keeps our outgoing connection (the connector's handshake, then heartbeats), the
// connections peers opened to us (the acceptor's handshake, then their frames), when we last
// heard from it, whether it is up, and the reconnect backoff. It is driven by inputs (a
// message on an incoming connection, a frame on an outgoing one, a connect request, a tick at
// time T) and acts through a LinkIo (open or close a connection, send a frame on one, reply on
// one, publish a link to senders, report a peer up or down, log). It never reads a clock, a
// socket or a random source of its own: the ZeroMQ transport (zmq_transport.cpp) and the
// in-memory simulation (nodus/transport/sim.hpp) drive the same code, so a simulation's link
// behaviour is the production one, step by step and reproducible.
//
// Thread-safety: one thread at a time drives it (the ZeroMQ transport's I/O lock); stats() and
// blocked() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "handshake.hpp"
#include "nodus/transport/frame.hpp"
#include "nodus/transport/transport.hpp"

namespace nodus::transport {

using TimePoint = std::chrono::steady_clock::time_point;
/// One outgoing connection (a DEALER, or a simulated pipe): a fresh id for every attempt.
using ConnId = std::uint64_t;

/// What the link logic does to the world. Called on the thread that drives the LinkTable.
class LinkIo {
 public:
  virtual ~LinkIo() = default;
  /// Opens outgoing connection `id` to `endpoint`; with CURVE, to a server that must prove it
  /// holds `server_key`. False if it cannot be opened at all (`why` says why).
  virtual bool open(ConnId id, const std::string& endpoint, const std::string& server_key,
                    std::string& why) = 0;
  /// Closes connection `id` and stops senders from using it; frames not yet sent are lost.
  /// The far side is not told (a ZeroMQ ROUTER never hears of a DEALER that went away).
  virtual void close(ConnId id) = 0;
  /// Sends one encoded frame on outgoing connection `id`.
  virtual void send(ConnId id, std::string_view frame) = 0;
  /// Answers one encoded frame on incoming connection `in`.
  virtual void reply(const std::string& in, std::string_view frame) = 0;
  /// Senders may send DATA to `peer` on `id` from now on: the peer proved it holds the cookie,
  /// and what we send follows the PROOF that authenticates us. Ignored if a link to `peer` is
  /// published already (the one that is up stays the one senders use).
  virtual void publish(const std::string& peer, ConnId id) = 0;
  /// `peer` is up on `id` (both directions authenticated): route to it, report it.
  virtual void peer_up(const PeerInfo& info, ConnId id) = 0;
  /// `peer` is no longer reachable (`was_up`: it had been reported up). `hidden`: it had
  /// linked to us as a hidden node.
  virtual void peer_down(const std::string& peer, const std::string& reason, bool was_up,
                         bool hidden) = 0;
  /// A DATA frame from `peer` (authenticated).
  virtual void deliver(const std::string& peer, Data&& data) = 0;
  /// `count` DATA frames came from `peer` in one message (for traffic counters).
  virtual void count_data_in(const std::string& peer, std::uint64_t count) = 0;
  /// How long nothing was sent on `id` (heartbeats go only on idle links).
  virtual std::chrono::steady_clock::duration idle_for(ConnId id, TimePoint now) = 0;
  /// kNonceBytes of fresh randomness.
  virtual std::string nonce() = 0;
  virtual void log(const std::string& line) = 0;
};

/// The link table's settings: the transport's options as the link logic needs them.
struct LinkConfig {
  HandshakeIdentity me;  ///< me.listen: the bound endpoint
  std::string listen;    ///< the endpoint as configured ("tcp://127.0.0.1:*"): also us
  std::chrono::milliseconds heartbeat_interval{300};
  std::chrono::milliseconds down_after{2000};
  FrameLimits limits;
  bool curve = false;  ///< links only to nodes whose key is in `allowed`
  std::unordered_set<std::string> allowed;
};

/// The link table's settings from a transport's options, for a node listening on `bound`.
/// Errors: kBadConfig for an empty cookie, curve_allowed without curve, an invalid CURVE key
/// pair or allowed key.
Result<LinkConfig> make_link_config(const TransportOptions& options, const std::string& bound);

class LinkTable {
 public:
  /// The first and the largest pause between attempts to reach a node.
  static constexpr std::chrono::milliseconds kFirstBackoff{50};
  static constexpr std::chrono::milliseconds kMaxBackoff{5000};
  /// A problem with one source is logged at most once per this interval.
  static constexpr std::chrono::seconds kLogInterval{10};

  LinkTable(LinkConfig config, LinkIo& io);
  LinkTable(const LinkTable&) = delete;
  LinkTable& operator=(const LinkTable&) = delete;

  // -- inputs ----------------------------------------------------------------------------

  /// Starts linking to the node at `endpoint` (see Transport::connect).
  void connect(const std::string& endpoint, const std::string& server_key, TimePoint now);
  /// One message (one or more frames back to back) on incoming connection `in`.
  /// `client_key`: the CURVE key the connection was admitted with ("" without CURVE).
  void on_incoming(const std::string& in, std::string_view message, std::string_view client_key,
                   TimePoint now);
  /// One message on outgoing connection `id` (handshake frames travel alone).
  void on_outgoing(ConnId id, std::string_view message, TimePoint now);
  /// A message on an incoming connection that carried no frame we could look at (the shell's
  /// own framing failed: ZeroMQ parts missing or extra): dropped and counted.
  void reject_unframed(const std::string& source, const std::string& why, TimePoint now);
  /// Liveness, heartbeats, handshake timeouts, reconnects: call every few tens of ms.
  void tick(TimePoint now);
  /// Leaving: BYE to every peer that is up, then every connection closed.
  void leave(TimePoint now);

  // -- fault injection (Transport::block_peer): any thread --------------------------------
  void block(const std::string& peer, bool on);
  bool blocked(const std::string& peer) const;

  // -- reading -----------------------------------------------------------------------------
  /// Counters: any thread.
  std::uint64_t frames_in() const { return frames_in_.load(std::memory_order_relaxed); }
  std::uint64_t frames_rejected() const { return frames_rejected_.load(std::memory_order_relaxed); }
  std::uint64_t auth_failures() const { return auth_failures_.load(std::memory_order_relaxed); }
  /// Outgoing connections that are open, with whether they are up (the driving thread).
  std::vector<std::pair<ConnId, bool>> connections() const;
  /// The peers reported up (the driving thread).
  std::vector<std::string> up_peers() const;
  /// Incoming connections we hold state for (the driving thread).
  std::size_t incoming_count() const { return incoming_.size(); }
  const LinkConfig& config() const { return cfg_; }

 private:
  struct Outgoing {
    enum class State : std::uint8_t { kIdle, kHandshake, kUp };
    std::string endpoint;
    std::string server_key;  // CURVE: the key the peer proves it holds ("" when plaintext)
    ConnId conn = 0;         // 0 while idle
    State state = State::kIdle;
    ConnectorState hs;  // hs.peer: known once the peer answered
    TimePoint attempt_started{};
    TimePoint up_since{};
    TimePoint next_attempt{};
    std::chrono::milliseconds backoff = kFirstBackoff;
  };

  struct Incoming {
    AcceptorState hs;
    TimePoint since{};
    std::string client_key;  // CURVE: the key this connection was admitted with
  };

  void start_outgoing(const std::string& endpoint, const std::string& server_key);
  void attempt(Outgoing& o);
  /// Drops o's connection; with `backoff`, the next attempt waits.
  void reset(Outgoing& o, bool backoff);
  void retire(Outgoing& o);
  void send_on(Outgoing& o, std::string_view bytes);
  void link_up(Outgoing& o);
  void maybe_up(const std::string& peer);
  void gossip(Outgoing& fresh);
  void learn(const Peers& peers);
  void handle_incoming(const std::string& id, Incoming& in, Frame frame);
  /// `keep`: an incoming connection of the peer's that survives (its new incarnation's).
  void peer_down(const std::string& peer, const std::string& reason, const std::string* keep);
  /// Our up link `o` turned out dead (the peer refused it): reconnect, and report the peer
  /// down if it was up.
  void outgoing_lost(Outgoing& o, const std::string& reason);
  void reject(const std::string& source, const std::string& why);
  void log_limited(const std::string& source, const std::string& line);
  Outgoing* up_link(const std::string& peer);
  Outgoing* by_endpoint(const std::string& endpoint);
  Outgoing* by_conn(ConnId id);

  const LinkConfig cfg_;
  LinkIo& io_;
  TimePoint now_{};  // the time of the input being handled
  ConnId next_conn_ = 1;
  std::uint64_t heartbeat_seq_ = 0;

  std::vector<std::unique_ptr<Outgoing>> outgoing_;
  std::unordered_map<std::string, Incoming> incoming_;
  std::unordered_map<std::string, TimePoint> last_heard_;
  std::unordered_map<std::string, std::uint32_t> incoming_creation_;  // authenticated to us
  std::unordered_set<std::string> announced_;                         // reported up
  std::unordered_set<std::string> hidden_;  // authenticated to us as hidden nodes
  std::unordered_map<std::string, TimePoint> last_logged_;

  // Guards blocked_: written by block() (tests, operators), read wherever frames pass while
  // any_blocked_.
  mutable std::mutex block_mu_;
  std::unordered_set<std::string> blocked_;
  std::atomic<bool> any_blocked_{false};

  std::atomic<std::uint64_t> frames_in_{0};
  std::atomic<std::uint64_t> frames_rejected_{0};
  std::atomic<std::uint64_t> auth_failures_{0};
};

}  // namespace nodus::transport
