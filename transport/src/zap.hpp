// CURVE for the ZeroMQ transport (docs/protocol.md section 8): the ZAP handler that admits only
// the cluster's public keys, and what it makes of handshakes the ROUTER's monitor reports as
// refused before ZAP was asked. The verdict on a ZAP request is a pure function (zap_verdict),
// tested without sockets; ZapHandler owns the inproc ZAP socket and runs on the transport's
// I/O thread (which owns the monitor: a socket has one).
//
// Thread-safety: ZapHandler is used by one thread at a time (the transport's I/O lock).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>
#include <zmq.hpp>

#include "nodus/transport/curve.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::transport {

/// libzmq's answer to one ZAP request (RFC 27).
struct ZapVerdict {
  bool admit = false;
  std::string key;                   ///< the client's public key, Z85 ("" if it offered none)
  std::string address;               ///< the client's address, for the log
  std::string why;                   ///< why it was refused ("" when admitted)
  std::array<std::string, 6> reply;  ///< the reply's parts, in order
};

/// The verdict on a ZAP request of parts `request` (version, request id, domain, address,
/// routing id, mechanism, credentials...): 200 with the key as user id for mechanism CURVE
/// with a 32-byte client key in `allowed`, 400 for anything else (malformed requests too).
ZapVerdict zap_verdict(const std::vector<std::string>& request,
                       const std::unordered_set<std::string>& allowed);

class ZapHandler {
 public:
  /// `log(source, line)` reports a problem, rate-limited by the caller per source; an empty
  /// `source` is a client that has not authenticated (rate-limited with all of those, so that
  /// nothing is kept per address).
  using Log = std::function<void(const std::string& source, const std::string& line)>;

  ZapHandler(zmq::context_t& ctx, std::unordered_set<std::string> allowed, Log log);

  /// Binds the ZAP handler in the context and makes `router` a CURVE server with `keys` that
  /// asks it. Before `router` binds: a CURVE server without a handler admits any client key.
  /// Throws zmq::error_t.
  void listen(zmq::socket_t& router, const CurveKeys& keys);
  /// For zmq::poll: the ZAP socket.
  void* zap_handle() { return zap_.handle(); }
  /// Answers every ZAP request waiting.
  void answer();
  /// The router's monitor reported a handshake that failed before ZAP was asked
  /// (ZMQ_EVENT_HANDSHAKE_FAILED_*, with its value); `endpoint` names our listener in the log.
  void handshake_failed(std::uint16_t event, std::uint32_t value, const std::string& endpoint);
  /// Closes the ZAP socket. Idempotent.
  void close();

  /// Connections refused so far (ZAP said 400, or the handshake failed before ZAP).
  std::uint64_t refused() const { return refused_.load(std::memory_order_relaxed); }
  const std::unordered_set<std::string>& allowed() const { return allowed_; }

 private:
  zmq::context_t& ctx_;
  std::unordered_set<std::string> allowed_;
  Log log_;
  zmq::socket_t zap_;  // REP, bound to inproc://zeromq.zap.01
  std::atomic<std::uint64_t> refused_{0};
};

}  // namespace nodus::transport
