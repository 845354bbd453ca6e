// Dotted version vector sets: the causal history of one key with its concurrent values
// (siblings), as Riak's dvvset (Almeida, Baquero, Goncalves, Preguica, Fonte: "Scalable and
// Accurate Causality Tracking for Eventually Consistent Stores", 2014). Written from the
// paper and the dvvset API, not from its code.
//
// A set holds one entry per actor (a vnode in one of its epochs, see ActorSource), sorted by
// actor: {actor, counter, values}, where the values are the still-live writes of that actor,
// newest first: the last `values.size()` dots actor:counter-k+1 .. actor:counter. A write by
// an actor with a causal context (the join of what the client read) drops exactly the values
// whose dots the context covers and adds one dot; writes whose contexts did not see each other
// stay as siblings. Unlike dvvset there are no anonymous values: every value here comes from an
// update with an actor, so there is no path that makes one.
//
// The merge trusts that a dot names one value forever. ActorSource is what keeps that true when
// a vnode loses its copy of a key (Riak's kv679).
//
// Thread-safety: values; no shared state. An ActorSource is used by one vnode at a time.
#pragma once

#include <algorithm>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace nodus::kv {

/// Who made a write: a vnode (`vnode`, an id drawn at random for each partition when the store
/// starts on a node) in one of its epochs (1, 2, ...). Ordered by vnode, then epoch.
struct Actor {
  std::uint64_t vnode = 0;
  std::uint64_t epoch = 0;
  friend auto operator<=>(const Actor&, const Actor&) = default;
};

/// The largest counter an actor reaches on one key (2^62): an actor at it starts a new epoch,
/// and contexts and objects that claim more are refused, so a counter never wraps.
inline constexpr std::uint64_t kMaxCounter = std::uint64_t{1} << 62;

/// A version vector: {actor, counter} pairs sorted by actor, counters > 0.
using VersionVector = std::vector<std::pair<Actor, std::uint64_t>>;

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
    Actor id;
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
  /// has seen it superseded. Commutative, associative, idempotent in the dots and values kept.
  /// A dot both sides hold keeps `a`'s form of its value (a replica merges with its own copy
  /// as `a`): a dot names one value forever, but a replica may hold it in a form of its own (an
  /// expired value the sweep turned into a tombstone, ttl.hpp), which an incoming copy of the
  /// same dot must not replace (the sweep would otherwise run, and report, the expiry again).
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
  /// the new value under a new dot of `id`. REQUIRES: `id` came from ActorSource::for_write for
  /// this set and context (or, in tests, is never reused after a copy is lost).
  DvvSet update(const VersionVector& context, V value, Actor id) const {
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
    Actor best_id;
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
  /// REQUIRES: as update.
  void resolve(V value, Actor id) {
    for (auto& e : entries_) e.values.clear();
    event(id, std::move(value));
  }

  friend bool operator==(const DvvSet&, const DvvSet&) = default;

 private:
  // `x` is sync's `a`: of a dot both hold, its form is kept.
  static Entry merge(const Entry& x, const Entry& y) {
    const Entry& hi = x.counter >= y.counter ? x : y;
    const Entry& lo = x.counter >= y.counter ? y : x;
    // Live dots of hi: counter-|values|+1 .. counter; of lo likewise. A dot stays live when it
    // is live on every side that has seen it.
    const std::uint64_t hi_floor = hi.counter - hi.values.size();
    const std::uint64_t lo_floor = lo.counter - lo.values.size();
    Entry e{hi.id, hi.counter, {}};
    if (hi_floor >= lo_floor) {
      e.values = hi.values;
    } else {
      const auto keep = static_cast<std::size_t>(hi.counter - lo_floor);
      e.values.assign(hi.values.begin(), hi.values.begin() + static_cast<std::ptrdiff_t>(
                                                                 std::min(keep, hi.values.size())));
    }
    if (&hi == &x) return e;
    // x is behind: the dots it holds live (lo_floor+1 .. lo.counter) that the result keeps take
    // x's form. e.values[k] is dot hi.counter - k; lo.values[j] is dot lo.counter - j.
    for (std::size_t k = 0; k < e.values.size(); ++k) {
      const std::uint64_t dot = hi.counter - k;
      if (dot > lo.counter || dot <= lo_floor) continue;
      e.values[k] = lo.values[static_cast<std::size_t>(lo.counter - dot)];
    }
    return e;
  }

  void event(Actor id, V value) {
    auto it = std::lower_bound(entries_.begin(), entries_.end(), id,
                               [](const Entry& e, const Actor& i) { return e.id < i; });
    if (it != entries_.end() && it->id == id) {
      ++it->counter;
      it->values.insert(it->values.begin(), std::move(value));
    } else {
      entries_.insert(it, Entry{id, 1, {std::move(value)}});
    }
  }

  std::vector<Entry> entries_;
};

