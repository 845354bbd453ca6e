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
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "handshake.hpp"
#include "nodus/transport/detail/mutex.hpp"
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
  /// A problem with one source is logged at most once per this interval. Sources that have
  /// not authenticated share one allowance (kUnauthenticatedSource), and the lines held back
  /// are counted and reported: nothing is kept per unauthenticated source.
  static constexpr std::chrono::seconds kLogInterval{10};
  static constexpr std::string_view kUnauthenticatedSource = "unauthenticated connections";

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
  /// A message in parts on incoming connection `in`, `bytes` long, that is not taken: `in` has
  /// not authenticated (answered with REFUSE, as a peer's frame would be), or it is over the
  /// frame limit. Dropped and counted.
  void reject_parts(const std::string& in, std::size_t bytes, TimePoint now);
  /// Liveness, heartbeats, handshake timeouts, reconnects: call every few tens of ms.
  void tick(TimePoint now);
  /// Leaving: BYE to every peer that is up, then every connection closed.
  void leave(TimePoint now);
  /// Logs a problem with a source that has not authenticated (a connection before its
  /// handshake, a CURVE client refused by ZAP): at most one line per kLogInterval for all of
  /// them together, with the count of those held back.
  void log_unauthenticated(const std::string& line, TimePoint now);

  // -- fault injection (Transport::block_peer): any thread --------------------------------
  void block(const std::string& peer, bool on) NODUS_EXCLUDES(block_mu_);
  bool blocked(const std::string& peer) const NODUS_EXCLUDES(block_mu_);

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
  /// True if incoming connection `in` completed its handshake (the driving thread).
  bool authenticated(const std::string& in) const;
  /// Outgoing links we keep (open, or waiting to be redialled), and sources we remember
  /// having logged about (the driving thread): what tests check stays bounded.
  std::size_t outgoing_count() const { return outgoing_.size(); }
  std::size_t log_sources() const { return last_logged_.size(); }
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
    /// Opened only to link back to a hidden node: forgotten when that node goes down, since
    /// hidden nodes (nodusctl) come and go under fresh names and endpoints.
    bool forget_when_down = false;
  };

  struct Incoming {
    AcceptorState hs;
    TimePoint since{};
    std::string client_key;  // CURVE: the key this connection was admitted with
  };

  /// The link to `endpoint` (made if new, and `forget_when_down` then), attempted now if
  /// idle; nullptr if it may not be linked to (ourselves, CURVE without an allowed key).
  Outgoing* start_outgoing(const std::string& endpoint, const std::string& server_key,
                           bool forget_when_down = false);
  void attempt(Outgoing& o);
  /// Drops o's connection; with `backoff`, the next attempt waits.
  void reset(Outgoing& o, bool backoff);
  void retire(Outgoing& o);
  void send_on(Outgoing& o, std::string_view bytes);
  void link_up(Outgoing& o);
  void maybe_up(const std::string& peer);
  void gossip(Outgoing& fresh);
  void learn(const Peers& peers);
  /// Whether the authenticated `hello` (of incoming connection `in`) claims a name in use here by
  /// another node: ours, or a peer's that we hear from at another endpoint under another creation
  /// (a restart comes back on its own endpoint). `holder`: where the name is in use.
  bool name_in_use(const std::string& in, const Hello& hello, std::string& holder);
  void handle_incoming(const std::string& id, Incoming& in, Frame frame);
  /// `keep`: an incoming connection of the peer's that survives (its new incarnation's).
  void peer_down(const std::string& peer, const std::string& reason, const std::string* keep);
  /// Our up link `o` turned out dead (the peer refused it): reconnect, and report the peer
  /// down if it was up.
  void outgoing_lost(Outgoing& o, const std::string& reason);
  void reject(const std::string& source, const std::string& why);
  /// As reject, for a source that has not authenticated (see log_unauthenticated).
  void reject_unauthenticated(const std::string& source, const std::string& why);
  /// At most one line per kLogInterval per `source`: an authenticated peer's name, or an
  /// endpoint we link to ourselves (never a name or address an unauthenticated source chose).
  void log_limited(const std::string& source, const std::string& line);
  /// Reports the count of unauthenticated problems held back, once their interval is over.
  void flush_unauthenticated_log();
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
  // Authenticated to us as hidden nodes, with the endpoint they listen on.
  std::unordered_map<std::string, std::string> hidden_;
  std::unordered_map<std::string, TimePoint> last_logged_;
  // The last line about any unauthenticated source (none yet: nullopt), and how many were held
  // back since.
  std::optional<TimePoint> unauthenticated_logged_;
  std::uint64_t unauthenticated_held_ = 0;
  TimePoint last_prune_{};  // when last_logged_ was last pruned

  // Guards blocked_: written by block() (tests, operators), read wherever frames pass while
  // any_blocked_. any_blocked_ is read without it (an atomic: when false, no lock is taken).
  mutable detail::Mutex block_mu_;
  std::unordered_set<std::string> blocked_ NODUS_GUARDED_BY(block_mu_);
  std::atomic<bool> any_blocked_{false};

  std::atomic<std::uint64_t> frames_in_{0};
  std::atomic<std::uint64_t> frames_rejected_{0};
  std::atomic<std::uint64_t> auth_failures_{0};
};

}  // namespace nodus::transport
