#include "client.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "admin.hpp"
#include "config.hpp"
#include "nodus/node/process.hpp"
#include "nodus/transport/curve.hpp"

namespace nodus::ctl {

namespace {

std::string read_cookie(const std::string& path) {
  std::vector<std::string> warnings;  // the node that owns the file warns of its mode
  auto cookie = tools::read_secret_file(path, warnings);
  if (!cookie.ok()) {
    throw CtlError(ErrorCode::kBadArg, "the cookie file " + cookie.error().message() +
                                           "; give the cluster's cookie file with --cookie-file");
  }
  return cookie.value();
}

// Where to reach the node of a config file: its advertised endpoint, else its listen endpoint,
// where one listening on every interface is reached on loopback.
std::string reachable(const NodeOptions& node) {
  if (!node.advertise.empty()) return node.advertise;
  std::string ep = node.listen;
  const std::string any = "tcp://0.0.0.0:";
  if (ep.rfind(any, 0) == 0) ep = "tcp://127.0.0.1:" + ep.substr(any.size());
  if (ep.rfind("tcp://*:", 0) == 0) ep = "tcp://127.0.0.1:" + ep.substr(8);
  if (ep.rfind("tcp://[::]:", 0) == 0) ep = "tcp://[::1]:" + ep.substr(11);
  return ep;
}

// nodusctl's own listen endpoint: on the address this machine uses to reach `endpoint`
// (tcp://HOST:PORT, HOST an address or a name), since the node links back to it as to any
// hidden node. Loopback for a node on this machine; "" if HOST does not resolve (the
// connection attempt then says why).
std::string own_listen_toward(const std::string& endpoint) {
  std::string hp = endpoint.rfind("tcp://", 0) == 0 ? endpoint.substr(6) : endpoint;
  const auto colon = hp.rfind(':');
  if (colon == std::string::npos) return "";
  std::string host = hp.substr(0, colon);
  const std::string port = hp.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0) return "";
  std::string out;
  for (addrinfo* a = res; a && out.empty(); a = a->ai_next) {
    // A UDP socket's connect sends nothing: it only asks the kernel for the route's source.
    const int fd = ::socket(a->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t len = sizeof(local);
    char text[INET6_ADDRSTRLEN] = {};
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      if (local.ss_family == AF_INET &&
          ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&local)->sin_addr, text,
                      sizeof(text))) {
        out = std::string("tcp://") + text + ":*";
      } else if (local.ss_family == AF_INET6 &&
                 ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr, text,
                             sizeof(text))) {
        out = std::string("tcp://[") + text + "]:*";
      }
    }
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return out;
}

}  // namespace