/// Picks the actor of a vnode's next write of a key: Riak's per-key epochs, its answer to
/// kv679 (basho/riak_kv#679, "lost writes when a vnode's data is lost").
///
/// A dot (actor, counter) must name one value forever. A vnode that lost its copy of a key (a
/// fallback drops it once the primary took it back; a tombstone is reaped) and then counted on
/// from what it holds would make dots that replicas already hold with other values, and their
/// merge would keep the old value and drop the acknowledged new one. So a vnode writes a key
/// under the newest of its epochs found in its copy only while that copy holds everything the
/// epoch wrote; it takes a new epoch, which no replica has seen, when its copy has no entry of
/// its own, when its copy was re-created or patched from a replica's that knew more of this
/// vnode than the copy did (`on_merge` marks the key), or when the writer's context knows more
/// of this vnode than the copy. A new epoch costs one more entry in the key's version vector.
/// Marked keys are kept up to 65,536 per vnode; beyond, every epoch issued so far is retired
/// (each key takes a new epoch at its next write here) and the marks are dropped.
class ActorSource {
 public:
  explicit ActorSource(std::uint64_t vnode) : vnode_(vnode) {}

  std::uint64_t vnode() const { return vnode_; }
  /// Epochs handed out so far.
  std::uint64_t epochs() const { return next_epoch_ - 1; }

  /// The actor for a write of `key` coordinated by this vnode, whose copy is `local` (empty
  /// when it has none), by a writer that had read `context`.
  template <class V>
  Actor for_write(std::string_view key, const DvvSet<V>& local, const VersionVector& context) {
    const typename DvvSet<V>::Entry* mine = nullptr;  // entries sort by vnode, then epoch
    for (const auto& e : local.entries()) {
      if (e.id.vnode == vnode_) mine = &e;
    }
    bool fresh = !mine || mine->id.epoch < trusted_from_ || mine->counter >= kMaxCounter;
    if (!suspect_.empty()) {
      // Erased either way: a new epoch starts from a copy it fully knows.
      if (suspect_.erase(std::string(key)) > 0) fresh = true;
    }
    for (std::size_t i = 0; !fresh && i < context.size(); ++i) {
      const auto& [a, n] = context[i];
      if (a.vnode != vnode_) continue;
      fresh = a.epoch > mine->id.epoch || (a.epoch == mine->id.epoch && n > mine->counter);
    }
    if (!fresh) return mine->id;
    return Actor{vnode_, next_epoch_++};
  }

  /// Call before `incoming` (a replica write, read repair, hand-off) is merged into `local`
  /// (empty when there is no copy): when `incoming` knows more of this vnode's epochs than
  /// `local`, the copy lost some of this vnode's own writes, and the key's next write here
  /// takes a new epoch.
  template <class V>
  void on_merge(std::string_view key, const DvvSet<V>& local, const DvvSet<V>& incoming) {
    const auto& mine = local.entries();
    for (const auto& e : incoming.entries()) {
      if (e.id.vnode != vnode_) continue;
      auto it = std::lower_bound(mine.begin(), mine.end(), e.id,
                                 [](const auto& x, const Actor& a) { return x.id < a; });
      if (it == mine.end() || it->id != e.id || it->counter < e.counter) {
        mark(key);
        return;
      }
    }
  }

  /// Keys marked by on_merge and not yet written here (for tests and stats).
  std::size_t marked() const { return suspect_.size(); }

  static constexpr std::size_t kMaxMarked = 1 << 16;

 private:
  void mark(std::string_view key) {
    if (suspect_.size() >= kMaxMarked) {
      trusted_from_ = next_epoch_;
      suspect_.clear();
      return;
    }
    suspect_.emplace(key);
  }

  std::uint64_t vnode_;
  std::uint64_t next_epoch_ = 1;
  std::uint64_t trusted_from_ = 1;  // epochs below it are never written under again
  std::unordered_set<std::string> suspect_;
};

}  // namespace nodus::kv
