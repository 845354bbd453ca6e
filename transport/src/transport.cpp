#include "nodus/transport/transport.hpp"

#include <sodium.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <zmq.hpp>

namespace nodus::transport {

namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kMaxBackoff = std::chrono::milliseconds(5000);
constexpr auto kFirstBackoff = std::chrono::milliseconds(50);
constexpr auto kLogInterval = std::chrono::seconds(10);

// libzmq asks the ZAP handler bound here, in the socket's context, to admit each CURVE client
// (RFC 27/ZAP). Each transport has a context of its own, so one handler per transport.
constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr const char* kZapDomain = "nodus";
// Where the ROUTER reports handshakes that failed before ZAP (plaintext peers, bad CURVE).
constexpr const char* kMonitorEndpoint = "inproc://nodus.router.monitor";
constexpr std::size_t kCurveKeyBytes = 32;
// The Hello capability of a hidden node (docs/protocol.md section 11).
constexpr const char* kHiddenCapability = "hidden";

// The Z85 text of a binary CURVE key. REQUIRES: key.size() == kCurveKeyBytes.
std::string z85_key(const zmq::message_t& key) {
  char text[kCurveKeyChars + 1];
  zmq_z85_encode(text, key.data<std::uint8_t>(), kCurveKeyBytes);
  return std::string(text, kCurveKeyChars);
}

// The CURVE client key a message arrived under: the ZAP handler's user id ("" if none).
std::string user_id(zmq::message_t& msg) {
  const char* v = zmq_msg_gets(msg.handle(), "User-Id");
  return v ? std::string(v) : std::string();
}

std::string random_nonce() {
  std::string n(kNonceBytes, '\0');
  randombytes_buf(n.data(), n.size());
  return n;
}

// HMAC-SHA-256 over the concatenation of `parts`, keyed with the cookie (any length).
std::string hmac(const std::string& cookie, std::initializer_list<std::string_view> parts) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(cookie.data()),
                              cookie.size());
  for (std::string_view p : parts) {
    crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(p.data()), p.size());
  }
  std::string out(kMacBytes, '\0');
  crypto_auth_hmacsha256_final(&st, reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

const std::string_view kZero("\0", 1);

std::string challenge_mac(const std::string& cookie, const std::string& nonce_c,
                          const std::string& acceptor, const std::string& connector) {
  return hmac(cookie, {"nodus1/challenge", nonce_c, acceptor, kZero, connector});
}

std::string proof_mac(const std::string& cookie, const std::string& nonce_a,
                      const std::string& connector, const std::string& acceptor) {
  return hmac(cookie, {"nodus1/proof", nonce_a, connector, kZero, acceptor});
}

bool same_mac(const std::string& a, const std::string& b) {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

class Transport::Impl {
 public:
  Impl(TransportOptions options, TransportCallbacks callbacks)
      : opt_(std::move(options)),
        cb_(std::move(callbacks)),
        router_(ctx_, zmq::socket_type::router) {}

  ~Impl() { close(); }

  Status bind() {
    if (opt_.cookie.empty()) return Status(ErrorCode::kBadConfig, "the cookie is empty");
    if (sodium_init() < 0) return Status(ErrorCode::kInternal, "libsodium failed to initialise");
    if (Status s = check_curve_options(); !s.ok()) return s;
    try {
      if (opt_.curve) listen_with_curve();
      router_.set(zmq::sockopt::linger, 0);
      router_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(opt_.limits.max_frame));
      router_.set(zmq::sockopt::router_mandatory, 0);
      router_.bind(opt_.listen);
      endpoint_ = router_.get(zmq::sockopt::last_endpoint);
    } catch (const zmq::error_t& e) {
      return Status(ErrorCode::kBadConfig, "cannot listen on " + opt_.listen + ": " + e.what());
    }
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) return Status(ErrorCode::kInternal, "eventfd failed");
    io_ = std::thread([this] { run(); });
    return Status::Ok();
  }

  const std::string& endpoint() const { return endpoint_; }

  // Fault injection for tests: see Transport::block_peer.
  void block_peer(const std::string& peer, bool on) {
    std::lock_guard<std::mutex> lock(block_mu_);
    if (on) {
      blocked_.insert(peer);
    } else {
      blocked_.erase(peer);
    }
    any_blocked_.store(!blocked_.empty(), std::memory_order_release);
  }

  void connect(const std::string& endpoint, const std::string& server_public_key) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      connect_requests_.push_back(PeerAddress{endpoint, server_public_key});
    }
    wake();
  }

  Status send(const std::string& peer, Data data) {
    bool was_empty;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = up_.find(peer);
      if (it == up_.end()) return Status(ErrorCode::kNodeDown, peer);
      std::size_t& queued = queued_[peer];
      if (queued >= opt_.max_queued_frames) {
        return Status(ErrorCode::kOverloaded, "send queue to " + peer + " is full");
      }
      ++queued;
      total_queued_.fetch_add(1, std::memory_order_relaxed);
      was_empty = outbox_.empty();
      outbox_.emplace_back(peer, std::move(data));
    }
    if (was_empty) wake();
    return Status::Ok();
  }

  std::size_t queued(const std::string& peer) const {
    // Most of the time nothing is queued anywhere: no lock for that.
    if (total_queued_.load(std::memory_order_relaxed) == 0) return 0;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = queued_.find(peer);
    return it == queued_.end() ? 0 : it->second;
  }
  std::size_t max_queued() const { return opt_.max_queued_frames; }

  std::vector<PeerInfo> peers() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<PeerInfo> out;
    for (const auto& [name, info] : up_) out.push_back(info);
    return out;
  }

  std::map<std::string, PeerTraffic> traffic() const {
    std::lock_guard<std::mutex> lock(mu_);
    return traffic_;
  }

  TransportStats stats() const {
    TransportStats s;
    s.frames_in = frames_in_.load();
    s.frames_out = frames_out_.load();
    s.frames_rejected = frames_rejected_.load();
    s.auth_failures = auth_failures_.load();
    s.curve_refused = curve_refused_.load();
    return s;
  }

  void close() {
    if (stop_.exchange(true)) return;
    wake();
    if (io_.joinable()) io_.join();
    if (wake_fd_ >= 0) ::close(wake_fd_);
    wake_fd_ = -1;
  }

 private:
  // -- the I/O thread's state (touched by it alone) ------------------------------------

  /// Our DEALER to one peer: we are the connector.
  struct Outgoing {
    enum class State { kIdle, kHelloSent, kProofSent, kUp };
    std::string endpoint;
    std::string server_key;  // CURVE: the key the peer proves it holds ("" when plaintext)
    std::unique_ptr<zmq::socket_t> dealer;
    State state = State::kIdle;
    std::string nonce;
    std::string peer;  // known once the peer answered
    std::uint32_t peer_creation = 0;
    Clock::time_point last_sent{};
    Clock::time_point attempt_started{};
    Clock::time_point up_since{};
    Clock::time_point next_attempt{};
    std::chrono::milliseconds backoff = kFirstBackoff;
    std::deque<std::string> pending;  // encoded frames zmq would not take yet
  };

  /// A connection to our ROUTER: we are the acceptor.
  struct Incoming {
    enum class State { kAwaitHello, kChallenged, kAuthenticated };
    State state = State::kAwaitHello;
    Clock::time_point since = Clock::now();
    Hello hello;
    std::string nonce;
    std::string client_key;  // CURVE: the key this connection was admitted with
  };

  void log(const std::string& line) {
    if (opt_.log) {
      opt_.log(line);
    } else {
      std::fprintf(stderr, "nodus[%s]: %s\n", opt_.name.c_str(), line.c_str());
    }
  }

  // Logs a problem with one source at most once per interval.
  void log_limited(const std::string& source, const std::string& line) {
    auto now = Clock::now();
    auto& last = last_logged_[source];
    if (last != Clock::time_point{} && now - last < kLogInterval) return;
    last = now;
    log(line);
  }

  void wake() {
    std::uint64_t one = 1;
    if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof(one));
  }

  void run() {
    while (!stop_.load()) {
      std::vector<zmq::pollitem_t> items;
      items.push_back({router_.handle(), 0, ZMQ_POLLIN, 0});
      items.push_back({nullptr, wake_fd_, ZMQ_POLLIN, 0});
      if (opt_.curve) {
        items.push_back({zap_.handle(), 0, ZMQ_POLLIN, 0});
        items.push_back({monitor_.handle(), 0, ZMQ_POLLIN, 0});
      }
      const std::size_t first_dealer = items.size();
      std::vector<Outgoing*> polled;
      for (auto& o : outgoing_) {
        if (!o->dealer) continue;
        short events = ZMQ_POLLIN;
        if (!o->pending.empty()) events |= ZMQ_POLLOUT;
        items.push_back({o->dealer->handle(), 0, events, 0});
        polled.push_back(o.get());
      }
      try {
        zmq::poll(items.data(), items.size(),
                  std::chrono::milliseconds(
                      std::max<std::int64_t>(10, opt_.heartbeat_interval.count() / 3)));
      } catch (const zmq::error_t& e) {
        if (e.num() == EINTR) continue;
        log(std::string("poll failed: ") + e.what());
        break;
      }
      if (items[1].revents & ZMQ_POLLIN) {
        std::uint64_t n;
        (void)!::read(wake_fd_, &n, sizeof(n));
      }
      take_requests();
      if (opt_.curve) {
        if (items[2].revents & ZMQ_POLLIN) answer_zap();
        if (items[3].revents & ZMQ_POLLIN) read_monitor();
      }
      if (items[0].revents & ZMQ_POLLIN) read_router();
      if (!data_in_.empty()) {  // one lock per wake-up, not per frame
        std::lock_guard<std::mutex> lock(mu_);
        for (const auto& [peer, n] : data_in_) traffic_[peer].data_in += n;
        data_in_.clear();
      }
      for (std::size_t i = 0; i < polled.size(); ++i) {
        if (items[first_dealer + i].revents & ZMQ_POLLIN) read_dealer(*polled[i]);
        if (items[first_dealer + i].revents & ZMQ_POLLOUT) flush(*polled[i]);
      }
      tick();
    }
    // Leaving: tell the peers, then let the sockets go.
    for (auto& o : outgoing_) {
      if (o->state != Outgoing::State::kUp) continue;
      o->dealer->set(zmq::sockopt::linger, 200);  // give the BYE a moment to leave
      send_raw(*o, encode_frame(Frame(Bye{"leaving"})));
    }
    outgoing_.clear();
    if (opt_.curve) {
      (void)zmq_socket_monitor(router_.handle(), nullptr, 0);
      monitor_.close();
    }
    router_.close();
    zap_.close();
  }

  void take_requests() {
    std::vector<PeerAddress> connects;
    // Two buffers traded with the senders, so neither side reallocates in steady state.
    {
      std::lock_guard<std::mutex> lock(mu_);
      connects.swap(connect_requests_);
      taken_.swap(outbox_);
    }
    for (const PeerAddress& a : connects) start_outgoing(a.endpoint, a.public_key);
    if (taken_.empty()) return;
    // The whole batch leaves the queue counts at once: one lock per wake-up, not per frame.
    std::unordered_map<std::string, std::size_t> sent;
    Outgoing* o = nullptr;
    const std::string* last_peer = nullptr;
    std::string bytes;
    for (auto& [peer, data] : taken_) {
      if (!last_peer || peer != *last_peer) {
        o = up_link(peer);
        last_peer = &peer;
      }
      ++sent[peer];
      if (!o || blocked(peer))
        continue;  // went down meanwhile: dropped, as a send to a dead
                   // node is
      bytes.clear();
      encode_frame(Frame(std::move(data)), bytes);
      send_raw(*o, bytes);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [peer, n] : sent) {
        traffic_[peer].data_out += n;
        auto q = queued_.find(peer);
        if (q != queued_.end()) q->second -= std::min(q->second, n);
        total_queued_.fetch_sub(std::min<std::size_t>(total_queued_.load(), n));
      }
    }
    taken_.clear();
  }

  Outgoing* up_link(const std::string& peer) {
    for (auto& o : outgoing_) {
      if (o->state == Outgoing::State::kUp && o->peer == peer) return o.get();
    }
    return nullptr;
  }

  Outgoing* link_to_endpoint(const std::string& ep) {
    for (auto& o : outgoing_) {
      if (o->endpoint == ep) return o.get();
    }
    return nullptr;
  }

  void start_outgoing(const std::string& ep, const std::string& server_key) {
    if (ep == endpoint_ || ep == opt_.listen) return;  // ourselves
    if (opt_.curve) {
      // Link only to nodes that prove they hold a cluster key: gossip cannot steer us elsewhere.
      if (server_key.empty()) {
        log_limited(ep,
                    "not linking to " + ep +
                        ": CURVE is on and its public key is unknown (give it as endpoint#KEY)");
        return;
      }
      if (!allowed_.count(server_key)) {
        log_limited(server_key, "not linking to " + ep + ": its public key " + server_key +
                                    " is not in curve_allowed");
        return;
      }
    }
    Outgoing* o = link_to_endpoint(ep);
    if (!o) {
      outgoing_.push_back(std::make_unique<Outgoing>());
      o = outgoing_.back().get();
      o->endpoint = ep;
    }
    if (opt_.curve) o->server_key = server_key;  // a node re-keyed: the next attempt uses it
    if (o->state == Outgoing::State::kIdle) attempt(*o);
  }

  void attempt(Outgoing& o) {
    o.dealer = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
    o.dealer->set(zmq::sockopt::linger, 0);
    o.dealer->set(zmq::sockopt::sndhwm,
                  static_cast<int>(std::min<std::size_t>(opt_.max_queued_frames, 1u << 30)));
    o.dealer->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(opt_.limits.max_frame));
    try {
      if (opt_.curve) {
        o.dealer->set(zmq::sockopt::curve_serverkey, o.server_key);
        o.dealer->set(zmq::sockopt::curve_publickey, opt_.curve->public_key);
        o.dealer->set(zmq::sockopt::curve_secretkey, opt_.curve->secret_key);
      }
      o.dealer->connect(o.endpoint);
    } catch (const zmq::error_t& e) {
      log_limited(o.endpoint, "cannot connect to " + o.endpoint + ": " + e.what());
      reset(o, /*backoff=*/true);
      return;
    }
    o.nonce = random_nonce();
    Hello h;
    h.name = opt_.name;
    h.creation = opt_.creation;
    h.listen = endpoint_;
    if (opt_.hidden) h.capabilities.push_back(kHiddenCapability);
    h.nonce = o.nonce;
    o.state = Outgoing::State::kHelloSent;
    o.attempt_started = Clock::now();
    send_raw(o, encode_frame(Frame(std::move(h))));
  }

  // Drops the connection; with `backoff`, tries again later.
  void reset(Outgoing& o, bool backoff) {
    o.dealer.reset();
    o.pending.clear();
    o.state = Outgoing::State::kIdle;
    if (backoff) {
      o.next_attempt = Clock::now() + o.backoff;
      o.backoff = std::min(o.backoff * 2, kMaxBackoff);
    } else {
      o.next_attempt = Clock::now();
    }
  }

  // -- fault injection (block_peer) ---------------------------------------------------------

  bool blocked(const std::string& peer) const {
    if (!any_blocked_.load(std::memory_order_acquire) || peer.empty()) return false;
    std::lock_guard<std::mutex> lock(block_mu_);
    return blocked_.count(peer) > 0;
  }

  void send_raw(Outgoing& o, const std::string& bytes) {
    if (!o.dealer) return;
    if (blocked(o.peer)) return;  // a cut link: frames are lost, as on a broken network
    if (!o.pending.empty()) {
      o.pending.push_back(bytes);
      return;
    }
    zmq::message_t msg(bytes.data(), bytes.size());
    auto sent = o.dealer->send(msg, zmq::send_flags::dontwait);
    if (!sent) {
      o.pending.push_back(bytes);
    } else {
      frames_out_.fetch_add(1, std::memory_order_relaxed);
      o.last_sent = Clock::now();
    }
  }

  void flush(Outgoing& o) {
    while (!o.pending.empty() && o.dealer) {
      zmq::message_t msg(o.pending.front().data(), o.pending.front().size());
      if (!o.dealer->send(msg, zmq::send_flags::dontwait)) return;
      o.pending.pop_front();
      frames_out_.fetch_add(1, std::memory_order_relaxed);
      o.last_sent = Clock::now();
    }
  }

  void read_dealer(Outgoing& o) {
    for (;;) {
      zmq::message_t msg;
      if (!o.dealer || !o.dealer->recv(msg, zmq::recv_flags::dontwait)) return;
      frames_in_.fetch_add(1, std::memory_order_relaxed);
      auto frame = decode_frame(msg.to_string_view(), opt_.limits);
      if (!frame.ok()) {
        reject(o.endpoint, frame.error().to_string());
        continue;
      }
      if (blocked(o.peer)) continue;
      if (auto* c = std::get_if<Challenge>(&*frame); c && blocked(c->name)) continue;
      if (auto* c = std::get_if<Challenge>(&*frame); c && o.state == Outgoing::State::kHelloSent) {
        if (!same_mac(c->mac, challenge_mac(opt_.cookie, o.nonce, c->name, opt_.name))) {
          auth_failures_.fetch_add(1);
          send_raw(o, encode_frame(Frame(Refuse{"authentication failed"})));
          log_limited(o.endpoint, "refusing node " + c->name + " at " + o.endpoint +
                                      ": authentication failed (is its cookie the same?)");
          reset(o, /*backoff=*/true);
          return;
        }
        o.peer = c->name;
        o.peer_creation = c->creation;
        o.state = Outgoing::State::kProofSent;
        send_raw(o,
                 encode_frame(Frame(Proof{proof_mac(opt_.cookie, c->nonce, opt_.name, c->name)})));
      } else if (std::holds_alternative<Welcome>(*frame) &&
                 o.state == Outgoing::State::kProofSent) {
        link_up(o);
      } else if (auto* r = std::get_if<Refuse>(&*frame)) {
        auth_failures_.fetch_add(1);
        log_limited(o.endpoint, "node at " + o.endpoint + " refused us: " + r->reason);
        reset(o, /*backoff=*/true);
        return;
      } else {
        reject(o.endpoint, "unexpected frame from " + o.endpoint);
      }
    }
  }

  void link_up(Outgoing& o) {
    o.state = Outgoing::State::kUp;
    o.backoff = kFirstBackoff;
    // Another link to the same node (it was reached under two endpoints): keep one.
    for (auto& other : outgoing_) {
      if (other.get() != &o && other->peer == o.peer && other->state == Outgoing::State::kUp) {
        reset(o, false);
        o.state = Outgoing::State::kIdle;
        o.next_attempt = Clock::time_point::max();
        return;
      }
    }
    last_heard_[o.peer] = Clock::now();
    o.up_since = Clock::now();
    maybe_up(o.peer);
  }

  // A peer is up when both directions are authenticated with the same incarnation: only then
  // can it answer what we send it.
  void maybe_up(const std::string& peer) {
    Outgoing* o = up_link(peer);
    auto in = incoming_creation_.find(peer);
    if (!o || in == incoming_creation_.end() || in->second != o->peer_creation) return;
    if (announced_.count(peer)) return;
    announced_.insert(peer);
    PeerInfo info{peer, o->peer_creation, o->endpoint, o->server_key, hidden_.count(peer) > 0};
    bool restarted = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = up_.find(peer);
      restarted = it != up_.end() && it->second.creation != o->peer_creation;
      up_[peer] = info;
    }
    // A new incarnation answered before the old one was declared down: the old one is gone.
    if (restarted && cb_.on_peer_down) cb_.on_peer_down(peer, "restarted");
    if (cb_.on_peer_up) cb_.on_peer_up(info);
    // A hidden node is told of no one and no one is told of it; it tells no one either.
    if (!info.hidden && !opt_.hidden) gossip(*o);
  }

  // Full mesh: the new peer learns every node we know, and every node we know learns of it.
  void gossip(Outgoing& fresh) {
    Peers to_fresh;
    Peers about_fresh{{{fresh.peer, fresh.endpoint, fresh.server_key}}};
    const std::string about = encode_frame(Frame(about_fresh));
    for (auto& o : outgoing_) {
      if (o.get() == &fresh || o->state != Outgoing::State::kUp || hidden_.count(o->peer)) {
        continue;
      }
      to_fresh.nodes.push_back({o->peer, o->endpoint, o->server_key});
      send_raw(*o, about);
    }
    if (!to_fresh.nodes.empty()) send_raw(fresh, encode_frame(Frame(std::move(to_fresh))));
  }

  void learn(const Peers& peers) {
    if (opt_.hidden) return;  // a hidden node links only where it is told to
    for (const Peers::Entry& e : peers.nodes) {
      if (e.name == opt_.name || up_link(e.name)) continue;
      start_outgoing(e.endpoint, e.public_key);
    }
  }

  void read_router() {
    for (;;) {
      zmq::message_t rid, msg;
      if (!router_.recv(rid, zmq::recv_flags::dontwait)) return;
      if (!rid.more()) {
        reject("router", "a frame without a routing id");
        continue;
      }
      (void)router_.recv(msg, zmq::recv_flags::none);
      bool extra_parts = false;
      for (bool more = msg.more(); more;) {  // the protocol has one part per frame
        zmq::message_t extra;
        (void)router_.recv(extra, zmq::recv_flags::none);
        more = extra.more();
        extra_parts = true;
      }
      frames_in_.fetch_add(1, std::memory_order_relaxed);
      std::string id = rid.to_string();
      if (extra_parts) {
        reject("router", "a frame of several parts");
        continue;
      }
      auto frame = decode_frame(msg.to_string_view(), opt_.limits);
      Incoming& in = incoming_[id];
      const std::string source = in.state == Incoming::State::kAuthenticated
                                     ? in.hello.name
                                     : "connection " + std::to_string(std::hash<std::string>()(id));
      if (!frame.ok()) {
        reject(source, frame.error().to_string());
        if (in.state != Incoming::State::kAuthenticated) incoming_.erase(id);
        continue;
      }
      if (opt_.curve && in.state == Incoming::State::kAwaitHello) in.client_key = user_id(msg);
      handle_incoming(id, in, std::move(*frame));
    }
  }

  void reply(const std::string& id, const Frame& f) {
    std::string bytes = encode_frame(f);
    zmq::message_t rid(id.data(), id.size());
    zmq::message_t msg(bytes.data(), bytes.size());
    try {
      router_.send(rid, zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      router_.send(msg, zmq::send_flags::dontwait);
      frames_out_.fetch_add(1, std::memory_order_relaxed);
    } catch (const zmq::error_t&) {
      // The connection went away meanwhile.
    }
  }

  void handle_incoming(const std::string& id, Incoming& in, Frame frame) {
    if (any_blocked_.load(std::memory_order_acquire)) {
      const auto* h = std::get_if<Hello>(&frame);
      const std::string& from =
          in.state == Incoming::State::kAwaitHello ? (h ? h->name : std::string()) : in.hello.name;
      if (blocked(from)) {  // a cut link: nothing gets through, not even liveness
        if (in.state != Incoming::State::kAuthenticated) incoming_.erase(id);
        return;
      }
    }
    switch (in.state) {
      case Incoming::State::kAwaitHello: {
        auto* h = std::get_if<Hello>(&frame);
        if (!h) {
          reject("connection", "a frame before the handshake");
          incoming_.erase(id);
          return;
        }
        if (h->version != kProtocolVersion) {
          reply(id,
                Frame(Refuse{"protocol version " + std::to_string(h->version) + " not supported"}));
          log_limited(h->name, "refused node " + h->name + ": protocol version " +
                                   std::to_string(h->version));
          incoming_.erase(id);
          return;
        }
        in.hello = std::move(*h);
        in.nonce = random_nonce();
        in.state = Incoming::State::kChallenged;
        Challenge c;
        c.name = opt_.name;
        c.creation = opt_.creation;
        c.nonce = in.nonce;
        c.mac = challenge_mac(opt_.cookie, in.hello.nonce, opt_.name, in.hello.name);
        reply(id, Frame(std::move(c)));
        return;
      }
      case Incoming::State::kChallenged: {
        auto* p = std::get_if<Proof>(&frame);
        if (!p || !same_mac(p->mac, proof_mac(opt_.cookie, in.nonce, in.hello.name, opt_.name))) {
          auth_failures_.fetch_add(1);
          if (!std::holds_alternative<Refuse>(frame)) {
            reply(id, Frame(Refuse{"authentication failed"}));
          }
          log_limited(in.hello.name, "refused node " + in.hello.name +
                                         ": authentication failed (is its cookie the same?)");
          incoming_.erase(id);
          return;
        }
        // A new incarnation of a peer we still think is up (it restarted within down_after):
        // the old one is gone, and our link to it is stale, because its socket reconnected
        // silently to the new incarnation, which drops our frames as unauthenticated.
        if (Outgoing* o = up_link(in.hello.name); o && o->peer_creation != in.hello.creation) {
          peer_down(in.hello.name, "restarted");  // `in` is not authenticated yet: it stays
        }
        in.state = Incoming::State::kAuthenticated;
        reply(id, Frame(Welcome{}));
        last_heard_[in.hello.name] = Clock::now();
        incoming_creation_[in.hello.name] = in.hello.creation;
        if (std::find(in.hello.capabilities.begin(), in.hello.capabilities.end(),
                      kHiddenCapability) != in.hello.capabilities.end()) {
          hidden_.insert(in.hello.name);
        } else {
          hidden_.erase(in.hello.name);
        }
        // Open our own direction to it, unless we have one already.
        // Under CURVE its key is the one it was admitted with: one pair per node.
        if (!up_link(in.hello.name)) start_outgoing(in.hello.listen, in.client_key);
        maybe_up(in.hello.name);
        return;
      }
      case Incoming::State::kAuthenticated: {
        const std::string peer = in.hello.name;  // a copy: peer_down erases `in`
        last_heard_[peer] = Clock::now();
        if (auto* d = std::get_if<Data>(&frame)) {
          ++data_in_[peer];
          if (cb_.on_data) cb_.on_data(peer, std::move(*d));
        } else if (std::holds_alternative<Heartbeat>(frame)) {
          // liveness only
        } else if (auto* p = std::get_if<Peers>(&frame)) {
          learn(*p);
        } else if (std::holds_alternative<Bye>(frame)) {
          peer_down(peer, "bye");  // forgets this connection too
        } else {
          reject(peer, "unexpected frame kind from " + peer);
        }
        return;
      }
    }
  }

  // -- CURVE ------------------------------------------------------------------------------

  Status check_curve_options() {
    if (!opt_.curve) {
      if (opt_.curve_allowed.empty()) return Status::Ok();
      return Status(ErrorCode::kBadConfig, "curve_allowed is set but this node has no CURVE keys");
    }
    if (Status s = check_curve_keys(*opt_.curve); !s.ok()) return s;
    for (const std::string& key : opt_.curve_allowed) {
      if (!is_curve_key(key)) {
        return Status(ErrorCode::kBadConfig,
                      "curve_allowed: \"" + key + "\" is not 40 characters of Z85");
      }
      allowed_.insert(key);
    }
    allowed_.insert(opt_.curve->public_key);
    return Status::Ok();
  }

  // The ZAP handler first: a CURVE server without one admits any client key. Throws
  // zmq::error_t.
  void listen_with_curve() {
    zap_ = zmq::socket_t(ctx_, zmq::socket_type::rep);
    zap_.set(zmq::sockopt::linger, 0);
    zap_.bind(kZapEndpoint);
    if (zmq_socket_monitor(
            router_.handle(), kMonitorEndpoint,
            ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
      throw zmq::error_t();
    }
    monitor_ = zmq::socket_t(ctx_, zmq::socket_type::pair);
    monitor_.set(zmq::sockopt::linger, 0);
    monitor_.connect(kMonitorEndpoint);
    router_.set(zmq::sockopt::zap_domain, kZapDomain);
    router_.set(zmq::sockopt::curve_server, true);
    router_.set(zmq::sockopt::curve_secretkey, opt_.curve->secret_key);
  }

  // Answers libzmq's ZAP requests (RFC 27): 200 for a CURVE client whose key is allowed, with
  // the key as user id (read back per message as "User-Id"); 400 for anything else.
  void answer_zap() {
    for (;;) {
      std::vector<zmq::message_t> req;
      try {
        zmq::message_t part;
        if (!zap_.recv(part, zmq::recv_flags::dontwait)) return;
        bool more = part.more();
        req.push_back(std::move(part));
        while (more) {
          zmq::message_t next;
          (void)zap_.recv(next, zmq::recv_flags::none);
          more = next.more();
          req.push_back(std::move(next));
        }
      } catch (const zmq::error_t& e) {
        log_limited("zap", std::string("ZAP handler failed to read a request: ") + e.what());
        return;
      }
      // version, request id, domain, address, routing id, mechanism, credentials...
      const bool well_formed = req.size() >= 6 && req[0].to_string_view() == "1.0";
      const std::string mechanism = well_formed ? req[5].to_string() : std::string("?");
      const std::string address = well_formed ? req[3].to_string() : std::string("?");
      std::string key;
      if (well_formed && mechanism == "CURVE" && req.size() == 7 &&
          req[6].size() == kCurveKeyBytes) {
        key = z85_key(req[6]);
      }
      const bool admit = !key.empty() && allowed_.count(key) > 0;
      const std::string request_id = req.size() > 1 ? req[1].to_string() : std::string();
      const std::array<std::string, 6> reply = {"1.0",
                                                request_id,
                                                admit ? "200" : "400",
                                                admit ? "OK" : "not a cluster key",
                                                admit ? key : std::string(),
                                                std::string()};
      try {
        for (std::size_t i = 0; i < reply.size(); ++i) {
          zmq::message_t part(reply[i].data(), reply[i].size());
          (void)zap_.send(part,
                          i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
        }
      } catch (const zmq::error_t& e) {
        log_limited("zap", std::string("ZAP handler failed to reply: ") + e.what());
      }
      if (admit) continue;
      curve_refused_.fetch_add(1, std::memory_order_relaxed);
      std::string why = key.empty() ? "it offered mechanism " + mechanism + ", not CURVE"
                                    : "its public key " + key + " is not in curve_allowed";
      std::string line = "refused a connection from ";
      line.append(address).append(": ").append(why);
      log_limited("curve " + address, line);
    }
  }

  // Handshakes the ROUTER failed before asking ZAP: a plaintext peer, a CURVE client that
  // does not know our public key, a connection dropped mid-handshake.
  void read_monitor() {
    for (;;) {
      zmq::message_t event, where;
      if (!monitor_.recv(event, zmq::recv_flags::dontwait)) return;
      if (event.more()) (void)monitor_.recv(where, zmq::recv_flags::none);
      if (event.size() < 6) continue;
      std::uint16_t kind = 0;
      std::uint32_t value = 0;
      std::memcpy(&kind, event.data<char>(), sizeof(kind));
      std::memcpy(&value, event.data<char>() + 2, sizeof(value));
      curve_refused_.fetch_add(1, std::memory_order_relaxed);
      char code[48];
      std::snprintf(code, sizeof(code), " (event 0x%x, value 0x%x)", unsigned{kind},
                    unsigned{value});
      // Which side notices a plaintext peer first is a race: here a mechanism mismatch, or a
      // connection the peer dropped mid-handshake (no detail).
      std::string why = value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
                            ? "the peer does not use CURVE (a plaintext node?)"
                            : "the handshake failed before CURVE authentication (a plaintext "
                              "node, or one without our public key?)";
      std::string line = "refused a connection on ";
      line.append(endpoint_).append(": ").append(why).append(code);
      log_limited("curve handshake " + why, line);
    }
  }

  void reject(const std::string& source, const std::string& why) {
    frames_rejected_.fetch_add(1, std::memory_order_relaxed);
    log_limited(source, "dropped a frame from " + source + ": " + why);
  }

  void peer_down(const std::string& peer, const std::string& reason) {
    bool was_up;
    {
      std::lock_guard<std::mutex> lock(mu_);
      was_up = up_.erase(peer) > 0;
      queued_.erase(peer);
      // Hidden peers (nodusctl) come and go under fresh names: keep no traffic for them.
      if (hidden_.count(peer)) traffic_.erase(peer);
    }
    last_heard_.erase(peer);
    incoming_creation_.erase(peer);
    hidden_.erase(peer);
    announced_.erase(peer);
    for (auto it = incoming_.begin(); it != incoming_.end();) {
      if (it->second.state == Incoming::State::kAuthenticated && it->second.hello.name == peer) {
        it = incoming_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& o : outgoing_) {
      if (o->peer == peer) {
        reset(*o, /*backoff=*/true);
        o->peer.clear();
      }
    }
    if (was_up && cb_.on_peer_down) cb_.on_peer_down(peer, reason);
  }

  void tick() {
    const auto now = Clock::now();
    std::vector<std::string> silent;
    for (const auto& [peer, heard] : last_heard_) {
      if (now - heard > opt_.down_after) silent.push_back(peer);
    }
    for (const std::string& peer : silent) peer_down(peer, "timeout");
    // Handshakes that never finished.
    for (auto it = incoming_.begin(); it != incoming_.end();) {
      if (it->second.state != Incoming::State::kAuthenticated &&
          now - it->second.since > opt_.down_after) {
        it = incoming_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& o : outgoing_) {
      switch (o->state) {
        case Outgoing::State::kUp:
          if (!announced_.count(o->peer) && now - o->up_since > opt_.down_after) {
            // It accepted us but never linked back (can it reach our endpoint?).
            log_limited(o->peer, "node " + o->peer + " accepted our link but never linked back");
            reset(*o, /*backoff=*/true);
            break;
          }
          if (now - o->last_sent >= opt_.heartbeat_interval) {
            send_raw(*o, encode_frame(Frame(Heartbeat{++heartbeat_seq_})));
          }
          break;
        case Outgoing::State::kHelloSent:
        case Outgoing::State::kProofSent:
          if (now - o->attempt_started > opt_.down_after) reset(*o, /*backoff=*/true);
          break;
        case Outgoing::State::kIdle:
          if (o->next_attempt != Clock::time_point::max() && now >= o->next_attempt) attempt(*o);
          break;
      }
    }
  }

  TransportOptions opt_;
  TransportCallbacks cb_;
  zmq::context_t ctx_;
  zmq::socket_t router_;
  zmq::socket_t zap_;      // CURVE: the ZAP handler (REP), answered on the I/O thread
  zmq::socket_t monitor_;  // CURVE: the ROUTER's failed handshakes (PAIR)
  std::unordered_set<std::string> allowed_;  // CURVE: admitted public keys, Z85; set by bind()
  std::string endpoint_;
  int wake_fd_ = -1;
  std::thread io_;
  std::atomic<bool> stop_{false};

  // Guards blocked_: written by block_peer (tests), read on the I/O thread when any_blocked_.
  mutable std::mutex block_mu_;
  std::unordered_set<std::string> blocked_;
  std::atomic<bool> any_blocked_{false};

  // Guards outbox_, connect_requests_, up_, queued_ and traffic_: the hand-off between callers of
  // send/connect/peers and the I/O thread.
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, Data>> outbox_;
  std::atomic<std::size_t> total_queued_{0};
  std::vector<PeerAddress> connect_requests_;
  std::map<std::string, PeerInfo> up_;
  std::unordered_map<std::string, std::size_t> queued_;
  std::map<std::string, PeerTraffic> traffic_;

  // The I/O thread's own.
  std::vector<std::unique_ptr<Outgoing>> outgoing_;
  std::vector<std::pair<std::string, Data>> taken_;  // the batch being sent
  std::unordered_map<std::string, Incoming> incoming_;
  std::unordered_map<std::string, Clock::time_point> last_heard_;
  std::unordered_map<std::string, std::uint32_t> incoming_creation_;  // authenticated to us
  std::unordered_set<std::string> announced_;                         // reported up
  std::unordered_set<std::string> hidden_;                  // authenticated to us as hidden nodes
  std::unordered_map<std::string, std::uint64_t> data_in_;  // DATA frames since the last flush
  std::unordered_map<std::string, Clock::time_point> last_logged_;
  std::uint64_t heartbeat_seq_ = 0;

  std::atomic<std::uint64_t> frames_in_{0};
  std::atomic<std::uint64_t> frames_out_{0};
  std::atomic<std::uint64_t> frames_rejected_{0};
  std::atomic<std::uint64_t> auth_failures_{0};
  std::atomic<std::uint64_t> curve_refused_{0};
};

Result<std::unique_ptr<Transport>> Transport::start(TransportOptions options,
                                                    TransportCallbacks callbacks) {
  auto impl = std::make_unique<Impl>(std::move(options), std::move(callbacks));
  Status s = impl->bind();
  if (!s.ok()) return s;
  return std::unique_ptr<Transport>(new Transport(std::move(impl)));
}

Transport::Transport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Transport::~Transport() { close(); }
const std::string& Transport::endpoint() const { return impl_->endpoint(); }
void Transport::connect(const std::string& endpoint, const std::string& server_public_key) {
  impl_->connect(endpoint, server_public_key);
}
Status Transport::send(const std::string& peer, Data data) {
  return impl_->send(peer, std::move(data));
}
std::vector<PeerInfo> Transport::peers() const { return impl_->peers(); }
std::map<std::string, PeerTraffic> Transport::traffic() const { return impl_->traffic(); }
std::size_t Transport::queued(const std::string& peer) const { return impl_->queued(peer); }
std::size_t Transport::max_queued() const { return impl_->max_queued(); }
TransportStats Transport::stats() const { return impl_->stats(); }
void Transport::close() { impl_->close(); }
void Transport::block_peer(const std::string& peer) { impl_->block_peer(peer, true); }
void Transport::unblock_peer(const std::string& peer) { impl_->block_peer(peer, false); }

}  // namespace nodus::transport
