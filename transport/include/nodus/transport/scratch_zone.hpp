// ScratchZone: the msgpack-c zone that decoders on this thread unpack into, reused.
//
// msgpack-c's plain `unpack` allocates a fresh 8 KiB zone for every call and frees it after:
// decoding a frame and then its payload cost two such allocations per message, and on a busy
// link they were the main source of contention in malloc. A decoder holds a ScratchZone while
// its msgpack objects are alive and unpacks into zone(); scopes nest (a payload decoded while
// its frame is), and the outermost one clears the zone, keeping its first chunk for the next
// decode.
//
// Objects unpacked into the zone must not outlive the outermost scope on their thread.
#pragma once

#include <msgpack.hpp>

namespace nodus::transport {

class ScratchZone {
 public:
  ScratchZone() { ++depth_; }
  ~ScratchZone() {
    if (--depth_ == 0) zone_.clear();
  }
  ScratchZone(const ScratchZone&) = delete;
  ScratchZone& operator=(const ScratchZone&) = delete;

  msgpack::zone& zone() { return zone_; }

 private:
  inline static thread_local msgpack::zone zone_;
  inline static thread_local int depth_ = 0;
};

}  // namespace nodus::transport
