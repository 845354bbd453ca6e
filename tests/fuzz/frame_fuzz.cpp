// libFuzzer target for the frame codec: any input must decode or fail cleanly (kProtocol, never
// a crash, a sanitizer report or an exception), and whatever decodes must re-encode to bytes
// that decode to the same frame; read as a batch, frames are taken one after another. See
// tests/fuzz/README.md to run it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "nodus/transport/frame.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "frame_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace nodus::transport;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // Small limits as well as the defaults, so the limit checks are reached too.
  FrameLimits small;
  small.max_frame = 512;
  small.max_payload = 64;
  small.max_capabilities = 2;
  for (const FrameLimits& limits : {FrameLimits{}, small}) {
    nodus::Result<Frame> first = decode_frame(bytes, limits);
    if (!first.ok()) {
      if (first.error().code() != nodus::ErrorCode::kProtocol) fail("error is not kProtocol");
      if (first.error().message().empty()) fail("error without a message");
      continue;
    }
    const std::string encoded = encode_frame(*first);
    nodus::Result<Frame> second = decode_frame(encoded, limits);
    if (!second.ok()) fail("a decoded frame does not decode after re-encoding");
    if (!(*first == *second)) fail("a re-encoded frame decodes to a different frame");
    if (encode_frame(*second) != encoded) fail("encoding is not deterministic");
  }
  // decode_next_frame reads common DATA frames by a path of its own: on a whole frame it must
  // agree with decode_frame, which always goes through msgpack-c.
  {
    std::string_view rest = bytes;
    nodus::Result<Frame> fast = decode_next_frame(rest);
    nodus::Result<Frame> general = decode_frame(bytes);
    if (general.ok() && !(fast.ok() && rest.empty() && *fast == *general)) {
      fail("decode_next_frame disagrees with decode_frame on a frame both should read");
    }
    if (fast.ok() && rest.empty() && !general.ok()) {
      fail("decode_next_frame accepts a frame decode_frame refuses");
    }
  }
  // The same bytes as a batch (several frames back to back, as a link carries them): each
  // frame decodes or fails cleanly, consumes something, and an error leaves the input alone.
  std::string_view rest = bytes;
  while (!rest.empty()) {
    const std::size_t before = rest.size();
    nodus::Result<Frame> f = decode_next_frame(rest);
    if (!f.ok()) {
      if (rest.size() != before) fail("a failed decode consumed input");
      break;
    }
    if (rest.size() >= before) fail("a decoded frame consumed nothing");
  }
  return 0;
}
