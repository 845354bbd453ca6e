// nodus_kv_transfer: a node's side of ownership transfers (see transfer.hpp).
#include "transfer.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "nodus/node/gen_server.hpp"
#include "record.hpp"

namespace nodus::kv {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kTransferTick = std::chrono::milliseconds(100);
// How often a hand-off's progress is kept beside the data (with kv.data_dir): at most this much
// of its work is done again after the sender's restart.
constexpr auto kProgressInterval = std::chrono::milliseconds(1000);
constexpr std::string_view kIndexRecord = "transfers";

Term u(std::uint64_t v) { return Term(static_cast<std::int64_t>(v)); }

std::uint64_t digest(std::string_view bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

struct TransferTick {};  // a local type, never on the wire: no peer can send one

}  // namespace

std::string acting_claimant(const Ring& ring, const std::string& self,
                            const std::function<bool(const std::string&)>& up) {
  for (const auto& m : ring.members()) {
    if (!ring.is_leaving(m) && (m == self || up(m))) return m;
  }
  return ring.claimant();
}

std::vector<Handoff> handoffs_for(const Ring& ring, std::uint32_t x, std::uint32_t n) {
  std::vector<Handoff> out;
  Result<Ring> after = ring.with_transfer_done(x);
  if (!after) return out;
  auto names = [](const Ring& r, const std::vector<std::uint32_t>& idx) {
    std::vector<std::string> v;
    for (std::uint32_t i : idx) v.push_back(r.members()[i]);
    return v;
  };
  for (std::uint32_t k = 0; k < ring.partitions(); ++k) {
    const auto before = names(ring, ring.preference_list(k, n));
    const auto now = names(*after, after->preference_list(k, n));
    std::vector<std::string> gains, losses;
    for (const auto& m : now) {
      if (std::find(before.begin(), before.end(), m) == before.end()) gains.push_back(m);
    }
    for (const auto& m : before) {
      if (std::find(now.begin(), now.end(), m) == now.end()) losses.push_back(m);
    }
    for (std::size_t i = 0; i < gains.size(); ++i) {
      const std::string& from = i < losses.size() ? losses[i] : before.front();
      out.push_back(Handoff{x, k, from, gains[i]});
    }
  }
  return out;
}

bool copy_unwanted(const View& v, std::uint32_t p, std::uint32_t n) {
  if (!v.ready() || p >= v.ring->partitions()) return false;
  if (v.self < 0) return true;
  const auto prim = v.primaries(p, n);
  if (std::find(prim.begin(), prim.end(), static_cast<std::uint32_t>(v.self)) != prim.end()) {
    return false;
  }
  const std::string& me = v.ring->members()[static_cast<std::size_t>(v.self)];
  for (std::uint32_t x : v.ring->transfers()) {
    for (const Handoff& h : handoffs_for(*v.ring, x, n)) {
      if (h.partition == p && h.to == me) return false;
    }
  }
  return true;
}

std::uint64_t transfer_digest(std::string_view object) { return digest(object); }

Status register_transfer_protocol() {
  if (Status s = register_message<TransferDone>(); !s.ok()) return s;
  return register_message<TransferDrop>();
}

namespace {

class TransferServer : public GenServer {
 public:
  Action init(KvState* st) {
    st_ = st;
    me_ = std::string(st->node.name().name());
    records_ = st->engine->durable();
    if (records_) load();
    monitor_nodes(true);
    send_after(self(), TransferTick{}, kTransferTick);
    return ok();
  }

  Action handle_info(Message& msg) override {
    if (msg.is<TransferTick>()) {
      tick();
      send_after(self(), TransferTick{}, kTransferTick);
      return noreply();
    }
    if (const TransferWrite* w = msg.get<TransferWrite>()) {  // local only: from a vnode
      forward(*w);
      return noreply();
    }
    if (const NodeDown* nd = msg.get<NodeDown>()) {
      // A receiver that went down may have lost what it acknowledged: start over.
      for (auto& [id, h] : pairs_) {
        if (h.to == nd->node.name() && h.state != State::kWaiting) restart(h, id);
      }
      sync_forwarding();
      return noreply();
    }
    if (msg.is<NodeUp>()) return noreply();
    const Pid from = sender();
    auto v = st_->view();
    if (!from.valid() || !v->ready() || v->index_of(from.node) < 0) return refuse();
    if (const HandoffAck* a = msg.get<HandoffAck>()) {
      ack(*a, std::string(from.node.name()));
      return noreply();
    }
    return refuse();
  }

