// The link logic without I/O (link_table.hpp).
#include "link_table.hpp"

#include <algorithm>
#include <functional>
#include <utility>

namespace nodus::transport {

Result<LinkConfig> make_link_config(const TransportOptions& o, const std::string& bound) {
  if (o.cookie.empty()) return Status(ErrorCode::kBadConfig, "the cookie is empty");
  LinkConfig c;
  c.me = HandshakeIdentity{o.name, o.creation, bound, o.cookie, o.hidden};
  c.listen = o.listen;
  c.heartbeat_interval = o.heartbeat_interval;
  c.down_after = o.down_after;
  c.limits = o.limits;
  if (!o.curve) {
    if (o.curve_allowed.empty()) return c;
    return Status(ErrorCode::kBadConfig, "curve_allowed is set but this node has no CURVE keys");
  }
  if (Status s = check_curve_keys(*o.curve); !s.ok()) return s;
  for (const std::string& key : o.curve_allowed) {
    if (!is_curve_key(key)) {
      return Status(ErrorCode::kBadConfig,
                    "curve_allowed: \"" + key + "\" is not 40 characters of Z85");
    }
    c.allowed.insert(key);
  }
  c.allowed.insert(o.curve->public_key);  // this node's own key is always admitted
  c.curve = true;
  return c;
}

LinkTable::LinkTable(LinkConfig config, LinkIo& io) : cfg_(std::move(config)), io_(io) {}

// -- inputs ----------------------------------------------------------------------------------

void LinkTable::connect(const std::string& endpoint, const std::string& server_key, TimePoint now) {
  now_ = now;
  start_outgoing(endpoint, server_key);
}

void LinkTable::on_incoming(const std::string& id, std::string_view message,
                            std::string_view client_key, TimePoint now) {
  now_ = now;
  auto it = incoming_.try_emplace(id).first;
  if (it->second.hs.phase == AcceptorState::Phase::kAwaitHello) {
    if (it->second.since == TimePoint{}) it->second.since = now;
    if (cfg_.curve) it->second.client_key.assign(client_key);
  } else if (it->second.hs.phase == AcceptorState::Phase::kAuthenticated) {
    if (blocked(it->second.hs.hello.name)) return;  // a cut link: nothing gets through
    last_heard_[it->second.hs.hello.name] = now;    // once a message, not a frame
  }
  std::string_view rest = message;
  std::uint64_t data_frames = 0;
  do {
    frames_in_.fetch_add(1, std::memory_order_relaxed);
    Incoming& in = it->second;
    const bool authenticated = in.hs.phase == AcceptorState::Phase::kAuthenticated;
    auto frame = decode_next_frame(rest, cfg_.limits);
    if (!frame.ok()) {
      if (authenticated) {
        reject(in.hs.hello.name, frame.error().to_string());
      } else {
        reject_unauthenticated("a connection before its handshake", frame.error().to_string());
        incoming_.erase(it);
      }
      break;  // what follows cannot be resynchronised
    }
    if (Data* d = std::get_if<Data>(&*frame); d && authenticated) {
      ++data_frames;
      io_.deliver(in.hs.hello.name, std::move(*d));  // the common case
      continue;
    }
    handle_incoming(id, in, std::move(*frame));
    it = incoming_.find(id);  // it may have gone (BYE, a refusal)
  } while (!rest.empty() && it != incoming_.end());
  if (data_frames > 0 && it != incoming_.end()) {
    io_.count_data_in(it->second.hs.hello.name, data_frames);
  }
}

void LinkTable::on_outgoing(ConnId id, std::string_view message, TimePoint now) {
  now_ = now;
  Outgoing* o = by_conn(id);
  if (!o) return;  // a connection we closed meanwhile
  frames_in_.fetch_add(1, std::memory_order_relaxed);
  // Only handshake frames come this way, each alone in its message.
  auto frame = decode_frame(message, cfg_.limits);
  if (!frame.ok()) {
    reject(o->endpoint, frame.error().to_string());
    return;
  }
  if (blocked(o->hs.peer)) return;
  if (auto* c = std::get_if<Challenge>(&*frame); c && blocked(c->name)) return;
  ConnectorStep step = connector_on_frame(cfg_.me, o->hs, *frame);
  using Event = ConnectorStep::Event;
  switch (step.event) {
    case Event::kAuthFailed:
      auth_failures_.fetch_add(1, std::memory_order_relaxed);
      send_on(*o, encode_frame(*step.reply));
      log_limited(o->endpoint, "refusing node " + step.detail + " at " + o->endpoint +
                                   ": authentication failed (is its cookie the same?)");
      reset(*o, /*backoff=*/true);
      return;
    case Event::kAuthenticated:
      if (o->hs.peer == cfg_.me.name && o->hs.peer_creation == cfg_.me.creation) {
        // This node itself, under another name for its endpoint (a seed list that names
        // every node, this one included): never a peer.
        log_limited(o->endpoint, "not linking to " + o->endpoint + ": it is this node itself");
        reset(*o, false);
        o->next_attempt = TimePoint::max();
        return;
      }
      // Another link to the same node is up or proving itself (it was reached under two
      // endpoints): keep that one, and leave this one before it proves anything, so the peer
      // never takes a second connection of ours for a reconnect (see handle_incoming).
      for (auto& other : outgoing_) {
        if (other.get() != o && other->hs.peer == o->hs.peer &&
            (other->state == Outgoing::State::kUp ||
             other->hs.phase == ConnectorState::Phase::kProofSent)) {
          reset(*o, false);
          o->next_attempt = TimePoint::max();
          return;
        }
      }
      send_on(*o, encode_frame(*step.reply));
      // The peer proved it holds the cookie, and what we send now follows the PROOF that
      // authenticates us: senders may use this link already. The peer may count us up (and
      // call us) before its WELCOME reaches us; an answer must not be lost meanwhile.
      io_.publish(o->hs.peer, o->conn);
      return;
    case Event::kWelcomed:
      link_up(*o);
      return;
    case Event::kRefused:
      if (o->state == Outgoing::State::kUp) {
        // The peer holds no handshake for this connection: it dropped our link (it declared
        // us down), or ZeroMQ re-established the connection behind our back. What we sent
        // since is lost: the peer is down until our direction is authenticated again.
        log_limited(o->hs.peer, "node " + o->hs.peer + " at " + o->endpoint +
                                    " refused our link (" + step.detail + "): reconnecting");
        outgoing_lost(*o, "refused");
        return;
      }
      auth_failures_.fetch_add(1, std::memory_order_relaxed);
      if (std::string_view(step.detail).substr(0, kNameInUseReason.size()) == kNameInUseReason) {
        log_limited(o->endpoint, "node at " + o->endpoint + " refused us: " + step.detail +
                                     " (another node runs as " + cfg_.me.name +
                                     ": names must be unique in a cluster)");
      } else {
        log_limited(o->endpoint, "node at " + o->endpoint + " refused us: " + step.detail);
      }
      reset(*o, /*backoff=*/true);
      return;
    case Event::kNone:
    case Event::kUnexpected:
      reject(o->endpoint, "unexpected frame from " + o->endpoint);
      return;
  }
}

void LinkTable::reject_unframed(const std::string& source, const std::string& why, TimePoint now) {
  now_ = now;
  frames_in_.fetch_add(1, std::memory_order_relaxed);
  reject_unauthenticated(source, why);
}

void LinkTable::reject_parts(const std::string& in, std::size_t bytes, TimePoint now) {
  now_ = now;
  frames_in_.fetch_add(1, std::memory_order_relaxed);
  auto it = incoming_.find(in);
  if (it != incoming_.end() && it->second.hs.phase == AcceptorState::Phase::kAuthenticated) {
    reject(it->second.hs.hello.name,
           "a message of " + std::to_string(bytes) + " bytes, over the frame limit");
    return;
  }
  // Only a peer that counts its link up sends a message in parts: it is not, here (section 7).
  io_.reply(in, encode_frame(Frame(Refuse{std::string(kNotAuthenticatedReason)})));
  reject_unauthenticated("a connection before its handshake",
                         "a message of " + std::to_string(bytes) + " bytes in parts");
  if (it != incoming_.end()) incoming_.erase(it);
}

void LinkTable::tick(TimePoint now) {
  now_ = now;
  std::vector<std::string> silent;
  for (const auto& [peer, heard] : last_heard_) {
    if (now - heard > cfg_.down_after) silent.push_back(peer);
  }
  for (const std::string& peer : silent) peer_down(peer, "timeout", nullptr);
  flush_unauthenticated_log();
  if (now - last_prune_ >= kLogInterval) {
    // Sources last logged about an interval ago are allowed a line again anyway: forgetting
    // them keeps this map as small as the log is quiet.
    last_prune_ = now;
    std::erase_if(last_logged_, [&](const auto& e) { return now - e.second >= kLogInterval; });
  }
  // Handshakes that never finished.
  for (auto it = incoming_.begin(); it != incoming_.end();) {
    if (it->second.hs.phase != AcceptorState::Phase::kAuthenticated &&
        now - it->second.since > cfg_.down_after) {
      it = incoming_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& o : outgoing_) {
    switch (o->state) {
      case Outgoing::State::kUp:
        if (!announced_.count(o->hs.peer) && now - o->up_since > cfg_.down_after) {
          // It accepted us but never linked back (can it reach our endpoint?).
          log_limited(o->hs.peer,
                      "node " + o->hs.peer + " accepted our link but never linked back");
          reset(*o, /*backoff=*/true);
          break;
        }
        if (io_.idle_for(o->conn, now) >= cfg_.heartbeat_interval) {
          send_on(*o, encode_frame(Frame(Heartbeat{++heartbeat_seq_})));
        }
        break;
      case Outgoing::State::kHandshake:
        if (now - o->attempt_started > cfg_.down_after) reset(*o, /*backoff=*/true);
        break;
      case Outgoing::State::kIdle:
        if (o->next_attempt != TimePoint::max() && now >= o->next_attempt) attempt(*o);
        break;
    }
  }
}

void LinkTable::leave(TimePoint now) {
  now_ = now;
  const std::string bye = encode_frame(Frame(Bye{"leaving"}));
  for (auto& o : outgoing_) {
    if (o->state == Outgoing::State::kUp) send_on(*o, bye);
  }
  for (auto& o : outgoing_) retire(*o);
  outgoing_.clear();
}

// -- fault injection -----------------------------------------------------------------------

void LinkTable::block(const std::string& peer, bool on) {
  detail::MutexLock lock(block_mu_);
  if (on) {
    blocked_.insert(peer);
  } else {
    blocked_.erase(peer);
  }
  any_blocked_.store(!blocked_.empty(), std::memory_order_release);
}

bool LinkTable::blocked(const std::string& peer) const {
  if (!any_blocked_.load(std::memory_order_acquire) || peer.empty()) return false;
  detail::MutexLock lock(block_mu_);
  return blocked_.count(peer) > 0;
}

// -- reading ---------------------------------------------------------------------------------

std::vector<std::pair<ConnId, bool>> LinkTable::connections() const {
  std::vector<std::pair<ConnId, bool>> out;
  for (const auto& o : outgoing_) {
    if (o->conn != 0) out.emplace_back(o->conn, o->state == Outgoing::State::kUp);
  }
  return out;
}

std::vector<std::string> LinkTable::up_peers() const {
  std::vector<std::string> out(announced_.begin(), announced_.end());
  std::sort(out.begin(), out.end());
  return out;
}

bool LinkTable::authenticated(const std::string& in) const {
  auto it = incoming_.find(in);
  return it != incoming_.end() && it->second.hs.phase == AcceptorState::Phase::kAuthenticated;
}

// -- outgoing links ----------------------------------------------------------------------------

LinkTable::Outgoing* LinkTable::up_link(const std::string& peer) {
  for (auto& o : outgoing_) {
    if (o->state == Outgoing::State::kUp && o->hs.peer == peer) return o.get();
  }
  return nullptr;
}

LinkTable::Outgoing* LinkTable::by_endpoint(const std::string& endpoint) {
  for (auto& o : outgoing_) {
    if (o->endpoint == endpoint) return o.get();
  }
  return nullptr;
}

LinkTable::Outgoing* LinkTable::by_conn(ConnId id) {
  for (auto& o : outgoing_) {
    if (o->conn == id) return o.get();
  }
  return nullptr;
}

LinkTable::Outgoing* LinkTable::start_outgoing(const std::string& ep, const std::string& server_key,
                                               bool forget_when_down) {
  if (ep == cfg_.me.listen || ep == cfg_.listen) return nullptr;  // ourselves
  if (cfg_.curve) {
    // Link only to nodes that prove they hold a cluster key: gossip cannot steer us elsewhere.
    if (server_key.empty()) {
      log_limited(ep, "not linking to " + ep +
                          ": CURVE is on and its public key is unknown (give it as endpoint#KEY)");
      return nullptr;
    }
    if (!cfg_.allowed.count(server_key)) {
      log_limited(server_key, "not linking to " + ep + ": its public key " + server_key +
                                  " is not in curve_allowed");
      return nullptr;
    }
  }
  Outgoing* o = by_endpoint(ep);
  if (!o) {
    outgoing_.push_back(std::make_unique<Outgoing>());
    o = outgoing_.back().get();
    o->endpoint = ep;
    o->forget_when_down = forget_when_down;
  }
  if (cfg_.curve) o->server_key = server_key;  // a node re-keyed: the next attempt uses it
  if (o->state == Outgoing::State::kIdle) attempt(*o);
  return o;
}

void LinkTable::attempt(Outgoing& o) {
  o.conn = next_conn_++;
  std::string why;
  if (!io_.open(o.conn, o.endpoint, o.server_key, why)) {
    log_limited(o.endpoint, "cannot connect to " + o.endpoint + ": " + why);
    o.conn = 0;
    o.state = Outgoing::State::kIdle;
    o.next_attempt = now_ + o.backoff;
    o.backoff = std::min(o.backoff * 2, kMaxBackoff);
    return;
  }
  Hello h = connector_hello(cfg_.me, o.hs, io_.nonce());
  o.state = Outgoing::State::kHandshake;
  o.attempt_started = now_;
  send_on(o, encode_frame(Frame(std::move(h))));
}

void LinkTable::reset(Outgoing& o, bool backoff) {
  retire(o);
  o.state = Outgoing::State::kIdle;
  if (backoff) {
    o.next_attempt = now_ + o.backoff;
    o.backoff = std::min(o.backoff * 2, kMaxBackoff);
  } else {
    o.next_attempt = now_;
  }
}

void LinkTable::retire(Outgoing& o) {
  if (o.conn != 0) io_.close(o.conn);
  o.conn = 0;
}

void LinkTable::send_on(Outgoing& o, std::string_view bytes) {
  if (o.conn == 0 || blocked(o.hs.peer)) return;  // a cut link: frames are lost
  io_.send(o.conn, bytes);
}

void LinkTable::link_up(Outgoing& o) {
  o.state = Outgoing::State::kUp;
  o.backoff = kFirstBackoff;
  // Another link to the same node (it was reached under two endpoints): keep one.
  for (auto& other : outgoing_) {
    if (other.get() != &o && other->hs.peer == o.hs.peer && other->state == Outgoing::State::kUp) {
      reset(o, false);
      o.next_attempt = TimePoint::max();
      return;
    }
  }
  last_heard_[o.hs.peer] = now_;
  o.up_since = now_;
  maybe_up(o.hs.peer);
}

// A peer is up when both directions are authenticated with the same incarnation: only then can
// it answer what we send it.
void LinkTable::maybe_up(const std::string& peer) {
  Outgoing* o = up_link(peer);
  auto in = incoming_creation_.find(peer);
  if (!o || in == incoming_creation_.end() || in->second != o->hs.peer_creation) return;
  if (!announced_.insert(peer).second) return;
  PeerInfo info{peer, o->hs.peer_creation, o->endpoint, o->server_key, hidden_.count(peer) > 0};
  io_.peer_up(info, o->conn);
  // A hidden node is told of no one and no one is told of it; it tells no one either.
  if (!info.hidden && !cfg_.me.hidden) gossip(*o);
}

// Full mesh: the new peer learns every node we know, and every node we know learns of it.
void LinkTable::gossip(Outgoing& fresh) {
  Peers to_fresh;
  const std::string about =
      encode_frame(Frame(Peers{{{fresh.hs.peer, fresh.endpoint, fresh.server_key}}}));
  for (auto& o : outgoing_) {
    if (o.get() == &fresh || o->state != Outgoing::State::kUp || hidden_.count(o->hs.peer)) {
      continue;
    }
    to_fresh.nodes.push_back({o->hs.peer, o->endpoint, o->server_key});
    send_on(*o, about);
  }
  if (!to_fresh.nodes.empty()) send_on(fresh, encode_frame(Frame(std::move(to_fresh))));
}

void LinkTable::learn(const Peers& peers) {
  if (cfg_.me.hidden) return;  // a hidden node links only where it is told to
  for (const Peers::Entry& e : peers.nodes) {
    if (e.name == cfg_.me.name || up_link(e.name)) continue;
    start_outgoing(e.endpoint, e.public_key);
  }
}

// -- incoming connections ----------------------------------------------------------------------

bool LinkTable::name_in_use(const std::string& this_in, const Hello& h, std::string& holder) {
  if (h.name == cfg_.me.name) {
    holder = cfg_.me.listen + " (this node)";
    return true;
  }
  if (!last_heard_.count(h.name)) return false;  // nobody we hear from holds it
  // The incarnation we know: from its own connection to us, else from our link to it.
  std::uint32_t creation = 0;
  std::string listen;
  for (const auto& [id, in] : incoming_) {
    if (id != this_in && in.hs.phase == AcceptorState::Phase::kAuthenticated &&
        in.hs.hello.name == h.name) {
      creation = in.hs.hello.creation;
      listen = in.hs.hello.listen;
      break;
    }
  }
  if (listen.empty()) {
    if (const Outgoing* o = up_link(h.name)) {
      creation = o->hs.peer_creation;
      listen = o->endpoint;
    }
  }
  // The same incarnation reconnecting, or a restart: its endpoint is its own, so a new
  // incarnation on it means the old one is gone (it could not listen there otherwise).
  if (listen.empty() || creation == h.creation || listen == h.listen) return false;
  holder = listen;
  return true;
}

void LinkTable::handle_incoming(const std::string& id, Incoming& in, Frame frame) {
  using Phase = AcceptorState::Phase;
  if (any_blocked_.load(std::memory_order_acquire)) {
    const auto* h = std::get_if<Hello>(&frame);
    const std::string& from =
        in.hs.phase == Phase::kAwaitHello ? (h ? h->name : std::string()) : in.hs.hello.name;
    if (blocked(from)) {  // a cut link: nothing gets through, not even liveness
      if (in.hs.phase != Phase::kAuthenticated) incoming_.erase(id);
      return;
    }
  }
  AcceptorStep step = acceptor_on_frame(cfg_.me, in.hs, frame, [this] { return io_.nonce(); });
  using Event = AcceptorStep::Event;
  switch (step.event) {
    case Event::kNotAuthenticated:
      if (step.reply) io_.reply(id, encode_frame(*step.reply));
      reject_unauthenticated("a connection", step.detail);
      incoming_.erase(id);
      return;
    case Event::kVersionRefused:
      io_.reply(id, encode_frame(*step.reply));
      log_unauthenticated("refused a node calling itself " + in.hs.hello.name + ": " + step.detail,
                          now_);
      incoming_.erase(id);
      return;
    case Event::kChallenged:
      io_.reply(id, encode_frame(*step.reply));
      return;
    case Event::kAuthFailed:
      auth_failures_.fetch_add(1, std::memory_order_relaxed);
      if (step.reply) io_.reply(id, encode_frame(*step.reply));
      log_unauthenticated("refused a node calling itself " + in.hs.hello.name + " at " +
                              in.hs.hello.listen +
                              ": authentication failed (is its cookie the same?)",
                          now_);
      incoming_.erase(id);
      return;
    case Event::kAuthenticated: {
      const Hello& h = in.hs.hello;
      if (std::string holder; name_in_use(id, h, holder)) {
        // A second node under a name in use here (a copy of a node's config with another
        // port): refused, and the node that holds the name is left alone. Taking it for a
        // restart would end the real one's link, and the two would take turns for ever.
        auth_failures_.fetch_add(1, std::memory_order_relaxed);
        io_.reply(id, encode_frame(Frame(Refuse{std::string(kNameInUseReason) + ": " + h.name +
                                                " is the node at " + holder})));
        log_limited("name " + h.name, "refused node " + h.name + " at " + h.listen + ": the name " +
                                          h.name + " is in use by the node at " + holder +
                                          " (two nodes run as " + h.name +
                                          "? names must be unique in a cluster)");
        incoming_.erase(id);
        return;
      }
      // A new incarnation of a peer we still think is up (it restarted within down_after):
      // the old one is gone, and our link to it is stale, because its socket reconnected
      // silently to the new incarnation, which drops our frames as unauthenticated.
      if (Outgoing* o = up_link(h.name); o && o->hs.peer_creation != h.creation) {
        peer_down(h.name, "restarted", &id);  // this connection is the new one's: it stays
      } else if (announced_.erase(h.name) > 0) {
        // The same incarnation, up, authenticating a new connection: its connector dropped
        // the one before (it heard REFUSE, timed us out, or lost the connection), so frames of
        // its may have been lost. Down here too, before anything of the new connection is
        // taken, as a lost Erlang connection is down at both ends. Our own direction stands
        // (resetting it too would make the peer see our reconnect in turn, and so on for
        // ever): maybe_up below reports the peer up again at once.
        io_.peer_down(h.name, "reconnected", true, hidden_.count(h.name) > 0);
      }
      io_.reply(id, encode_frame(*step.reply));
      // A peer has one connection to us at a time: this one supersedes any older one (its
      // connector reconnected), which would otherwise be kept until the peer went down.
      for (auto it = incoming_.begin(); it != incoming_.end();) {
        if (it->first != id && it->second.hs.phase == Phase::kAuthenticated &&
            it->second.hs.hello.name == h.name) {
          it = incoming_.erase(it);
        } else {
          ++it;
        }
      }
      last_heard_[h.name] = now_;
      incoming_creation_[h.name] = h.creation;
      const bool hidden = is_hidden(h);
      if (hidden) {
        hidden_[h.name] = h.listen;
      } else {
        hidden_.erase(h.name);
      }
      // Open our own direction to it, unless we have one already. Under CURVE its key is the
      // one it was admitted with: one pair per node. `h` lives in `in`, which may go meanwhile.
      const std::string name = h.name;
      if (!up_link(name)) start_outgoing(h.listen, in.client_key, /*forget_when_down=*/hidden);
      maybe_up(name);
      return;
    }
    case Event::kPeerFrame: {
      const std::string peer = in.hs.hello.name;  // a copy: peer_down erases `in`
      last_heard_[peer] = now_;
      if (auto* d = std::get_if<Data>(&frame)) {  // (on_incoming passes these on itself)
        io_.deliver(peer, std::move(*d));
      } else if (auto* p = std::get_if<Peers>(&frame)) {
        if (hidden_.count(peer)) {
          // A hidden node is no member (docs/protocol.md section 11): it may not steer whom we
          // link to, nor have us dial endpoints for ever.
          frames_rejected_.fetch_add(1, std::memory_order_relaxed);
          log_limited(peer, "ignored PEERS from hidden node " + peer +
                                ": a hidden node is not a cluster member");
        } else {
          learn(*p);
        }
      } else if (std::holds_alternative<Bye>(frame)) {
        peer_down(peer, "bye", nullptr);  // forgets this connection too
      }
      return;  // a HEARTBEAT: liveness only
    }
    case Event::kUnexpected:
      reject(in.hs.hello.name, step.detail);
      return;
  }
}

void LinkTable::peer_down(const std::string& peer, const std::string& reason,
                          const std::string* keep) {
  const bool was_up = announced_.erase(peer) > 0;
  last_heard_.erase(peer);
  incoming_creation_.erase(peer);
  std::string hidden_listen;  // a hidden node's endpoint, for the link back to it
  bool was_hidden = false;
  if (auto h = hidden_.find(peer); h != hidden_.end()) {
    was_hidden = true;
    hidden_listen = std::move(h->second);
    hidden_.erase(h);
  }
  for (auto it = incoming_.begin(); it != incoming_.end();) {
    if (it->second.hs.phase == AcceptorState::Phase::kAuthenticated &&
        it->second.hs.hello.name == peer && !(keep && it->first == *keep)) {
      it = incoming_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& o : outgoing_) {
    if (o->hs.peer == peer) {
      reset(*o, /*backoff=*/true);
      o->hs.peer.clear();
    }
  }
  if (was_hidden) {
    // A hidden node that left is forgotten, the link back to it included (whether or not it
    // got as far as naming the node): nodusctl's every run would be redialled for ever.
    std::erase_if(outgoing_, [&](const std::unique_ptr<Outgoing>& o) {
      if (!o->forget_when_down || o->endpoint != hidden_listen) return false;
      retire(*o);
      return true;
    });
  }
  io_.peer_down(peer, reason, was_up, was_hidden);
}

void LinkTable::outgoing_lost(Outgoing& o, const std::string& reason) {
  const std::string peer = o.hs.peer;
  reset(o, /*backoff=*/true);
  // Our direction is gone; the peer's direction to us may be fine, and stays: the peer is up
  // again as soon as ours is authenticated again (maybe_up).
  if (announced_.erase(peer) > 0) io_.peer_down(peer, reason, true, hidden_.count(peer) > 0);
}

void LinkTable::reject(const std::string& source, const std::string& why) {
  frames_rejected_.fetch_add(1, std::memory_order_relaxed);
  log_limited(source, "dropped a frame from " + source + ": " + why);
}

void LinkTable::reject_unauthenticated(const std::string& source, const std::string& why) {
  frames_rejected_.fetch_add(1, std::memory_order_relaxed);
  log_unauthenticated("dropped a frame from " + source + ": " + why, now_);
}

void LinkTable::log_limited(const std::string& source, const std::string& line) {
  auto [it, fresh] = last_logged_.try_emplace(source, now_);
  if (!fresh && now_ - it->second < kLogInterval) return;
  it->second = now_;
  io_.log(line);
}

void LinkTable::log_unauthenticated(const std::string& line, TimePoint now) {
  if (now > now_) now_ = now;
  if (unauthenticated_logged_ && now_ - *unauthenticated_logged_ < kLogInterval) {
    ++unauthenticated_held_;
    return;
  }
  flush_unauthenticated_log();
  unauthenticated_logged_ = now_;
  io_.log(line);
}

void LinkTable::flush_unauthenticated_log() {
  if (unauthenticated_held_ == 0 || now_ - *unauthenticated_logged_ < kLogInterval) return;
  io_.log(std::to_string(unauthenticated_held_) + " more problem" +
          (unauthenticated_held_ == 1 ? "" : "s") + " with " + std::string(kUnauthenticatedSource) +
          " in the " +
          std::to_string(
              std::chrono::duration_cast<std::chrono::seconds>(now_ - *unauthenticated_logged_)
                  .count()) +
          " s after the last one logged (not logged one by one)");
  unauthenticated_held_ = 0;
  unauthenticated_logged_ = now_;
}

}  // namespace nodus::transport
