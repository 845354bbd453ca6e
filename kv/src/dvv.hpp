// Dotted version vector sets: the causal history of one key with its concurrent values
// (siblings), as Riak's dvvset (Almeida, Baquero, Goncalves, Preguica, Fonte: "Scalable and
// Accurate Causality Tracking for Eventually Consistent Stores", 2014). Written from the
// paper and the dvvset API, not from its code.
//
// A set holds one entry per actor (a vnode that coordinated writes of this key), sorted by
// actor id: {id, counter, values}, where the values are the still-live writes of that actor,
// newest first: the last `values.size()` dots id:counter-k+1 .. id:counter. A write by actor
// `id` with a causal context (the join of what the client read) drops exactly the values whose
// dots the context covers and adds one dot; writes whose contexts did not see each other stay
// as siblings. Unlike dvvset there are no anonymous values: every value here comes from an
// update with an actor id, so there is no path that makes one.
//
// Thread-safety: values; no shared state.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace nodus::kv {

/// A version vector: {actor id, counter} pairs sorted by id, counters > 0.
using VersionVector = std::vector<std::pair<std::uint64_t, std::uint64_t>>;

/// True when `a` has seen everything `b` has (a >= b pointwise).
inline bool descends(const VersionVector& a, const VersionVector& b) {
  std::size_t i = 0;
  for (const auto& [id, n] : b) {
    while (i < a.size() && a[i].first < id) ++i;
    if (i == a.size() || a[i].first != id || a[i].second < n) return false;
  }
  return true;
}

/// The pointwise maximum.
inline VersionVector vv_merge(const VersionVector& a, const VersionVector& b) {
  VersionVector out;
  out.reserve(a.size() + b.size());
  std::size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && a[i].first < b[j].first)) {
      out.push_back(a[i++]);
    } else if (i == a.size() || b[j].first < a[i].first) {
      out.push_back(b[j++]);
    } else {
      out.emplace_back(a[i].first, std::max(a[i].second, b[j].second));
      ++i;
      ++j;
    }
  }
  return out;
}

template <class V>
class DvvSet {
 public:
  struct Entry {
    std::uint64_t id = 0;
    std::uint64_t counter = 0;
    std::vector<V> values;  // newest first
    friend bool operator==(const Entry&, const Entry&) = default;
  };

  DvvSet() = default;
  explicit DvvSet(std::vector<Entry> entries) : entries_(std::move(entries)) {}

  const std::vector<Entry>& entries() const { return entries_; }
  std::vector<Entry>& mutable_entries() { return entries_; }
  bool empty() const { return entries_.empty(); }

  /// The causal context handed to clients: the version vector of everything seen.
  VersionVector join() const {
    VersionVector vv;
    vv.reserve(entries_.size());
    for (const auto& e : entries_) vv.emplace_back(e.id, e.counter);
    return vv;
  }

  /// Every live value (siblings), by actor id then newest first.
  std::vector<V> values() const {
    std::vector<V> out;
    for (const auto& e : entries_) out.insert(out.end(), e.values.begin(), e.values.end());
    return out;
  }
  std::size_t value_count() const {
    std::size_t n = 0;
    for (const auto& e : entries_) n += e.values.size();
    return n;
  }

  /// True when this set's history is strictly older than `o`'s.
  bool less(const DvvSet& o) const {
    const VersionVector a = join();
    const VersionVector b = o.join();
    return descends(b, a) && a != b;
  }

  /// Merges two replicas of one key: the union of histories; a value survives when no side
  /// has seen it superseded. Commutative, associative, idempotent.
  static DvvSet sync(const DvvSet& a, const DvvSet& b) {
    std::vector<Entry> out;
    out.reserve(a.entries_.size() + b.entries_.size());
    std::size_t i = 0, j = 0;
    while (i < a.entries_.size() || j < b.entries_.size()) {
      if (j == b.entries_.size() ||
          (i < a.entries_.size() && a.entries_[i].id < b.entries_[j].id)) {
        out.push_back(a.entries_[i++]);
      } else if (i == a.entries_.size() || b.entries_[j].id < a.entries_[i].id) {
        out.push_back(b.entries_[j++]);
      } else {
        out.push_back(merge(a.entries_[i++], b.entries_[j++]));
      }
    }
    return DvvSet(std::move(out));
  }

  /// A write of `value` by actor `id`, by a client that had read `context`, onto this
  /// replica's set: drops the values `context` covers, keeps the others (siblings), and adds
  /// the new value under a new dot of `id`.
  DvvSet update(const VersionVector& context, V value, std::uint64_t id) const {
    std::vector<Entry> seen;
    seen.reserve(context.size());
    for (const auto& [cid, n] : context) seen.push_back(Entry{cid, n, {}});
    DvvSet out = sync(DvvSet(std::move(seen)), *this);
    out.event(id, std::move(value));
    return out;
  }

  /// Keeps only the value that `better` orders last (last writer wins), with the whole
  /// history: `better(a, b)` is true when b wins over a. No-op on an empty set.
  template <class Less>
  void keep_max(Less better) {
    const V* best = nullptr;
    std::uint64_t best_id = 0;
    for (const auto& e : entries_) {
      for (const auto& v : e.values) {
        if (!best || better(*best, v)) {
          best = &v;
          best_id = e.id;
        }
      }
    }
    if (!best) return;
    V keep = *best;
    for (auto& e : entries_) {
      e.values.clear();
      if (e.id == best_id) e.values.push_back(keep);
    }
  }

  /// Replaces every value by `value`, as one new write of `id` that has seen them all.
  void resolve(V value, std::uint64_t id) {
    for (auto& e : entries_) e.values.clear();
    event(id, std::move(value));
  }

  friend bool operator==(const DvvSet&, const DvvSet&) = default;

 private:
  static Entry merge(const Entry& x, const Entry& y) {
    const Entry& hi = x.counter >= y.counter ? x : y;
    const Entry& lo = x.counter >= y.counter ? y : x;
    // Live dots of hi: counter-|values|+1 .. counter; of lo likewise. A dot stays live when it
    // is live on every side that has seen it.
    const std::uint64_t hi_floor = hi.counter - hi.values.size();
    const std::uint64_t lo_floor = lo.counter - lo.values.size();
    if (hi_floor >= lo_floor) return hi;
    const auto keep = static_cast<std::size_t>(hi.counter - lo_floor);
    Entry e{hi.id, hi.counter, {}};
    e.values.assign(hi.values.begin(), hi.values.begin() + static_cast<std::ptrdiff_t>(
                                                               std::min(keep, hi.values.size())));
    return e;
  }

  void event(std::uint64_t id, V value) {
    auto it = std::lower_bound(entries_.begin(), entries_.end(), id,
                               [](const Entry& e, std::uint64_t i) { return e.id < i; });
    if (it != entries_.end() && it->id == id) {
      ++it->counter;
      it->values.insert(it->values.begin(), std::move(value));
    } else {
      entries_.insert(it, Entry{id, 1, {std::move(value)}});
    }
  }

  std::vector<Entry> entries_;
};

}  // namespace nodus::kv