  Action handle_call(Message& msg, From) override {
    if (msg.is_term() && msg.term() == Term("status")) return reply(tuple("ok", status()));
    st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
    return reply(tuple("error", tuple("badarg", bin("expected status"))));
  }
  Action handle_cast(Message&) override { return refuse(); }

 private:
  // kFinal: the partition switched; one last pass sends what was written here after the
  // pass before (writes no longer come here once the switch reached every coordinator).
  // From kSending on, writes the vnode stores are forwarded as they come (TransferWrite).
  enum class State { kWaiting, kSending, kDone, kFinal };
  struct InFlight {
    Clock::time_point at;  // sent (again) then
    std::uint64_t digest;  // of what was sent
    bool forwarded;        // a forwarded write, not a key of the pass
  };
  struct Pair {
    std::uint32_t moving = 0, partition = 0;
    std::string to;
    State state = State::kWaiting;
    int pass = 0;
    std::vector<std::string> keys;  // this pass's keys
    std::size_t next = 0;
    std::map<std::string, InFlight> inflight;
    std::map<std::string, std::uint64_t> acked;  // key -> digest of what the receiver stored
    std::uint64_t sent = 0, total = 0, changed = 0, forwarded = 0;
    bool rebuild = false;            // for a removed member's replicas: no switch waits for it
    bool switched = false;           // its partition switched (kFinal), though it restarted since
    bool resumed = false;            // its progress came from the records of the sender's last run
    std::uint64_t resumed_keys = 0;  // acknowledged keys those records held
    // Progress records (kept every kProgressInterval): acks since the last one, and how many
    // records (chunks) of acks this hand-off has kept.
    std::vector<std::pair<std::string, std::uint64_t>> unsaved;
    std::uint32_t chunks = 0;
  };
  // moving (kRebuild | partition for a rebuild), partition, to
  using Id = std::tuple<std::uint32_t, std::uint32_t, std::string>;
  static constexpr std::uint32_t kRebuild = 0x80000000u;

  // A member dropped by `cluster remove` between ring `before` and `after` left its replicas
  // nowhere to hand off from: each preference list that gained a node gets the partition's
  // keys from the first node it kept (a survivor), this node when that is it.
  void plan_rebuilds(const Ring& before, const Ring& after, std::uint32_t n) {
    bool removed = false;
    for (const auto& m : before.members()) {
      removed |= !before.is_leaving(m) && after.member_index(m) < 0;
    }
    if (!removed || before.partitions() != after.partitions()) return;
    auto names = [](const Ring& r, const std::vector<std::uint32_t>& idx) {
      std::vector<std::string> v;
      for (std::uint32_t i : idx) v.push_back(r.members()[i]);
      return v;
    };
    for (std::uint32_t k = 0; k < after.partitions(); ++k) {
      const auto was = names(before, before.preference_list(k, n));
      const auto now = names(after, after.preference_list(k, n));
      std::string source;
      for (const auto& m : now) {
        if (std::find(was.begin(), was.end(), m) != was.end()) {
          source = m;
          break;
        }
      }
      if (source != me_) continue;
      for (const auto& m : now) {
        if (std::find(was.begin(), was.end(), m) != was.end()) continue;
        Id id{kRebuild | k, k, m};
        if (pairs_.count(id)) continue;
        Pair p;
        p.moving = k;
        p.partition = k;
        p.to = m;
        p.rebuild = true;
        pairs_.emplace(id, std::move(p));
      }
    }
  }

  Action refuse() {
    st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
    return noreply();
  }

