// Where a key lives: its partition on the ring (Dynamo section 4.2, Riak's chash).
//
// The ring has Q partitions (Q a power of two, fixed when the cluster is created). A key's
// partition is the top log2(Q) bits of XXH3-64 (seed 0) of the key's bytes, or of its hash
// tag: the bytes between the first `{` and the next `}` after it, when there are any, as in
// Redis Cluster, so that `{user1}.name` and `{user1}.mail` share a partition. Clients in other
// languages compute the same (docs/protocol.md, "The store"), so they can route by themselves.
//
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string_view>

namespace nodus::kv {

/// The longest key, in bytes (64 KiB). Longer keys are refused with kValueTooLarge.
inline constexpr std::size_t kMaxKeyBytes = 64 * 1024;

/// The part of `key` that is hashed: its hash tag when it has a non-empty one, else all of it.
/// The view refers into `key`.
std::string_view hash_tag(std::string_view key);

/// XXH3-64 of hash_tag(key).
std::uint64_t key_hash(std::string_view key);

/// The partition of `key` on a ring of `partitions` partitions: the top log2(partitions) bits
/// of key_hash(key). REQUIRES: partitions is a power of two, 1 <= partitions <= 65536.
std::uint32_t partition_of(std::string_view key, std::uint32_t partitions);

/// True for 1, 2, 4 ... 65536: the ring sizes the store accepts.
bool valid_partition_count(std::uint32_t partitions);

}  // namespace nodus::kv
