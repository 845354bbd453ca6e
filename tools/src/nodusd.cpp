// nodusd: runs one nodus node from a config file (DESIGN.md "Node configuration").
//
//   nodusd --config FILE [--check] [--section.key=VALUE ...]
//
// Validates everything first (bad config: one line on stderr naming the key and the file,
// exit 2), then starts the node, the global name service, the key-value store (when
// kv.initial_members is set), its admin server (for nodusctl), a
// process that logs each peer node coming up or going down, the servers of apps.start under the
// application supervisor, the metrics endpoint of admin.http, and the Redis-protocol endpoint
// of resp.listen (resp.hpp).
// SIGTERM or SIGINT stops it gracefully (terminate callbacks run, peers are told) and it exits 0; a
// second signal during the stop ends it at once (exit 1).
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <set>
#include <thread>

#include "admin.hpp"
#include "apps.hpp"
#include "config.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/node/gen_server.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/supervisor.hpp"
#include "nodus/registry/global.hpp"
#include "nodus/testing/cluster.hpp"
#include "nodus/transport/detail/mutex.hpp"
#include "resp.hpp"

namespace {

using namespace nodus;
using namespace nodus::tools;

int refuse(const std::string& line) {
  std::fprintf(stderr, "nodusd: %s\n", line.c_str());
  return 2;
}

// OK if host:port can be bound now (a plain TCP probe, before anything starts).
bool port_free(const std::string& host, const std::string& port, std::string& why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* res = nullptr;
  const char* h = (host == "*" || host == "0.0.0.0") ? nullptr : host.c_str();
  if (int rc = getaddrinfo(h, port.c_str(), &hints, &res); rc != 0) {
    why = std::string("cannot resolve ") + host + ": " + gai_strerror(rc);
    return false;
  }
  bool ok = false;
  for (addrinfo* a = res; a && !ok; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0) {
      ok = true;
    } else {
      why = std::strerror(errno);
    }
    ::close(fd);
  }
  freeaddrinfo(res);
  return ok;
}

// Logs one line per link event: a peer node up (with its endpoint) or down (with the reason the
// runtime gives), and how many peers are up after it. Hidden nodes (nodusctl) are not told of,
// as monitor_nodes leaves them out. Refused peers are logged by the transport (NodeOptions::log).
class LinkLogger : public GenServer {
 public:
  Action init(Node* node) {
    node_ = node;
    monitor_nodes(true);
    for (Atom peer : node_->nodes()) note_up(peer);  // linked before this process started
    return ok();
  }
  Action handle_info(Message& msg) override {
    if (const NodeUp* up = msg.get<NodeUp>()) note_up(up->node);
    if (const NodeDown* down = msg.get<NodeDown>()) {
      up_.erase(down->node);
      spdlog::warn("node {} down ({}): {} peer(s) up", down->node.name(), down->reason.to_string(),
                   up_.size());
    }
    return noreply();
  }

 private:
  void note_up(Atom peer) {
    if (!up_.insert(peer).second) return;
    std::string endpoint;
    for (const PeerStats& p : node_->peers()) {
      if (p.name == peer) endpoint = p.endpoint;
    }
    spdlog::info("node {} up at {}: {} peer(s) up", peer.name(), endpoint, up_.size());
  }

  Node* node_ = nullptr;
  std::set<Atom> up_;
};

// Splits "tcp://host:port" or "host:port".
std::pair<std::string, std::string> host_port(std::string ep) {
  if (ep.rfind("tcp://", 0) == 0) ep = ep.substr(6);
  auto colon = ep.rfind(':');
  std::string host = ep.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // an IPv6 literal, for getaddrinfo
  }
  return {host, ep.substr(colon + 1)};
}

// The first SIGTERM or SIGINT, handed from the signal thread to main.
class StopSignal {
 public:
  void set(int sig) NODUS_EXCLUDES(mu_) {
    {
      detail::MutexLock lock(mu_);
      sig_ = sig;
    }
    cv_.notify_all();
  }
  /// Waits until set() ran; returns its signal.
  int wait() NODUS_EXCLUDES(mu_) {
    detail::MutexLock lock(mu_);
    while (sig_ == 0) cv_.wait();
    return sig_;
  }