  void restart(Pair& h, const Id& id) {
    erase_records(id, h);
    h.resumed = false;
    h.resumed_keys = 0;
    h.switched |= h.state == State::kFinal;
    h.state = State::kWaiting;
    h.pass = 0;
    h.keys.clear();
    h.next = 0;
    h.inflight.clear();
    h.acked.clear();
    h.sent = h.total = h.changed = h.forwarded = 0;
  }

  // Begins a pass over the partition: every key on the first, then those whose object is not
  // what the receiver acknowledged (written since).
  void begin_pass(Pair& h) {
    h.keys.clear();
    h.next = 0;
    h.changed = 0;
    st_->engine->fold(h.partition, [&](std::string_view key, std::string_view value) {
      auto it = h.acked.find(std::string(key));
      if (it == h.acked.end() || it->second != digest(value)) h.keys.emplace_back(key);
      return true;
    });
    if (h.pass == 0 && !h.resumed) h.total = h.keys.size();
    ++h.pass;
  }

  void tick() {
    auto v = st_->view();
    if (!v->ready()) return;
    const Ring& ring = *v->ring;
    const std::uint32_t n = st_->options.replicas;
    if (ring.epoch() != epoch_) {
      epoch_ = ring.epoch();
      if (last_ && last_->epoch() < ring.epoch()) plan_rebuilds(*last_, ring, n);
      last_ = v->ring;
      std::set<Id> wanted;
      for (std::uint32_t x : ring.transfers()) {
        for (const Handoff& h : handoffs_for(ring, x, n)) {
          if (h.from != me_) continue;
          Id id{h.moving, h.partition, h.to};
          wanted.insert(id);
          if (!pairs_.count(id)) {
            Pair p;
            p.moving = h.moving;
            p.partition = h.partition;
            p.to = h.to;
            pairs_.emplace(id, std::move(p));
          }
        }
      }
      for (auto it = pairs_.begin(); it != pairs_.end();) {
        Pair& h = it->second;
        if (wanted.count(it->first) || h.state == State::kFinal ||
            (h.rebuild && h.state != State::kDone && ring.member_index(h.to) >= 0)) {
          ++it;
        } else if (!h.rebuild && h.state == State::kDone && ring.member_index(h.to) >= 0) {
          h.state = State::kFinal;
          begin_pass(h);
          ++it;
        } else if (!h.rebuild && ring.member_index(h.to) >= 0 && !wanted_moving(ring, h.moving)) {
          // Switched while this hand-off started again (its receiver went down after it was
          // done): it finishes as a last pass, and the copies go only then.
          h.switched = true;
          ++it;
        } else {
          if (!h.rebuild) call_off(h, ring);
          erase_records(it->first, h);
          it = pairs_.erase(it);
        }
      }
    }
    const auto now = st_->now();
    const auto resend = st_->options.request_timeout;
    std::size_t active = 0;
    std::vector<Id> finished;
    for (auto& [id, h] : pairs_) active += h.state == State::kSending;
    for (auto& [id, h] : pairs_) {
      const int to = v->index_of(atom(h.to));
      const bool up = to >= 0 && v->up[to];
      if (h.state == State::kWaiting) {
        if (!up || active >= st_->options.transfer_limit) continue;
        h.state = h.switched ? State::kFinal : State::kSending;
        ++active;
        // Writes are forwarded from before the first pass's fold: none falls between the two.
        st_->parts[h.partition].forwarding.store(true, std::memory_order_seq_cst);
        begin_pass(h);
      }
      if (h.state == State::kWaiting || !up) continue;
      for (auto& [key, f] : h.inflight) {
        if (f.at + resend > now) continue;
        std::string bytes;
        if (!st_->engine->get(h.partition, key, &bytes).ok()) continue;
        f.at = now;
        f.digest = digest(bytes);
        send(named(vnode_name(h.partition), h.to), HandoffPut{h.partition, key, bytes});
      }
      if (h.state == State::kDone) continue;  // forwards only
      fill(h, now);
      const bool last = h.state == State::kFinal || h.switched;
      if (h.next == h.keys.size() && h.inflight.empty() && last) {
        drop_copies(h, *v);
        finished.push_back(id);
      } else if (h.next == h.keys.size() && h.inflight.empty()) {
        const bool more = h.pass < kTransferPasses && (h.pass == 1 || h.changed > 0);
        if (more) {
          begin_pass(h);
          if (!h.keys.empty()) continue;
        }
        h.state = State::kDone;
        --active;
        if (h.rebuild) finished.push_back(id);
      }
    }
    for (const Id& id : finished) {
      erase_records(id, pairs_.at(id));
      pairs_.erase(id);
    }
    sync_forwarding();
    report(ring, *v);
    if (records_ && now >= saved_at_ + kProgressInterval) save(now);
  }

