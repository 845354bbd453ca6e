// The in-memory network of deterministic tests (nodus/transport/sim.hpp): SimTransport drives
// the production link logic (link_table.hpp) over simulated ZeroMQ connections.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <limits>
#include <utility>

#include "link_table.hpp"
#include "nodus/transport/sim.hpp"

namespace nodus::transport {

namespace {
using namespace std::chrono_literals;
constexpr std::size_t kSimBatchBytes = 64 * 1024;
}  // namespace

// -- SimClock --------------------------------------------------------------------------------

SimClock::SimClock() : now_(std::chrono::hours(1)) {}

void SimClock::wake_at(time_point when) {
  if (when > now_) wakeups_.insert(when);
}

bool SimClock::advance() { return driver_ ? driver_() : false; }

std::optional<SimClock::time_point> SimClock::next_wakeup() const {
  auto it = wakeups_.upper_bound(now_);
  if (it == wakeups_.end()) return std::nullopt;
  return *it;
}

void SimClock::advance_to(time_point t) {
  if (t < now_) return;
  now_ = t;
  wakeups_.erase(wakeups_.begin(), wakeups_.upper_bound(t));
}

// -- SimTransport ----------------------------------------------------------------------------

/// One node's transport on a SimNetwork: the link table over simulated connections.
class SimTransport final : public Transport, private LinkIo {
 public:
  SimTransport(SimNetwork& net, TransportOptions options, TransportCallbacks callbacks,
               LinkConfig config)
      : net_(net),
        opt_(std::move(options)),
        cb_(std::move(callbacks)),
        table_(std::move(config), static_cast<LinkIo&>(*this)),
        tick_every_(std::max<std::chrono::milliseconds>(10ms, opt_.heartbeat_interval / 3)),
        next_tick_(net.now()) {}

  ~SimTransport() override { close(); }

  const std::string& name() const { return opt_.name; }
  const std::string& public_key() const {
    static const std::string none;
    return opt_.curve ? opt_.curve->public_key : none;
  }
  bool admits(const std::string& client_key) const {
    if (!opt_.curve) return client_key.empty();  // a plaintext listener: plaintext clients
    return !client_key.empty() && table_.config().allowed.count(client_key) > 0;
  }

  // -- driven by the network --------------------------------------------------------------------

  void on_incoming(const std::string& id, std::string_view bytes, std::string_view client_key) {
    if (closed_) return;
    table_.on_incoming(id, bytes, client_key, net_.now());
  }
  void on_outgoing(ConnId id, std::string_view bytes) {
    if (closed_) return;
    table_.on_outgoing(id, bytes, net_.now());
  }
  SimNetwork::TimePoint next_tick() const { return next_tick_; }
  void tick() {
    next_tick_ = net_.now() + tick_every_;
    table_.tick(net_.now());
  }
  /// After a pause: the tick is due at once (after the input waiting for it).
  void tick_now() { next_tick_ = net_.now(); }

  // -- Transport --------------------------------------------------------------------------------

  const std::string& endpoint() const override { return opt_.listen; }

  void connect(const std::string& endpoint, const std::string& server_public_key) override {
    if (closed_) return;
    table_.connect(endpoint, server_public_key, net_.now());
  }

  Status send_frames(const std::string& peer, std::string_view frames, std::size_t count) override {
    auto it = published_.find(peer);
    if (closed_ || it == published_.end()) return Status(ErrorCode::kNodeDown, peer);
    if (table_.blocked(peer)) return Status::Ok();  // a cut link: lost
    Conn& c = conns_.at(it->second);
    c.last_sent = net_.now();
    c.data_out += count;
    frames_out_ += count;
    net_.transmit(c.pipe, frames);
    return Status::Ok();
  }

  std::size_t batch_bytes() const override {
    return std::min(kSimBatchBytes, opt_.limits.max_frame);
  }
  bool is_up(const std::string& peer) const override { return published_.count(peer) > 0; }
  bool receive(int, std::chrono::milliseconds) override { return false; }

