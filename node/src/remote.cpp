// The node's side of the wire: envelopes to and from transport Data frames, the registry of
// typed messages that can cross the wire, and what a node does when a peer comes and goes.
#include <array>
#include <chrono>
#include <cstdio>
#include <optional>
#include <unordered_map>

#include "nodus/node/codec.hpp"
#include "nodus/node/message.hpp"
#include "process_impl.hpp"
#include "runtime.hpp"

namespace nodus::detail {

// -- typed messages that can cross the wire ------------------------------------------------

namespace {
struct RegisteredType {
  const char* name;
  MessageDecoder decode;
};
// Guards g_types: written at start-up (register_message), read for every typed frame.
constinit Mutex g_types_mu;
std::unordered_map<std::uint32_t, RegisteredType> g_types NODUS_GUARDED_BY(g_types_mu);
}  // namespace

Status register_message_decoder(std::uint32_t tag, const char* name, MessageDecoder decode) {
  if (tag == 0) return Status(ErrorCode::kBadArg, std::string("tag 0 is the term tag: ") + name);
  MutexLock lock(g_types_mu);
  auto [it, inserted] = g_types.emplace(tag, RegisteredType{name, decode});
  if (!inserted && std::string_view(it->second.name) != name) {
    return Status(ErrorCode::kBadArg, "tag " + std::to_string(tag) + " is used by both " +
                                          it->second.name + " and " + name);
  }
  return Status::Ok();
}

MessageDecoder message_decoder(std::uint32_t tag) {
  MutexLock lock(g_types_mu);
  auto it = g_types.find(tag);
  return it == g_types.end() ? nullptr : it->second.decode;
}

// -- envelopes <-> frames -----------------------------------------------------------------

namespace {

// The wire numbers of envelope kinds (docs/protocol.md section 4); local-only kinds have none.
constexpr std::pair<Kind, std::uint8_t> kWireKinds[] = {
    {Kind::kInfo, 0},       {Kind::kCast, 1},    {Kind::kCall, 2},       {Kind::kReply, 3},
    {Kind::kReplyError, 4}, {Kind::kLink, 5},    {Kind::kUnlink, 6},     {Kind::kLinkExit, 7},
    {Kind::kExitSignal, 8}, {Kind::kMonitor, 9}, {Kind::kDemonitor, 10}, {Kind::kDown, 11},
    {Kind::kGetStatus, 12}, {Kind::kStop, 13},
};

std::optional<std::uint8_t> wire_kind(Kind k) {
  for (auto [kind, n] : kWireKinds) {
    if (kind == k) return n;
  }
  return std::nullopt;
}

std::optional<Kind> kind_from_wire(std::uint8_t n) {
  for (auto [kind, w] : kWireKinds) {
    if (w == n) return kind;
  }
  return std::nullopt;
}

// The atom of a node name read off the wire; nullopt when it is new and the atom table holds
// all it takes from other nodes (atom_table_stats). A frame names two or three nodes, nearly
// always the same few: a small per-thread cache spares the atom table's lock and hash for them.
std::optional<Atom> node_atom(const std::string& name) {
  struct Entry {
    std::string name;
    Atom atom;
  };
  thread_local std::array<Entry, 4> cache;
  thread_local std::size_t next = 0;
  for (const Entry& e : cache) {
    if (e.name == name && !name.empty()) return e.atom;
  }
  std::optional<Atom> atom = detail::atom_from_wire(name);
  if (!atom) return std::nullopt;
  Entry& e = cache[next++ % cache.size()];
  e.name = name;
  e.atom = *atom;
  return e.atom;
}

// A pid or ref read off the wire (a default one, and `refused` set, when its node's name may
// not become an atom).
template <class Id>
Id id_of(const transport::WireId& w, bool& refused) {
  std::optional<Atom> node = node_atom(w.node);
  if (!node) {
    refused = true;
    return Id{};
  }
  return Id{*node, w.creation, w.id};
}

}  // namespace

namespace {

transport::WireIdRef wire_ref(const Pid& p) { return {p.node.name(), p.creation, p.id}; }
transport::WireIdRef wire_ref(const Ref& r) { return {r.node.name(), r.creation, r.id}; }

// Appends e's DATA frame to `out`, or says why it cannot cross the wire (`out` untouched).
std::optional<Reason> encode_envelope(const Runtime& rt, const Envelope& e,
                                      const std::variant<Pid, std::string>& to, std::string& out) {
  auto kind = wire_kind(e.kind);
  if (!kind) return reasons::of(ErrorCode::kBadArg, bin("a local-only signal"));
  thread_local std::string payload;  // reused: no allocation per message
  payload.clear();
  if (!e.msg.encode(payload)) {
    return reasons::of(ErrorCode::kBadArg, bin(std::string("message type ") + e.msg.type_name() +
                                               " cannot cross the wire: declare it with "
                                               "NODUS_MESSAGE"));
  }
  transport::DataRef d;
  d.kind = *kind;
  if (e.from) d.from = wire_ref(e.from);
  if (const Pid* pid = std::get_if<Pid>(&to)) {
    d.to = wire_ref(*pid);
  } else {
    d.to = std::string_view(std::get<std::string>(to));
  }
  if (e.ref) d.ref = wire_ref(e.ref);
  if (e.deadline != Runtime::Clock::time_point::max()) {
    auto left = std::chrono::duration_cast<std::chrono::microseconds>(e.deadline - rt.now());
    d.budget_us = left.count() > 0 ? static_cast<std::uint64_t>(left.count()) : 1;
  }
  d.tag = e.msg.wire_tag();
  d.payload = payload;
  transport::encode_data_frame(d, out);
  return std::nullopt;
}

// -- sends gathered per slice ------------------------------------------------------------

// The frames one slice sends to one peer.
struct PeerBatch {
  transport::Transport* transport = nullptr;
  Atom node;
  std::string peer;       // node's name
  std::string frames;     // encoded back to back
  std::size_t count = 0;  // frames in `frames`
  bool checked = false;   // the link was up when this slice first sent to it
  bool used = false;      // sent to in this slice (listed in SliceBatches::used)
};

// While a process runs on a scheduler thread, its remote sends are gathered here, one batch per
// thread, and leave when the scheduler flushes it (RemoteBatchScope): between the slices of
// several processes, so that the replies of a burst of requests to one peer cost one ZeroMQ
// message and one wake-up of each side's I/O threads instead of one each. Entries are reused
// from flush to flush.
struct SliceBatches {
  // Held by the owner thread to add and send, and by another thread that must send what a
  // process left here before it runs there (RemoteBatchScope::flush_marked).
  Mutex mu;
  bool open = false;                                   // the owner's alone
  std::uint64_t added = 0;                             // frames added so far (the owner's alone)
  std::uint32_t generation NODUS_GUARDED_BY(mu) = 0;   // flushes so far
  std::vector<PeerBatch> peers NODUS_GUARDED_BY(mu);   // the few peers a batch sends to
  std::vector<std::size_t> used NODUS_GUARDED_BY(mu);  // in order of the first send to each
};
// Entries kept for reuse beyond a flush (hidden peers come and go under fresh names).
constexpr std::size_t kKeptBatches = 16;
thread_local SliceBatches tls_batches;

void send_batch(PeerBatch& b) {
  if (b.count > 0) {
    // A link that went down since the batch's first send to it: the frames are lost as they
    // would be in flight, and the senders hear of it by the node's DOWN.
    (void)b.transport->send_frames(b.peer, b.frames, b.count);
  }
  b.frames.clear();
  b.count = 0;
}

PeerBatch& batch_for(SliceBatches& batches, transport::Transport& t, Atom node)
    NODUS_REQUIRES(batches.mu) {
  std::vector<PeerBatch>& peers = batches.peers;
  std::size_t i = 0;
  while (i < peers.size() && !(peers[i].transport == &t && peers[i].node == node)) ++i;
  if (i == peers.size()) {
    PeerBatch& b = peers.emplace_back();
    b.transport = &t;
    b.node = node;
    b.peer = std::string(node.name());
  }
  PeerBatch& b = peers[i];
  if (!b.used) {
    b.used = true;
    batches.used.push_back(i);
  }
  return b;
}

void flush_locked(SliceBatches& batches) NODUS_REQUIRES(batches.mu) {
  // In the order of the first send to each peer: what leaves when does not depend on what
  // earlier batches did (a simulation replays from its seed).
  for (std::size_t i : batches.used) {
    PeerBatch& b = batches.peers[i];
    send_batch(b);
    b.checked = false;
    b.used = false;
  }
  batches.used.clear();
  ++batches.generation;
  if (batches.peers.size() > kKeptBatches) batches.peers.resize(kKeptBatches);
}

}  // namespace

RemoteBatchScope::RemoteBatchScope() { tls_batches.open = true; }

RemoteBatchScope::~RemoteBatchScope() {
  flush();
  tls_batches.open = false;
}

void RemoteBatchScope::flush() {
  MutexLock lock(tls_batches.mu);
  if (!tls_batches.used.empty()) flush_locked(tls_batches);
}

std::uint64_t RemoteBatchScope::added() { return tls_batches.added; }

RemoteBatchMark RemoteBatchScope::mark() {
  MutexLock lock(tls_batches.mu);
  return RemoteBatchMark{&tls_batches, tls_batches.generation};
}

void RemoteBatchScope::flush_marked(const RemoteBatchMark& m) {
  if (m.batch == nullptr || m.batch == &tls_batches) return;
  auto& batches = *static_cast<SliceBatches*>(m.batch);
  MutexLock lock(batches.mu);
  if (batches.generation == m.generation && !batches.used.empty()) flush_locked(batches);
}

Status Runtime::send_envelope(transport::Transport& t, Atom node, const Envelope& e,
                              const std::variant<Pid, std::string>& to,
                              std::optional<Reason>& bad) {
  if (!tls_batches.open) {
    thread_local std::string frame;
    frame.clear();
    if ((bad = encode_envelope(*this, e, to, frame))) return Status::Ok();
    return t.send_frames(std::string(node.name()), frame, 1);
  }
  MutexLock lock(tls_batches.mu);
  PeerBatch& b = batch_for(tls_batches, t, node);
  if (!b.checked) {  // once per batch: the errors a send would give, given at once
    if (!t.is_up(b.peer)) return Status(ErrorCode::kNodeDown, b.peer);
    if (t.queued(b.peer) >= t.max_queued()) {
      return Status(ErrorCode::kOverloaded, "send queue to " + b.peer + " is full");
    }
    b.checked = true;
  }
  const std::size_t before = b.frames.size();
  if ((bad = encode_envelope(*this, e, to, b.frames))) return Status::Ok();
  if (b.frames.size() > t.batch_bytes() && b.count > 0) {
    // Full: what came before this frame leaves now.
    (void)t.send_frames(b.peer, std::string_view(b.frames).substr(0, before), b.count);
    b.frames.erase(0, before);
    b.count = 0;
  }
  ++b.count;
  ++tls_batches.added;
  return Status::Ok();
}

void Runtime::deliver_remote(const Pid& to, Envelope* e) { deliver_remote_to(to.node, to, e); }

void Runtime::deliver_remote_name(Atom node, const std::string& name, Envelope* e) {
  deliver_remote_to(node, name, e);
}

void Runtime::deliver_remote_to(Atom node, std::variant<Pid, std::string> address, Envelope* e) {
  std::unique_ptr<Envelope> owned(e);
  // Who bounces answer for: the pid, or for a name "no process" in general.
  const Pid to = std::holds_alternative<Pid>(address) ? std::get<Pid>(address) : Pid{};
  // A call to an unreachable node fails at once with nodedown; a monitor or link gets
  // noconnection, as in Erlang.
  auto unreachable = [&] {
    const bool asks =
        e->kind == Kind::kCall || e->kind == Kind::kGetStatus || e->kind == Kind::kStop;
    bounce(owned.release(), asks ? reasons::of(ErrorCode::kNodeDown) : Reason("noconnection"), to);
  };
  transport::Transport* t = transport();
  if (!t) {
    unreachable();
    return;
  }
  std::optional<Reason> bad;
  Status s = send_envelope(*t, node, *e, address, bad);
  if (bad) {
    if (e->kind == Kind::kCall) send_error_reply(e->from, e->ref, *bad);
  } else if (s.code() == ErrorCode::kNodeDown) {
    unreachable();
  } else if (!s.ok()) {
    bounce(owned.release(), reasons::from_status(s), to);
  }
}

void Runtime::on_remote_data(const std::string& peer, transport::Data&& d) {
  auto kind = kind_from_wire(d.kind);
  bool no_atom = false;  // a node's name that would be one atom too many (atom_table_stats)
  const Pid from = d.from ? id_of<Pid>(*d.from, no_atom) : Pid{};
  const Ref ref = d.ref ? id_of<Ref>(*d.ref, no_atom) : Ref{};
  // The atoms refused so far: a decoding that fails with more refused it for want of atoms.
  const std::uint64_t atoms_refused = atom_table_stats().refused;
  auto refuse = [&](const std::string& why) {
    remote_rejected_.fetch_add(1, std::memory_order_relaxed);
    if (no_atom || atom_table_stats().refused != atoms_refused) log_atoms_refused(peer, why);
    if (kind == Kind::kCall && from) {
      send_error_reply(from, ref, reasons::of(ErrorCode::kBadArg, bin(why)));
    }
  };
  if (!kind) {
    remote_rejected_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (no_atom) {
    refuse(
        "a node name that would be a new atom, and the atom table holds all it takes from "
        "other nodes");
    return;
  }
  if (from && from.node != node_atom(peer)) {
    refuse("a message from " + peer + " claiming to come from " + from.to_string());
    return;
  }
  Message msg;
  if (d.tag == 0) {
    auto t = decode_term(d.payload);
    if (!t.ok()) {
      refuse("undecodable term: " + t.error().message());
      return;
    }
    msg = std::move(t.value());
  } else {
    MessageDecoder decode = message_decoder(d.tag);
    if (!decode) {
      refuse("unknown message tag " + std::to_string(d.tag));
      return;
    }
    auto m = decode(d.payload);
    if (!m.ok()) {
      refuse(m.error().message());
      return;
    }
    msg = std::move(m.value());
  }
  auto* e = new Envelope(*kind, from, ref, std::move(msg));
  if (d.budget_us) e->deadline = now() + std::chrono::microseconds(d.budget_us);
  if (const auto* pid = std::get_if<transport::WireId>(&d.to)) {
    Pid to = id_of<Pid>(*pid, no_atom);
    if (to.node != name_) {  // not for this node (or a node no atom names): no forwarding
      bounce(e, reasons::noproc(), to);
      return;
    }
    deliver(to, e);
  } else {
    deliver(named(std::get<std::string>(d.to)), e);  // a name registered here
  }
}

void Runtime::on_peer_change(const std::string& peer, bool up, bool hidden) {
  Atom node(peer);
  {
    MutexLock lock(peers_mu_);
    if (up) {
      peers_.insert(node.id());
      if (hidden) {
        hidden_.insert(node.id());
      } else {
        hidden_.erase(node.id());
      }
    } else {
      hidden = hidden_.erase(node.id()) > 0;
      peers_.erase(node.id());
    }
  }
  if (hidden) {
    (up ? hidden_ups_ : hidden_downs_).fetch_add(1, std::memory_order_relaxed);
  } else {
    (up ? node_ups_ : node_downs_).fetch_add(1, std::memory_order_relaxed);
  }
  // A hidden node coming up is news to no one (as in Erlang, monitor_nodes leaves it out); its
  // going down still ends monitors, links and calls there, without a NodeDown message.
  if (up && hidden) return;
  // Every local process hears of it; each ends its own monitors, links and calls there.
  std::vector<Pid> everyone;
  table_.for_each([&](Process& p) { everyone.push_back(p.pid()); });
  const Kind kind = up ? Kind::kNodeUp : Kind::kNodeDown;
  const Term what = hidden ? tuple(node, atom("hidden")) : Term(node);
  for (const Pid& p : everyone) deliver(p, new Envelope(kind, Pid{}, Ref{}, Message(what)));
}

void Runtime::await_room(Atom node) {
  transport::Transport* t = transport();
  if (!t || node == name_) return;
  const std::string peer(node.name());
  const std::size_t high = t->max_queued() - t->max_queued() / 8;
  for (int i = 0; i < 10000 && t->queued(peer) >= high; ++i) {
    sleep_for(std::chrono::milliseconds(1));  // bounded: a peer that stops reading goes down
  }
}

void Runtime::log_atoms_refused(const std::string& peer, const std::string& why) {
  // At most one line per 10 s: a flood of new atoms must not become a flood of lines.
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::steady_clock::now().time_since_epoch())
                                  .count();
  std::int64_t last = atoms_logged_ms_.load(std::memory_order_relaxed);
  if (last != 0 && now_ms - last < 10000) return;
  if (!atoms_logged_ms_.compare_exchange_strong(last, now_ms)) return;
  const AtomTableStats t = atom_table_stats();
  const std::string line =
      "refused a message from " + peer + ": " + why + " (atoms: " + std::to_string(t.count) +
      ", at most " + std::to_string(t.wire_limit) + " from other nodes, limit " +
      std::to_string(t.limit) + "; " + std::to_string(t.refused) + " refused so far)";
  if (log_) {
    log_(line);
  } else {
    std::fprintf(stderr, "nodus[%s]: %s\n", std::string(name_.name()).c_str(), line.c_str());
  }
}

Status Runtime::start_transport(const NodeOptions& o) {
  transport::TransportOptions t;
  t.name = std::string(name_.name());
  t.creation = creation_;
  t.listen = o.listen;
  t.advertise = o.advertise;
  t.cookie = o.cookie;
  t.heartbeat_interval = o.heartbeat_interval;
  t.down_after = o.down_after;
  t.curve = o.curve;
  t.curve_allowed = o.curve_allowed;
  transport::TransportCallbacks cb;
  cb.on_data = [this](const std::string& peer, transport::Data&& d) {
    on_remote_data(peer, std::move(d));
  };
  t.hidden = o.hidden;
  t.log = o.log;
  log_ = o.log;
  cb.on_peer_up = [this](const transport::PeerInfo& p) { on_peer_change(p.name, true, p.hidden); };
  cb.on_peer_down = [this](const std::string& peer, const std::string&) {
    on_peer_change(peer, false, false);
  };
  auto started = o.transport_factory ? o.transport_factory(std::move(t), std::move(cb))
                                     : transport::Transport::start(std::move(t), std::move(cb));
  if (!started.ok()) return started.error();
  transport_owner_ = std::move(started.value());
  transport_.store(transport_owner_.get(), std::memory_order_release);
  for (const std::string& seed : o.seeds) connect(seed);
  return Status::Ok();
}

bool Runtime::wait_for_input(int wake_fd, std::chrono::milliseconds max_wait) {
  transport::Transport* t = transport();
  return t && t->receive(wake_fd, max_wait);
}

void Runtime::connect(const std::string& address) {
  transport::Transport* t = transport();
  if (!t) return;
  transport::PeerAddress a = transport::parse_peer_address(address);
  t->connect(a.endpoint, a.public_key);
}

std::vector<Atom> Runtime::nodes() const {
  MutexLock lock(peers_mu_);
  std::vector<Atom> out;
  for (std::uint32_t id : peers_) {
    if (!hidden_.count(id)) out.push_back(Atom::from_id(id));
  }
  std::sort(out.begin(), out.end());
  return out;
}

bool Runtime::is_peer(Atom node) const {
  MutexLock lock(peers_mu_);
  return peers_.count(node.id()) > 0;
}

bool Runtime::is_hidden_peer(Atom node) const {
  MutexLock lock(peers_mu_);
  return hidden_.count(node.id()) > 0;
}

void Runtime::record_remote_call(std::chrono::steady_clock::duration d) {
  const auto us =
      static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
  std::size_t b = 0;
  while (b + 1 < CallLatency::kBuckets && us > CallLatency::kBoundsUs[b]) ++b;
  call_buckets_[b].fetch_add(1, std::memory_order_relaxed);
  call_count_.fetch_add(1, std::memory_order_relaxed);
  call_sum_us_.fetch_add(us, std::memory_order_relaxed);
}

CallLatency Runtime::call_latency() const {
  CallLatency c;
  for (std::size_t i = 0; i < CallLatency::kBuckets; ++i) {
    c.counts[i] = call_buckets_[i].load(std::memory_order_relaxed);
  }
  c.count = call_count_.load(std::memory_order_relaxed);
  c.sum_us = call_sum_us_.load(std::memory_order_relaxed);
  return c;
}

}  // namespace nodus::detail
