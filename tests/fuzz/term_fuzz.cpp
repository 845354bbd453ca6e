// libFuzzer target for the term codec, which decodes every DATA payload from the network: any
// input must decode or fail cleanly (kProtocol with a message, never a crash, a sanitizer
// report or an exception), and a term that decodes must re-encode to bytes that decode to an
// equal term. See tests/fuzz/README.md to run it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "nodus/node/codec.hpp"
#include "nodus/node/term.hpp"

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "term_fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // Small limits as well as the defaults, so the limit checks are reached too.
  nodus::DecodeLimits small;
  small.max_array = 8;
  small.max_map = 8;
  small.max_str = 16;
  small.max_bin = 16;
  small.max_ext = 64;
  small.max_depth = 4;
  for (const nodus::DecodeLimits& limits : {nodus::DecodeLimits{}, small}) {
    nodus::Result<nodus::Term> first = nodus::decode_term(bytes, limits);
    if (!first.ok()) {
      if (first.error().code() != nodus::ErrorCode::kProtocol) fail("error is not kProtocol");
      if (first.error().message().empty()) fail("error without a message");
      continue;
    }
    const std::string encoded = nodus::encode_term(*first);
    nodus::Result<nodus::Term> second = nodus::decode_term(encoded, limits);
    if (!second.ok()) fail("a decoded term does not decode after re-encoding");
    if (!(*first == *second)) fail("a re-encoded term decodes to a different term");
    if (nodus::encode_term(*second) != encoded) fail("encoding is not deterministic");
  }
  return 0;
}
