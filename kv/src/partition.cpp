#include "nodus/kv/partition.hpp"

#include <bit>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace nodus::kv {

std::string_view hash_tag(std::string_view key) {
  const std::size_t open = key.find('{');
  if (open == std::string_view::npos) return key;
  const std::size_t close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

std::uint64_t key_hash(std::string_view key) {
  const std::string_view tag = hash_tag(key);
  return XXH3_64bits(tag.data(), tag.size());
}

bool valid_partition_count(std::uint32_t partitions) {
  return partitions >= 1 && partitions <= 65536 && std::has_single_bit(partitions);
}

std::uint32_t partition_of(std::string_view key, std::uint32_t partitions) {
  const int bits = std::countr_zero(partitions);
  if (bits == 0) return 0;
  return static_cast<std::uint32_t>(key_hash(key) >> (64 - bits));
}

}  // namespace nodus::kv