  std::vector<PeerInfo> peers() const override {
    std::vector<PeerInfo> out;
    for (const auto& [name, info] : up_) out.push_back(info);
    return out;
  }

  std::map<std::string, PeerTraffic> traffic() const override {
    std::map<std::string, PeerTraffic> out = traffic_;
    for (const auto& [id, c] : conns_) {
      if (!c.peer.empty()) out[c.peer].data_out += c.data_out;
    }
    return out;
  }

  std::size_t queued(const std::string&) const override { return 0; }  // the network holds it
  std::size_t max_queued() const override { return opt_.max_queued_frames; }

  TransportStats stats() const override {
    TransportStats s;
    s.frames_in = table_.frames_in();
    s.frames_out = frames_out_;
    s.frames_rejected = table_.frames_rejected();
    s.auth_failures = table_.auth_failures();
    s.curve_refused = curve_refused_;
    return s;
  }

  void block_peer(const std::string& peer) override { table_.block(peer, true); }
  void unblock_peer(const std::string& peer) override { table_.block(peer, false); }

  void close() override {
    if (closed_) return;
    table_.leave(net_.now());  // BYE to the peers that are up, every connection closed
    closed_ = true;
    net_.detach(this);
  }

  void count_curve_refused() { ++curve_refused_; }

  /// As a crashed process: silent at once, no BYE.
  void crash() {
    if (closed_) return;
    closed_ = true;
    published_.clear();
    net_.detach(this);
  }

 private:
  struct Conn {
    std::uint64_t pipe = 0;
    std::string peer;
    SimNetwork::TimePoint last_sent{};
    std::uint64_t data_out = 0;
  };

  // -- LinkIo -----------------------------------------------------------------------------------

  bool open(ConnId id, const std::string& endpoint, const std::string&, std::string& why) override {
    if (endpoint.rfind("sim://", 0) != 0) {
      why = "not an endpoint of the simulated network";
      return false;
    }
    Conn c;
    c.pipe = net_.open_pipe(this, id, endpoint);
    c.last_sent = net_.now();
    conns_.emplace(id, std::move(c));
    return true;
  }

  void close(ConnId id) override {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    net_.close_pipe(it->second.pipe);
    if (!it->second.peer.empty()) {
      auto p = published_.find(it->second.peer);
      if (p != published_.end() && p->second == id) published_.erase(p);
      traffic_[it->second.peer].data_out += it->second.data_out;
    }
    conns_.erase(it);
  }

  void send(ConnId id, std::string_view frame) override {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    it->second.last_sent = net_.now();
    ++frames_out_;
    net_.transmit(it->second.pipe, frame);
  }

  void reply(const std::string& in, std::string_view frame) override {
    ++frames_out_;
    net_.answer(in, frame);
  }

  void publish(const std::string& peer, ConnId id) override {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    it->second.peer = peer;
    published_.try_emplace(peer, id);
  }

  void peer_up(const PeerInfo& info, ConnId id) override {
    up_[info.name] = info;
    published_[info.name] = id;
    if (cb_.on_peer_up) cb_.on_peer_up(info);
  }

  void peer_down(const std::string& peer, const std::string& reason, bool was_up,
                 bool hidden) override {
    up_.erase(peer);
    published_.erase(peer);
    if (hidden) traffic_.erase(peer);
    if (was_up && cb_.on_peer_down) cb_.on_peer_down(peer, reason);
  }

  void deliver(const std::string& peer, Data&& data) override {
    if (cb_.on_data) cb_.on_data(peer, std::move(data));
  }

  void count_data_in(const std::string& peer, std::uint64_t count) override {
    traffic_[peer].data_in += count;
  }

  std::chrono::steady_clock::duration idle_for(ConnId id, TimePoint now) override {
    auto it = conns_.find(id);
    return it == conns_.end() ? std::chrono::steady_clock::duration::zero()
                              : now - it->second.last_sent;
  }

  std::string nonce() override {
    std::string n(kNonceBytes, '\0');
    for (char& c : n) c = static_cast<char>(net_.random()() & 0xff);
    return n;
  }