  // -- progress kept beside the data -------------------------------------------------------
  //
  // With kv.data_dir each hand-off's acknowledged keys (key and digest of what the receiver
  // stored) are kept as they come, so that a sender restarted midway resumes: its first pass
  // sends only the keys the receiver has not acknowledged, or whose object changed since (a
  // write the sender took after the ack, whose forward may not have been acknowledged before
  // the crash). Records (record.hpp): kIndexRecord lists the hand-offs, "1 COUNT" then per
  // hand-off its moving partition (with kRebuild), partition and receiver; the acks of each
  // are in chunks "transfer/ID/I" for I = 0, 1, ... (read until one is missing), each
  // "1 TOTAL SENT SWITCHED COUNT" then COUNT keys and digests. A node whose engine is not
  // durable (the memory engine) keeps none: it restarts empty.

  static std::string record_name(const Id& id, std::uint32_t chunk) {
    RecordWriter w;
    w.number(std::get<0>(id)).number(std::get<1>(id)).bytes(std::get<2>(id)).number(chunk);
    return "transfer/" + w.take();
  }

  void save(Clock::time_point now) {
    saved_at_ = now;
    for (auto& [id, h] : pairs_) {
      if (h.unsaved.empty()) continue;
      RecordWriter w;
      w.number(1).number(h.total).number(h.sent).number(h.switched || h.state == State::kFinal);
      w.number(h.unsaved.size());
      for (const auto& [key, d] : h.unsaved) w.bytes(key).number(d);
      if (!st_->engine->put_meta(record_name(id, h.chunks), w.str()).ok()) continue;
      ++h.chunks;
      h.unsaved.clear();
    }
    std::set<Id> ids;
    for (const auto& [id, h] : pairs_) {
      if (h.chunks > 0) ids.insert(id);
    }
    if (ids == indexed_) return;
    RecordWriter w;
    w.number(1).number(ids.size());
    for (const Id& id : ids)
      w.number(std::get<0>(id)).number(std::get<1>(id)).bytes(std::get<2>(id));
    if (st_->engine->put_meta(kIndexRecord, w.str()).ok()) indexed_ = std::move(ids);
  }

  // Forgets the kept progress of hand-off `id` (finished, called off, or starting over).
  void erase_records(const Id& id, Pair& h) {
    h.unsaved.clear();
    // From the first chunk on: a crash midway leaves later chunks that load() never reaches.
    for (std::uint32_t c = 0; c < h.chunks; ++c) (void)st_->engine->erase_meta(record_name(id, c));
    h.chunks = 0;
  }

  // At start: the hand-offs the last run of this node kept progress of. Which of them still
  // apply is decided by the first tick, against the ring (as for the hand-offs of a new ring).
  void load() {
    std::string index;
    if (!st_->engine->get_meta(kIndexRecord, &index).ok()) return;
    RecordReader r(index);
    std::uint64_t version = 0, count = 0;
    if (!r.number(version) || version != 1 || !r.number(count)) return;
    for (std::uint64_t i = 0; i < count; ++i) {
      std::uint64_t moving = 0, partition = 0;
      std::string to;
      if (!r.number(moving) || !r.number(partition) || !r.bytes(to)) break;
      if (partition >= st_->parts.size()) continue;
      Id id{static_cast<std::uint32_t>(moving), static_cast<std::uint32_t>(partition), to};
      Pair h;
      h.moving = static_cast<std::uint32_t>(moving) & ~kRebuild;
      h.partition = static_cast<std::uint32_t>(partition);
      h.to = to;
      h.rebuild = (moving & kRebuild) != 0;
      for (std::string chunk; st_->engine->get_meta(record_name(id, h.chunks), &chunk).ok();) {
        if (!load_chunk(chunk, h)) break;
        ++h.chunks;
      }
      if (h.chunks == 0) continue;
      h.resumed = true;
      h.resumed_keys = h.acked.size();
      indexed_.insert(id);
      pairs_.emplace(std::move(id), std::move(h));
    }
  }

