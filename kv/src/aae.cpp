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

AaeBudget::AaeBudget(double share, std::chrono::microseconds burst, TimePoint now)
    : share_(std::clamp(share, 0.001, 1.0)),
      burst_us_(static_cast<double>(burst.count())),
      credit_us_(static_cast<double>(burst.count())),
      last_(now) {}

void AaeBudget::refill(TimePoint now) {
  if (now <= last_) return;
  const double us = std::chrono::duration<double, std::micro>(now - last_).count();
  credit_us_ = std::min(burst_us_, credit_us_ + share_ * us);
  last_ = now;
}

std::chrono::microseconds AaeBudget::wait(TimePoint now) {
  nodus::detail::MutexLock lock(mu_);
  refill(now);
  if (credit_us_ >= 0) return std::chrono::microseconds(0);
  return std::chrono::microseconds(static_cast<std::int64_t>(-credit_us_ / share_) + 1);
}

void AaeBudget::spend(std::chrono::microseconds took, TimePoint now) {
  nodus::detail::MutexLock lock(mu_);
  refill(now);
  credit_us_ -= static_cast<double>(std::max<std::int64_t>(took.count(), 0));
}

namespace {
// The index's length prefix: 7 bits a byte, low first (keys are at most 64 KiB: 1..3 bytes).
void put_varint(std::vector<char>* out, std::size_t n) {
  while (n >= 0x80) {
    out->push_back(static_cast<char>((n & 0x7f) | 0x80));
    n >>= 7;
  }
  out->push_back(static_cast<char>(n));
}
// Reads one [varint size][key] at `at` (REQUIRES: well formed, as index_add wrote it).
std::string_view next_key(const std::vector<char>& buf, std::size_t* at) {
  std::size_t n = 0;
  for (int shift = 0;; shift += 7) {
    const auto c = static_cast<unsigned char>(buf[(*at)++]);
    n |= static_cast<std::size_t>(c & 0x7f) << shift;
    if (!(c & 0x80)) break;
  }
  std::string_view key(buf.data() + *at, n);
  *at += n;
  return key;
}

// Appends `key` to a segment's buffer; `*capacity` follows the buffer's capacity.
void append_key(std::vector<char>* buf, std::string_view key, std::uint64_t* capacity) {
  const std::size_t need = buf->size() + key.size() + 3;
  if (need > buf->capacity()) {  // grow by a quarter, not double: the index is per key
    *capacity -= buf->capacity();
    buf->reserve(std::max<std::size_t>(need, buf->capacity() + buf->capacity() / 4 + 16));
    *capacity += buf->capacity();
  }
  put_varint(buf, key.size());
  buf->insert(buf->end(), key.begin(), key.end());
}
}  // namespace

void PartitionTree::index_add(std::uint32_t segment, std::string_view key) {
  append_key(&index_[segment], key, &index_capacity_);
}

void PartitionTree::index_remove(std::uint32_t segment, std::string_view key) {
  std::vector<char>& buf = index_[segment];
  for (std::size_t at = 0; at < buf.size();) {
    const std::size_t begin = at;
    if (next_key(buf, &at) != key) continue;
    buf.erase(buf.begin() + static_cast<std::ptrdiff_t>(begin),
              buf.begin() + static_cast<std::ptrdiff_t>(at));
    if (buf.capacity() > 64 && buf.size() < buf.capacity() / 4) {  // mostly erased: give back
      index_capacity_ -= buf.capacity();
      buf.shrink_to_fit();
      index_capacity_ += buf.capacity();
    }
    return;
  }
}

void PartitionTree::count_index() {
  index_bytes_.store(index_capacity_ + index_.capacity() * sizeof(std::vector<char>),
                     std::memory_order_relaxed);
}

std::uint64_t PartitionTree::rebuild(const Engine& engine, std::uint32_t partition) {
  TictacTree t;
  std::vector<std::vector<char>> index(TictacTree::kSegments);
  std::uint64_t keys = 0, capacity = 0;
  engine.fold(partition, [&](std::string_view key, std::string_view value) {
    const std::uint32_t s = TictacTree::segment_of(key);
    t.apply(s, TictacTree::entry_hash(key, object_digest(value)));
    append_key(&index[s], key, &capacity);
    ++keys;
    return true;
  });
  nodus::detail::MutexLock lock(mu_);
  index_.swap(index);
  index_capacity_ = capacity;
  tree_ = t;
  ready_ = true;
  built_ = TictacTree::kSegments;
  count_index();
  return keys;
}