 private:
  detail::Mutex mu_;
  detail::CondVar cv_{mu_};
  int sig_ NODUS_GUARDED_BY(mu_) = 0;
};

}  // namespace

int main(int argc, char** argv) {
  auto cmd = parse_command_line(argc, argv);
  if (!cmd.ok()) return refuse(cmd.error().message());
  if (cmd->help) {
    std::cout << config_help();
    return 0;
  }
  auto config = load_config(*cmd, process_environment());
  if (!config.ok()) return refuse(config.error().message());
  const std::string in_file =
      config->config_file.empty() ? std::string() : " in " + config->config_file;

  // Ports: refused before anything starts.
  {
    auto [host, port] = host_port(config->node.listen);
    std::string why;
    if (port != "*" && !port_free(host, port, why)) {
      return refuse("bad config: node.listen" + in_file + ": cannot listen on " +
                    config->node.listen + " (" + why +
                    "); pick a free port, or stop the process using it");
    }
    if (!config->admin_http.empty()) {
      auto [h, p] = host_port(config->admin_http);
      if (!port_free(h, p, why)) {
        return refuse("bad config: admin.http" + in_file + ": cannot listen on " +
                      config->admin_http + " (" + why +
                      "); pick a free port, or stop the process using it");
      }
    }
    if (!config->resp_listen.empty()) {
      auto [h, p] = host_port(config->resp_listen);
      if (!port_free(h, p, why)) {
        return refuse("bad config: resp.listen" + in_file + ": cannot listen on " +
                      config->resp_listen + " (" + why +
                      "); pick a free port, or stop the process using it");
      }
    }
  }
  if (cmd->check) {
    for (const std::string& w : config->warnings)
      std::fprintf(stderr, "nodusd: warning: %s\n", w.c_str());
    std::cout << describe(*config) << "# ok: " << config->node.name << " would start\n";
    return 0;
  }

  std::string why;
  if (!setup_logging(config->node.name, config->log.level, config->log.format, config->log.file,
                     why)) {
    return refuse("bad config: log.file" + in_file + ": " + why);
  }
  for (const std::string& w : config->warnings) spdlog::warn("{}", w);

  // Signals go to one thread, which wakes main for the first and forces the exit on the second.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before any thread starts: all inherit it
  StopSignal stop;
  std::thread([&signals, &stop] {
    int sig = 0;
    sigwait(&signals, &sig);
    stop.set(sig);
    sigwait(&signals, &sig);
    spdlog::warn("second signal ({}): stopping at once", strsignal(sig));
    spdlog::default_logger()->flush();
    std::_Exit(1);
  }).detach();

  NodeOptions options = config->node;
  options.log = [](const std::string& line) { spdlog::warn("{}", line); };
  auto started = Node::start(options);
  if (!started.ok()) {
    spdlog::error("cannot start: {}", started.error().to_string());
    return refuse("bad config: node.listen" + in_file + ": " + started.error().message() +
                  "; pick a free port, or stop the process using it");
  }
  std::unique_ptr<Node> node = std::move(started.value());
  if (Status s = start_global(*node); !s.ok()) {
    spdlog::error("the global name service did not start: {}", s.to_string());
    node->shutdown();
    return 1;
  }

  if (config->testing_control == "on") {
    if (Status s = testing::serve_control(*node); !s.ok()) {
      spdlog::error("the test control server did not start: {}", s.to_string());
      node->shutdown();
      return 1;
    }
    spdlog::warn("testing.control is on: peers with the cookie may cut this node's links");
  }
  if (config->run_store()) {
    if (Status s = kv::start(*node, config->kv); !s.ok()) {
      node->shutdown();
      return refuse("bad config: [kv]" + in_file + ": " + s.message());
    }
    std::string members;
    for (const std::string& m : config->kv.initial_members)
      members += (members.empty() ? "" : " ") + m;
    spdlog::info("store started: {} partitions, N={} W={} R={}, conflicts {}, ring of {}{}",
                 config->kv.partitions, config->kv.replicas, config->kv.write_quorum,
                 config->kv.read_quorum,
                 config->kv.conflicts == kv::Conflicts::kLww ? "lww" : "siblings", members,
                 std::find(config->kv.initial_members.begin(), config->kv.initial_members.end(),
                           config->node.name) == config->kv.initial_members.end()
                     ? " (this node is not among them: a candidate)"
                     : "");
  }

  std::unique_ptr<MetricsServer> metrics;
  if (!config->admin_http.empty()) {
    auto m = MetricsServer::start(*node, config->admin_http);
    if (!m.ok()) {
      node->shutdown();
      return refuse("bad config: admin.http" + in_file + ": " + m.error().message());
    }
    metrics = std::move(m.value());
  }

  std::unique_ptr<RespServer> resp;
  if (!config->resp_listen.empty()) {
    RespOptions ro;
    ro.listen = config->resp_listen;
    ro.max_clients = config->resp_max_clients;
    // A bulk holds a value or a key (at most 64 KiB), with room for a value just over the
    // limit to reach the store and get its value_too_large.
    ro.max_bulk = std::max<std::size_t>(config->kv.max_value_bytes, 64 * 1024) + 64 * 1024;
    ro.request_timeout = config->kv.request_timeout;
    auto r = RespServer::start(*node, ro);
    if (!r.ok()) {
      node->shutdown();
      return refuse("bad config: resp.listen" + in_file + ": " + r.error().message());
    }
    resp = std::move(r.value());
    spdlog::info("Redis protocol (RESP2) at {}", config->resp_listen);
  }

  AdminOptions admin;
  admin.node = node.get();
  admin.cluster = config->cluster_name;
  admin.kv_partitions = config->kv.partitions;
  admin.kv_replicas = config->kv.replicas;
  // The built-in services under a supervisor of their own: a request that crashes the admin
  // server costs that request only.
  ChildSpec admin_child;
  admin_child.id = kAdminName;
  Node* n = node.get();
  admin_child.start = [n, admin]() -> Result<Pid, Reason> {
    return start_link<AdminServer>(*n, SpawnOptions{.name = kAdminName}, admin);
  };
  ChildSpec link_child;
  link_child.id = "nodus_link_log";
  link_child.start = [n]() -> Result<Pid, Reason> {
    return start_link<LinkLogger>(*n, SpawnOptions{.name = "nodus_link_log"}, n);
  };
  std::vector<ChildSpec> children;
  children.push_back(std::move(link_child));
  children.push_back(std::move(admin_child));
  auto services = start_supervisor(*node, SupervisorFlags{.intensity = 10}, std::move(children),
                                   SpawnOptions{.name = "nodus_services"});
  if (!services.ok()) {
    spdlog::error("the admin server did not start: {}", services.error().to_string());
    node->shutdown();
    return 1;
  }
  auto apps = start_apps(*node, config->apps);
  if (!apps.ok()) {
    node->shutdown();
    return refuse("apps.start" + in_file + ": " + apps.error().to_string() +
                  "; fix or remove that entry");
  }
  for (const AppSpec& app : config->apps) spdlog::info("app started: {}", app.text);
  spdlog::info(
      "node {} up at {}{}{}", config->node.name, node->endpoint(),
      config->cluster_name.empty() ? "" : " in cluster " + config->cluster_name,
      config->admin_http.empty() ? "" : ", metrics at http://" + config->admin_http + "/metrics");

  const int stop_signal = stop.wait();
  spdlog::info("{}: stopping gracefully", strsignal(stop_signal));
  if (resp) resp->close();
  if (metrics) metrics->close();
  node->shutdown(std::chrono::seconds(5));
  node.reset();  // closes the links: peers get BYE
  spdlog::info("stopped");
  spdlog::default_logger()->flush();
  return 0;
}
