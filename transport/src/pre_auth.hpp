// PreAuthTracker: the connections to a node's listener that have not authenticated yet, and
// when each must go (docs/protocol.md section 1, "Before authentication").
//
// ZeroMQ accepts every TCP connection to a ROUTER and keeps it for as long as the client likes;
// it offers no way to close one. The ZeroMQ transport learns of each accepted connection, by
// its file descriptor, from the ROUTER's monitor (ZMQ_EVENT_ACCEPTED, ZMQ_EVENT_DISCONNECTED),
// and of which descriptor a message came from (ZMQ_SRCFD); this tracker, without any I/O,
// decides which connections to close: one that has not completed the cookie handshake within
// `timeout` of being accepted, and any beyond `max_pending` waiting at once. The transport
// closes them with shutdown(2), after checking that the descriptor still holds the same
// connection (the monitor's events arrive a little late, and descriptors are reused); libzmq
// then sees the connection end and cleans up after it as after any other.
//
// Once a connection has authenticated it is forgotten: only connections that have not are
// tracked, so a node under no attack tracks nothing between handshakes.
//
// Thread-safety: none (the transport's I/O lock).
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <unordered_map>
#include <vector>

namespace nodus::transport {

class PreAuthTracker {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  struct Config {
    /// How long an accepted connection may take to complete its handshake.
    std::chrono::milliseconds timeout{2000};
    /// How many connections may wait for their handshake at once.
    std::size_t max_pending = 256;
  };

  /// A connection to close: its descriptor, and what it was when it was accepted (see
  /// accepted(); compare before closing).
  struct Victim {
    int fd = -1;
    std::string identity;
    std::string address;
  };

  explicit PreAuthTracker(Config config) : cfg_(config) {}

  /// The listener accepted a connection on `fd` at `now`. `identity`: what the descriptor is
  /// (its local and peer addresses, raw), `address`: the peer's, for the log. Returns true if
  /// it is one more than max_pending: close it at once (it is not tracked).
  bool accepted(int fd, TimePoint now, std::string identity, std::string address);
  /// The connection on `fd` ended (or was never accepted as far as we know).
  void closed(int fd);
  /// A message came on `fd` from routing id `rid`; `authenticated`: its connection has
  /// completed the handshake (the link table's word), and is forgotten here.
  void message(int fd, const std::string& rid, bool authenticated);
  /// Connections that have not authenticated within the timeout, forgotten here: close them.
  /// `authenticated(rid)` is asked for those whose routing id is known, a last look.
  template <class Authenticated>
  std::vector<Victim> expired(TimePoint now, Authenticated&& authenticated);

  /// True when no connection is waiting for its handshake (then nothing need be looked at).
  bool empty() const { return pending_.empty(); }
  std::size_t pending() const { return pending_.size(); }
  const Config& config() const { return cfg_; }

 private:
  struct Entry {
    TimePoint since{};
    std::string rid;  // "" until a message came on it
    std::string identity;
    std::string address;
  };

  const Config cfg_;
  std::unordered_map<int, Entry> pending_;
  TimePoint next_check_{};
};

template <class Authenticated>
std::vector<PreAuthTracker::Victim> PreAuthTracker::expired(TimePoint now,
                                                            Authenticated&& authenticated) {
  std::vector<Victim> out;
  if (pending_.empty() || now < next_check_) return out;
  next_check_ = now + cfg_.timeout / 8;  // a few looks per timeout are enough
  for (auto it = pending_.begin(); it != pending_.end();) {
    Entry& e = it->second;
    if (now - e.since < cfg_.timeout) {
      ++it;
    } else if (!e.rid.empty() && authenticated(e.rid)) {
      it = pending_.erase(it);  // its authenticating message came before the monitor's word
    } else {
      out.push_back(Victim{it->first, std::move(e.identity), std::move(e.address)});
      it = pending_.erase(it);
    }
  }
  return out;
}

}  // namespace nodus::transport
