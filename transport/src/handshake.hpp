// The cookie handshake (docs/protocol.md section 3) as pure state machines: the MACs, the
// connector's side and the acceptor's side of one connection, each a function from (state,
// frame) to (reply, event). No sockets, no clock, no threads: the link table (link_table.hpp)
// drives them for the ZeroMQ transport and for the simulation alike, and the unit tests and
// the handshake fuzzer call them directly.
//
// Thread-safety: plain values and free functions.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "nodus/transport/frame.hpp"

namespace nodus::transport {

/// The Hello capability of a hidden node (docs/protocol.md section 11).
inline constexpr std::string_view kHiddenCapability = "hidden";

/// Who this node is in a handshake.
struct HandshakeIdentity {
  std::string name;
  std::uint32_t creation = 0;
  std::string listen;  ///< where peers link back to us (sent in HELLO)
  std::string cookie;  ///< the shared secret; never sent
  bool hidden = false;
};

// -- the MACs ---------------------------------------------------------------------------

/// The acceptor's proof: HMAC(cookie, "nodus1/challenge" || nonce_c || acceptor || 0 || connector).
std::string challenge_mac(const std::string& cookie, std::string_view nonce_c,
                          std::string_view acceptor, std::string_view connector);
/// The connector's proof: HMAC(cookie, "nodus1/proof" || nonce_a || connector || 0 || acceptor).
std::string proof_mac(const std::string& cookie, std::string_view nonce_a,
                      std::string_view connector, std::string_view acceptor);
/// Compares two MACs in constant time.
bool same_mac(std::string_view a, std::string_view b);
/// kNonceBytes of randomness from libsodium.
std::string random_nonce();

// -- the connector: our outgoing connection ------------------------------------------------

struct ConnectorState {
  enum class Phase : std::uint8_t {
    kHelloSent,  ///< waiting for CHALLENGE
    kProofSent,  ///< the peer proved it holds the cookie; waiting for WELCOME
    kUp,         ///< welcomed: the direction carries data
  };
  Phase phase = Phase::kHelloSent;
  std::string nonce;  ///< ours, sent in HELLO
  std::string peer;   ///< the acceptor's name, once it answered
  std::uint32_t peer_creation = 0;
};

/// Starts a handshake: resets `st` and returns the HELLO to send. `nonce`: kNonceBytes, fresh.
Hello connector_hello(const HandshakeIdentity& me, ConnectorState& st, std::string nonce);

struct ConnectorStep {
  enum class Event : std::uint8_t {
    kNone,           ///< nothing happened (never returned today; kept for symmetry)
    kAuthenticated,  ///< the acceptor proved the cookie; `reply` is our PROOF
    kWelcomed,       ///< the acceptor took our PROOF: the direction is up
    kAuthFailed,     ///< the acceptor's MAC is wrong; `reply` is a REFUSE; drop the connection
    kRefused,        ///< the acceptor sent REFUSE (`detail`); drop the connection
    kUnexpected,     ///< a frame that has no place here (`detail`); ignore it
  };
  Event event = Event::kNone;
  std::optional<Frame> reply;
  std::string detail;
};

/// One frame from the acceptor, on a connection in state `st`.
ConnectorStep connector_on_frame(const HandshakeIdentity& me, ConnectorState& st,
                                 const Frame& frame);

// -- the acceptor: a connection to our listener ----------------------------------------------

struct AcceptorState {
  enum class Phase : std::uint8_t {
    kAwaitHello,     ///< a fresh connection (or one we forgot)
    kChallenged,     ///< HELLO taken, CHALLENGE sent; waiting for PROOF
    kAuthenticated,  ///< the connector proved the cookie: its frames are its peer's
  };
  Phase phase = Phase::kAwaitHello;
  Hello hello;        ///< the connector's HELLO (name, creation, listen, capabilities)
  std::string nonce;  ///< ours, sent in CHALLENGE
};

struct AcceptorStep {
  enum class Event : std::uint8_t {
    kChallenged,        ///< a HELLO; `reply` is the CHALLENGE
    kAuthenticated,     ///< a good PROOF; `reply` is WELCOME: the connector is `st.hello.name`
    kVersionRefused,    ///< a HELLO of another protocol version; `reply` is a REFUSE; forget it
    kAuthFailed,        ///< a wrong PROOF (or anything else after CHALLENGE); forget it
    kNotAuthenticated,  ///< a frame before the handshake; for a peer's frame (DATA,
                        ///< HEARTBEAT, PEERS) `reply` is REFUSE kNotAuthenticatedReason
    kPeerFrame,         ///< authenticated: DATA, HEARTBEAT, PEERS or BYE for the link to handle
    kUnexpected,        ///< authenticated: a handshake frame again (`detail`); ignore it
  };
  Event event = Event::kPeerFrame;
  std::optional<Frame> reply;
  std::string detail;
};

/// The REFUSE reason an acceptor gives a connection it holds no handshake for (a connector
/// whose link we dropped, or whose connection ZeroMQ re-established behind its back).
inline constexpr std::string_view kNotAuthenticatedReason = "not authenticated";
/// The start of the REFUSE reason an acceptor gives a node that authenticated under a name
/// that another node holds here (docs/protocol.md section 3): "name in use: ...".
inline constexpr std::string_view kNameInUseReason = "name in use";

/// One frame from the connector, on a connection in state `st`. `nonce` is called for a fresh
/// kNonceBytes nonce when a HELLO is challenged.
AcceptorStep acceptor_on_frame(const HandshakeIdentity& me, AcceptorState& st, Frame& frame,
                               const std::function<std::string()>& nonce);

/// True if `hello` carries the hidden capability.
bool is_hidden(const Hello& hello);

}  // namespace nodus::transport
