// Metrics: the node's figures in the Prometheus text format (version 0.0.4), and the HTTP
// server of `admin.http` that serves them at /metrics, with /health for probes.
//
// Thread-safety: render() may be called from any thread; MetricsServer runs its own thread.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "nodus/node/node.hpp"

namespace httplib {
class Server;
}

namespace nodus::tools {

/// Every metric of `node`, in the Prometheus text format.
std::string render_metrics(Node& node);

/// The HTTP server of admin.http. Move-only owner of its thread; close() is idempotent.
class MetricsServer {
 public:
  /// Binds `host_port` ("127.0.0.1:9101"). Errors: kBadConfig naming the address.
  static Result<std::unique_ptr<MetricsServer>> start(Node& node, const std::string& host_port);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  void close();

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace nodus::tools
