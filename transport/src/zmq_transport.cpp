// The ZeroMQ transport (nodus/transport/transport.hpp): sockets, threads and the hot paths.
// What a link does (handshake, liveness, reconnects, gossip) is the LinkTable's
// (link_table.hpp); this file gives it sockets to do it with. CURVE's ZAP handler is zap.hpp.
#include <poll.h>
#include <sodium.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <zmq.hpp>

#include "link_table.hpp"
#include "nodus/transport/transport.hpp"
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
        router_(ctx_, zmq::socket_type::router) {}

  ~ZmqTransport() override { close(); }

  Status bind() {
    if (sodium_init() < 0) return Status(ErrorCode::kInternal, "libsodium failed to initialise");
    auto cfg = make_link_config(opt_, "");
    if (!cfg.ok()) return cfg.error();
    zap_ = std::make_unique<ZapHandler>(
        ctx_, cfg->allowed,
        [this](const std::string& source, const std::string& line) { log_limited(source, line); });
    try {
      if (opt_.curve) zap_->listen(router_, *opt_.curve);
      router_.set(zmq::sockopt::linger, 0);
      router_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(opt_.limits.max_frame));
      router_.set(zmq::sockopt::router_mandatory, 0);
      router_.bind(opt_.listen);
      endpoint_ = router_.get(zmq::sockopt::last_endpoint);
      router_fd_ = router_.get(zmq::sockopt::fd);
    } catch (const zmq::error_t& e) {
      return Status(ErrorCode::kBadConfig, "cannot listen on " + opt_.listen + ": " + e.what());
    }
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

  void connect(const std::string& endpoint, const std::string& server_public_key) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
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
    std::lock_guard<std::mutex> lock(link->mu);
    return link->pending_frames;
  }
  std::size_t max_queued() const override { return opt_.max_queued_frames; }
  std::size_t batch_bytes() const override { return std::min(kBatchBytes, opt_.limits.max_frame); }

  std::vector<PeerInfo> peers() const override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<PeerInfo> out;
    for (const auto& [name, info] : up_) out.push_back(info);
    return out;
  }

  std::map<std::string, PeerTraffic> traffic() const override {
    std::lock_guard<std::mutex> lock(mu_);
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
    return s;
  }

  void block_peer(const std::string& peer) override { table_->block(peer, true); }
  void unblock_peer(const std::string& peer) override { table_->block(peer, false); }

  bool receive(int wake_fd, std::chrono::milliseconds max_wait) override {
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

  void close() override {
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
  /// The sending side of one DEALER, shared with the threads that send to its peer. Once the
  /// peer is up the link is published (links_) and senders use the socket directly, on their
  /// own thread: no hand-off to the I/O thread on the way out. Every use of the socket, by
  /// anyone, is under `mu` (a ZeroMQ socket may change threads behind a full memory barrier),
  /// and the I/O thread polls its descriptor, never the socket: so the socket is never used by
  /// two threads at once.
  struct Link {
    std::mutex mu;
    zmq::socket_t* dealer = nullptr;  // null once the link is gone
    /// Messages ZeroMQ would not take yet (its queue is full), each with its frame count.
    std::deque<std::pair<std::string, std::size_t>> pending;
    std::size_t pending_frames = 0;
    Clock::time_point last_sent{};
    std::atomic<std::uint64_t> data_out{0};  // DATA frames sent (traffic())
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
            std::string& why) override {
    io_wake_needed_ = true;  // a new socket for the I/O thread to poll
    Conn c;
    c.dealer = std::make_unique<zmq::socket_t>(ctx_, zmq::socket_type::dealer);
    c.link = std::make_shared<Link>();
    c.link->dealer = c.dealer.get();
    try {
      c.dealer->set(zmq::sockopt::linger, 0);
      // ZeroMQ's queue counts messages, of up to batch_bytes() each: this bounds it to about
      // 64 MiB; beyond, frames wait in the link's pending queue, bounded by max_queued_frames.
      c.dealer->set(zmq::sockopt::sndhwm, kMaxZmqQueued);
      c.dealer->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(opt_.limits.max_frame));
      if (opt_.curve) {
        c.dealer->set(zmq::sockopt::curve_serverkey, server_key);
        c.dealer->set(zmq::sockopt::curve_publickey, opt_.curve->public_key);
        c.dealer->set(zmq::sockopt::curve_secretkey, opt_.curve->secret_key);
      }
      c.dealer->connect(endpoint);
      c.fd = c.dealer->get(zmq::sockopt::fd);
    } catch (const zmq::error_t& e) {
      why = e.what();
      graveyard_.push_back(std::move(c.dealer));
      return false;
    }
    conns_.emplace(id, std::move(c));
    return true;
  }

  // Unpublishes the connection's link and closes its socket; senders holding the link see it
  // gone.
  void close(ConnId id) override {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn& c = it->second;
    {
      std::lock_guard<std::mutex> lock(c.link->mu);
      c.link->dealer = nullptr;
      total_pending_.fetch_sub(c.link->pending_frames, std::memory_order_relaxed);
      c.link->pending.clear();
      c.link->pending_frames = 0;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
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

  void send(ConnId id, std::string_view frame) override {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    (void)send_on(*it->second.link, frame, 1, it->second.peer);
  }

  void reply(const std::string& id, std::string_view frame) override {
    zmq::message_t rid(id.data(), id.size());
    zmq::message_t msg(frame.data(), frame.size());
    try {
      router_.send(rid, zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      router_.send(msg, zmq::send_flags::dontwait);
      frames_out_.fetch_add(1, std::memory_order_relaxed);
    } catch (const zmq::error_t&) {
      // The connection went away meanwhile.
    }
  }

  void publish(const std::string& peer, ConnId id) override {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    it->second.peer = peer;
    std::lock_guard<std::mutex> lock(mu_);
    links_.try_emplace(peer, it->second.link);
  }

  void peer_up(const PeerInfo& info, ConnId id) override {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    it->second.up = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      up_[info.name] = info;
      links_[info.name] = it->second.link;
    }
    if (cb_.on_peer_up) cb_.on_peer_up(info);
  }

  void peer_down(const std::string& peer, const std::string& reason, bool was_up,
                 bool hidden) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
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

  void count_data_in(const std::string& peer, std::uint64_t count) override {
    data_in_[peer] += count;
  }

  Clock::duration idle_for(ConnId id, TimePoint now) override {
    auto it = conns_.find(id);
    if (it == conns_.end()) return Clock::duration::zero();
    std::lock_guard<std::mutex> lock(it->second.link->mu);
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
  void log_limited(const std::string& source, const std::string& line) {
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
        items.push_back({zap_->zap_handle(), 0, ZMQ_POLLIN, 0});
        items.push_back({zap_->monitor_handle(), 0, ZMQ_POLLIN, 0});
      }
      // DEALERs by their descriptors too: a socket may be used only under its link's mutex,
      // and polling a socket uses it (a sender may be sending on a link that is published
      // while its handshake finishes). The descriptor only says that something may have
      // changed; service() then drains and reads under the mutex.
      for (auto& [id, c] : conns_) {
        bool pending;
        {
          std::lock_guard<std::mutex> lock(c.link->mu);
          pending = !c.link->pending.empty();
        }
        if (c.up && !pending) continue;  // read now and then below, for a REFUSE
        items.push_back({nullptr, c.fd, ZMQ_POLLIN, 0});
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
        if (items[2].revents & ZMQ_POLLIN) zap_->answer();
        if (items[3].revents & ZMQ_POLLIN) zap_->read_monitor(endpoint_);
      }
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
      table_->tick(Clock::now());
    }
    // Leaving: tell the peers, then let the sockets go.
    for (auto& [id, c] : conns_) {
      if (!c.up) continue;
      std::lock_guard<std::mutex> lock(c.link->mu);
      c.dealer->set(zmq::sockopt::linger, 200);  // give the BYE a moment to leave
    }
    table_->leave(Clock::now());
    conns_.clear();
    graveyard_.clear();
    if (opt_.curve) zap_->close(router_);
    router_.close();
  }

  void take_requests() {
    std::vector<PeerAddress> connects;
    {
      std::lock_guard<std::mutex> lock(mu_);
      connects.swap(connect_requests_);
    }
    for (const PeerAddress& a : connects) table_->connect(a.endpoint, a.public_key, Clock::now());
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

  // Drains what ZeroMQ would not take earlier, as far as it takes it now, and hands what came
  // back on the DEALER (handshake frames, a REFUSE) to the link table. Every use of the socket
  // is under the link's mutex.
  void service(ConnId id) {
    std::vector<zmq::message_t> in;
    {
      auto it = conns_.find(id);
      if (it == conns_.end()) return;
      Link& link = *it->second.link;
      std::lock_guard<std::mutex> lock(link.mu);
      if (!link.dealer) return;
      try {
        // ZMQ_EVENTS processes the socket's pending commands: after it, the descriptor signals
        // the next change (a send or recv alone may leave commands unprocessed, and a poll on
        // the descriptor would then sleep through a socket that became writable).
        for (int round = 0; round < 4; ++round) {
          while (!link.pending.empty()) {
            auto& [bytes, count] = link.pending.front();
            zmq::message_t msg(bytes.data(), bytes.size());
            if (!link.dealer->send(msg, zmq::send_flags::dontwait)) break;
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
      } catch (const zmq::error_t& e) {
        log_limited("dealer", std::string("a link's socket failed: ") + e.what());
      }
    }
    // Outside the mutex: the link table may close this connection meanwhile.
    for (zmq::message_t& msg : in) table_->on_outgoing(id, msg.to_string_view(), Clock::now());
  }

  // Reads and handles up to kReadBudget frames; sets router_backlog_ when it stopped before
  // ZeroMQ had nothing more.
  void read_router() {
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
      bool extra_parts = false;
      for (bool more = msg.more(); more;) {  // the protocol has one part per frame
        zmq::message_t extra;
        (void)router_.recv(extra, zmq::recv_flags::none);
        more = extra.more();
        extra_parts = true;
      }
      if (extra_parts) {
        reject_router("a frame of several parts");
        continue;
      }
      // One message, one or more frames back to back (docs/protocol.md section 1).
      table_->on_incoming(rid.to_string(), msg.to_string_view(),
                          opt_.curve ? user_id(msg) : std::string_view(), Clock::now());
    }
    if (!data_in_.empty()) {  // one lock per read, not per frame
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [peer, n] : data_in_) traffic_[peer].data_in += n;
      data_in_.clear();
    }
  }

  // A message the link table never sees (its framing is ZeroMQ's, not ours).
  void reject_router(const std::string& why) {
    table_->reject_unframed("router", why, Clock::now());
  }

  TransportOptions opt_;
  TransportCallbacks cb_;
  zmq::context_t ctx_;
  zmq::socket_t router_;
  std::unique_ptr<ZapHandler> zap_;   // CURVE (answered on the I/O thread); set by bind()
  std::unique_ptr<LinkTable> table_;  // set by bind(), before the I/O thread starts
  std::string endpoint_;
  int wake_fd_ = -1;
  std::thread io_;
  std::atomic<bool> stop_{false};

  // Guards the link table and everything below "The I/O thread's own": held by the I/O thread
  // except while it polls, and by a thread in receive() while it reads the ROUTER.
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

  // Guards connect_requests_, up_, links_ and traffic_: what callers of send/connect/peers
  // share with the I/O thread.
  mutable std::mutex mu_;
  std::vector<PeerAddress> connect_requests_;
  std::map<std::string, PeerInfo> up_;
  std::unordered_map<std::string, std::shared_ptr<Link>> links_;  // what senders may use
  std::atomic<std::size_t> total_pending_{0};
  std::map<std::string, PeerTraffic> traffic_;  // of links gone; live links count their own

  // The I/O thread's own (and receive()'s, under io_mu_).
  std::unordered_map<ConnId, Conn> conns_;
  std::vector<std::unique_ptr<zmq::socket_t>> graveyard_;  // retired DEALERs, closed in run()
  bool io_wake_needed_ = false;       // receive() made a socket the I/O thread must start polling
  Clock::time_point next_up_read_{};  // when run() next reads the DEALERs of up links
  std::unordered_map<std::string, std::uint64_t> data_in_;  // DATA frames since the last flush
  std::unordered_map<std::string, Clock::time_point> last_logged_;

  std::atomic<std::uint64_t> frames_out_{0};
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
