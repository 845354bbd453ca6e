#include "client.hpp"

#include <unistd.h>

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
    throw CtlError(kExitUsage, "the cookie file " + cookie.error().message() +
                                   "; give the cluster's cookie file with --cookie-file");
  }
  return cookie.value();
}

// A node listening on every interface is reached on loopback.
std::string reachable(std::string ep) {
  const std::string any = "tcp://0.0.0.0:";
  if (ep.rfind(any, 0) == 0) ep = "tcp://127.0.0.1:" + ep.substr(any.size());
  if (ep.rfind("tcp://*:", 0) == 0) ep = "tcp://127.0.0.1:" + ep.substr(8);
  return ep;
}

}  // namespace

std::string reason_text(const Term& reason) {
  if (auto m = reason.match({_atom, _bin})) {
    return std::string(m[0].as_atom().name()) + ": " + m[1].as_bin();
  }
  if (reason.is_atom()) return std::string(reason.as_atom().name());
  return reason.to_string();
}

std::unique_ptr<Client> Client::connect(const GlobalOptions& o) {
  NodeOptions opts;
  std::string endpoint = o.node;
  if (endpoint.empty()) {
    if (const char* env = std::getenv("NODUS_NODE")) endpoint = env;
  }
  if (!o.config.empty()) {
    auto cfg = tools::load_config_file(o.config);
    if (!cfg.ok()) throw CtlError(kExitUsage, cfg.error().message());
    opts.cookie = cfg->node.cookie;
    opts.curve = cfg->node.curve;
    opts.curve_allowed = cfg->node.curve_allowed;
    if (endpoint.empty()) {
      endpoint = reachable(cfg->node.listen);
      if (cfg->node.curve) endpoint += "#" + cfg->node.curve->public_key;
    }
  }
  if (endpoint.empty()) {
    throw CtlError(
        kExitUsage,
        "which node? give --node tcp://HOST:PORT, --config NODE.conf, or set NODUS_NODE");
  }
  std::string cookie_file = o.cookie_file;
  if (cookie_file.empty()) {
    if (const char* env = std::getenv("NODUS_COOKIE_FILE")) cookie_file = env;
  }
  if (!cookie_file.empty()) opts.cookie = read_cookie(cookie_file);
  if (opts.cookie.empty()) {
    throw CtlError(
        kExitUsage,
        "no cookie: give --cookie-file FILE (the cluster's cookie) or --config NODE.conf");
  }
  auto addr = transport::parse_peer_address(endpoint);
  if (opts.curve && addr.public_key.empty()) {
    throw CtlError(kExitUsage,
                   "the cluster uses CURVE: give the node as tcp://HOST:PORT#PUBLICKEY");
  }

  std::random_device rd;
  opts.name = "nodusctl-" + std::to_string(::getpid()) + "-" + std::to_string(rd() % 100000);
  opts.listen = "tcp://127.0.0.1:*";
  opts.hidden = true;
  opts.schedulers = 1;
  opts.seeds = {endpoint};
  opts.log = [](const std::string&) {};  // refusals are reported below, in one line
  auto started = Node::start(opts);
  if (!started.ok()) {
    throw CtlError(kExitUsage, "cannot start nodusctl's own node: " + started.error().to_string());
  }
  std::unique_ptr<Client> c(new Client());
  c->node_ = std::move(started.value());
  c->endpoint_ = addr.endpoint;
  c->timeout_ = o.timeout;
  const auto deadline = std::chrono::steady_clock::now() + o.timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    auto up = c->node_->nodes();
    if (!up.empty()) {
      c->target_ = std::string(up.front().name());
      return c;
    }
    if (c->node_->network_stats().auth_failures > 0) {
      throw CtlError(kExitUsage, "authentication refused by the node at " + addr.endpoint +
                                     ": is the cookie right? (--cookie-file or --config)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  throw CtlError(kExitUsage, "no answer from a node at " + addr.endpoint + " within " +
                                 std::to_string(o.timeout.count() / 1000) +
                                 " s: is it running (nodusctl up DIR)? right port? with CURVE, "
                                 "the right keys?");
}

Client::~Client() {
  if (node_) node_->shutdown(std::chrono::milliseconds(200));
}

Term Client::ask(const Term& request, std::chrono::milliseconds timeout) {
  auto r = call(named(tools::kAdminName, target_), request, timeout);
  if (!r.ok()) {
    const std::string why = r.error().to_string();
    if (r.error().is_atom("timeout")) {
      throw CtlError(kExitFailed, "node " + target_ + " did not answer within " +
                                      std::to_string(timeout.count()) +
                                      " ms; try again, or a "
                                      "longer --timeout");
    }
    throw CtlError(kExitUsage, "node " + target_ + " (" + endpoint_ + ") did not answer: " + why +
                                   "; is it still running?");
  }
  if (auto m = r->match({"ok", _})) return m[0];
  if (auto m = r->match({"error", _})) throw CtlError(kExitFailed, reason_text(m[0]));
  throw CtlError(kExitFailed, "unexpected answer from " + target_ + ": " + r->to_string());
}

Term Client::ask_node(const std::string& node, const Term& request) {
  if (node == target_) return ask(request);
  try {
    return ask(tuple("relay", Atom(node), request));
  } catch (const CtlError& e) {
    std::string what = e.what();
    if (what.rfind("unreachable: ", 0) == 0) {
      throw CtlError(kExitFailed, what.substr(13) + " when asked through " + target_ +
                                      "; nodusctl nodes lists the cluster and its state");
    }
    throw;
  }
}

}  // namespace nodus::ctl
