// The ZeroMQ transport (nodus/transport/transport.hpp): sockets, threads and the hot paths.
// What a link does (handshake, liveness, reconnects, gossip) is the LinkTable's
// (link_table.hpp); this file gives it sockets to do it with. CURVE's ZAP handler is zap.hpp.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <thread>
#include <unordered_map>
#include <zmq.hpp>

#include "link_table.hpp"
#include "nodus/transport/detail/mutex.hpp"
#include "nodus/transport/transport.hpp"
#include "pre_auth.hpp"
#include "zap.hpp"

namespace nodus::transport {

Status Transport::send(const std::string& peer, Data data) {
  thread_local std::string bytes;
  bytes.clear();
  encode_frame(Frame(std::move(data)), bytes);
  return send_frames(peer, bytes, 1);
}

namespace {

using Clock = std::chrono::steady_clock;
using detail::Mutex;
using detail::MutexLock;

// Senders gather frames for one peer into messages of about this size: big enough that a burst
// of small messages costs a handful of ZeroMQ messages, small enough not to hold the first
// frame back long.
constexpr std::size_t kBatchBytes = 64 * 1024;
constexpr int kMaxZmqQueued = 1024;
// Frames read_router() handles before it lets the rest of the loop run (about a millisecond).
constexpr std::uint64_t kReadBudget = 2048;
// How often the I/O thread looks at the ROUTER while a thread waits in receive() for it.
constexpr auto kReceiverCheck = std::chrono::milliseconds(5);
// How often the I/O thread reads the DEALERs of links that are up (only a REFUSE comes back on
// them), and how many messages it takes from one at a time.
constexpr auto kUpLinkRead = std::chrono::milliseconds(50);
constexpr std::size_t kDealerReadBudget = 64;
// The largest ZeroMQ message part a socket takes (ZMQ_MAXMSGSIZE, per part): every handshake
// frame fits, and it is all a connection can make the node hold before it authenticates (but
// see docs/protocol.md section 1 on messages in parts). A larger message travels in parts.
constexpr std::size_t kMaxPartBytes = 64 * 1024;
// At most this many connections wait for their handshake at once (and at most a quarter of the
// descriptors the process may open).
constexpr std::size_t kMaxPreAuthConnections = 256;
// Where the ROUTER reports connections accepted and ended, and handshakes that failed.
constexpr const char* kMonitorEndpoint = "inproc://nodus.router.monitor";

// The host of "tcp://HOST:PORT" ("" if it is not that shape); "[::1]" keeps its brackets.
std::string_view endpoint_host(std::string_view ep) {
  constexpr std::string_view kTcp = "tcp://";
  if (ep.substr(0, kTcp.size()) != kTcp) return {};
  ep.remove_prefix(kTcp.size());
  const auto colon = ep.rfind(':');
  return colon == std::string_view::npos ? std::string_view{} : ep.substr(0, colon);
}

bool is_tcp_endpoint(std::string_view ep) {
  const std::string_view host = endpoint_host(ep);
  if (host.empty()) return false;
  const std::string_view port = ep.substr(ep.rfind(':') + 1);
  return !port.empty() && port.size() <= 5 &&
         port.find_first_not_of("0123456789") == std::string_view::npos && port != "0";
}

// An IPv6 literal ("tcp://[::1]:7101"): ZeroMQ takes it only on a socket with ZMQ_IPV6 set.
bool is_ipv6_endpoint(std::string_view ep) { return endpoint_host(ep).substr(0, 1) == "["; }

// Bound to every address of the machine: no peer can reach it under that address.
bool is_wildcard_endpoint(std::string_view ep) {
  const std::string_view host = endpoint_host(ep);
  return host == "0.0.0.0" || host == "[::]" || host == "*" || host == "[0:0:0:0:0:0:0:0]";
}

// What descriptor `fd` is: its local and peer socket addresses, raw (`identity`), and the peer's
// as text (`address`). Both empty if it is not a connected socket.
void describe_socket(int fd, std::string& identity, std::string& address) {
  identity.clear();
  address.clear();
  sockaddr_storage local{}, peer{};
  socklen_t local_len = sizeof(local), peer_len = sizeof(peer);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
      ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
    return;
  }
  identity.assign(reinterpret_cast<const char*>(&local),
                  std::min<socklen_t>(local_len, sizeof(local)));
  identity.append(reinterpret_cast<const char*>(&peer),
                  std::min<socklen_t>(peer_len, sizeof(peer)));
  char host[INET6_ADDRSTRLEN] = "?";
  unsigned port = 0;
  if (peer.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&peer);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
  } else if (peer.ss_family == AF_INET6) {
    const auto* in = reinterpret_cast<const sockaddr_in6*>(&peer);
    ::inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof(host));
    port = ntohs(in->sin6_port);
  }
  address = std::string(host) + ":" + std::to_string(port);
}

// How many connections may wait for their handshake: kMaxPreAuthConnections, or a quarter of
// the descriptors this process may open if that is less (at least 16).
std::size_t max_pre_auth_connections() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) {
    return kMaxPreAuthConnections;
  }
  return std::clamp<std::size_t>(static_cast<std::size_t>(rl.rlim_cur) / 4, 16,
                                 kMaxPreAuthConnections);
}