bool PartitionTree::indexed() const {
  nodus::detail::MutexLock lock(mu_);
  return !index_.empty();
}

void PartitionTree::begin_rebuild() {
  nodus::detail::MutexLock lock(mu_);
  tree_ = TictacTree();
  ready_ = false;
  built_ = 0;
}

bool PartitionTree::rebuild_step(const Engine& engine, std::uint32_t partition,
                                 std::size_t max_keys) {
  std::vector<std::string> keys;
  std::uint32_t from = 0, to = 0;
  {
    nodus::detail::MutexLock lock(mu_);
    if (ready_ || index_.empty()) return ready_;
    from = to = built_;
    while (to < TictacTree::kSegments && (to == from || keys.size() < max_keys)) {
      const std::vector<char>& buf = index_[to++];
      for (std::size_t at = 0; at < buf.size();) keys.emplace_back(next_key(buf, &at));
    }
  }
  // Outside the lock (the AAE server may read meanwhile); the engine is not written for this
  // partition meanwhile: its one writer, the vnode, is running this.
  std::vector<std::pair<std::uint32_t, std::uint64_t>> entries;
  std::vector<std::string_view> gone;
  entries.reserve(keys.size());
  std::string bytes;
  for (const std::string& key : keys) {
    if (engine.get(partition, key, &bytes).ok()) {
      entries.emplace_back(TictacTree::segment_of(key),
                           TictacTree::entry_hash(key, object_digest(bytes)));
    } else {
      gone.push_back(key);
    }
  }
  nodus::detail::MutexLock lock(mu_);
  for (const auto& [s, h] : entries) tree_.apply(s, h);
  for (std::string_view key : gone) index_remove(TictacTree::segment_of(key), key);
  if (!gone.empty()) count_index();
  built_ = to;
  ready_ = built_ == TictacTree::kSegments;
  return ready_;
}

void PartitionTree::change(std::string_view key, const std::uint64_t* old_digest,
                           const std::uint64_t* new_digest) {
  if (old_digest && new_digest && *old_digest == *new_digest) return;
  std::uint64_t delta = 0;
  if (old_digest) delta ^= TictacTree::entry_hash(key, *old_digest);
  if (new_digest) delta ^= TictacTree::entry_hash(key, *new_digest);
  const std::uint32_t s = TictacTree::segment_of(key);
  nodus::detail::MutexLock lock(mu_);
  if (s < built_) tree_.apply(s, delta);  // a segment not rebuilt yet reads the engine later
  if (index_.empty() || (old_digest != nullptr) == (new_digest != nullptr)) return;
  if (new_digest) {
    index_add(s, key);
  } else {
    index_remove(s, key);
  }
  count_index();
}

bool PartitionTree::keys(std::uint32_t segment, std::vector<std::string>* out) const {
  nodus::detail::MutexLock lock(mu_);
  if (index_.empty()) return false;
  const std::vector<char>& buf = index_[segment];
  for (std::size_t at = 0; at < buf.size();) out->emplace_back(next_key(buf, &at));
  return true;
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

AaeState::AaeState(std::uint32_t partitions, std::uint32_t cpu_percent,
                   std::chrono::steady_clock::time_point now)
    // A burst of a tenth of a second of work at the cap: 10% of a core may work 100 ms on end.
    : budget(cpu_percent / 100.0, std::chrono::microseconds(1000) * cpu_percent, now) {
  trees.reserve(partitions);
  for (std::uint32_t p = 0; p < partitions; ++p) trees.push_back(std::make_unique<PartitionTree>());
}

std::uint64_t AaeState::index_bytes() const {
  std::uint64_t n = 0;
  for (const auto& t : trees) n += t->index_bytes();
  return n;
}

namespace {
// Charges work that began at `t0` (the store's clock) to the budget and the busy time.
void charge(KvState& st, std::chrono::steady_clock::time_point t0) {
  const auto now = st.now();
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(now - t0);
  st.aae->budget.spend(took, now);
  st.aae->busy_us.fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(took.count(), 0)),
                            std::memory_order_relaxed);
}
}  // namespace

