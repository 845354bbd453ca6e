// Expiry: see ttl.hpp.
#include "ttl.hpp"

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>

#include "state.hpp"

#define XXH_INLINE_ALL
#include <xxhash.h>

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

std::uint64_t ExpiryIndex::HashOf::operator()(const Entry& e) const {
  return XXH3_64bits(e.key().data(), e.key().size());
}

ExpiryIndex::~ExpiryIndex() {
  for (Entry* e : queue_) std::free(e);
}

ExpiryIndex::ExpiryIndex(ExpiryIndex&& o) noexcept
    : due_(std::move(o.due_)),
      queue_(std::move(o.queue_)),
      entry_bytes_(std::exchange(o.entry_bytes_, 0)),
      bytes_(o.bytes_.exchange(0)) {
  o.queue_.clear();
}

void ExpiryIndex::sift_up(std::size_t i) {
  Entry* e = queue_[i];
  while (i > 0) {
    const std::size_t parent = (i - 1) / 2;
    if (!before(e, queue_[parent])) break;
    set(i, queue_[parent]);
    i = parent;
  }
  set(i, e);
}

void ExpiryIndex::sift_down(std::size_t i) {
  Entry* e = queue_[i];
  const std::size_t n = queue_.size();
  for (;;) {
    std::size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && before(queue_[child + 1], queue_[child])) ++child;
    if (!before(queue_[child], e)) break;
    set(i, queue_[child]);
    i = child;
  }
  set(i, e);
}

void ExpiryIndex::unqueue(Entry* e) {
  const std::size_t i = e->at;
  Entry* last = queue_.back();
  queue_.pop_back();
  if (last == e) return;
  set(i, last);
  if (i > 0 && before(last, queue_[(i - 1) / 2])) {
    sift_up(i);
  } else {
    sift_down(i);
  }
}

void ExpiryIndex::release(Entry* e) {
  unqueue(e);
  due_.erase(HashOf()(*e), [e](const Entry& x) { return &x == e; });
  entry_bytes_ -= malloc_bytes(sizeof(Entry) + e->size);
  std::free(e);
}

void ExpiryIndex::publish_bytes() {
  bytes_.store(entry_bytes_ + due_.bytes() + malloc_bytes(queue_.capacity() * sizeof(Entry*)),
               std::memory_order_relaxed);
}

void ExpiryIndex::note(std::string_view key, std::uint64_t expiry_ms) {
  const std::uint64_t h = XXH3_64bits(key.data(), key.size());
  Entry* e = due_.find(h, [key](const Entry& x) { return x.key() == key; });
  if (e) {
    if (e->expiry_ms == expiry_ms) return;
    if (expiry_ms == 0) {
      release(e);
      publish_bytes();
      return;
    }
    const bool sooner = expiry_ms < e->expiry_ms;
    e->expiry_ms = expiry_ms;
    if (sooner) {
      sift_up(e->at);
    } else {
      sift_down(e->at);
    }
    return;
  }
  if (expiry_ms == 0) return;
  e = static_cast<Entry*>(checked_malloc(sizeof(Entry) + key.size()));
  e->expiry_ms = expiry_ms;
  e->size = static_cast<std::uint32_t>(key.size());
  if (!key.empty()) std::memcpy(e->bytes(), key.data(), key.size());
  due_.insert(h, e);
  queue_.push_back(e);
  sift_up(queue_.size() - 1);
  entry_bytes_ += malloc_bytes(sizeof(Entry) + key.size());
  publish_bytes();
}

std::vector<std::string> ExpiryIndex::take_due(std::uint64_t now_ms, std::size_t limit) {
  std::vector<std::string> out;
  while (out.size() < limit && !queue_.empty() && queue_.front()->expiry_ms <= now_ms) {
    Entry* e = queue_.front();
    out.emplace_back(e->key());
    release(e);
  }
  if (!out.empty()) publish_bytes();
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