  void log(const std::string& line) override {
    if (opt_.log) {
      opt_.log(line);
    } else {
      std::fprintf(stderr, "nodus[%s]: %s\n", opt_.name.c_str(), line.c_str());
    }
  }

  SimNetwork& net_;
  TransportOptions opt_;
  TransportCallbacks cb_;
  LinkTable table_;
  const std::chrono::milliseconds tick_every_;
  SimNetwork::TimePoint next_tick_;
  bool closed_ = false;
  std::map<ConnId, Conn> conns_;
  std::map<std::string, ConnId> published_;  // what senders may use
  std::map<std::string, PeerInfo> up_;
  std::map<std::string, PeerTraffic> traffic_;  // of links gone; live links count their own
  std::uint64_t frames_out_ = 0;
  std::uint64_t curve_refused_ = 0;
};

// -- SimNetwork --------------------------------------------------------------------------------

SimNetwork::SimNetwork(std::uint64_t seed, SimFaults faults)
    : seed_(seed), rng_(seed), clock_(std::make_shared<SimClock>()), faults_(faults) {
  // Without a node-level driver, a waiting thread moves the network and its clock.
  clock_->set_driver([this] {
    if (step()) return true;
    std::optional<TimePoint> next = next_due();
    std::optional<TimePoint> wake = clock_->next_wakeup();
    if (!next || (wake && *wake < *next)) next = wake;
    if (!next) return false;
    advance_to(*next);
    return true;
  });
}

SimNetwork::~SimNetwork() = default;

TransportFactory SimNetwork::factory() {
  return [this](TransportOptions o, TransportCallbacks cb) {
    return start(std::move(o), std::move(cb));
  };
}

Result<std::unique_ptr<Transport>> SimNetwork::start(TransportOptions o, TransportCallbacks cb) {
  if (o.listen.rfind("sim://", 0) != 0) {
    return Status(ErrorCode::kBadConfig,
                  "cannot listen on \"" + o.listen + "\": a simulated node listens on sim://NAME");
  }
  if (listeners_.count(o.listen)) {
    return Status(ErrorCode::kBadConfig, "cannot listen on " + o.listen + ": address in use");
  }
  auto cfg = make_link_config(o, o.listen);
  if (!cfg.ok()) return cfg.error();
  auto t =
      std::make_unique<SimTransport>(*this, std::move(o), std::move(cb), std::move(cfg.value()));
  attach(t.get());
  return std::unique_ptr<Transport>(std::move(t));
}

void SimNetwork::attach(SimTransport* t) {
  listeners_[t->endpoint()] = t;
  trace("listen " + t->endpoint());
}

void SimNetwork::detach(SimTransport* t) {
  auto it = listeners_.find(t->endpoint());
  if (it != listeners_.end() && it->second == t) listeners_.erase(it);
  for (auto& [id, p] : pipes_) {
    if (p.from == t) p.from = nullptr;
  }
  held_.erase(t->name());
  trace("closed " + t->endpoint());
}

SimTransport* SimNetwork::listener(const std::string& endpoint) const {
  auto it = listeners_.find(endpoint);
  return it == listeners_.end() ? nullptr : it->second;
}

std::string SimNetwork::node_at(const std::string& endpoint) const {
  SimTransport* t = listener(endpoint);
  return t ? t->name() : std::string();
}

std::uint64_t SimNetwork::open_pipe(SimTransport* from, std::uint64_t conn,
                                    const std::string& endpoint) {
  const std::uint64_t id = next_pipe_++;
  Pipe& p = pipes_[id];
  p.from = from;
  p.from_name = from->name();
  p.conn = conn;
  p.endpoint = endpoint;
  return id;
}

void SimNetwork::close_pipe(std::uint64_t id) {
  auto it = pipes_.find(id);
  if (it == pipes_.end()) return;
  // What was sent before still arrives (it left); answers to it are lost.
  it->second.from = nullptr;
}

void SimNetwork::transmit(std::uint64_t id, std::string_view bytes) {
  auto it = pipes_.find(id);
  if (it == pipes_.end()) return;
  Pipe& p = it->second;
  ++stats_.sent;
  const std::string to = node_at(p.endpoint);
  if (to.empty()) {
    ++stats_.unroutable;  // nobody listens there (yet, or any more)
    return;
  }
  send_event(p, id, /*to_acceptor=*/true, to, bytes);
}

void SimNetwork::answer(const std::string& routing_id, std::string_view bytes) {
  ++stats_.sent;
  std::uint64_t id = 0, incarnation = 0;
  const char* first = routing_id.data();
  const char* last = first + routing_id.size();
  const char* dot = std::find(first, last, '.');
  if (routing_id.empty() || routing_id[0] != 'p' || dot == last ||
      std::from_chars(first + 1, dot, id).ec != std::errc() ||
      std::from_chars(dot + 1, last, incarnation).ec != std::errc()) {
    return;
  }
  auto it = pipes_.find(id);
  if (it == pipes_.end() || !it->second.from || it->second.incarnation != incarnation) {
    ++stats_.unroutable;  // the connection it answers has gone
    return;
  }
  send_event(it->second, id, /*to_acceptor=*/false, it->second.from_name, bytes);
}

void SimNetwork::send_event(Pipe& p, std::uint64_t id, bool to_acceptor, const std::string& to,
                            std::string_view bytes) {
  const std::string from = to_acceptor ? p.from_name : node_at(p.endpoint);
  if (cut_between(from, to)) {
    ++stats_.partitioned;
    break_pipe(p, id, "partition");
    return;
  }
  std::uniform_real_distribution<double> coin(0.0, 1.0);
  if (faults_.drop > 0 && coin(rng_) < faults_.drop) {
    ++stats_.dropped;
    break_pipe(p, id, "drop");
    return;
  }
  std::uniform_int_distribution<std::int64_t> latency(
      faults_.min_latency.count(),
      std::max(faults_.min_latency.count(), faults_.max_latency.count()));
  TimePoint at = now() + std::chrono::microseconds(latency(rng_));
  at = std::max(at, p.down_until);
  TimePoint& last = to_acceptor ? p.last_out : p.last_back;
  if (faults_.reorder > 0 && coin(rng_) < faults_.reorder) {
    ++stats_.reordered;
  } else {
    at = std::max(at, last);
  }
  last = std::max(last, at);
  events_.push(Event{at, next_seq_++, to_acceptor, id, p.incarnation, to, std::string(bytes)});
  if (faults_.duplicate > 0 && coin(rng_) < faults_.duplicate) {
    ++stats_.duplicated;
    last = at + 1us;
    events_.push(Event{last, next_seq_++, to_acceptor, id, p.incarnation, to, std::string(bytes)});
  }
}

void SimNetwork::break_pipe(Pipe& p, std::uint64_t id, const char* why) {
  ++p.incarnation;
  p.down_until = now() + faults_.reconnect;
  trace(std::string("break p") + std::to_string(id) + " (" + p.from_name + " -> " + p.endpoint +
        "): " + why);
}

bool SimNetwork::step() {
  SimTransport* ticking = nullptr;
  for (const auto& [endpoint, t] : listeners_) {
    if (paused(t->name()) || t->next_tick() > now()) continue;
    if (!ticking || t->next_tick() < ticking->next_tick()) ticking = t;
  }
  if (!events_.empty() && events_.top().at <= now() &&
      (!ticking || events_.top().at <= ticking->next_tick())) {
    Event e = events_.top();
    events_.pop();
    deliver(e);
    return true;
  }
  if (ticking) {
    ticking->tick();
    return true;
  }
  return false;
}

std::optional<SimNetwork::TimePoint> SimNetwork::next_due() const {
  std::optional<TimePoint> next;
  if (!events_.empty()) next = events_.top().at;
  for (const auto& [endpoint, t] : listeners_) {
    if (paused(t->name())) continue;
    if (!next || t->next_tick() < *next) next = t->next_tick();
  }
  if (next && *next < now()) next = now();
  return next;
}

void SimNetwork::deliver(Event& e) {
  auto it = pipes_.find(e.pipe);
  if (it == pipes_.end()) return;
  Pipe& p = it->second;
  const std::string from = e.to_acceptor ? p.from_name : node_at(p.endpoint);
  if (trace_) {
    std::string_view rest = e.bytes;
    auto f = decode_next_frame(rest);
    static const char* const kNames[] = {"HELLO", "CHALLENGE", "PROOF", "WELCOME", "REFUSE",
                                         "DATA",  "HEARTBEAT", "BYE",   "PEERS"};
    trace("deliver p" + std::to_string(e.pipe) + "." + std::to_string(e.incarnation) + " " + from +
          " -> " + e.to + " " + (f.ok() ? kNames[f->index()] : "?") + (rest.empty() ? "" : " ..."));
  }
  if (paused(e.to)) {
    ++stats_.held;
    held_[e.to].push_back(std::move(e));
    return;
  }
  if (cut_between(from, e.to)) {  // a partition that began while it was on its way
    ++stats_.partitioned;
    if (p.incarnation == e.incarnation) break_pipe(p, e.pipe, "partition");
    return;
  }
  if (e.to_acceptor) {
    SimTransport* t = listener(p.endpoint);
    if (!t || t->name() != e.to) {
      ++stats_.unroutable;
      return;
    }
    // CURVE, as ZAP and the client's server-key check would decide it before any frame.
    const std::string client_key = p.from ? p.from->public_key() : std::string();
    if (!t->admits(client_key)) {
      ++stats_.unroutable;
      t->count_curve_refused();
      return;
    }
    ++stats_.delivered;
    t->on_incoming("p" + std::to_string(e.pipe) + "." + std::to_string(e.incarnation), e.bytes,
                   client_key);
    return;
  }
  if (!p.from || p.incarnation != e.incarnation) {
    ++stats_.unroutable;  // the connection it answers has closed or broken
    return;
  }
  ++stats_.delivered;
  p.from->on_outgoing(p.conn, e.bytes);
}

// -- faults -----------------------------------------------------------------------------------

void SimNetwork::partition(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  for (const std::string& x : a) {
    for (const std::string& y : b) cut(x, y);
  }
}

void SimNetwork::cut(const std::string& a, const std::string& b) {
  if (a == b) return;
  cuts_.insert(a < b ? std::make_pair(a, b) : std::make_pair(b, a));
  trace("cut " + a + " | " + b);
}

void SimNetwork::heal() {
  cuts_.clear();
  trace("heal");
}

bool SimNetwork::cut_between(const std::string& a, const std::string& b) const {
  if (cuts_.empty() || a.empty() || b.empty()) return false;
  return cuts_.count(a < b ? std::make_pair(a, b) : std::make_pair(b, a)) > 0;
}

void SimNetwork::pause(const std::string& node) {
  paused_.insert(node);
  trace("pause " + node);
}

void SimNetwork::resume(const std::string& node) {
  if (!paused_.erase(node)) return;
  trace("resume " + node);
  // What waited is read first, in order, then the tick that is overdue.
  auto held = held_.find(node);
  if (held != held_.end()) {
    for (Event& e : held->second) {
      e.at = now();
      e.seq = next_seq_++;
      events_.push(std::move(e));
    }
    held_.erase(held);
  }
  for (const auto& [endpoint, t] : listeners_) {
    if (t->name() == node) t->tick_now();
  }
}

void SimNetwork::break_connections(const std::string& node) {
  for (auto& [id, p] : pipes_) {
    if (p.from_name == node || node_at(p.endpoint) == node) break_pipe(p, id, "blip");
  }
}

void SimNetwork::crash(const std::string& node) {
  for (const auto& [endpoint, t] : listeners_) {
    if (t->name() == node) {
      trace("crash " + node);
      t->crash();  // detaches: listeners_ changes, so stop here
      return;
    }
  }
}

void SimNetwork::trace(const std::string& line) {
  if (!trace_) return;
  const auto ms =
      std::chrono::duration_cast<std::chrono::microseconds>(now() - SimClock().now()).count();
  trace_(std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + " ms " + line);
}

}  // namespace nodus::transport
