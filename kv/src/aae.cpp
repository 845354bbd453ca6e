// Active anti-entropy: the TicTac trees and nodus_kv_aae, a node's exchanges (see aae.hpp).
#include "aae.hpp"

#include <algorithm>
#include <bitset>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <unordered_map>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "nodus/kv/partition.hpp"
#include "nodus/node/gen_server.hpp"

namespace nodus::kv {

// -- the tree ------------------------------------------------------------------------------

namespace {
// Seeds of the segment hash and the entry hash: neither is the partition hash (XXH3 of the
// hash tag, unseeded), whose top bits are the same for every key of a partition.
constexpr std::uint64_t kSegmentSeed = 0x7469637461630001ull;  // "tictac" 1
constexpr std::uint64_t kEntrySeed = 0x7469637461630002ull;
}  // namespace

std::uint64_t object_digest(std::string_view bytes) {
  return XXH3_64bits(bytes.data(), bytes.size());
}

std::uint32_t TictacTree::segment_of(std::string_view key) {
  return static_cast<std::uint32_t>(XXH3_64bits_withSeed(key.data(), key.size(), kSegmentSeed) %
                                    kSegments);
}

std::uint64_t TictacTree::entry_hash(std::string_view key, std::uint64_t digest) {
  return XXH3_64bits_withSeed(key.data(), key.size(), kEntrySeed ^ digest);
}

void TictacTree::apply(std::uint32_t segment, std::uint64_t delta) {
  segments_[segment] ^= delta;
  branches_[segment / kSegmentsPerBranch] ^= delta;
  root_ ^= delta;
}

std::vector<std::uint32_t> differing_branches(const std::vector<std::uint64_t>& a,
                                              const std::vector<std::uint64_t>& b) {
  std::vector<std::uint32_t> out;
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) out.push_back(static_cast<std::uint32_t>(i));
  }
  return out;
}

std::vector<std::uint32_t> differing_segments(const std::vector<std::uint32_t>& branches,
                                              const std::vector<std::uint64_t>& a,
                                              const std::vector<std::uint64_t>& b) {
  std::vector<std::uint32_t> out;
  constexpr std::uint32_t per = TictacTree::kSegmentsPerBranch;
  for (std::size_t i = 0; i < branches.size(); ++i) {
    for (std::uint32_t j = 0; j < per; ++j) {
      const std::size_t at = i * per + j;
      if (at < a.size() && at < b.size() && a[at] != b[at]) out.push_back(branches[i] * per + j);
    }
  }
  return out;
}

std::uint64_t PartitionTree::rebuild(const Engine& engine, std::uint32_t partition) {
  TictacTree t;
  std::uint64_t keys = 0;
  engine.fold(partition, [&](std::string_view key, std::string_view value) {
    t.add(key, object_digest(value));
    ++keys;
    return true;
  });
  nodus::detail::MutexLock lock(mu_);
  tree_ = t;
  ready_ = true;
  return keys;
}

void PartitionTree::change(std::string_view key, const std::uint64_t* old_digest,
                           const std::uint64_t* new_digest) {
  if (old_digest && new_digest && *old_digest == *new_digest) return;
  std::uint64_t delta = 0;
  if (old_digest) delta ^= TictacTree::entry_hash(key, *old_digest);
  if (new_digest) delta ^= TictacTree::entry_hash(key, *new_digest);
  const std::uint32_t s = TictacTree::segment_of(key);
  nodus::detail::MutexLock lock(mu_);
  tree_.apply(s, delta);
}

bool PartitionTree::top(std::vector<std::uint64_t>* out) const {
  nodus::detail::MutexLock lock(mu_);
  if (!ready_) return false;
  out->clear();
  out->push_back(tree_.root());
  for (std::uint32_t b = 0; b < TictacTree::kBranches; ++b) out->push_back(tree_.branch(b));
  return true;
}

bool PartitionTree::segments(const std::vector<std::uint32_t>& branches,
                             std::vector<std::uint64_t>* out) const {
  nodus::detail::MutexLock lock(mu_);
  if (!ready_) return false;
  out->clear();
  for (std::uint32_t b : branches) {
    for (std::uint32_t j = 0; j < TictacTree::kSegmentsPerBranch; ++j) {
      out->push_back(tree_.segment(b * TictacTree::kSegmentsPerBranch + j));
    }
  }
  return true;
}

std::optional<TictacTree> PartitionTree::copy() const {
  nodus::detail::MutexLock lock(mu_);
  if (!ready_) return std::nullopt;
  return tree_;
}