std::unique_ptr<Client> Client::connect(const GlobalOptions& o) {
  NodeOptions opts;
  std::string endpoint = o.node;
  if (endpoint.empty()) {
    if (const char* env = std::getenv("NODUS_NODE")) endpoint = env;
  }
  if (!o.config.empty()) {
    auto cfg = tools::load_config_file(o.config);
    if (!cfg.ok()) throw CtlError(ErrorCode::kBadArg, cfg.error().message());
    opts.cookie = cfg->node.cookie;
    opts.curve = cfg->node.curve;
    opts.curve_allowed = cfg->node.curve_allowed;
    if (endpoint.empty()) {
      endpoint = reachable(cfg->node);
      if (cfg->node.curve) endpoint += "#" + cfg->node.curve->public_key;
    }
  }
  if (endpoint.empty()) {
    throw CtlError(
        ErrorCode::kBadArg,
        "which node? give --node tcp://HOST:PORT, --config NODE.conf, or set NODUS_NODE");
  }
  std::string cookie_file = o.cookie_file;
  if (cookie_file.empty()) {
    if (const char* env = std::getenv("NODUS_COOKIE_FILE")) cookie_file = env;
  }
  if (!cookie_file.empty()) opts.cookie = read_cookie(cookie_file);
  if (opts.cookie.empty()) {
    throw CtlError(
        ErrorCode::kBadArg,
        "no cookie: give --cookie-file FILE (the cluster's cookie) or --config NODE.conf");
  }
  if (!o.curve_server_key.empty()) {
    if (!transport::is_curve_key(o.curve_server_key)) {
      throw CtlError(ErrorCode::kBadArg,
                     "--curve-server-key: \"" + o.curve_server_key +
                         "\" is not a public key (40 characters of Z85, as keygen prints)");
    }
    if (!transport::parse_peer_address(endpoint).public_key.empty()) {
      throw CtlError(ErrorCode::kBadArg,
                     "the node's public key is given twice: in --node ENDPOINT#KEY and in "
                     "--curve-server-key; keep one");
    }
    endpoint += "#" + o.curve_server_key;
  }
  if (!o.curve_secret_file.empty()) {
    std::vector<std::string> warnings;  // nodusctl's key is the operator's: no mode lecture
    auto secret = tools::read_secret_file(o.curve_secret_file, warnings);
    if (!secret.ok()) {
      throw CtlError(ErrorCode::kBadArg,
                     "--curve-secret-file: " + secret.error().message() +
                         "; make a key pair with nodusctl keygen --secret-file F");
    }
    auto pub = transport::curve_public_key_of(secret.value());
    if (!pub.ok()) {
      throw CtlError(ErrorCode::kBadArg,
                     "--curve-secret-file " + o.curve_secret_file + ": " + pub.error().message());
    }
    opts.curve = transport::CurveKeys{pub.value(), std::move(secret.value())};
  }
  auto addr = transport::parse_peer_address(endpoint);
  if (!o.curve_server_key.empty() && !opts.curve) {
    throw CtlError(ErrorCode::kBadArg,
                   "--curve-server-key needs nodusctl's own key: add --curve-secret-file F");
  }
  if (opts.curve && !addr.public_key.empty() &&
      std::find(opts.curve_allowed.begin(), opts.curve_allowed.end(), addr.public_key) ==
          opts.curve_allowed.end()) {
    opts.curve_allowed.push_back(addr.public_key);  // link to the node we were pointed at
  }
  if (opts.curve && addr.public_key.empty()) {
    throw CtlError(ErrorCode::kBadArg,
                   "the cluster uses CURVE: give the node's public key, as --curve-server-key KEY "
                   "or --node tcp://HOST:PORT#KEY");
  }

  std::random_device rd;
  opts.name = "nodusctl-" + std::to_string(::getpid()) + "-" + std::to_string(rd() % 100000);
  opts.listen = own_listen_toward(addr.endpoint);
  if (opts.listen.empty()) opts.listen = "tcp://127.0.0.1:*";
  opts.hidden = true;
  opts.schedulers = 1;
  opts.seeds = {endpoint};
  opts.log = [](const std::string&) {};  // refusals are reported below, in one line
  auto started = Node::start(opts);
  if (!started.ok()) {
    throw CtlError(started.error().code(),
                   "cannot start nodusctl's own node: " + started.error().to_string(), kExitUsage);
  }
  std::unique_ptr<Client> c(new Client());
  c->node_ = std::move(started.value());
  c->endpoint_ = addr.endpoint;
  c->timeout_ = o.timeout;
  const auto deadline = std::chrono::steady_clock::now() + o.timeout;
  Status linked = c->node_->connect(endpoint, o.timeout);
  if (linked.code() == ErrorCode::kAuth) {
    throw CtlError(ErrorCode::kAuth, "authentication refused by the node at " + addr.endpoint +
                                         ": is the cookie right? (--cookie-file or --config)");
  }
  // connect answers once the transport holds the link; nodes() lists the peer once the node's
  // runtime has taken the link's up event, a moment later (rarely, milliseconds).
  auto up = c->node_->nodes();
  while (up.empty() && linked.ok() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    up = c->node_->nodes();
  }
  if (up.empty()) {  // (linked under another endpoint string counts too)
    throw CtlError(
        ErrorCode::kNodeDown,
        "no answer from a node at " + addr.endpoint + " within " +
            std::to_string(o.timeout.count() / 1000) +
            " s: is it running (nodusctl up DIR)? right port? with CURVE, the right keys?",
        kExitUsage);
  }
  c->target_ = std::string(up.front().name());
  return c;
}

Client::~Client() {
  if (node_) node_->shutdown(std::chrono::milliseconds(200));
}

Term Client::ask(const Term& request, std::chrono::milliseconds timeout) {
  auto r = call(named(tools::kAdminName, target_), request, timeout);
  if (!r.ok()) {
    const ErrorCode code = tools::code_of(r.error());
    if (code == ErrorCode::kTimeout) {
      throw CtlError(code, "node " + target_ + " did not answer within " +
                               std::to_string(timeout.count()) +
                               " ms; try again, or a longer --timeout");
    }
    throw CtlError(code,
                   "node " + target_ + " (" + endpoint_ +
                       ") did not answer: " + r.error().to_string() + "; is it still running?",
                   kExitUsage);
  }
  if (auto m = r->match({"ok", _})) return m[0];
  if (auto e = tools::admin_error(*r)) throw CtlError(e->code, e->name + ": " + e->message);
  throw CtlError(ErrorCode::kProtocol, "unexpected answer from " + target_ + ": " + r->to_string());
}

Term Client::kv(const Term& request, std::chrono::milliseconds timeout) {
  auto r = call(named("nodus_kv", target_), request, timeout + std::chrono::seconds(1));
  if (r.ok()) return *r;
  const ErrorCode code = tools::code_of(r.error());
  if (code == ErrorCode::kNoProc) {
    throw CtlError(
        code,
        "node " + target_ + " runs no store: set kv.initial_members in its config (nodusd --help)",
        kExitUsage);
  }
  if (code == ErrorCode::kTimeout) {
    throw CtlError(code, "timeout: node " + target_ + "'s store did not answer within " +
                             std::to_string(timeout.count()) + " ms; try a longer --timeout");
  }
  throw CtlError(code,
                 "node " + target_ + " (" + endpoint_ +
                     ") did not answer: " + r.error().to_string() + "; is it still running?",
                 kExitUsage);
}

Term Client::ask_node(const std::string& node, const Term& request) {
  if (node == target_) return ask(request);
  try {
    return ask(tuple("relay", Atom(node), request));
  } catch (const CtlError& e) {
    if (e.code != ErrorCode::kNodeDown) throw;
    throw CtlError(e.code, std::string(e.what()) + " when asked through " + target_ +
                               "; nodusctl nodes lists the cluster and its state");
  }
}

}  // namespace nodus::ctl
