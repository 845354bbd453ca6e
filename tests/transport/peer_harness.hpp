// A transport under test and everything its callbacks saw, for the transport test suites.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../test_support.hpp"
#include "nodus/transport/curve.hpp"
#include "nodus/transport/detail/mutex.hpp"
#include "nodus/transport/transport.hpp"

namespace nodus::transport::testing {

/// One transport and what its callbacks recorded (written by its I/O thread, read by the test).
struct TestPeer {
  // Stop the I/O thread before the vectors its callbacks write go away.
  ~TestPeer() {
    if (t) t->close();
  }
  std::unique_ptr<Transport> t;
  CurveKeys keys;            // with CURVE on
  mutable detail::Mutex mu;  // guards the vectors below
  std::vector<std::pair<std::string, Data>> received NODUS_GUARDED_BY(mu);
  std::vector<PeerInfo> ups NODUS_GUARDED_BY(mu);
  std::vector<std::pair<std::string, std::string>> downs NODUS_GUARDED_BY(mu);
  std::vector<std::string> logs NODUS_GUARDED_BY(mu);

  std::size_t count_received() const {
    detail::MutexLock lock(mu);
    return received.size();
  }
  bool is_up(const std::string& name) const {
    for (const auto& p : t->peers()) {
      if (p.name == name) return true;
    }
    return false;
  }
  bool went_down(const std::string& name, std::string* reason = nullptr) const {
    detail::MutexLock lock(mu);
    for (const auto& [n, r] : downs) {
      if (n != name) continue;
      if (reason) *reason = r;
      return true;
    }
    return false;
  }
  bool logged(const std::string& fragment) const {
    detail::MutexLock lock(mu);
    for (const auto& l : logs) {
      if (l.find(fragment) != std::string::npos) return true;
    }
    return false;
  }
  std::string all_logs() const {
    detail::MutexLock lock(mu);
    std::string out;
    for (const auto& l : logs) out.append(l).append("\n");
    return out;
  }
  /// "tcp://127.0.0.1:port#KEY", the form seeds take with CURVE.
  std::string address() const { return t->endpoint() + "#" + keys.public_key; }
};

/// Options for a loopback transport with a free port and fast heartbeats.
inline TransportOptions test_options(const std::string& name,
                                     const std::string& cookie = "secret") {
  TransportOptions o;
  o.name = name;
  o.creation = 1;
  o.listen = "tcp://127.0.0.1:*";
  o.cookie = cookie;
  o.heartbeat_interval = std::chrono::milliseconds(50);
  return o;
}

/// Starts a transport whose callbacks record into the returned TestPeer.
inline std::unique_ptr<TestPeer> start_peer(TransportOptions o) {
  auto p = std::make_unique<TestPeer>();
  TestPeer* raw = p.get();
  if (o.curve) p->keys = *o.curve;
  o.log = [raw](const std::string& line) {
    detail::MutexLock lock(raw->mu);
    raw->logs.push_back(line);
  };
  TransportCallbacks cb;
  cb.on_data = [raw](const std::string& peer, Data&& d) {
    detail::MutexLock lock(raw->mu);
    raw->received.emplace_back(peer, std::move(d));
  };
  cb.on_peer_up = [raw](const PeerInfo& info) {
    detail::MutexLock lock(raw->mu);
    raw->ups.push_back(info);
  };
  cb.on_peer_down = [raw](const std::string& peer, const std::string& reason) {
    detail::MutexLock lock(raw->mu);
    raw->downs.emplace_back(peer, reason);
  };
  auto t = Transport::start(std::move(o), std::move(cb));
  EXPECT_OK(t);
  if (t.ok()) p->t = std::move(t.value());
  return p;
}

}  // namespace nodus::transport::testing
