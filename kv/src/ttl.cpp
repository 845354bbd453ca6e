// Expiry: see ttl.hpp.
#include "ttl.hpp"

#include <optional>

#include <algorithm>

#include "state.hpp"

namespace nodus::kv {

bool reads_absent(const Object& o, std::uint64_t now_ms) {
  for (const auto& e : o.entries()) {
    for (const auto& v : e.values) {
      if (is_live(v, now_ms)) return false;
    }
  }
  return true;
}

std::optional<std::uint64_t> ttl_left_ms(const Object& o, std::uint64_t now_ms) {
  std::optional<std::uint64_t> latest;
  for (const auto& e : o.entries()) {
    for (const auto& v : e.values) {
      if (!is_live(v, now_ms)) continue;
      if (v.expiry_ms == 0) return 0;
      latest = std::max(latest.value_or(0), v.expiry_ms - now_ms);
    }
  }
  return latest;
}

std::uint64_t next_expiry(const Object& o) {
  std::uint64_t first = 0;
  for (const auto& e : o.entries()) {
    for (const auto& v : e.values) {
      if (v.tombstone || v.expiry_ms == 0) continue;
      if (first == 0 || v.expiry_ms < first) first = v.expiry_ms;
    }
  }
  return first;
}

std::size_t expire_values(Object& o, std::uint64_t now_ms) {
  std::size_t n = 0;
  for (auto& e : o.mutable_entries()) {
    for (auto& v : e.values) {
      if (v.tombstone || v.expiry_ms == 0 || v.expiry_ms > now_ms) continue;
      v.tombstone = true;
      v.value.clear();
      v.value.shrink_to_fit();
      ++n;
    }
  }
  return n;
}

std::uint64_t tombstone_age_from(const Object& o) {
  std::uint64_t newest = 0;
  for (const auto& e : o.entries()) {
    for (const auto& v : e.values) {
      newest = std::max({newest, HybridClock::millis(v.timestamp), v.expiry_ms});
    }
  }
  return newest;
}

void ExpiryIndex::note(std::string_view key, std::uint64_t expiry_ms) {
  auto it = due_.find(key);
  if (it != due_.end()) {
    if (it->second == expiry_ms) return;
    queue_.erase({it->second, std::string_view(it->first)});
    if (expiry_ms == 0) {
      due_.erase(it);
      return;
    }
    it->second = expiry_ms;
    queue_.emplace(expiry_ms, std::string_view(it->first));
    return;
  }
  if (expiry_ms == 0) return;
  auto [added, fresh] = due_.emplace(std::string(key), expiry_ms);
  (void)fresh;
  queue_.emplace(expiry_ms, std::string_view(added->first));
}

std::vector<std::string> ExpiryIndex::take_due(std::uint64_t now_ms, std::size_t limit) {
  std::vector<std::string> out;
  while (out.size() < limit && !queue_.empty() && queue_.begin()->first <= now_ms) {
    auto it = due_.find(queue_.begin()->second);
    queue_.erase(queue_.begin());
    out.push_back(std::move(due_.extract(it).key()));
  }
  return out;
}

void note_expiry(ExpiryIndex& index, std::string_view key, const Object& o) {
  const std::uint64_t first = next_expiry(o);
  if (first == 0 && index.empty()) return;
  index.note(key, first);
}

std::vector<std::string> sweep_expired(
    KvState& st, std::uint32_t p,
    const std::function<Status(const std::string& key, const Object& o)>& write,
    const std::function<void(const std::string& key, const Object& before)>& expired) {
  std::vector<std::string> reapable;
  ExpiryIndex& index = st.parts[p].expiries;
  if (index.empty()) return reapable;
  const std::uint64_t now = st.wall_ms();
  std::string bytes;
  for (std::string& key : index.take_due(now, kSweepPerRound)) {
    if (!st.engine->get(p, key, &bytes).ok()) continue;  // dropped since (reaped, handed off)
    Result<Object> o = decode_object(bytes);
    if (!o) continue;
    std::optional<Object> before;
    if (expired) before = *o;
    if (expire_values(*o, now) > 0) {
      if (!write(key, *o).ok()) {
        index.note(key, now + 1000);  // the engine failed: try again later
        continue;
      }
      if (expired) expired(key, *before);
      st.counters.expired.fetch_add(1, std::memory_order_relaxed);
      if (all_tombstones(*o)) reapable.push_back(key);
    }
    note_expiry(index, key, *o);
  }
  return reapable;
}

void restore_expiry_index(KvState& st) {
  if (st.engine->stats().keys == 0) return;
  for (std::uint32_t p = 0; p < st.options.partitions; ++p) {
    ExpiryIndex& index = st.parts[p].expiries;
    st.engine->fold(p, [&](std::string_view key, std::string_view value) {
      // [2 or 3, ...]: fixarray of 2 (0x92), then the version as a positive fixint.
      if (value.size() < 2 || static_cast<unsigned char>(value[1]) != 3) return true;
      if (Result<Object> o = decode_object(value)) note_expiry(index, key, *o);
      return true;
    });
  }
}

}  // namespace nodus::kv