  static bool load_chunk(std::string_view chunk, Pair& h) {
    RecordReader r(chunk);
    std::uint64_t version = 0, total = 0, sent = 0, switched = 0, count = 0;
    if (!r.number(version) || version != 1 || !r.number(total) || !r.number(sent) ||
        !r.number(switched) || !r.number(count)) {
      return false;
    }
    std::map<std::string, std::uint64_t> acked;
    for (std::uint64_t i = 0; i < count; ++i) {
      std::string key;
      std::uint64_t d = 0;
      if (!r.bytes(key) || !r.number(d)) return false;
      acked[std::move(key)] = d;
    }
    if (!r.done()) return false;
    for (auto& [key, d] : acked) h.acked[key] = d;
    h.total = total;
    h.sent = sent;
    h.switched = h.switched || switched != 0;
    return true;
  }

  // A hand-off no switch needs any more (the plan changed under it): the receiver's copies
  // of what it acknowledged go again, if they are nobody's (its vnode checks, copy_unwanted).
  void call_off(const Pair& h, const Ring& ring) {
    if (ring.member_index(h.to) < 0) return;  // gone from the ring: its copies with it
    for (const auto& [key, d] : h.acked) {
      send(named(vnode_name(h.partition), h.to), TransferDrop{h.partition, key, d});
    }
  }

  // True while partition `x` still moves in `ring` (its switch has not happened).
  static bool wanted_moving(const Ring& ring, std::uint32_t x) {
    return x < ring.partitions() && ring.next_owner(x) != ring.owner(x);
  }

  // Sets PartitionState::forwarding of each partition as a hand-off of it runs, or not.
  void sync_forwarding() {
    std::vector<bool> on(st_->parts.size(), false);
    for (const auto& [id, h] : pairs_) {
      if (h.state != State::kWaiting && h.partition < on.size()) on[h.partition] = true;
    }
    for (std::size_t p = 0; p < on.size(); ++p) {
      auto& f = st_->parts[p].forwarding;
      if (f.load(std::memory_order_relaxed) != on[p]) f.store(on[p], std::memory_order_seq_cst);
    }
  }

  // The vnode of w.partition stored w.key while a hand-off of it runs: each receiver gets the
  // new object now, unless it acknowledged exactly that already. Counted as sent only when
  // acknowledged; a sender reports its hand-off done only with no forward unacknowledged.
  void forward(const TransferWrite& w) {
    auto v = st_->view();
    std::string bytes;
    bool read = false;
    for (auto& [id, h] : pairs_) {
      if (h.partition != w.partition || h.state == State::kWaiting) continue;
      const int to = v->index_of(atom(h.to));
      if (to < 0 || !v->up[to]) continue;  // down: its hand-off starts again when it is back
      if (!read) {
        if (!st_->engine->get(w.partition, w.key, &bytes).ok()) return;  // erased since
        read = true;
      }
      const std::uint64_t d = digest(bytes);
      if (auto a = h.acked.find(w.key); a != h.acked.end() && a->second == d) continue;
      auto [it, fresh] = h.inflight.insert_or_assign(w.key, InFlight{st_->now(), d, true});
      if (!fresh) it->second.forwarded = false;  // a key of the pass, sent again: counts there
      send(named(vnode_name(h.partition), h.to), HandoffPut{h.partition, w.key, bytes});
    }
  }