void TreeHook::read(std::string_view key, const std::string* bytes) {
  if (!tree_) return;
  key_.assign(key);
  known_ = true;
  has_ = bytes != nullptr;
  digest_ = has_ ? object_digest(*bytes) : 0;
}

void TreeHook::before_write(std::string_view key) {
  if (!tree_ || (known_ && key_ == key)) return;
  std::string bytes;
  const bool found = engine_->get(p_, key, &bytes).ok();
  read(key, found ? &bytes : nullptr);
}

void TreeHook::stored(std::string_view key, std::string_view bytes) {
  if (!tree_) return;
  const std::uint64_t now = object_digest(bytes);
  if (known_ && key_ == key) {
    tree_->change(key, has_ ? &digest_ : nullptr, &now);
  } else {  // REQUIRES broken (no before_write): rebuild rather than leave the tree wrong
    tree_->rebuild(*engine_, p_);
  }
  key_.assign(key);
  known_ = has_ = true;
  digest_ = now;
}

void TreeHook::erased(std::string_view key, std::string_view old_bytes) {
  if (!tree_) return;
  const std::uint64_t old = object_digest(old_bytes);
  tree_->change(key, &old, nullptr);
  key_.assign(key);
  known_ = true;
  has_ = false;
  digest_ = 0;
}

AaeState::AaeState(std::uint32_t partitions) {
  trees.reserve(partitions);
  for (std::uint32_t p = 0; p < partitions; ++p) trees.push_back(std::make_unique<PartitionTree>());
}

Status register_aae_protocol() {
  for (Status s : {register_message<AaeTreeRequest>(), register_message<AaeTreeReply>(),
                   register_message<AaeKeysRequest>(), register_message<AaeKeysReply>(),
                   register_message<AaePush>()}) {
    if (!s.ok()) return s;
  }
  return Status();
}

// -- nodus_kv_aae --------------------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kAaeTick = std::chrono::milliseconds(100);

struct AaeTick {};  // a local type, never on the wire: no peer can send one

class AaeServer : public GenServer {
 public:
  Action init(KvState* st) {
    st_ = st;
    aae_ = st->aae.get();
    me_ = std::string(st->node.name().name());
    next_id_ = st->seed("aae/" + std::to_string(self().id));
    monitor_nodes(true);
    const Clock::time_point now = st_->now();
    next_round_ = now + st_->options.aae_exchange_interval;
    refilled_ = now;
    send_after(self(), AaeTick{}, kAaeTick);
    return ok();
  }

