// Metrics: the node's figures in the Prometheus text format (version 0.0.4), and the HTTP
// server of `admin.http` that serves them at /metrics, with /health for probes.
//
// Thread-safety: render_metrics() may be called from any thread; MetricsServer runs its own
// threads.
#pragma once

#include <memory>
#include <string>

#include "http_server.hpp"
#include "nodus/node/node.hpp"

namespace nodus::tools {

/// Every metric of `node`, in the Prometheus text format.
std::string render_metrics(Node& node);

/// The HTTP server of admin.http (http_server.hpp: idle or half-sent connections never hold up
/// /health). Owns its threads; close() is idempotent.
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
  std::unique_ptr<HttpServer> http_;
};

}  // namespace nodus::tools