  // The receiver acknowledged every key of a switched partition: this node's copies go, unless
  // it is still one of the partition's primaries (its vnode checks again, with the hints).
  void drop_copies(const Pair& h, const View& v) {
    const auto prim = v.primaries(h.partition, st_->options.replicas);
    if (v.self >= 0 &&
        std::find(prim.begin(), prim.end(), static_cast<std::uint32_t>(v.self)) != prim.end()) {
      return;
    }
    const Pid vnode = st_->vnode(h.partition);
    for (const auto& [key, d] : h.acked) {
      std::string bytes;
      if (!st_->engine->get(h.partition, key, &bytes).ok() || digest(bytes) != d) continue;
      send(vnode, DropCopy{key, std::move(bytes)});
    }
  }

  // Sends keys of this pass until the window is full.
  void fill(Pair& h, Clock::time_point now) {
    while (h.inflight.size() < kTransferWindow && h.next < h.keys.size()) {
      const std::string& key = h.keys[h.next++];
      std::string bytes;
      if (!st_->engine->get(h.partition, key, &bytes).ok()) {  // reaped meanwhile
        if (h.pass == 1) ++h.sent;
        continue;
      }
      h.inflight[key] = InFlight{now, digest(bytes), false};
      send(named(vnode_name(h.partition), h.to), HandoffPut{h.partition, key, bytes});
    }
  }

  // Tells the claimant about each moving partition whose hand-offs from here are all done.
  void report(const Ring& ring, const View& v) {
    std::map<std::uint32_t, bool> done;  // moving -> all done
    for (const auto& [id, h] : pairs_) {
      if (h.state == State::kFinal || h.rebuild) continue;
      auto [it, fresh] = done.emplace(h.moving, true);
      it->second = it->second && h.state == State::kDone && h.inflight.empty();
    }
    if (done.empty()) return;
    const std::string claimant = acting_claimant(ring, me_, [&](const std::string& m) {
      const int i = v.index_of(atom(m));
      return i >= 0 && v.up[i];
    });
    for (const auto& [x, all] : done) {
      if (all) send(named(kServerName, claimant), TransferDone{x, ring.epoch()});
    }
  }

  void ack(const HandoffAck& a, const std::string& from) {
    for (auto& [id, h] : pairs_) {
      if (h.partition != a.partition || h.to != from || h.state == State::kWaiting) {
        continue;
      }
      auto it = h.inflight.find(a.key);
      if (it == h.inflight.end()) continue;
      const std::uint64_t d = digest(a.object);
      if (d == it->second.digest) {
        h.acked[a.key] = d;
        if (records_) h.unsaved.emplace_back(a.key, d);
        if (it->second.forwarded) {
          ++h.forwarded;
        } else if (h.pass == 1) {
          ++h.sent;
        } else {
          ++h.changed;
        }
        h.inflight.erase(it);
        if (h.state != State::kDone) fill(h, st_->now());  // the window moves on with each ack
      }
      return;
    }
  }

  Term status() {
    List out;
    for (const auto& [id, h] : pairs_) {
      out.push_back(map({{"kind", h.rebuild ? "rebuild" : "transfer"},
                         {"moving", u(h.moving)},
                         {"partition", u(h.partition)},
                         {"from", bin(me_)},
                         {"to", bin(h.to)},
                         {"state", h.state == State::kWaiting   ? "waiting"
                                   : h.state == State::kSending ? "sending"
                                   : h.state == State::kDone    ? "done"
                                                                : "final"},
                         {"keys_sent", u(h.sent)},
                         {"keys_forwarded", u(h.forwarded)},
                         {"keys_resumed", u(h.resumed_keys)},
                         {"keys_total", u(h.total)}}));
    }
    return Term(std::move(out));
  }

  KvState* st_ = nullptr;
  std::string me_;
  std::uint64_t epoch_ = 0;
  std::shared_ptr<const Ring> last_;  // the ring of the last epoch seen
  std::map<Id, Pair> pairs_;
  Clock::time_point saved_at_{};  // progress last kept
  std::set<Id> indexed_;          // the hand-offs kIndexRecord lists
  bool records_ = false;          // progress is kept (a durable engine)
};

}  // namespace

Result<Pid, Reason> start_transfer_server(Node& node, KvState* st) {
  SpawnOptions so;
  so.name = kTransferName;
  return nodus::start_link<TransferServer>(node, so, st);
}

}  // namespace nodus::kv