// The CURVE client key a message arrived under: the ZAP handler's user id ("" if none). Valid
// while `msg` lives.
std::string_view user_id(zmq::message_t& msg) {
  const char* v = zmq_msg_gets(msg.handle(), "User-Id");
  return v ? std::string_view(v) : std::string_view();
}

class ZmqTransport final : public Transport, private LinkIo {
 public:
  ZmqTransport(TransportOptions options, TransportCallbacks callbacks)
      : opt_(std::move(options)),
        cb_(std::move(callbacks)),
        router_(ctx_, zmq::socket_type::router),
        part_bytes_(std::min(kMaxPartBytes, opt_.limits.max_frame)),
        pre_auth_(PreAuthTracker::Config{opt_.down_after, max_pre_auth_connections()}) {}

  ~ZmqTransport() override { close(); }

  Status bind() {
    if (sodium_init() < 0) return Status(ErrorCode::kInternal, "libsodium failed to initialise");
    // libzmq writes to sockets without MSG_NOSIGNAL: a peer that reset its connection would
    // end the process with SIGPIPE. Ignored, unless the program handles it itself.
    struct sigaction pipe {};
    if (::sigaction(SIGPIPE, nullptr, &pipe) == 0 && pipe.sa_handler == SIG_DFL) {
      ::signal(SIGPIPE, SIG_IGN);
    }
    if (!opt_.advertise.empty() && !is_tcp_endpoint(opt_.advertise)) {
      return Status(ErrorCode::kBadConfig, "cannot advertise \"" + opt_.advertise +
                                               "\": expected tcp://HOST:PORT with a port number");
    }
    if (opt_.advertise.empty() && is_wildcard_endpoint(opt_.listen)) {
      return Status(ErrorCode::kBadConfig,
                    "listening on every address (" + opt_.listen +
                        ") needs an endpoint to advertise that peers can reach: set advertise "
                        "(node.advertise) to tcp://ADDRESS-OR-HOST:PORT");
    }
    auto cfg = make_link_config(opt_, "");
    if (!cfg.ok()) return cfg.error();
    // Called by the ZAP handler on the I/O thread, under io_mu_ (answer(), handshake_failed()).
    zap_ = std::make_unique<ZapHandler>(
        ctx_, cfg->allowed,
        [this](const std::string& source, const std::string& line) NODUS_REQUIRES(io_mu_) {
          if (source.empty()) {
            table_->log_unauthenticated(line, Clock::now());  // one allowance for them all
          } else {
            log_limited(source, line);
          }
        });
    // No I/O thread yet; its sockets are set up under its lock all the same.
    MutexLock io(io_mu_);
    try {
      if (opt_.curve) zap_->listen(router_, *opt_.curve);
      // Every connection accepted and ended, for the pre-authentication budget; and under
      // CURVE, handshakes that failed before ZAP was asked.
      const int events =
          ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |
          (opt_.curve ? ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
                      : 0);
      if (zmq_socket_monitor(router_.handle(), kMonitorEndpoint, events) != 0) {
        throw zmq::error_t();
      }
      monitoring_ = true;
      monitor_ = zmq::socket_t(ctx_, zmq::socket_type::pair);
      monitor_.set(zmq::sockopt::linger, 0);
      // Unbounded: libzmq's I/O thread blocks on a monitor whose queue is full.
      monitor_.set(zmq::sockopt::rcvhwm, 0);
      monitor_.connect(kMonitorEndpoint);
      router_.set(zmq::sockopt::linger, 0);
      router_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(part_bytes_));
      // A connection that has not finished ZeroMQ's own handshake by then is closed by libzmq:
      // a backstop (close_unauthenticated() closes it at down_after, and says so).
      router_.set(zmq::sockopt::handshake_ivl, static_cast<int>(2 * opt_.down_after.count()));
      router_.set(zmq::sockopt::router_mandatory, 0);
      if (is_ipv6_endpoint(opt_.listen)) router_.set(zmq::sockopt::ipv6, 1);
      router_.bind(opt_.listen);
      endpoint_ = router_.get(zmq::sockopt::last_endpoint);
      router_fd_ = router_.get(zmq::sockopt::fd);
    } catch (const zmq::error_t& e) {
      return Status(ErrorCode::kBadConfig, "cannot listen on " + opt_.listen + ": " + e.what());
    }
    if (!opt_.advertise.empty()) endpoint_ = opt_.advertise;
    cfg->me.listen = endpoint_;
    table_ = std::make_unique<LinkTable>(std::move(cfg.value()), static_cast<LinkIo&>(*this));
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    closing_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0 || closing_fd_ < 0) return Status(ErrorCode::kInternal, "eventfd failed");
    io_ = std::thread([this] { run(); });
    return Status::Ok();
  }

  // -- Transport ------------------------------------------------------------------------------

  const std::string& endpoint() const override { return endpoint_; }

  void connect(const std::string& endpoint, const std::string& server_public_key) override
      NODUS_EXCLUDES(mu_) {
    {
      MutexLock lock(mu_);
      connect_requests_.push_back(PeerAddress{endpoint, server_public_key});
    }
    wake();
  }

  Status send_frames(const std::string& peer, std::string_view frames, std::size_t count) override {
    std::shared_ptr<Link> link = published(peer);
    if (!link) return Status(ErrorCode::kNodeDown, peer);
    if (table_->blocked(peer)) return Status::Ok();  // a cut link: lost, as on a broken network
    Status s = send_on(*link, frames, count, peer);
    if (s.ok()) link->data_out.fetch_add(count, std::memory_order_relaxed);
    return s;
  }

  bool is_up(const std::string& peer) const override { return published(peer) != nullptr; }

  std::size_t queued(const std::string& peer) const override {
    // Most of the time nothing is queued anywhere: no lock for that.
    if (total_pending_.load(std::memory_order_relaxed) == 0) return 0;
    std::shared_ptr<Link> link = published(peer);
    if (!link) return 0;
    MutexLock lock(link->mu);
    return link->pending_frames;
  }
  std::size_t max_queued() const override { return opt_.max_queued_frames; }
  std::size_t batch_bytes() const override { return std::min(kBatchBytes, opt_.limits.max_frame); }

  std::vector<PeerInfo> peers() const override NODUS_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    std::vector<PeerInfo> out;
    for (const auto& [name, info] : up_) out.push_back(info);
    return out;
  }

  std::map<std::string, PeerTraffic> traffic() const override NODUS_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    std::map<std::string, PeerTraffic> out = traffic_;
    for (const auto& [peer, link] : links_) {
      out[peer].data_out += link->data_out.load(std::memory_order_relaxed);
    }
    return out;
  }

  TransportStats stats() const override {
    TransportStats s;
    s.frames_in = table_->frames_in();
    s.frames_out = frames_out_.load();
    s.frames_rejected = table_->frames_rejected();
    s.auth_failures = table_->auth_failures();
    s.curve_refused = zap_->refused();
    s.connections_closed = connections_closed_.load(std::memory_order_relaxed);
    return s;
  }

  void block_peer(const std::string& peer) override { table_->block(peer, true); }
  void unblock_peer(const std::string& peer) override { table_->block(peer, false); }

  bool receive(int wake_fd, std::chrono::milliseconds max_wait) override
      NODUS_EXCLUDES(io_mu_, receivers_mu_) {
    {
      MutexLock lock(receivers_mu_);
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
    // If io_mu_ is taken, the I/O thread is at it, and the descriptor stays ready.
    if (readable && !io_waiting_.load() && io_mu_.try_lock()) {
      MutexLock io(io_mu_, std::adopt_lock);
      try {
        read_router();
      } catch (const std::exception& e) {  // no error of ZeroMQ's or the system's ends the node
        log_limited("receive", std::string("reading from peers failed: ") + e.what());
      }
      if (io_wake_needed_) {
        io_wake_needed_ = false;
        wake();
      }
    }
    {
      MutexLock lock(receivers_mu_);
      --receivers_;
    }
    receivers_cv_.notify_all();
    return true;
  }

  void close() override NODUS_EXCLUDES(io_mu_, receivers_mu_) {
    {
      // Threads in receive() leave within their max_wait; none enters after this.
      MutexLock lock(receivers_mu_);
      closing_ = true;
      std::uint64_t one = 1;
      if (closing_fd_ >= 0) (void)!::write(closing_fd_, &one, sizeof(one));  // never read
      while (receivers_ != 0) receivers_cv_.wait();
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
  /// The sending side of one DEALER, shared with the threads that send to its peer. Once the
  /// peer is up the link is published (links_) and senders use the socket directly, on their
  /// own thread: no hand-off to the I/O thread on the way out. Every use of the socket, by
  /// anyone, is under `mu` (a ZeroMQ socket may change threads behind a full memory barrier),
  /// and the I/O thread polls its descriptor, never the socket: so the socket is never used by
  /// two threads at once.
  struct Link {
    explicit Link(zmq::socket_t* dealer_socket) : dealer(dealer_socket) {}
    Mutex mu;
    zmq::socket_t* dealer NODUS_GUARDED_BY(mu) = nullptr;  // null once the link is gone
    /// Messages ZeroMQ would not take yet (its queue is full), each with its frame count.
    std::deque<std::pair<std::string, std::size_t>> pending NODUS_GUARDED_BY(mu);
    std::size_t pending_frames NODUS_GUARDED_BY(mu) = 0;
    Clock::time_point last_sent NODUS_GUARDED_BY(mu){};
    std::atomic<std::uint64_t> data_out{0};  // DATA frames sent (traffic()); read without mu
  };

  /// One outgoing connection the link table opened (the I/O thread's, under io_mu_).
  struct Conn {
    std::unique_ptr<zmq::socket_t> dealer;
    std::shared_ptr<Link> link;
    int fd = -1;       // the DEALER's ZMQ_FD: polled instead of the socket (see run())
    std::string peer;  // once it proved who it is
    bool up = false;   // reported up: read now and then, for a REFUSE (see run())
  };

  // -- LinkIo: what the link table does, done with sockets (under io_mu_) -----------------------

  bool open(ConnId id, const std::string& endpoint, const std::string& server_key,
            std::string& why) override NODUS_REQUIRES(io_mu_) {
    io_wake_needed_ = true;  // a new socket for the I/O thread to poll
    Conn c;
    try {
      // Out of descriptors (EMFILE) or memory, this fails: the link table logs why and tries
      // again after its backoff. Nothing of it may end the node.
      c.dealer = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
      c.link = std::make_shared<Link>(c.dealer.get());
      c.dealer->set(zmq::sockopt::linger, 0);
      // ZeroMQ's queue counts messages, of up to batch_bytes() each: this bounds it to about
      // 64 MiB; beyond, frames wait in the link's pending queue, bounded by max_queued_frames.
      c.dealer->set(zmq::sockopt::sndhwm, kMaxZmqQueued);
      // Only handshake frames and REFUSE come back on it.
      c.dealer->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(part_bytes_));
      if (is_ipv6_endpoint(endpoint)) c.dealer->set(zmq::sockopt::ipv6, 1);
      if (opt_.curve) {
        c.dealer->set(zmq::sockopt::curve_serverkey, server_key);
        c.dealer->set(zmq::sockopt::curve_publickey, opt_.curve->public_key);
        c.dealer->set(zmq::sockopt::curve_secretkey, opt_.curve->secret_key);
      }
      c.dealer->connect(endpoint);
      c.fd = c.dealer->get(zmq::sockopt::fd);
    } catch (const std::exception& e) {
      why = e.what();
      if (c.dealer) graveyard_.push_back(std::move(c.dealer));
      return false;
    }
    conns_.emplace(id, std::move(c));
    return true;
  }

  // Unpublishes the connection's link and closes its socket; senders holding the link see it
  // gone.
  void close(ConnId id) override NODUS_REQUIRES(io_mu_) NODUS_EXCLUDES(mu_) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    {
      MutexLock lock(c.link->mu);
      c.link->dealer = nullptr;
      total_pending_.fetch_sub(c.link->pending_frames, std::memory_order_relaxed);
      c.link->pending.clear();
      c.link->pending_frames = 0;
    }
    {
      MutexLock lock(mu_);
      auto published = links_.find(c.peer);
      if (published != links_.end() && published->second == c.link) links_.erase(published);
      if (const std::uint64_t n = c.link->data_out.load(); n > 0 && !c.peer.empty()) {
        traffic_[c.peer].data_out += n;
      }
    }
    // Closed by the I/O thread when it is not polling it (another thread may retire a link).
    graveyard_.push_back(std::move(c.dealer));
    conns_.erase(it);
  }

  void send(ConnId id, std::string_view frame) override NODUS_REQUIRES(io_mu_) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    (void)send_on(*it->second.link, frame, 1, it->second.peer);
  }

  void reply(const std::string& id, std::string_view frame) override NODUS_REQUIRES(io_mu_) {
    try {
      zmq::message_t rid(id.data(), id.size());
      zmq::message_t msg(frame.data(), frame.size());
      router_.send(rid, zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      router_.send(msg, zmq::send_flags::dontwait);
      frames_out_.fetch_add(1, std::memory_order_relaxed);
    } catch (const std::exception&) {
      // The connection went away meanwhile (or no memory for the answer: it is lost).
    }
  }

  void publish(const std::string& peer, ConnId id) override NODUS_REQUIRES(io_mu_)
      NODUS_EXCLUDES(mu_) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    it->second.peer = peer;
    MutexLock lock(mu_);
    links_.try_emplace(peer, it->second.link);
  }

  void peer_up(const PeerInfo& info, ConnId id) override NODUS_REQUIRES(io_mu_)
      NODUS_EXCLUDES(mu_) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    it->second.up = true;
    {
      MutexLock lock(mu_);
      up_[info.name] = info;
      links_[info.name] = it->second.link;
    }
    if (cb_.on_peer_up) cb_.on_peer_up(info);
  }

  void peer_down(const std::string& peer, const std::string& reason, bool was_up,
                 bool hidden) override NODUS_EXCLUDES(mu_) {
    {
      MutexLock lock(mu_);
      up_.erase(peer);
      links_.erase(peer);
      // Hidden peers (nodusctl) come and go under fresh names: keep nothing.
      if (hidden) traffic_.erase(peer);
    }
    if (was_up && cb_.on_peer_down) cb_.on_peer_down(peer, reason);
  }

  void deliver(const std::string& peer, Data&& data) override {
    if (cb_.on_data) cb_.on_data(peer, std::move(data));
  }

  void count_data_in(const std::string& peer, std::uint64_t count) override NODUS_REQUIRES(io_mu_) {
    data_in_[peer] += count;
  }

  Clock::duration idle_for(ConnId id, TimePoint now) override NODUS_REQUIRES(io_mu_) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return Clock::duration::zero();
    MutexLock lock(it->second.link->mu);
    return now - it->second.link->last_sent;
  }

  std::string nonce() override { return random_nonce(); }

  void log(const std::string& line) override {
    if (opt_.log) {
      opt_.log(line);
    } else {
      std::fprintf(stderr, "nodus[%s]: %s\n", opt_.name.c_str(), line.c_str());
    }
  }

  // Logs a problem with one source at most once per interval (for the ZAP handler; the link
  // table limits its own).
  void log_limited(const std::string& source, const std::string& line) NODUS_REQUIRES(io_mu_) {
    auto now = Clock::now();
    auto& last = last_logged_[source];
    if (last != Clock::time_point{} && now - last < LinkTable::kLogInterval) return;
    last = now;
    log(line);
  }

  // -- the I/O thread ---------------------------------------------------------------------------

  void wake() {
    std::uint64_t one = 1;
    if (wake_fd_ >= 0) (void)!::write(wake_fd_, &one, sizeof(one));
  }

  void run() NODUS_EXCLUDES(io_mu_) {
    MutexLock io(io_mu_);
    while (!stop_.load()) {
      try {
        run_once();  // holds io_mu_ again when it throws
      } catch (const std::exception& e) {
        // No error of ZeroMQ's or the system's ends the node (out of descriptors or memory, a
        // socket that failed): it is logged, and the loop goes on after a pause, so that a
        // lasting failure is not a spin.
        log_limited("io",
                    std::string("the transport's I/O loop failed: ") + e.what() + " (it goes on)");
        detail::MutexUnlock pause(io_mu_);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
    // Leaving: tell the peers, then let the sockets go.
    try {
      for (auto& [id, c] : conns_) {
        if (!c.up) continue;
        MutexLock lock(c.link->mu);
        c.dealer->set(zmq::sockopt::linger, 200);  // give the BYE a moment to leave
      }
      table_->leave(Clock::now());
    } catch (const std::exception& e) {
      log(std::string("leaving: ") + e.what());
    }
    conns_.clear();
    graveyard_.clear();
    if (opt_.curve) zap_->close();
    if (monitoring_) {
      (void)zmq_socket_monitor(router_.handle(), nullptr, 0);
      monitoring_ = false;
    }
    monitor_.close();
    router_.close();
  }

  // One round of the I/O loop: wait for input (without io_mu_), then handle it. Holds io_mu_
  // again on return, also by an exception.
  void run_once() NODUS_REQUIRES(io_mu_) {
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
    items.push_back({monitor_.handle(), 0, ZMQ_POLLIN, 0});  // used by this thread alone
    if (opt_.curve) items.push_back({zap_->zap_handle(), 0, ZMQ_POLLIN, 0});
    // DEALERs by their descriptors too: a socket may be used only under its link's mutex,
    // and polling a socket uses it (a sender may be sending on a link that is published
    // while its handshake finishes). The descriptor only says that something may have
    // changed; service() then drains and reads under the mutex.
    for (auto& [id, c] : conns_) {
      bool pending;
      {
        MutexLock lock(c.link->mu);
        pending = !c.link->pending.empty();
      }
      if (c.up && !pending) continue;  // read now and then below, for a REFUSE
      items.push_back({nullptr, c.fd, ZMQ_POLLIN, 0});
    }
    io_mu_.unlock();
    try {
      zmq::poll(items.data(), items.size(),
                backlog            ? std::chrono::milliseconds(0)
                : receiver_waiting ? kReceiverCheck
                                   : std::chrono::milliseconds(std::max<std::int64_t>(
                                         10, opt_.heartbeat_interval.count() / 3)));
    } catch (const zmq::error_t& e) {
      relock_io();
      if (e.num() == EINTR) return;
      throw;  // logged by run(), which goes on after a pause
    } catch (...) {
      relock_io();
      throw;
    }
    relock_io();
    if (items[1].revents & ZMQ_POLLIN) {
      std::uint64_t n;
      (void)!::read(wake_fd_, &n, sizeof(n));
    }
    take_requests();
    // Connections accepted first, so that their messages below find them known.
    if (items[2].revents & ZMQ_POLLIN) read_monitor();
    if (opt_.curve && (items[3].revents & ZMQ_POLLIN)) zap_->answer();
    // The descriptor only says that something changed: read_router() reads until ZeroMQ has
    // nothing more, or notes a backlog when it stops for the rest of the loop (heartbeats
    // must not starve behind a peer that sends without pause).
    if ((items[0].revents & ZMQ_POLLIN) || receiver_waiting || backlog) read_router();
    // Every DEALER in a handshake or with frames waiting is serviced on every round (its
    // descriptor is edge-triggered: a sender's own use of the socket may have taken the
    // signal); one that is up only every kUpLinkRead, for a REFUSE telling us that its peer
    // forgot the link (docs/protocol.md section 7).
    const Clock::time_point now = Clock::now();
    const bool read_up = now >= next_up_read_;
    if (read_up) next_up_read_ = now + kUpLinkRead;
    std::vector<ConnId> ids;
    for (const auto& [id, c] : conns_) {
      if (!c.up || read_up || total_pending_.load(std::memory_order_relaxed) > 0) {
        ids.push_back(id);
      }
    }
    for (ConnId id : ids) service(id);
    close_unauthenticated(Clock::now());
    table_->tick(Clock::now());
  }

  // Takes io_mu_ again after run_once() let go of it while it polled; receive() stands back
  // meanwhile (io_waiting_).
  void relock_io() NODUS_ACQUIRE(io_mu_) {
    io_waiting_.store(true);
    io_mu_.lock();
    io_waiting_.store(false);
  }

  void take_requests() NODUS_REQUIRES(io_mu_) NODUS_EXCLUDES(mu_) {
    std::vector<PeerAddress> connects;
    {
      MutexLock lock(mu_);
      connects.swap(connect_requests_);
    }
    for (const PeerAddress& a : connects) table_->connect(a.endpoint, a.public_key, Clock::now());
  }

  std::shared_ptr<Link> published(const std::string& peer) const NODUS_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    auto it = links_.find(peer);
    return it == links_.end() ? nullptr : it->second;
  }

  // Hands one message of `count` frames to the link's socket, or queues it behind those that
  // ZeroMQ would not take yet. Any thread. Errors: kNodeDown when the link is gone,
  // kOverloaded when its queue is full.
  Status send_on(Link& link, std::string_view bytes, std::size_t count, const std::string& peer) {
    bool wake_io = false;
    {
      MutexLock lock(link.mu);
      if (!link.dealer) return Status(ErrorCode::kNodeDown, peer);
      if (!link.pending.empty()) {
        if (link.pending_frames + count > opt_.max_queued_frames) {
          return Status(ErrorCode::kOverloaded, "send queue to " + peer + " is full");
        }
        queue_pending(link, bytes, count);
      } else {
        bool sent = false;
        try {
          sent = send_message(*link.dealer, bytes);
        } catch (const std::exception& e) {
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

  // Hands one message to `socket`: one part, or beyond part_bytes_, parts of part_bytes_ that
  // the receiver joins (docs/protocol.md section 1). False if ZeroMQ would not take it now
  // (then nothing was sent). ZeroMQ takes the rest of a message once it took its first part
  // (its queue limit counts whole messages); if it does not, the link broke meanwhile and the
  // message is lost with it. Throws zmq::error_t, std::bad_alloc.
  bool send_message(zmq::socket_t& socket, std::string_view bytes) const {
    if (bytes.size() <= part_bytes_) {
      zmq::message_t msg(bytes.data(), bytes.size());
      return socket.send(msg, zmq::send_flags::dontwait).has_value();
    }
    for (std::size_t at = 0; at < bytes.size(); at += part_bytes_) {
      const std::size_t n = std::min(part_bytes_, bytes.size() - at);
      zmq::message_t part(bytes.data() + at, n);
      const auto flags = at + n < bytes.size()
                             ? zmq::send_flags::dontwait | zmq::send_flags::sndmore
                             : zmq::send_flags::dontwait;
      if (!socket.send(part, flags)) return at > 0;
    }
    return true;
  }

  void queue_pending(Link& link, std::string_view bytes, std::size_t count)
      NODUS_REQUIRES(link.mu) {
    link.pending.emplace_back(std::string(bytes), count);
    link.pending_frames += count;
    total_pending_.fetch_add(count, std::memory_order_relaxed);
  }

  // Drains what ZeroMQ would not take earlier, as far as it takes it now, and hands what came
  // back on the DEALER (handshake frames, a REFUSE) to the link table. Every use of the socket
  // is under the link's mutex.
  void service(ConnId id) NODUS_REQUIRES(io_mu_) {
    std::vector<zmq::message_t> in;
    {
      auto it = conns_.find(id);
      if (it == conns_.end()) return;
      Link& link = *it->second.link;
      MutexLock lock(link.mu);
      if (!link.dealer) return;
      try {
        // ZMQ_EVENTS processes the socket's pending commands: after it, the descriptor signals
        // the next change (a send or recv alone may leave commands unprocessed, and a poll on
        // the descriptor would then sleep through a socket that became writable).
        for (int round = 0; round < 4; ++round) {
          while (!link.pending.empty()) {
            auto& [bytes, count] = link.pending.front();
            if (!send_message(*link.dealer, bytes)) break;
            link.pending_frames -= count;
            total_pending_.fetch_sub(count, std::memory_order_relaxed);
            link.pending.pop_front();
            link.last_sent = Clock::now();
          }
          while (in.size() < kDealerReadBudget) {
            zmq::message_t msg;
            if (!link.dealer->recv(msg, zmq::recv_flags::dontwait)) break;
            in.push_back(std::move(msg));
          }
          const int events = link.dealer->get(zmq::sockopt::events);
          const bool can_send = (events & ZMQ_POLLOUT) && !link.pending.empty();
          const bool can_read = (events & ZMQ_POLLIN) && in.size() < kDealerReadBudget;
          if (!can_send && !can_read) break;
        }
      } catch (const std::exception& e) {
        log_limited("dealer", std::string("a link's socket failed: ") + e.what());
      }
    }
    // Outside the mutex: the link table may close this connection meanwhile.
    for (zmq::message_t& msg : in) table_->on_outgoing(id, msg.to_string_view(), Clock::now());
  }

  // Reads and handles up to kReadBudget frames; sets router_backlog_ when it stopped before
  // ZeroMQ had nothing more.
  void read_router() NODUS_REQUIRES(io_mu_) NODUS_EXCLUDES(mu_) {
    const std::uint64_t budget_end = table_->frames_in() + kReadBudget;
    for (;;) {
      if (table_->frames_in() >= budget_end) {
        router_backlog_.store(true);
        break;
      }
      zmq::message_t rid, msg;
      if (!router_.recv(rid, zmq::recv_flags::dontwait)) {
        router_backlog_.store(false);
        break;
      }
      if (!rid.more()) {
        reject_router("a frame without a routing id");
        continue;
      }
      (void)router_.recv(msg, zmq::recv_flags::none);
      // The descriptor it came on, while connections wait for their handshake (the lookup
      // costs a little: not otherwise).
      const int fd = pre_auth_.empty() ? -1 : msg.get(ZMQ_SRCFD);
      const std::string id = rid.to_string();
      if (msg.more()) {
        read_parts(id, msg);
      } else {
        // One message, one or more frames back to back (docs/protocol.md section 1).
        table_->on_incoming(id, msg.to_string_view(),
                            opt_.curve ? user_id(msg) : std::string_view(), Clock::now());
      }
      if (fd >= 0) pre_auth_.message(fd, id, table_->authenticated(id));
    }
    if (!data_in_.empty()) {  // one lock per read, not per frame
      MutexLock lock(mu_);
      for (const auto& [peer, n] : data_in_) traffic_[peer].data_in += n;
      data_in_.clear();
    }
  }

  // The rest of a message in parts whose first part is `first` (docs/protocol.md section 1):
  // joined into one message for a connection that has authenticated, up to max_frame bytes;
  // refused on any other (only a peer that counts its link up sends one).
  void read_parts(const std::string& id, zmq::message_t& first) NODUS_REQUIRES(io_mu_) {
    const bool authenticated = table_->authenticated(id);
    std::size_t total = first.size();
    std::string joined;
    if (authenticated) joined.assign(first.data<char>(), first.size());
    for (bool more = true; more;) {
      zmq::message_t part;
      (void)router_.recv(part, zmq::recv_flags::none);
      more = part.more();
      total += part.size();
      if (authenticated && total <= opt_.limits.max_frame) {
        joined.append(part.data<char>(), part.size());
      }
    }
    if (!authenticated || total > opt_.limits.max_frame) {
      table_->reject_parts(id, total, Clock::now());
      return;
    }
    table_->on_incoming(id, joined, opt_.curve ? user_id(first) : std::string_view(), Clock::now());
  }

  // Reads the ROUTER's monitor: connections accepted and ended (the pre-authentication
  // budget), and under CURVE handshakes that failed before ZAP.
  void read_monitor() NODUS_REQUIRES(io_mu_) {
    for (;;) {
      zmq::message_t event;
      if (!monitor_.recv(event, zmq::recv_flags::dontwait)) return;
      for (bool more = event.more(); more;) {  // the endpoint
        zmq::message_t rest;
        (void)monitor_.recv(rest, zmq::recv_flags::none);
        more = rest.more();
      }
      if (event.size() < 6) continue;
      std::uint16_t kind = 0;
      std::uint32_t value = 0;
      std::memcpy(&kind, event.data<char>(), sizeof(kind));
      std::memcpy(&value, event.data<char>() + 2, sizeof(value));
      const int fd = static_cast<int>(value);
      switch (kind) {
        case ZMQ_EVENT_ACCEPTED: {
          std::string identity, address;
          describe_socket(fd, identity, address);
          if (pre_auth_.accepted(fd, Clock::now(), identity, address)) {
            close_connection(PreAuthTracker::Victim{fd, identity, address},
                             std::to_string(pre_auth_.config().max_pending) +
                                 " connections are waiting for their handshake already");
          }
          break;
        }
        case ZMQ_EVENT_DISCONNECTED:
          pre_auth_.closed(fd);
          break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
          if (opt_.curve) zap_->handshake_failed(kind, value, endpoint_);
          break;
        default:
          break;
      }
    }
  }

  // Closes the connections that have not authenticated within down_after of being accepted.
  void close_unauthenticated(Clock::time_point now) NODUS_REQUIRES(io_mu_) {
    if (pre_auth_.empty()) return;
    read_monitor();  // the latest word on which connections ended
    for (PreAuthTracker::Victim& v : pre_auth_.expired(
             now, [&](const std::string& rid) { return table_->authenticated(rid); })) {
      close_connection(v, "no handshake within " + std::to_string(opt_.down_after.count()) +
                              " ms of connecting");
    }
  }

  // Closes an accepted connection that libzmq owns, by shutting its socket down: libzmq sees it
  // end and cleans up as after any other. Only if the descriptor still holds the connection it
  // held when accepted (the monitor's word comes late; descriptors are reused).
  void close_connection(const PreAuthTracker::Victim& v, const std::string& why)
      NODUS_REQUIRES(io_mu_) {
    std::string identity, address;
    describe_socket(v.fd, identity, address);
    if (identity.empty() || identity != v.identity) return;  // gone already
    ::shutdown(v.fd, SHUT_RDWR);
    connections_closed_.fetch_add(1, std::memory_order_relaxed);
    table_->log_unauthenticated(
        "closed a connection from " + v.address + " before it " + "authenticated: " + why,
        Clock::now());
  }

  // A message the link table never sees (its framing is ZeroMQ's, not ours).
  void reject_router(const std::string& why) NODUS_REQUIRES(io_mu_) {
    table_->reject_unframed("router", why, Clock::now());
  }

  TransportOptions opt_;
  TransportCallbacks cb_;
  zmq::context_t ctx_;
  zmq::socket_t router_ NODUS_GUARDED_BY(io_mu_);
  std::unique_ptr<ZapHandler> zap_;  // CURVE (answered on the I/O thread); set by bind()
  // Set by bind(), before the I/O thread starts. Driven under io_mu_, but not
  // NODUS_PT_GUARDED_BY(io_mu_): its block(), blocked() and counters are any thread's.
  std::unique_ptr<LinkTable> table_;
  // PAIR: the ROUTER's events (the I/O thread's own).
  zmq::socket_t monitor_ NODUS_GUARDED_BY(io_mu_);
  bool monitoring_ NODUS_GUARDED_BY(io_mu_) = false;
  const std::size_t part_bytes_;  // the largest message part taken or sent
  std::string endpoint_;          // set by bind(), then read by any thread
  int wake_fd_ = -1;
  std::thread io_;
  std::atomic<bool> stop_{false};

  // Guards the link table, the ROUTER and everything below "The I/O thread's own": held by the
  // I/O thread except while it polls, and by a thread in receive() while it reads the ROUTER.
  Mutex io_mu_;
  int router_fd_ = -1;  // set by bind(); receive() polls it without io_mu_
  // receive(): how many threads are in it; close() waits for none.
  Mutex receivers_mu_;
  detail::CondVar receivers_cv_{receivers_mu_};
  int receivers_ NODUS_GUARDED_BY(receivers_mu_) = 0;
  bool closing_ NODUS_GUARDED_BY(receivers_mu_) = false;
  // Readable once closing_: wakes the threads in receive(), which poll it without the lock (set
  // by bind(), closed by close() once none is left).
  int closing_fd_ = -1;
  std::atomic<int> receivers_waiting_{0};  // threads blocked in receive()'s poll
  std::atomic<bool> io_waiting_{false};    // the I/O thread waits for io_mu_: receive() stands back
  // read_router() stopped with messages left: the descriptor may not signal them again.
  std::atomic<bool> router_backlog_{false};

  // Guards connect_requests_, up_, links_ and traffic_: what callers of send/connect/peers
  // share with the I/O thread.
  mutable Mutex mu_;
  std::vector<PeerAddress> connect_requests_ NODUS_GUARDED_BY(mu_);
  std::map<std::string, PeerInfo> up_ NODUS_GUARDED_BY(mu_);
  // What senders may use.
  std::unordered_map<std::string, std::shared_ptr<Link>> links_ NODUS_GUARDED_BY(mu_);
  // Frames queued on all links together (an atomic, changed under each link's own mutex).
  std::atomic<std::size_t> total_pending_{0};
  // Of links gone; live links count their own.
  std::map<std::string, PeerTraffic> traffic_ NODUS_GUARDED_BY(mu_);

  // The I/O thread's own (and receive()'s, under io_mu_).
  std::unordered_map<ConnId, Conn> conns_ NODUS_GUARDED_BY(io_mu_);
  // Retired DEALERs, closed in run().
  std::vector<std::unique_ptr<zmq::socket_t>> graveyard_ NODUS_GUARDED_BY(io_mu_);
  // receive() made a socket the I/O thread must start polling.
  bool io_wake_needed_ NODUS_GUARDED_BY(io_mu_) = false;
  // When run() next reads the DEALERs of up links.
  Clock::time_point next_up_read_ NODUS_GUARDED_BY(io_mu_){};
  // DATA frames since the last flush into traffic_.
  std::unordered_map<std::string, std::uint64_t> data_in_ NODUS_GUARDED_BY(io_mu_);
  std::unordered_map<std::string, Clock::time_point> last_logged_ NODUS_GUARDED_BY(io_mu_);
  PreAuthTracker pre_auth_ NODUS_GUARDED_BY(io_mu_);  // connections not authenticated yet

  std::atomic<std::uint64_t> frames_out_{0};
  std::atomic<std::uint64_t> connections_closed_{0};
};

}  // namespace

Result<std::unique_ptr<Transport>> Transport::start(TransportOptions options,
                                                    TransportCallbacks callbacks) {
  auto t = std::make_unique<ZmqTransport>(std::move(options), std::move(callbacks));
  Status s = t->bind();
  if (!s.ok()) return s;
  return std::unique_ptr<Transport>(std::move(t));
}

}  // namespace nodus::transport
