// CURVE for the ZeroMQ transport: the ZAP handler (zap.hpp).
#include "zap.hpp"

#include <cstdio>
#include <utility>

namespace nodus::transport {

namespace {

// libzmq asks the ZAP handler bound here, in the socket's context, to admit each CURVE client
// (RFC 27/ZAP). Each transport has a context of its own, so one handler per transport.
constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";
constexpr const char* kZapDomain = "nodus";
constexpr std::size_t kCurveKeyBytes = 32;

}  // namespace

ZapVerdict zap_verdict(const std::vector<std::string>& req,
                       const std::unordered_set<std::string>& allowed) {
  ZapVerdict v;
  // version, request id, domain, address, routing id, mechanism, credentials...
  const bool well_formed = req.size() >= 6 && req[0] == "1.0";
  const std::string mechanism = well_formed ? req[5] : std::string("?");
  v.address = well_formed ? req[3] : std::string("?");
  if (well_formed && mechanism == "CURVE" && req.size() == 7 && req[6].size() == kCurveKeyBytes) {
    char text[kCurveKeyChars + 1];
    zmq_z85_encode(text, reinterpret_cast<const std::uint8_t*>(req[6].data()), kCurveKeyBytes);
    v.key.assign(text, kCurveKeyChars);
  }
  v.admit = !v.key.empty() && allowed.count(v.key) > 0;
  if (!v.admit) {
    v.why = v.key.empty() ? "it offered mechanism " + mechanism + ", not CURVE"
                          : "its public key " + v.key + " is not in curve_allowed";
  }
  const std::string request_id = req.size() > 1 ? req[1] : std::string();
  v.reply = {"1.0",
             request_id,
             v.admit ? "200" : "400",
             v.admit ? "OK" : "not a cluster key",
             v.admit ? v.key : std::string(),
             std::string()};
  return v;
}

ZapHandler::ZapHandler(zmq::context_t& ctx, std::unordered_set<std::string> allowed, Log log)
    : ctx_(ctx), allowed_(std::move(allowed)), log_(std::move(log)) {}

void ZapHandler::listen(zmq::socket_t& router, const CurveKeys& keys) {
  zap_ = zmq::socket_t(ctx_, zmq::socket_type::rep);
  zap_.set(zmq::sockopt::linger, 0);
  zap_.bind(kZapEndpoint);
  router.set(zmq::sockopt::zap_domain, kZapDomain);
  router.set(zmq::sockopt::curve_server, true);
  router.set(zmq::sockopt::curve_secretkey, keys.secret_key);
}

void ZapHandler::answer() {
  for (;;) {
    std::vector<std::string> req;
    try {
      zmq::message_t part;
      if (!zap_.recv(part, zmq::recv_flags::dontwait)) return;
      bool more = part.more();
      req.push_back(part.to_string());
      while (more) {
        zmq::message_t next;
        (void)zap_.recv(next, zmq::recv_flags::none);
        more = next.more();
        req.push_back(next.to_string());
      }
    } catch (const zmq::error_t& e) {
      log_("zap", std::string("ZAP handler failed to read a request: ") + e.what());
      return;
    }
    const ZapVerdict v = zap_verdict(req, allowed_);
    try {
      for (std::size_t i = 0; i < v.reply.size(); ++i) {
        zmq::message_t part(v.reply[i].data(), v.reply[i].size());
        (void)zap_.send(part,
                        i + 1 < v.reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
      }
    } catch (const zmq::error_t& e) {
      log_("zap", std::string("ZAP handler failed to reply: ") + e.what());
    }
    if (v.admit) continue;
    refused_.fetch_add(1, std::memory_order_relaxed);
    log_(std::string(), "refused a connection from " + v.address + ": " + v.why);
  }
}

void ZapHandler::handshake_failed(std::uint16_t event, std::uint32_t value,
                                  const std::string& endpoint) {
  refused_.fetch_add(1, std::memory_order_relaxed);
  char code[48];
  std::snprintf(code, sizeof(code), " (event 0x%x, value 0x%x)", unsigned{event}, unsigned{value});
  // Which side notices a plaintext peer first is a race: here a mechanism mismatch, or a
  // connection the peer dropped mid-handshake (no detail).
  const std::string why = value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
                              ? "the peer does not use CURVE (a plaintext node?)"
                              : "the handshake failed before CURVE authentication (a plaintext "
                                "node, or one without our public key?)";
  log_(std::string(), "refused a connection on " + endpoint + ": " + why + code);
}

void ZapHandler::close() { zap_.close(); }

}  // namespace nodus::transport
