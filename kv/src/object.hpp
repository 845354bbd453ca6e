// A stored object: one key's siblings with their dotted version vector set, and the causal
// context clients get, and their encodings (docs/protocol.md, "The store").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "dvv.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::kv {

/// One value of a key: its bytes, when it was written (hybrid logical clock), whether it is a
/// deletion marker, and when it expires (wall-clock ms since 1970 by the coordinator's clock;
/// 0: never). A value past its expiry reads as absent; the sweep (ttl.hpp) turns it into a
/// tombstone under the same dot, keeping expiry_ms, so it keeps superseding what it superseded.
struct Sibling {
  std::string value;
  std::uint64_t timestamp = 0;
  bool tombstone = false;
  std::uint64_t expiry_ms = 0;
  friend bool operator==(const Sibling&, const Sibling&) = default;
};

using Object = DvvSet<Sibling>;

/// The object's stored and replicated form: a MessagePack array
/// [2, [[vnode, epoch, counter, [[timestamp, flags, value], ...]], ...]] (flags bit 0:
/// tombstone), entries sorted by actor (vnode, then epoch); when some value has an expiry,
/// version 3, whose values are [timestamp, flags, value, expiry_ms]. Both decode, so data
/// written before TTL existed stays readable, and objects without expiry keep their bytes.
std::string encode_object(const Object& o);
void encode_object(const Object& o, std::string& out);
/// Errors: kProtocol naming what was wrong.
Result<Object> decode_object(std::string_view bytes);

/// True when every sibling is a tombstone (or there are none): the key reads as not found.
bool all_tombstones(const Object& o);

/// The most actors a causal context may name. A key gains an actor per vnode that writes it and
/// per lost copy (ActorSource), so legitimate contexts stay far below; one naming more is
/// refused (badarg).
inline constexpr std::size_t kMaxContextActors = 1024;

/// Signs causal contexts, so a client cannot forge one or use one key's on another: a context
/// is [2][MessagePack array of [vnode, epoch, counter]][16-byte keyed BLAKE2b of key + array].
class ContextSigner {
 public:
  /// `secret`: bytes shared by the cluster (nodusd uses the cookie). REQUIRES: not empty
  /// (kv::start refuses an empty one: anyone could sign).
  explicit ContextSigner(std::string_view secret);
  std::string encode(std::string_view key, const VersionVector& vv) const;
  /// The version vector of a context. Empty bytes are the empty context (a blind write).
  /// Errors: kBadArg "malformed causal context", "causal context forged, altered, or of
  /// another key", or naming more than kMaxContextActors actors or a counter above kMaxCounter.
  Result<VersionVector> decode(std::string_view key, std::string_view context) const;

 private:
  unsigned char key_[32];
};

}  // namespace nodus::kv
