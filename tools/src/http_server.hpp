// HttpServer: the small HTTP server behind `admin.http` (/metrics, /health), built on
// cpp-httplib and hardened for an endpoint that probes must always reach.
//
// cpp-httplib alone gives each accepted connection a worker thread from a fixed pool and reads
// the request there, each read bounded by a timeout but the whole request not: ten clients that
// send half a request and wait take the whole pool, and /health stops answering for as long as
// they wait. Here a connection gets a worker only once its request head (request line and
// headers) has arrived whole:
//   - one reader thread polls every accepted connection that has not sent its head yet; a
//     connection gets kHeadDeadline for its head and at most kMaxHead bytes of it, and at most
//     kMaxWaiting connections wait at once (beyond that the oldest is closed);
//   - kWorkers threads answer the connections whose head is complete, each within
//     kRequestDeadline, one request per connection. A request that announces a body
//     (Content-Length, Transfer-Encoding) gets 400 from the reader at once: /metrics and /health
//     take none, so a worker never waits for one.
// So idle or half-sent connections cost a descriptor and a few KiB each, never a worker, and a
// probe is answered at once whatever they do. Like nginx, not like a thread per connection.
//
// The listener's backlog is SOMAXCONN (cpp-httplib 0.11 asks for 5, and a burst of connections
// then costs each dropped client a 1 s SYN retransmit). It sets SO_REUSEADDR (and, unlike
// cpp-httplib's default, not SO_REUSEPORT): a restarted node binds its port at once although
// the connections of its previous run linger in TIME_WAIT, and a second process on the same port
// is still refused.
//
// Thread-safety: start() and close() from one thread; handlers run on the worker threads.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "nodus/transport/status.hpp"

namespace nodus::tools {

class HttpServer {
 public:
  /// Answers GET of one path: fills the body and its content type.
  struct Route {
    std::string path;
    std::function<std::pair<std::string, std::string>()> get;  ///< -> {body, content type}
  };

  static constexpr std::chrono::milliseconds kHeadDeadline{5000};
  static constexpr std::chrono::milliseconds kRequestDeadline{2000};
  static constexpr std::size_t kMaxHead = 16 * 1024;  ///< bytes of request line + headers
  static constexpr std::size_t kMaxWaiting = 1024;    ///< connections still sending their head
  static constexpr std::size_t kWorkers = 2;
  static constexpr std::size_t kMaxReady = 256;  ///< complete heads waiting for a worker

  /// Binds `host_port` ("127.0.0.1:9101") and starts serving `routes`. Errors: kBadConfig
  /// naming the address when it cannot be bound (in use, not an address of this machine).
  static Result<std::unique_ptr<HttpServer>> start(const std::string& host_port,
                                                   std::vector<Route> routes);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  /// Stops listening, closes every connection and joins the threads. Idempotent.
  void close();

 private:
  class Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nodus::tools
