#include "nodus/transport/transport.hpp"

#include <poll.h>
#include <sodium.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
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
// Senders gather frames for one peer into messages of about this size: big enough that a burst
// of small messages costs a handful of ZeroMQ messages, small enough not to hold the first
// frame back long.
constexpr std::size_t kBatchBytes = 64 * 1024;
constexpr int kMaxZmqQueued = 1024;
// Frames read_router() handles before it lets the rest of the loop run (about a millisecond).
constexpr std::uint64_t kReadBudget = 2048;
// How often the I/O thread looks at the ROUTER while a thread waits in receive() for it.
constexpr auto kReceiverCheck = std::chrono::milliseconds(5);

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
      router_fd_ = router_.get(zmq::sockopt::fd);
    } catch (const zmq::error_t& e) {
      return Status(ErrorCode::kBadConfig, "cannot listen on " + opt_.listen + ": " + e.what());
    }
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    closing_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0 || closing_fd_ < 0) return Status(ErrorCode::kInternal, "eventfd failed");
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
    thread_local std::string bytes;
    bytes.clear();
    encode_frame(Frame(std::move(data)), bytes);
    return send_frames(peer, bytes, 1);
  }

  Status send_frames(const std::string& peer, std::string_view frames, std::size_t count) {
    std::shared_ptr<Link> link = published(peer);
    if (!link) return Status(ErrorCode::kNodeDown, peer);
    if (blocked(peer)) return Status::Ok();  // a cut link: lost, as on a broken network
    Status s = send_on(*link, frames, count, peer);
    if (s.ok()) link->data_out.fetch_add(count, std::memory_order_relaxed);
    return s;
  }

  bool is_up(const std::string& peer) const { return published(peer) != nullptr; }

  std::size_t queued(const std::string& peer) const {
    // Most of the time nothing is queued anywhere: no lock for that.
    if (total_pending_.load(std::memory_order_relaxed) == 0) return 0;
    std::shared_ptr<Link> link = published(peer);
    if (!link) return 0;
    std::lock_guard<std::mutex> lock(link->mu);
    return link->pending_frames;
  }
  std::size_t max_queued() const { return opt_.max_queued_frames; }
  std::size_t batch_bytes() const { return std::min(kBatchBytes, opt_.limits.max_frame); }

  std::vector<PeerInfo> peers() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<PeerInfo> out;
    for (const auto& [name, info] : up_) out.push_back(info);
    return out;
  }

  std::map<std::string, PeerTraffic> traffic() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::string, PeerTraffic> out = traffic_;
    for (const auto& [peer, link] : links_) {
      out[peer].data_out += link->data_out.load(std::memory_order_relaxed);
    }
    return out;
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

  bool receive(int wake_fd, std::chrono::milliseconds max_wait) {
    {
      std::lock_guard<std::mutex> lock(receivers_mu_);
      if (closing_) return false;
      ++receivers_;
    }
    bool readable = router_backlog_.load();  // then the descriptor may never signal it
    if (!readable) {
      receivers_waiting_.fetch_add(1);
      pollfd fds[3] = {{router_fd_, POLLIN, 0}, {wake_fd, POLLIN, 0}, {closing_fd_, POLLIN, 0}};
      const int ready = ::poll(fds, 3, static_cast<int>(max_wait.count()));
      receivers_waiting_.fetch_sub(1);
      readable = ready > 0 && (fds[0].revents & POLLIN);
    }
    // The I/O thread goes first when it waits for the lock: threads taking turns here must not
    // starve it of its heartbeats and liveness checks (as they did under a flood).
    if (readable && !io_waiting_.load()) {
      std::unique_lock<std::mutex> io(io_mu_, std::try_to_lock);
      if (io.owns_lock()) {  // else the I/O thread is at it, and the descriptor stays ready
        read_router();
        if (io_wake_needed_) {
          io_wake_needed_ = false;
          wake();
        }
      }
    }
    {
      std::lock_guard<std::mutex> lock(receivers_mu_);
      --receivers_;
    }
    receivers_cv_.notify_all();
    return true;
  }

  void close() {
    {
      // Threads in receive() leave within their max_wait; none enters after this.
      std::unique_lock<std::mutex> lock(receivers_mu_);
      closing_ = true;
      std::uint64_t one = 1;
      if (closing_fd_ >= 0) (void)!::write(closing_fd_, &one, sizeof(one));  // never read
      receivers_cv_.wait(lock, [&] { return receivers_ == 0; });
    }
    if (stop_.exchange(true)) return;
    wake();
    if (io_.joinable()) io_.join();
    if (wake_fd_ >= 0) ::close(wake_fd_);
    wake_fd_ = -1;
    if (closing_fd_ >= 0) ::close(closing_fd_);
    closing_fd_ = -1;
  }

 private:
  // -- the I/O thread's state (touched by it alone) ------------------------------------

  /// The sending side of one DEALER, shared with the threads that send to its peer. Once the
  /// peer is up the link is published (links_) and senders use the socket directly, on their
  /// own thread: no hand-off to the I/O thread on the way out. Every use of the socket, by
  /// anyone, is under `mu` (a ZeroMQ socket may change threads behind a full memory barrier),
  /// and the I/O thread polls a published socket only while `pending` is not empty, when
  /// senders only append to `pending`: so the socket is never used by two threads at once.
  struct Link {
    std::mutex mu;
    zmq::socket_t* dealer = nullptr;  // null once the link is gone
    /// Messages ZeroMQ would not take yet (its queue is full), each with its frame count.
    std::deque<std::pair<std::string, std::size_t>> pending;
    std::size_t pending_frames = 0;
    Clock::time_point last_sent{};
    std::atomic<std::uint64_t> data_out{0};  // DATA frames sent (traffic())
  };

  /// Our DEALER to one peer: we are the connector.
  struct Outgoing {
    enum class State { kIdle, kHelloSent, kProofSent, kUp };
    std::string endpoint;
    std::string server_key;  // CURVE: the key the peer proves it holds ("" when plaintext)
    std::unique_ptr<zmq::socket_t> dealer;
    std::shared_ptr<Link> link;  // set with dealer
    State state = State::kIdle;
    std::string nonce;
    std::string peer;  // known once the peer answered
    std::uint32_t peer_creation = 0;
    Clock::time_point attempt_started{};
    Clock::time_point up_since{};
    Clock::time_point next_attempt{};
    std::chrono::milliseconds backoff = kFirstBackoff;
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
    std::unique_lock<std::mutex> io(io_mu_);
    while (!stop_.load()) {
      graveyard_.clear();  // nobody polls these any more
      std::vector<zmq::pollitem_t> items;
      // The ROUTER by its file descriptor, not as a socket: polling a socket runs ZeroMQ code
      // on it, and a thread in receive() may be using it (under io_mu_) meanwhile.
      // While an idle thread waits in receive(), it reads the ROUTER and this thread leaves
      // it alone (both would wake for every message); it looks again every few milliseconds
      // in case that thread went to work and none took its place.
      const bool backlog = router_backlog_.load();
      const bool receiver_waiting = !backlog && receivers_waiting_.load() > 0;
      items.push_back({nullptr, router_fd_, receiver_waiting ? short{0} : short{ZMQ_POLLIN}, 0});
      items.push_back({nullptr, wake_fd_, ZMQ_POLLIN, 0});
      if (opt_.curve) {
        items.push_back({zap_.handle(), 0, ZMQ_POLLIN, 0});
        items.push_back({monitor_.handle(), 0, ZMQ_POLLIN, 0});
      }
      const std::size_t first_dealer = items.size();
      std::vector<Outgoing*> polled;
      for (auto& o : outgoing_) {
        if (!o->dealer) continue;
        // Only handshake frames come back on a DEALER; a link that is up is polled only to
        // drain what ZeroMQ would not take (see Link).
        short events = o->state == Outgoing::State::kUp ? 0 : ZMQ_POLLIN;
        {
          std::lock_guard<std::mutex> lock(o->link->mu);
          if (!o->link->pending.empty()) events |= ZMQ_POLLOUT;
        }
        if (events == 0) continue;
        items.push_back({o->dealer->handle(), 0, events, 0});
        polled.push_back(o.get());
      }
      io.unlock();
      auto relock = [&] {
        io_waiting_.store(true);
        io.lock();
        io_waiting_.store(false);
      };
      try {
        zmq::poll(items.data(), items.size(),
                  backlog            ? std::chrono::milliseconds(0)
                  : receiver_waiting ? kReceiverCheck
                                     : std::chrono::milliseconds(std::max<std::int64_t>(
                                           10, opt_.heartbeat_interval.count() / 3)));
      } catch (const zmq::error_t& e) {
        relock();
        if (e.num() == EINTR) continue;
        log(std::string("poll failed: ") + e.what());
        break;
      }
      relock();
      if (items[1].revents & ZMQ_POLLIN) {
        std::uint64_t n;
        (void)!::read(wake_fd_, &n, sizeof(n));
      }
      take_requests();
      if (opt_.curve) {
        if (items[2].revents & ZMQ_POLLIN) answer_zap();
        if (items[3].revents & ZMQ_POLLIN) read_monitor();
      }
      // The descriptor only says that something changed: read_router() reads until ZeroMQ has
      // nothing more, or notes a backlog when it stops for the rest of the loop (heartbeats
      // must not starve behind a peer that sends without pause).
      if ((items[0].revents & ZMQ_POLLIN) || receiver_waiting || backlog) read_router();
      for (std::size_t i = 0; i < polled.size(); ++i) {
        if (items[first_dealer + i].revents & ZMQ_POLLIN) read_dealer(*polled[i]);
        if (items[first_dealer + i].revents & ZMQ_POLLOUT) flush(*polled[i]);
      }
      tick();
    }
    // Leaving: tell the peers, then let the sockets go.
    for (auto& o : outgoing_) {
      if (o->state != Outgoing::State::kUp) continue;
      {
        std::lock_guard<std::mutex> lock(o->link->mu);
        o->dealer->set(zmq::sockopt::linger, 200);  // give the BYE a moment to leave
      }
      send_raw(*o, encode_frame(Frame(Bye{"leaving"})));
    }
    for (auto& o : outgoing_) retire(*o);
    outgoing_.clear();
    graveyard_.clear();
    if (opt_.curve) {
      (void)zmq_socket_monitor(router_.handle(), nullptr, 0);
      monitor_.close();
    }
    router_.close();
    zap_.close();
  }

  void take_requests() {
    std::vector<PeerAddress> connects;
    {
      std::lock_guard<std::mutex> lock(mu_);
      connects.swap(connect_requests_);
    }
    for (const PeerAddress& a : connects) start_outgoing(a.endpoint, a.public_key);
  }

  std::shared_ptr<Link> published(const std::string& peer) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = links_.find(peer);
    return it == links_.end() ? nullptr : it->second;
  }

  // Hands one message of `count` frames to the link's socket, or queues it behind those that
  // ZeroMQ would not take yet. Any thread. Errors: kNodeDown when the link is gone,
  // kOverloaded when its queue is full.
  Status send_on(Link& link, std::string_view bytes, std::size_t count, const std::string& peer) {
    bool wake_io = false;
    {
      std::lock_guard<std::mutex> lock(link.mu);
      if (!link.dealer) return Status(ErrorCode::kNodeDown, peer);
      if (!link.pending.empty()) {
        if (link.pending_frames + count > opt_.max_queued_frames) {
          return Status(ErrorCode::kOverloaded, "send queue to " + peer + " is full");
        }
        queue_pending(link, bytes, count);
      } else {
        bool sent = false;
        try {
          zmq::message_t msg(bytes.data(), bytes.size());
          sent = link.dealer->send(msg, zmq::send_flags::dontwait).has_value();
        } catch (const zmq::error_t& e) {
          return Status(ErrorCode::kNodeDown, peer + ": " + e.what());
        }
        if (sent) {
          link.last_sent = Clock::now();
        } else {
          queue_pending(link, bytes, count);  // the I/O thread drains it when ZeroMQ can
          wake_io = true;
        }
      }
      frames_out_.fetch_add(count, std::memory_order_relaxed);
    }
    if (wake_io) wake();
    return Status::Ok();
  }

  void queue_pending(Link& link, std::string_view bytes, std::size_t count) {
    link.pending.emplace_back(std::string(bytes), count);
    link.pending_frames += count;
    total_pending_.fetch_add(count, std::memory_order_relaxed);
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
    io_wake_needed_ = true;  // a new socket for the I/O thread to poll
    o.dealer = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
    o.link = std::make_shared<Link>();
    o.link->dealer = o.dealer.get();
    o.dealer->set(zmq::sockopt::linger, 0);
    // ZeroMQ's queue counts messages, of up to batch_bytes() each: this bounds it to about
    // 64 MiB; beyond, frames wait in the link's pending queue, bounded by max_queued_frames.
    o.dealer->set(zmq::sockopt::sndhwm, kMaxZmqQueued);
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
    retire(o);
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

  // Unpublishes o's link and closes its socket; senders holding the link see it gone.
  void retire(Outgoing& o) {
    if (o.link) {
      {
        std::lock_guard<std::mutex> lock(o.link->mu);
        o.link->dealer = nullptr;
        total_pending_.fetch_sub(o.link->pending_frames, std::memory_order_relaxed);
        o.link->pending.clear();
        o.link->pending_frames = 0;
      }
      std::lock_guard<std::mutex> lock(mu_);
      auto it = links_.find(o.peer);
      if (it != links_.end() && it->second == o.link) links_.erase(it);
      if (const std::uint64_t n = o.link->data_out.load(); n > 0 && !o.peer.empty()) {
        traffic_[o.peer].data_out += n;
      }
    }
    o.link.reset();
    // Closed by the I/O thread when it is not polling it (another thread may retire a link).
    if (o.dealer) graveyard_.push_back(std::move(o.dealer));
  }

  // The I/O thread's own frames (handshake, heartbeats, gossip, BYE).
  void send_raw(Outgoing& o, std::string_view bytes) {
    if (!o.link || blocked(o.peer)) return;  // a cut link: frames are lost
    (void)send_on(*o.link, bytes, 1, o.peer);
  }

  // Drains what ZeroMQ would not take earlier, as far as it takes it now.
  void flush(Outgoing& o) {
    Link& link = *o.link;
    std::lock_guard<std::mutex> lock(link.mu);
    while (!link.pending.empty() && link.dealer) {
      auto& [bytes, count] = link.pending.front();
      zmq::message_t msg(bytes.data(), bytes.size());
      if (!link.dealer->send(msg, zmq::send_flags::dontwait)) return;
      link.pending_frames -= count;
      total_pending_.fetch_sub(count, std::memory_order_relaxed);
      link.pending.pop_front();
      link.last_sent = Clock::now();
    }
  }

  void read_dealer(Outgoing& o) {
    for (;;) {
      zmq::message_t msg;
      if (!o.dealer || !o.dealer->recv(msg, zmq::recv_flags::dontwait)) return;
      frames_in_.fetch_add(1, std::memory_order_relaxed);
      // Only handshake frames come this way, each alone in its message.
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
        // The peer proved it holds the cookie, and what we send now follows the PROOF that
        // authenticates us: senders may use this link already. The peer may count us up (and
        // call us) before its WELCOME reaches us; an answer must not be lost meanwhile. The
        // link that is up, if any, stays the one senders use.
        std::lock_guard<std::mutex> lock(mu_);
        links_.try_emplace(o.peer, o.link);
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
      links_[peer] = o->link;
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

  // Reads and handles up to kReadBudget frames; sets router_backlog_ when it stopped before
  // ZeroMQ had nothing more.
  void read_router() {
    const std::uint64_t budget_end = frames_in_.load(std::memory_order_relaxed) + kReadBudget;
    for (;;) {
      if (frames_in_.load(std::memory_order_relaxed) >= budget_end) {
        router_backlog_.store(true);
        break;
      }
      zmq::message_t rid, msg;
      if (!router_.recv(rid, zmq::recv_flags::dontwait)) {
        router_backlog_.store(false);
        break;
      }
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
      std::string id = rid.to_string();
      if (extra_parts) {
        frames_in_.fetch_add(1, std::memory_order_relaxed);
        reject("router", "a frame of several parts");
        continue;
      }
      if (opt_.curve) {
        Incoming& in = incoming_[id];
        if (in.state == Incoming::State::kAwaitHello) in.client_key = user_id(msg);
      }
      // One message, one or more frames back to back (docs/protocol.md section 1).
      std::string_view rest = msg.to_string_view();
      auto it = incoming_.try_emplace(id).first;
      if (it->second.state == Incoming::State::kAuthenticated) {
        if (blocked(it->second.hello.name)) continue;       // a cut link: nothing gets through
        last_heard_[it->second.hello.name] = Clock::now();  // once a message, not a frame
      }
      std::uint64_t data_frames = 0;
      do {
        frames_in_.fetch_add(1, std::memory_order_relaxed);
        Incoming& in = it->second;
        auto frame = decode_next_frame(rest, opt_.limits);
        if (!frame.ok()) {
          const std::string source =
              in.state == Incoming::State::kAuthenticated
                  ? in.hello.name
                  : "connection " + std::to_string(std::hash<std::string>()(id));
          reject(source, frame.error().to_string());
          if (in.state != Incoming::State::kAuthenticated) incoming_.erase(it);
          break;  // what follows cannot be resynchronised
        }
        if (Data* d = std::get_if<Data>(&*frame);
            d && in.state == Incoming::State::kAuthenticated) {
          ++data_frames;
          if (cb_.on_data) cb_.on_data(in.hello.name, std::move(*d));  // the common case
          continue;
        }
        handle_incoming(id, in, std::move(*frame));
        it = incoming_.find(id);  // it may have gone (BYE, a refusal)
      } while (!rest.empty() && it != incoming_.end());
      if (data_frames > 0 && it != incoming_.end()) data_in_[it->second.hello.name] += data_frames;
    }
    if (!data_in_.empty()) {  // one lock per read, not per frame
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [peer, n] : data_in_) traffic_[peer].data_in += n;
      data_in_.clear();
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
        if (auto* d = std::get_if<Data>(&frame)) {  // (read_router passes these on itself)
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
      links_.erase(peer);
    }
    last_heard_.erase(peer);
    incoming_creation_.erase(peer);
    const bool was_hidden = hidden_.erase(peer) > 0;
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
    if (was_hidden) {  // hidden peers (nodusctl) come and go under fresh names: keep nothing
      std::lock_guard<std::mutex> lock(mu_);
      traffic_.erase(peer);
    }
    if (was_up && cb_.on_peer_down) cb_.on_peer_down(peer, reason);
  }

  Clock::duration idle_for(Outgoing& o) {
    std::lock_guard<std::mutex> lock(o.link->mu);
    return Clock::now() - o.link->last_sent;
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
          if (idle_for(*o) >= opt_.heartbeat_interval) {
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

  // Guards everything below "The I/O thread's own": held by the I/O thread except while it
  // polls, and by a thread in receive() while it reads the ROUTER.
  std::mutex io_mu_;
  int router_fd_ = -1;
  // receive(): how many threads are in it; close() waits for none.
  std::mutex receivers_mu_;
  std::condition_variable receivers_cv_;
  int receivers_ = 0;
  bool closing_ = false;
  int closing_fd_ = -1;                    // readable once closing_: wakes the threads in receive()
  std::atomic<int> receivers_waiting_{0};  // threads blocked in receive()'s poll
  std::atomic<bool> io_waiting_{false};    // the I/O thread waits for io_mu_: receive() stands back
  // read_router() stopped with messages left: the descriptor may not signal them again.
  std::atomic<bool> router_backlog_{false};

  // Guards blocked_: written by block_peer (tests), read wherever frames pass when
  // any_blocked_.
  mutable std::mutex block_mu_;
  std::unordered_set<std::string> blocked_;
  std::atomic<bool> any_blocked_{false};

  // Guards connect_requests_, up_, links_ and traffic_: what callers of send/connect/peers
  // share with the I/O thread.
  mutable std::mutex mu_;
  std::vector<PeerAddress> connect_requests_;
  std::map<std::string, PeerInfo> up_;
  std::unordered_map<std::string, std::shared_ptr<Link>> links_;  // the peers that are up
  std::atomic<std::size_t> total_pending_{0};
  std::map<std::string, PeerTraffic> traffic_;  // of links gone; live links count their own

  // The I/O thread's own (and receive()'s, under io_mu_).
  std::vector<std::unique_ptr<Outgoing>> outgoing_;
  std::vector<std::unique_ptr<zmq::socket_t>> graveyard_;  // retired DEALERs, closed in run()
  bool io_wake_needed_ = false;  // receive() made a socket the I/O thread must start polling
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
Status Transport::send_frames(const std::string& peer, std::string_view frames, std::size_t count) {
  return impl_->send_frames(peer, frames, count);
}
bool Transport::is_up(const std::string& peer) const { return impl_->is_up(peer); }
bool Transport::receive(int wake_fd, std::chrono::milliseconds max_wait) {
  return impl_->receive(wake_fd, max_wait);
}
std::size_t Transport::batch_bytes() const { return impl_->batch_bytes(); }
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
