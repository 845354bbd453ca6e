// unpack_bounded: one MessagePack object unpacked from untrusted bytes within limits, and the
// one ladder from msgpack-c's exceptions to an error that names what was wrong. The frame
// decoder (transport/src/frame.cpp) and the term decoder (node/src/codec.cpp) both use it.
//
// For decoders' use, not a user API: it exposes msgpack-c types. Thread-safe as msgpack-c is:
// each thread unpacks into its own zone (ScratchZone).
#pragma once

#include <msgpack.hpp>

#include <algorithm>
#include <cstddef>
#include <new>
#include <optional>
#include <string>
#include <string_view>

namespace nodus::transport {

/// What msgpack-c may build for one object: elements per array, pairs per map, bytes per str,
/// bin and ext payload, and nesting depth. These are msgpack-c's unpack_limit; the str and bin
/// limits apply only to what the reference function declines to reference (see below).
struct UnpackBounds {
  std::size_t max_array = 0;
  std::size_t max_map = 0;
  std::size_t max_str = 0;
  std::size_t max_bin = 0;
  std::size_t max_ext = 0;
  std::size_t max_depth = 0;
  /// Whether a refusal names the limit as a field of DecodeLimits ("... (max_array)"): for
  /// decoders whose limits the user sets.
  bool name_limits = false;
};

/// Why unpack_bounded refused the input; `message` is the line for logs and peers.
struct UnpackError {
  enum class Kind { kTruncated, kMalformed, kArray, kMap, kStr, kBin, kExt, kDepth, kMemory };
  Kind kind;
  std::string message;
};

/// Unpacks the MessagePack object at the start of `bytes` into `zone`, within `bounds`, and
/// sets `out` and `consumed` (bytes read; the caller decides whether trailing bytes are an
/// error). An array or map header that claims more elements than `bytes` could hold is refused
/// as truncated before msgpack-c allocates for it. `reference(type, length, user_data)` says
/// which str, bin and ext payloads `out` may point into `bytes` for (msgpack-c's
/// unpack_reference_func): those are not copied, and msgpack-c checks max_str / max_bin only
/// on the copying path. `unit` names what is decoded in the messages ("frame", "term").
/// Returns nothing on success, or the refusal: kTruncated "truncated: input ends inside the
/// <unit>", kMalformed, a limit's kind ("array longer than 64 elements", "nested deeper than
/// 32", ...) or kMemory. Never throws.
inline std::optional<UnpackError> unpack_bounded(msgpack::zone& zone, std::string_view bytes,
                                                 const UnpackBounds& bounds,
                                                 msgpack::unpack_reference_func reference,
                                                 void* user_data, std::string_view unit,
                                                 msgpack::object& out, std::size_t& consumed) {
  using Kind = UnpackError::Kind;
  auto over = [&](Kind kind, const char* what, std::size_t n, const char* unit_of_n,
                  const char* field) {
    std::string m = std::string(what) + std::to_string(n) + unit_of_n;
    if (bounds.name_limits) m += std::string(" (") + field + ")";
    return UnpackError{kind, std::move(m)};
  };
  if (bytes.empty()) return UnpackError{Kind::kTruncated, "truncated: no bytes"};
  // An element takes at least one byte and a map pair two.
  const std::size_t max_array = std::min(bounds.max_array, bytes.size());
  const std::size_t max_map = std::min(bounds.max_map, bytes.size() / 2);
  const msgpack::unpack_limit limit(max_array, max_map, bounds.max_str, bounds.max_bin,
                                    bounds.max_ext, bounds.max_depth);
  std::size_t off = 0;
  try {
    // v1's unpack throws a distinct exception for truncated and for malformed input; the
    // default (v3) one returns an empty handle for both.
    out = msgpack::v1::unpack(zone, bytes.data(), bytes.size(), off, reference, user_data, limit);
  } catch (const msgpack::insufficient_bytes&) {
    return UnpackError{Kind::kTruncated, "truncated: input ends inside the " + std::string(unit)};
  } catch (const msgpack::parse_error&) {
    return UnpackError{Kind::kMalformed, "malformed: reserved byte 0xc1 (not MessagePack)"};
  } catch (const msgpack::array_size_overflow&) {
    if (max_array < bounds.max_array) {
      return UnpackError{Kind::kTruncated,
                         "truncated: array header claims more elements than the input holds"};
    }
    return over(Kind::kArray, "array longer than ", bounds.max_array, " elements", "max_array");
  } catch (const msgpack::map_size_overflow&) {
    if (max_map < bounds.max_map) {
      return UnpackError{Kind::kTruncated,
                         "truncated: map header claims more pairs than the input holds"};
    }
    return over(Kind::kMap, "map larger than ", bounds.max_map, " pairs", "max_map");
  } catch (const msgpack::str_size_overflow&) {
    return over(Kind::kStr, "str longer than ", bounds.max_str, " bytes", "max_str");
  } catch (const msgpack::bin_size_overflow&) {
    return over(Kind::kBin, "bin longer than ", bounds.max_bin, " bytes", "max_bin");
  } catch (const msgpack::ext_size_overflow&) {
    return over(Kind::kExt, "ext payload longer than ", bounds.max_ext, " bytes", "max_ext");
  } catch (const msgpack::depth_size_overflow&) {
    return over(Kind::kDepth, "nested deeper than ", bounds.max_depth, "", "max_depth");
  } catch (const msgpack::unpack_error& e) {
    return UnpackError{Kind::kMalformed, std::string("malformed: ") + e.what()};
  } catch (const std::bad_alloc&) {
    return UnpackError{Kind::kMemory, "out of memory decoding the " + std::string(unit)};
  } catch (const std::exception& e) {
    return UnpackError{Kind::kMalformed, std::string("cannot decode: ") + e.what()};
  }
  consumed = off;
  return std::nullopt;
}

}  // namespace nodus::transport
