// The connections that have not authenticated yet (pre_auth.hpp).
#include "pre_auth.hpp"

#include <utility>

namespace nodus::transport {

bool PreAuthTracker::accepted(int fd, TimePoint now, std::string identity, std::string address) {
  // An entry left for this descriptor is of a connection whose end was never reported.
  pending_.erase(fd);
  if (pending_.size() >= cfg_.max_pending) return true;
  pending_.emplace(fd, Entry{now, std::string(), std::move(identity), std::move(address)});
  return false;
}

void PreAuthTracker::closed(int fd) { pending_.erase(fd); }

void PreAuthTracker::message(int fd, const std::string& rid, bool authenticated) {
  auto it = pending_.find(fd);
  if (it == pending_.end()) return;  // authenticated long ago, or not told of yet
  Entry& e = it->second;
  if (e.rid.empty()) {
    e.rid = rid;
  } else if (e.rid != rid) {
    // The descriptor holds a new connection already, its predecessor's end not yet reported:
    // the entry is the predecessor's, and goes with that report.
    return;
  }
  if (authenticated) pending_.erase(it);
}

}  // namespace nodus::transport