bool aae_begin_rebuild(KvState& st, std::uint32_t partition) {
  PartitionTree& tree = *st.aae->trees[partition];
  if (!tree.indexed()) {  // the node's first build of it: one fold makes index and tree
    const auto t0 = st.now();
    tree.rebuild(*st.engine, partition);
    charge(st, t0);
    return false;
  }
  tree.begin_rebuild();
  return true;
}

std::optional<std::chrono::milliseconds> aae_rebuild_step(KvState& st, std::uint32_t partition) {
  AaeState& aae = *st.aae;
  const auto t0 = st.now();
  if (const auto wait = aae.budget.wait(t0); wait.count() > 0) {
    aae.throttled.fetch_add(1, std::memory_order_relaxed);
    return std::clamp(std::chrono::ceil<std::chrono::milliseconds>(wait),
                      std::chrono::milliseconds(1), std::chrono::milliseconds(100));
  }
  const bool done = aae.trees[partition]->rebuild_step(*st.engine, partition, kAaeRebuildChunkKeys);
  charge(st, t0);
  aae.rebuild_steps.fetch_add(1, std::memory_order_relaxed);
  if (done) return std::nullopt;
  return std::chrono::milliseconds(0);
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
    work_start_ = st_->now();
    Action a = dispatch(msg);
    charge(*st_, work_start_);  // every message's work counts against kv.aae_cpu_percent
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
  // kCompare: a keys reply waits for the budget; kNext: the next batch does.
  enum class Step { kTop, kSegments, kKeys, kCompare, kRepair, kNext };
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
    std::vector<std::string> pulls;     // keys to ask the peer for, not yet asked
    std::optional<AaeKeysReply> reply;  // kCompare: the peer's keys, not compared yet
  };
  // A keys request that waits for the budget (served at the latest after half the timeout).
  struct Pending {
    AaeKeysRequest request;
    Pid from;
    Clock::time_point since;
  };

  static bool waiting(Step s) {
    return s == Step::kCompare || s == Step::kRepair || s == Step::kNext;
  }

  // Charges the work of this message so far; true (and counted) when it used up the budget.
  bool checkpoint() {
    charge(*st_, work_start_);
    work_start_ = st_->now();
    return over_budget();
  }

  // True (and counted) when AAE work must wait for the CPU budget now.
  bool over_budget() {
    if (aae_->budget.wait(st_->now()).count() == 0) return false;
    aae_->throttled.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

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
    } else if (AaeKeysRequest* kr = msg.get<AaeKeysRequest>()) {
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
    // Over the CPU budget, only the requests that waited half their timeout are served, and
    // the exchanges wait where they are (none fails for it: deadlines run only for replies).
    const bool over = over_budget();
    serve_pending(now, over);
    for (auto it = running_.begin(); it != running_.end();) {
      Exchange& ex = it->second;
      const std::uint64_t id = it->first;
      if (waiting(ex.step)) {
        ++it;  // each of these may end the exchange (and erase it)
        if (over) continue;
        const Step step = ex.step;
        if (step == Step::kRepair) repair(id);
        if (step == Step::kCompare) compare(id);
        if (step == Step::kNext) next_batch(running_.find(id));
      } else if (ex.deadline <= now) {
        it = fail(it);
      } else {
        ++it;
      }
    }
    if (over) return;
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
    ex.reply = std::move(m);
    ex.step = Step::kCompare;
    if (!over_budget()) compare(it->first);
  }

  // Our keys and digests in the segments of `batch`, listed by the tree's index (no scan of
  // the partition); false when the index is not built yet. Stops after `max_keys` keys or
  // `max_bytes` bytes of keys (*more set).
  bool our_keys(std::uint32_t partition, const std::vector<std::uint32_t>& batch,
                std::vector<std::string>* keys, std::vector<std::uint64_t>* digests, bool* more,
                std::size_t max_keys = SIZE_MAX, std::size_t max_bytes = SIZE_MAX) {
    PartitionTree& tree = *aae_->trees[partition];
    std::bitset<TictacTree::kSegments> seen;
    std::vector<std::string> listed;
    std::string bytes;
    std::size_t size = 0;
    *more = false;
    for (std::uint32_t s : batch) {
      if (seen.test(s)) continue;
      seen.set(s);
      listed.clear();
      if (!tree.keys(s, &listed)) return false;
      for (std::string& key : listed) {
        if (keys->size() >= max_keys || size + key.size() > max_bytes) {
          *more = true;
          return true;
        }
        if (!st_->engine->get(partition, key, &bytes).ok()) continue;  // erased meanwhile
        size += key.size() + 8;
        digests->push_back(object_digest(bytes));
        keys->push_back(std::move(key));
      }
    }
    return true;
  }

  // Compares the peer's keys of the batch with ours and queues the repairs.
  void compare(std::uint64_t id) {
    auto it = running_.find(id);
    if (it == running_.end() || it->second.step != Step::kCompare) return;
    Exchange& ex = it->second;
    AaeKeysReply m = std::move(*ex.reply);
    ex.reply.reset();
    std::unordered_map<std::string_view, std::uint64_t> theirs;
    theirs.reserve(m.keys.size());
    for (std::size_t i = 0; i < m.keys.size(); ++i) theirs.emplace(m.keys[i], m.digests[i]);
    std::vector<std::string> keys;
    std::vector<std::uint64_t> digests;
    bool cut = false;
    if (!our_keys(ex.partition, ex.batch, &keys, &digests, &cut)) {
      fail(it);  // our tree is being built again
      return;
    }
    std::unordered_map<std::string_view, std::uint64_t> ours;
    ours.reserve(keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::string& key = keys[i];
      ours.emplace(key, digests[i]);
      auto t = theirs.find(key);
      if (t == theirs.end()) {
        // Not in their reply: absent there, unless the reply was cut short (then it may be
        // in the part left out: a later exchange sees to it).
        if (!m.more) ex.repairs.push_back(Repair{key, true, false});
      } else if (t->second != digests[i]) {
        ex.repairs.push_back(Repair{key, true, true});
      }
    }
    for (const auto& [key, d] : theirs) {
      if (!ours.count(key)) ex.repairs.push_back(Repair{std::string(key), false, true});
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
    for (std::size_t n = 1; !ex.repairs.empty() && tokens_ >= 1.0; ++n) {
      if (n % 64 == 0 && checkpoint()) return;  // the rest when the budget allows
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
    ex.step = Step::kNext;
    if (!over_budget()) next_batch(it);
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

  void serve_keys(AaeKeysRequest& m, const Pid& from) {
    bool ok = valid_partition(m.partition) && m.segments.size() <= TictacTree::kSegments;
    for (std::uint32_t seg : m.segments) ok = ok && seg < TictacTree::kSegments;
    if (!ok) {
      st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
      send(from,
           AaeKeysReply{
               m.id, m.partition, static_cast<std::uint16_t>(ErrorCode::kBadArg), {}, {}, false});
      return;
    }
    if (pending_.empty() && !over_budget()) {
      answer_keys(m, from);
    } else if (pending_.size() < kMaxPending) {  // its turn comes in a tick
      pending_.push_back(Pending{std::move(m), from, st_->now()});
    } else {  // more waiting than exchanges could ask for: the peer's exchange ends, retries
      send(from, AaeKeysReply{m.id,
                              m.partition,
                              static_cast<std::uint16_t>(ErrorCode::kUnavailable),
                              {},
                              {},
                              false});
    }
  }

  // Serves the waiting keys requests: while the budget allows, and those that waited half
  // the request timeout whatever it says (the peer's exchange would fail otherwise).
  void serve_pending(Clock::time_point now, bool over) {
    while (!pending_.empty()) {
      Pending& w = pending_.front();
      if (over && now - w.since < st_->options.request_timeout / 2) return;
      answer_keys(w.request, w.from);
      pending_.pop_front();
      over = over || aae_->budget.wait(st_->now()).count() > 0;
    }
  }

  void answer_keys(const AaeKeysRequest& m, const Pid& from) {
    AaeKeysReply r{m.id, m.partition, 0, {}, {}, false};
    if (!our_keys(m.partition, m.segments, &r.keys, &r.digests, &r.more, kAaeKeysPerReply,
                  kAaeReplyBytes)) {
      r = AaeKeysReply{m.id, m.partition, static_cast<std::uint16_t>(ErrorCode::kUnavailable),
                       {},   {},          false};
    }
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
  std::deque<Pending> pending_;
  Clock::time_point work_start_{};  // of the message handled now (charged at its end)
  static constexpr std::size_t kMaxPending = 64;
};

}  // namespace

Result<Pid, Reason> start_aae_server(Node& node, KvState* st) {
  SpawnOptions so;
  so.name = kAaeName;
  return nodus::start_link<AaeServer>(node, so, st);
}

}  // namespace nodus::kv