  Action handle_info(Message& msg) override {
    const auto t0 = std::chrono::steady_clock::now();
    Action a = dispatch(msg);
    aae_->busy_us.fetch_add(
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                       std::chrono::steady_clock::now() - t0)
                                       .count()),
        std::memory_order_relaxed);
    return a;
  }

  Action handle_call(Message& msg, From) override {
    if (msg.is_term() && msg.term() == Term("status")) return reply(tuple("ok", status()));
    st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
    return reply(tuple("error", tuple("badarg", bin("expected status"))));
  }
  Action handle_cast(Message&) override { return refuse(); }

  void terminate(const Reason&) override {
    aae_->running.fetch_sub(running_.size(), std::memory_order_relaxed);
  }

 private:
  enum class Step { kTop, kSegments, kKeys, kRepair };
  struct Repair {
    std::string key;
    bool send = false;  // ours goes to the peer
    bool pull = false;  // theirs comes to us
  };
  struct Exchange {
    std::uint32_t partition = 0;
    Atom peer;
    Step step = Step::kTop;
    Clock::time_point deadline;  // of the request it waits for (not while repairing)
    std::vector<std::uint32_t> branches;
    std::vector<std::uint32_t> segments;  // differing, ascending
    std::size_t next = 0;                 // the next batch starts here
    std::vector<std::uint32_t> batch;     // the segments whose keys were asked for
    std::deque<Repair> repairs;
    std::vector<std::string> pulls;  // keys to ask the peer for, not yet asked
  };

  Action refuse() {
    st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
    return noreply();
  }

  Action dispatch(Message& msg) {
    if (msg.is<AaeTick>()) {
      tick();
      send_after(self(), AaeTick{}, kAaeTick);
      return noreply();
    }
    if (const NodeDown* nd = msg.get<NodeDown>()) {
      for (auto it = running_.begin(); it != running_.end();) {
        it = it->second.peer == nd->node ? fail(it) : std::next(it);
      }
      return noreply();
    }
    if (msg.is<NodeUp>()) return noreply();
    const Pid from = sender();
    auto v = st_->view();
    if (!from.valid() || !v || !v->ready() || v->index_of(from.node) < 0) return refuse();
    if (const AaeTreeRequest* r = msg.get<AaeTreeRequest>()) {
      serve_tree(*r, from);
    } else if (const AaeTreeReply* tr = msg.get<AaeTreeReply>()) {
      tree_reply(*tr, from);
    } else if (const AaeKeysRequest* kr = msg.get<AaeKeysRequest>()) {
      serve_keys(*kr, from);
    } else if (AaeKeysReply* kp = msg.get<AaeKeysReply>()) {
      keys_reply(*kp, from);
    } else if (const AaePush* p = msg.get<AaePush>()) {
      push(*p, from);
    } else {
      return refuse();
    }
    return noreply();
  }

  // -- the schedule -------------------------------------------------------------------------

  void tick() {
    const Clock::time_point now = st_->now();
    const double rate = st_->options.aae_repairs_per_second;
    const double elapsed = std::chrono::duration<double>(now - refilled_).count();
    tokens_ = std::min(rate, tokens_ + rate * std::max(elapsed, 0.0));
    refilled_ = now;
    for (auto it = running_.begin(); it != running_.end();) {
      Exchange& ex = it->second;
      if (ex.step != Step::kRepair && ex.deadline <= now) {
        it = fail(it);
      } else if (ex.step == Step::kRepair) {
        const std::uint64_t id = it->first;
        ++it;  // repair() may end the exchange (and erase it)
        repair(id);
      } else {
        ++it;
      }
    }
    if (now >= next_round_ && queue_.empty()) {
      plan_round();
      next_round_ = now + st_->options.aae_exchange_interval;
    }
    while (running_.size() < st_->options.aae_concurrency && !queue_.empty()) {
      auto [p, peer] = queue_.front();
      queue_.pop_front();
      begin(p, peer);
    }
  }

  // The pairs this node starts this round: for each partition it is a primary of, each other
  // primary that is up and named after it (so each pair is exchanged once, by its lower name).
  void plan_round() {
    auto v = st_->view();
    if (!v || !v->ready() || v->self < 0) return;
    const auto self = static_cast<std::uint32_t>(v->self);
    for (std::uint32_t p = 0; p < v->ring->partitions(); ++p) {
      const auto prim = v->primaries(p, st_->options.replicas);
      if (std::find(prim.begin(), prim.end(), self) == prim.end()) continue;
      std::set<std::uint32_t> peers(prim.begin(), prim.end());
      for (std::uint32_t m : peers) {
        if (m == self || !v->up[m] || v->names[m].name() <= std::string_view(me_)) continue;
        queue_.emplace_back(p, v->names[m]);
      }
    }
  }

  void begin(std::uint32_t p, Atom peer) {
    std::vector<std::uint64_t> top;
    if (!aae_->trees[p]->top(&top)) return;  // its vnode has not built it yet
    const std::uint64_t id = next_id_++;
    Exchange ex;
    ex.partition = p;
    ex.peer = peer;
    ex.deadline = st_->now() + st_->options.request_timeout;
    running_.emplace(id, std::move(ex));
    aae_->running.fetch_add(1, std::memory_order_relaxed);
    send(named(kAaeName, peer.name()), AaeTreeRequest{id, p, {}});
  }

  using Running = std::map<std::uint64_t, Exchange>;
  Running::iterator finish(Running::iterator it, bool ok = true) {
    (ok ? aae_->exchanges : aae_->exchanges_failed).fetch_add(1, std::memory_order_relaxed);
    aae_->running.fetch_sub(1, std::memory_order_relaxed);
    return running_.erase(it);
  }
  Running::iterator fail(Running::iterator it) { return finish(it, false); }

  // The exchange a reply from `from` belongs to, or end(): unknown id (late), or from another
  // node or partition than the one asked (counted as bad).
  Running::iterator exchange_of(std::uint64_t id, std::uint32_t partition, const Pid& from) {
    auto it = running_.find(id);
    if (it == running_.end()) return it;
    if (it->second.peer != from.node || it->second.partition != partition) {
      st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
      return running_.end();
    }
    return it;
  }

  // -- the initiator's side -------------------------------------------------------------------

  void tree_reply(const AaeTreeReply& m, const Pid& from) {
    auto it = exchange_of(m.id, m.partition, from);
    if (it == running_.end()) return;
    Exchange& ex = it->second;
    if (m.code != 0) {
      fail(it);
      return;
    }
    PartitionTree& tree = *aae_->trees[ex.partition];
    std::vector<std::uint64_t> ours;
    if (ex.step == Step::kTop) {
      if (m.hashes.size() != 1 + TictacTree::kBranches || !tree.top(&ours)) {
        if (m.hashes.size() != 1 + TictacTree::kBranches) {
          st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
        }
        fail(it);
        return;
      }
      if (ours[0] == m.hashes[0]) {  // the roots agree: nothing to repair
        finish(it);
        return;
      }
      const std::vector<std::uint64_t> a(ours.begin() + 1, ours.end());
      const std::vector<std::uint64_t> b(m.hashes.begin() + 1, m.hashes.end());
      ex.branches = differing_branches(a, b);
      if (ex.branches.empty()) {  // only the root differed: a write between the two looks
        finish(it);
        return;
      }
      ex.step = Step::kSegments;
      ex.deadline = st_->now() + st_->options.request_timeout;
      send(named(kAaeName, ex.peer.name()), AaeTreeRequest{it->first, ex.partition, ex.branches});
      return;
    }
    if (ex.step != Step::kSegments) return;
    if (m.hashes.size() != ex.branches.size() * TictacTree::kSegmentsPerBranch ||
        !tree.segments(ex.branches, &ours)) {
      if (m.hashes.size() != ex.branches.size() * TictacTree::kSegmentsPerBranch) {
        st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
      }
      fail(it);
      return;
    }
    ex.segments = differing_segments(ex.branches, ours, m.hashes);
    aae_->segments_differing.fetch_add(ex.segments.size(), std::memory_order_relaxed);
    next_batch(it);
  }

  // Asks for the keys of the next batch of differing segments, or ends the exchange.
  void next_batch(Running::iterator it) {
    Exchange& ex = it->second;
    if (ex.next >= ex.segments.size()) {
      finish(it);
      return;
    }
    const std::size_t end = std::min(ex.segments.size(), ex.next + kAaeSegmentsPerBatch);
    ex.batch.assign(ex.segments.begin() + static_cast<std::ptrdiff_t>(ex.next),
                    ex.segments.begin() + static_cast<std::ptrdiff_t>(end));
    ex.next = end;
    ex.step = Step::kKeys;
    ex.deadline = st_->now() + st_->options.request_timeout;
    send(named(kAaeName, ex.peer.name()), AaeKeysRequest{it->first, ex.partition, ex.batch});
  }

  void keys_reply(AaeKeysReply& m, const Pid& from) {
    auto it = exchange_of(m.id, m.partition, from);
    if (it == running_.end()) return;
    Exchange& ex = it->second;
    if (ex.step != Step::kKeys) return;
    if (m.code != 0 || m.keys.size() != m.digests.size()) {
      if (m.keys.size() != m.digests.size()) {
        st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
      }
      fail(it);
      return;
    }
    std::unordered_map<std::string_view, std::uint64_t> theirs;
    theirs.reserve(m.keys.size());
    for (std::size_t i = 0; i < m.keys.size(); ++i) theirs.emplace(m.keys[i], m.digests[i]);
    std::bitset<TictacTree::kSegments> wanted;
    for (std::uint32_t s : ex.batch) wanted.set(s);
    std::unordered_map<std::string, std::uint64_t> ours;
    st_->engine->fold(ex.partition, [&](std::string_view key, std::string_view value) {
      if (wanted.test(TictacTree::segment_of(key))) {
        ours.emplace(std::string(key), object_digest(value));
      }
      return true;
    });
    for (const auto& [key, d] : ours) {
      auto t = theirs.find(key);
      if (t == theirs.end()) {
        // Not in their reply: absent there, unless the reply was cut short (then it may be
        // in the part left out: a later exchange sees to it).
        if (!m.more) ex.repairs.push_back(Repair{key, true, false});
      } else if (t->second != d) {
        ex.repairs.push_back(Repair{key, true, true});
      }
    }
    for (const auto& [key, d] : theirs) {
      if (!ours.count(std::string(key)))
        ex.repairs.push_back(Repair{std::string(key), false, true});
    }
    ex.step = Step::kRepair;
    repair(it->first);
  }

  // Repairs the exchange's differing keys while tokens last (kv.aae_repairs_per_second); when
  // none are left, goes on with the next batch. The rest wait for the next tick.
  void repair(std::uint64_t id) {
    auto it = running_.find(id);
    if (it == running_.end()) return;
    Exchange& ex = it->second;
    const Dest peer_vnode = named(vnode_name(ex.partition), ex.peer.name());
    std::string bytes;
    while (!ex.repairs.empty() && tokens_ >= 1.0) {
      tokens_ -= 1.0;
      Repair r = std::move(ex.repairs.front());
      ex.repairs.pop_front();
      aae_->keys_repaired.fetch_add(1, std::memory_order_relaxed);
      if (r.send && st_->engine->get(ex.partition, r.key, &bytes).ok()) {
        send(peer_vnode, ReplicaPut{ex.partition, 0, 0, 0, {}, false, r.key, bytes});
      }
      if (r.pull) {
        ex.pulls.push_back(std::move(r.key));
        if (ex.pulls.size() >= kAaePushKeys) flush_pulls(ex);
      }
    }
    if (!ex.repairs.empty()) return;
    flush_pulls(ex);
    next_batch(it);
  }

  void flush_pulls(Exchange& ex) {
    if (ex.pulls.empty()) return;
    send(named(kAaeName, ex.peer.name()), AaePush{ex.partition, std::move(ex.pulls)});
    ex.pulls.clear();
  }

  // -- the peer's side ------------------------------------------------------------------------

  bool valid_partition(std::uint32_t p) const { return p < st_->options.partitions; }

  void serve_tree(const AaeTreeRequest& m, const Pid& from) {
    AaeTreeReply r{m.id, m.partition, 0, {}};
    bool ok = valid_partition(m.partition) && m.branches.size() <= TictacTree::kBranches;
    for (std::uint32_t b : m.branches) ok = ok && b < TictacTree::kBranches;
    if (!ok) {
      st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
      r.code = static_cast<std::uint16_t>(ErrorCode::kBadArg);
    } else {
      PartitionTree& tree = *aae_->trees[m.partition];
      const bool ready =
          m.branches.empty() ? tree.top(&r.hashes) : tree.segments(m.branches, &r.hashes);
      if (!ready) r.code = static_cast<std::uint16_t>(ErrorCode::kUnavailable);
    }
    send(from, std::move(r));
  }

  void serve_keys(const AaeKeysRequest& m, const Pid& from) {
    AaeKeysReply r{m.id, m.partition, 0, {}, {}, false};
    bool ok = valid_partition(m.partition) && m.segments.size() <= TictacTree::kSegments;
    std::bitset<TictacTree::kSegments> wanted;
    for (std::uint32_t s : m.segments) {
      ok = ok && s < TictacTree::kSegments;
      if (ok) wanted.set(s);
    }
    if (!ok) {
      st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
      r.code = static_cast<std::uint16_t>(ErrorCode::kBadArg);
      send(from, std::move(r));
      return;
    }
    std::size_t bytes = 0;
    st_->engine->fold(m.partition, [&](std::string_view key, std::string_view value) {
      if (!wanted.test(TictacTree::segment_of(key))) return true;
      if (r.keys.size() >= kAaeKeysPerReply || bytes + key.size() > kAaeReplyBytes) {
        r.more = true;
        return false;
      }
      bytes += key.size() + 8;
      r.keys.emplace_back(key);
      r.digests.push_back(object_digest(value));
      return true;
    });
    send(from, std::move(r));
  }

  // The initiator wants our objects of these keys: each goes to its vnode as a repair.
  void push(const AaePush& m, const Pid& from) {
    if (!valid_partition(m.partition) || m.keys.size() > kAaePushKeys) {
      st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const Dest to = named(vnode_name(m.partition), from.node.name());
    std::string bytes;
    for (const std::string& key : m.keys) {
      if (key.empty() || key.size() > kMaxKeyBytes) {
        st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (!st_->engine->get(m.partition, key, &bytes).ok()) continue;  // gone meanwhile
      send(to, ReplicaPut{m.partition, 0, 0, 0, {}, false, key, bytes});
    }
  }

  Term status() {
    List out;
    for (const auto& [id, ex] : running_) {
      out.push_back(
          map({{"partition", Term(static_cast<std::int64_t>(ex.partition))},
               {"peer", bin(std::string(ex.peer.name()))},
               {"segments_differing", Term(static_cast<std::int64_t>(ex.segments.size()))},
               {"keys_waiting", Term(static_cast<std::int64_t>(ex.repairs.size()))}}));
    }
    return Term(std::move(out));
  }

  KvState* st_ = nullptr;
  AaeState* aae_ = nullptr;
  std::string me_;
  std::uint64_t next_id_ = 1;
  Clock::time_point next_round_{}, refilled_{};
  double tokens_ = 0;
  Running running_;
  std::deque<std::pair<std::uint32_t, Atom>> queue_;
};

}  // namespace

Result<Pid, Reason> start_aae_server(Node& node, KvState* st) {
  SpawnOptions so;
  so.name = kAaeName;
  return nodus::start_link<AaeServer>(node, so, st);
}

}  // namespace nodus::kv
