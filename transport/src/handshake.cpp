// The cookie handshake's state machines (handshake.hpp), on libsodium's HMAC-SHA-256.
#include "handshake.hpp"

#include <sodium.h>

#include <algorithm>
#include <initializer_list>
#include <iterator>
#include <utility>

namespace nodus::transport {

namespace {

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

constexpr std::string_view kZero("\0", 1);

// The wire number of a frame's kind (docs/protocol.md section 2), by its place in Frame.
int frame_kind(const Frame& f) {
  constexpr int kKinds[] = {1, 2, 3, 4, 5, 16, 17, 18, 19};
  static_assert(std::size(kKinds) == std::variant_size_v<Frame>);
  return kKinds[f.index()];
}

}  // namespace

std::string challenge_mac(const std::string& cookie, std::string_view nonce_c,
                          std::string_view acceptor, std::string_view connector) {
  return hmac(cookie, {"nodus1/challenge", nonce_c, acceptor, kZero, connector});
}

std::string proof_mac(const std::string& cookie, std::string_view nonce_a,
                      std::string_view connector, std::string_view acceptor) {
  return hmac(cookie, {"nodus1/proof", nonce_a, connector, kZero, acceptor});
}

bool same_mac(std::string_view a, std::string_view b) {
  return a.size() == b.size() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string random_nonce() {
  std::string n(kNonceBytes, '\0');
  randombytes_buf(n.data(), n.size());
  return n;
}

bool is_hidden(const Hello& hello) {
  return std::find(hello.capabilities.begin(), hello.capabilities.end(), kHiddenCapability) !=
         hello.capabilities.end();
}

// -- connector ---------------------------------------------------------------------------

Hello connector_hello(const HandshakeIdentity& me, ConnectorState& st, std::string nonce) {
  st = ConnectorState{};
  st.nonce = std::move(nonce);
  Hello h;
  h.name = me.name;
  h.creation = me.creation;
  h.listen = me.listen;
  if (me.hidden) h.capabilities.emplace_back(kHiddenCapability);
  h.nonce = st.nonce;
  return h;
}

ConnectorStep connector_on_frame(const HandshakeIdentity& me, ConnectorState& st,
                                 const Frame& frame) {
  using Event = ConnectorStep::Event;
  using Phase = ConnectorState::Phase;
  ConnectorStep out;
  if (const auto* r = std::get_if<Refuse>(&frame)) {
    out.event = Event::kRefused;
    out.detail = r->reason;
    return out;
  }
  if (const auto* c = std::get_if<Challenge>(&frame); c && st.phase == Phase::kHelloSent) {
    if (!same_mac(c->mac, challenge_mac(me.cookie, st.nonce, c->name, me.name))) {
      out.event = Event::kAuthFailed;
      out.reply = Frame(Refuse{"authentication failed"});
      out.detail = c->name;
      return out;
    }
    st.peer = c->name;
    st.peer_creation = c->creation;
    st.phase = Phase::kProofSent;
    out.event = Event::kAuthenticated;
    out.reply = Frame(Proof{proof_mac(me.cookie, c->nonce, me.name, c->name)});
    return out;
  }
  if (std::holds_alternative<Welcome>(frame) && st.phase == Phase::kProofSent) {
    st.phase = Phase::kUp;
    out.event = Event::kWelcomed;
    return out;
  }
  out.event = Event::kUnexpected;
  out.detail = "unexpected frame kind " + std::to_string(frame_kind(frame));
  return out;
}

// -- acceptor ----------------------------------------------------------------------------

AcceptorStep acceptor_on_frame(const HandshakeIdentity& me, AcceptorState& st, Frame& frame,
                               const std::function<std::string()>& nonce) {
  using Event = AcceptorStep::Event;
  using Phase = AcceptorState::Phase;
  AcceptorStep out;
  switch (st.phase) {
    case Phase::kAwaitHello: {
      auto* h = std::get_if<Hello>(&frame);
      if (!h) {
        out.event = Event::kNotAuthenticated;
        out.detail = "a frame before the handshake";
        // A peer's frame: its sender believes its link is up, and it is not, here (we dropped
        // it, or ZeroMQ re-established the connection behind the sender's back). Say so, or
        // the sender never learns and its frames are dropped for ever (issue 10). Not for BYE
        // (it is leaving) nor handshake frames out of place (nothing to repair).
        if (std::holds_alternative<Data>(frame) || std::holds_alternative<Heartbeat>(frame) ||
            std::holds_alternative<Peers>(frame)) {
          out.reply = Frame(Refuse{std::string(kNotAuthenticatedReason)});
        }
        return out;
      }
      if (h->version != kProtocolVersion) {
        out.event = Event::kVersionRefused;
        out.detail = "protocol version " + std::to_string(h->version);
        out.reply =
            Frame(Refuse{"protocol version " + std::to_string(h->version) + " not supported"});
        st.hello.name = h->name;
        return out;
      }
      st.hello = std::move(*h);
      st.nonce = nonce();
      st.phase = Phase::kChallenged;
      Challenge c;
      c.name = me.name;
      c.creation = me.creation;
      c.nonce = st.nonce;
      c.mac = challenge_mac(me.cookie, st.hello.nonce, me.name, st.hello.name);
      out.event = Event::kChallenged;
      out.reply = Frame(std::move(c));
      return out;
    }
    case Phase::kChallenged: {
      auto* p = std::get_if<Proof>(&frame);
      if (!p || !same_mac(p->mac, proof_mac(me.cookie, st.nonce, st.hello.name, me.name))) {
        out.event = Event::kAuthFailed;
        if (!std::holds_alternative<Refuse>(frame)) {
          out.reply = Frame(Refuse{"authentication failed"});
        }
        return out;
      }
      st.phase = Phase::kAuthenticated;
      out.event = Event::kAuthenticated;
      out.reply = Frame(Welcome{});
      return out;
    }
    case Phase::kAuthenticated:
      if (std::holds_alternative<Data>(frame) || std::holds_alternative<Heartbeat>(frame) ||
          std::holds_alternative<Peers>(frame) || std::holds_alternative<Bye>(frame)) {
        out.event = Event::kPeerFrame;
        return out;
      }
      out.event = Event::kUnexpected;
      out.detail = "unexpected frame kind from " + st.hello.name;
      return out;
  }
  out.event = Event::kUnexpected;
  return out;
}

}  // namespace nodus::transport
