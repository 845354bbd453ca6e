// The global name service: one GenServer per node ("nodus_global") and the table it shares
// with readers. Protocol: docs/protocol.md, "Global names".
#include "nodus/registry/global.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <unordered_map>

#include "global_protocol.hpp"
#include "lock_round.hpp"
#include "nodus/node/detail/mutex.hpp"
#include "nodus/node/gen_server.hpp"

namespace nodus {

namespace {

namespace proto = global_protocol;
using Clock = std::chrono::steady_clock;
using proto::kServerName;

// Lost rounds a registration retries before it gives up with no_quorum (about 1.5 s of
// pauses), and how long the API waits for its node's server.
constexpr int kMaxAttempts = 60;
constexpr std::chrono::seconds kRequestTimeout{10};

// To itself: look for rounds that outlasted lock_timeout.
struct SweepRounds {};
// To itself: start the lost round kept under `id` again.
struct RetryRound {
  std::uint64_t id;
};

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};

struct Claim {
  Pid pid;
  GlobalEpoch epoch;
  std::uint64_t clock = 0;
};

// The table every reader shares: written only by the node's global server.
struct GlobalState {
  GlobalOptions options;
  Pid server;
  // Guards names and peers: the server writes, whereis_global and friends read.
  mutable detail::SharedMutex mu;
  std::unordered_map<std::string, Claim, StringHash, std::equal_to<>> names NODUS_GUARDED_BY(mu);
  std::set<Atom> peers NODUS_GUARDED_BY(mu);
  Atom me;  // the node's name, set before the state is shared
  // Counters for global_stats: written by the server, read by anyone.
  std::atomic<std::uint64_t> rounds{0};
  std::atomic<std::uint64_t> rounds_lost{0};
  std::atomic<std::uint64_t> ignored{0};
};

GlobalState* state_of(Node& node) { return node.service<GlobalState>(); }

// A holder on this node (`me`) that has exited (or begun to): no answer names it, even before
// the server has handled its exit (which then removes the name everywhere). Asked on every
// whereis_global: one comparison for a holder elsewhere, one load of the process table else.
bool known_dead(Node& node, Atom me, const Pid& pid) {
  return pid.node == me && !node.is_process_alive(pid);
}

GlobalEntry entry_of(const std::string& name, const Claim& c) {
  return GlobalEntry{name, c.pid, c.pid.node, c.epoch, c.clock};
}

// -- the server ---------------------------------------------------------------------------

class GlobalServer : public GenServer {
 public:
  Action init(Node* node, std::shared_ptr<GlobalState> st) {
    node_ = node;
    st_ = std::move(st);
    me_ = node_->name();
    // From the node's name and incarnation, not std::random_device: a simulated cluster
    // replays from its seed. (A real node's incarnation comes from the clock.)
    rng_.seed(
        static_cast<std::uint32_t>(std::hash<std::string_view>()(me_.name()) ^ node_->creation()));
    monitor_nodes(true);
    // Nodes already linked: introduce ourselves (those running the service answer).
    for (Atom peer : node_->nodes()) send_hello(peer, true);
    return ok();
  }

  Action handle_call(Message& msg, From from) override {
    return msg.visit(
        [&](const proto::RegisterRequest& r) {
          start_registration(r.name, r.pid, r.re_register, from, 0);
          return noreply();
        },
        [&](const proto::UnregisterRequest& r) {
          start_unregistration(r.name, from, 0);
          return noreply();
        },
        [&](Message& other) { return GenServer::handle_call(other, from); });
  }

  Action handle_info(Message& msg) override {
    msg.visit([&](const NodeUp& up) { send_hello(up.node, true); },
              [&](const NodeDown& down) { peer_gone(down.node, /*node_down=*/true); },
              [&](const Down& d) { down(d); },
              [&](const proto::Hello& m) {
                if (!linked_member(m.node)) return;
                tick(m.clock);
                hello(m);
              },
              [&](const proto::Lock& m) {
                if (member(m.node)) lock_request(m);
              },
              [&](const proto::LockReply& m) {
                if (member(m.node)) lock_reply(m);
              },
              [&](const proto::Commit& m) {
                if (!member(m.node)) return;
                tick(m.clock);
                commit_from(m);
              },
              [&](const proto::Release& m) {
                if (member(m.node)) release(m.name, m.node, m.req);
              },
              [&](const proto::Unregister& m) {
                if (member(m.node)) unregister_from(m);
              },
              [&](const SweepRounds&) { sweep(); },  //
              [&](const RetryRound& r) { retry(r.id); },
              [&](const Message&) {});  // anything else: not ours, ignored
    return noreply();
  }

 private:
  struct Lock {
    Atom node;
    std::uint64_t req = 0;
    Clock::time_point since;
  };
  struct Pending {
    std::string name;
    Pid pid;
    bool re_register = false;
    bool unregister = false;
    From from;
    int attempt = 0;
    proto::LockRound round{{}, false};  // the vote of the round under way
    Pid holder;
    std::uint64_t max_epoch = 0;
    Clock::time_point started;  // a peer that never answers (its server gone, its node up)
                                // counts as locked after lock_timeout: see sweep()
  };

  // -- the record of names ------------------------------------------------------------------
  //
  // Every node keeps, per name, the claims of the highest epoch it knows claims of, ended ones
  // included (a Record), and joins what it hears (commits, removals, a peer's records) into it
  // with learn(): a claim of a higher epoch replaces the record's claims, one of the same epoch
  // joins them, an ending is never undone, an older claim is ignored. An epoch is a counter and
  // its registrar (GlobalEpoch), so claims made on the two sides of a partition at one counter
  // are two epochs, the higher of which wins the heal; one epoch holds two claims only when its
  // registrar restarted and handed its counter out again. That join is the same whatever the
  // order and however often a claim arrives, so nodes that heard the same claims
  // hold the same records, and the same holder: the resolver's choice among the live claims.
  // What is left to one node falls to the node of each claimed process (settle()): it tells a
  // process that lost the name, ends the claim of one that lost a conflict, and raises its
  // holder's epoch above a rival's of the same epoch. docs/protocol.md section 9.

  // One claim in a record.
  struct Contender {
    Pid pid;
    std::uint64_t clock = 0;
    bool gone = false;  // ended: unregistered, its holder exited, or it lost a conflict
    Pid replaced;       // the holder a re-registration took the name from on purpose
  };
  // What this node knows of one name.
  struct Record {
    std::uint64_t fence = 0;        // the highest counter seen, claims not kept included
    GlobalEpoch epoch;              // the epoch of `claims`
    std::vector<Contender> claims;  // sorted by pid: the resolver sees them in one order
  };
  // A record a message changed: its claims before, and the claims of this node's processes
  // that came from a peer. settle() works on it once the message is handled.
  struct Change {
    std::vector<Contender> before;
    std::set<Pid> learnt;
  };
  using Changes = std::map<std::string, Change>;

  // Joins `c`, a claim on `name` at `epoch`, into this node's record; true if its claims
  // changed.
  bool learn(const std::string& name, const GlobalEpoch& epoch, const Contender& c) {
    Record& r = records_[name];
    r.fence = std::max(r.fence, epoch.counter);
    if (epoch < r.epoch) return false;
    if (epoch > r.epoch) {
      r.epoch = epoch;
      r.claims.assign(1, c);
      return true;
    }
    auto it = std::lower_bound(r.claims.begin(), r.claims.end(), c.pid,
                               [](const Contender& a, const Pid& p) { return a.pid < p; });
    if (it == r.claims.end() || it->pid != c.pid) {
      r.claims.insert(it, c);
      return true;
    }
    if (c.gone && !it->gone) {
      it->gone = true;
      return true;
    }
    return false;
  }
  // learn() for a message being handled; settle_all() finishes.
  void join(Changes& ch, const std::string& name, const GlobalEpoch& epoch, const Contender& c,
            bool from_peer) {
    auto seen = ch.find(name);
    std::vector<Contender> before;
    if (seen == ch.end()) {
      if (auto it = records_.find(name); it != records_.end()) before = it->second.claims;
    }
    if (!learn(name, epoch, c)) return;
    if (seen == ch.end()) seen = ch.emplace(name, Change{std::move(before), {}}).first;
    if (from_peer && c.pid.node == me_) seen->second.learnt.insert(c.pid);
  }
  // A claim this node keeps no record of (its process is on a node it is not linked to): only
  // its epoch counts, so that it is never handed out again. Its holder's node, or a node linked
  // to it, tells it again once linked.
  void fence(const std::string& name, std::uint64_t epoch) {
    Record& r = records_[name];
    r.fence = std::max(r.fence, epoch);
  }
  void settle_all(const Changes& ch) {
    for (const auto& [name, change] : ch) settle(name, change.before, change.learnt);
  }

  // The claim `name`'s record names as the holder: the resolver's choice among the live claims
  // (among all, with `live_only` false), or null.
  const Contender* choose(const std::string& name, const Record& r, bool live_only = true) const {
    const Contender* best = nullptr;
    for (const Contender& c : r.claims) {
      if (live_only && c.gone) continue;
      if (best == nullptr) {
        best = &c;
      } else if (st_->options.resolver(name, entry_of(name, r.epoch, *best),
                                       entry_of(name, r.epoch, c)) == c.pid) {
        best = &c;
      }
    }
    return best;
  }
  static GlobalEntry entry_of(const std::string& name, const GlobalEpoch& epoch,
                              const Contender& c) {
    return GlobalEntry{name, c.pid, c.pid.node, epoch, c.clock};
  }

  // After `name`'s record changed from `before` (its claims then): what falls to this node for
  // the claims of its own processes, then the holder published in the table readers share.
  // - A live claim of this node's that the change replaced (a claim of a higher epoch came) has
  //   lost the name: its process is told, unless a re-registration took the name from it.
  // - A live claim of this node's beside the holder at the same epoch lost a conflict: its
  //   process is told, and the claim ends, here and everywhere (so it never comes back).
  // - A holder of this node's that shares its epoch with another claim is raised above every
  //   epoch seen (a fencing epoch is never shared), and everywhere hears of it.
  // - `learnt` (claims of this node's processes that came from a peer) are told to every peer
  //   again: the node of a process answers for its claims, so a commit or a removal that
  //   reached only some nodes (its registrar failed meanwhile) still reaches every node.
  void settle(const std::string& name, const std::vector<Contender>& before,
              const std::set<Pid>& learnt = {}) {
    Record& r = records_.at(name);
    const Contender* top = choose(name, r);
    const Pid winner = top ? top->pid : Pid{};
    std::set<Pid> told;
    for (const Contender& old : before) {
      if (old.gone || old.pid.node != me_ || contains(r, old.pid)) continue;
      const bool moved = std::any_of(r.claims.begin(), r.claims.end(),
                                     [&](const Contender& c) { return c.replaced == old.pid; });
      if (!moved) {
        const Contender* w = choose(name, r, /*live_only=*/false);
        tell_loser(name, old.pid, w ? w->pid : Pid{});
      }
    }
    for (Contender& c : r.claims) {
      if (c.gone || c.pid == winner || c.pid.node != me_) continue;
      c.gone = true;
      told.insert(c.pid);
      tell_loser(name, c.pid, winner);
      broadcast(proto::Unregister{name, c.pid, r.epoch.counter, 0, me_, r.epoch.node});
    }
    bool raised = false;
    if (top && top->pid.node == me_ && r.claims.size() > 1 && node_->is_process_alive(top->pid)) {
      Contender holder = *top;
      holder.replaced = Pid{};
      r.fence = r.fence + 1;
      r.epoch = GlobalEpoch{r.fence, me_};
      r.claims.assign(1, holder);
      top = &r.claims.front();
      raised = true;
      broadcast(proto::Commit{name, holder.pid, r.fence, holder.clock, 0, me_, Pid{}, me_});
    }
    for (const Pid& pid : learnt) {
      if (raised || told.count(pid)) continue;
      const Contender* c = claim_of(r, pid);
      if (c == nullptr) continue;
      if (c->gone) {
        broadcast(proto::Unregister{name, pid, r.epoch.counter, 0, me_, r.epoch.node});
      } else if (c == top && node_->is_process_alive(pid)) {
        broadcast(
            proto::Commit{name, pid, r.epoch.counter, c->clock, 0, me_, c->replaced, r.epoch.node});
      }
    }
    publish(name, r.epoch, top);
    if (top && top->pid.node == me_ && monitored_.insert(top->pid).second) monitor(top->pid);
  }
  static const Contender* claim_of(const Record& r, const Pid& pid) {
    for (const Contender& c : r.claims) {
      if (c.pid == pid) return &c;
    }
    return nullptr;
  }
  static bool contains(const Record& r, const Pid& pid) { return claim_of(r, pid) != nullptr; }

  // The table readers share: the holder of each name, nothing else.
  void publish(const std::string& name, const GlobalEpoch& epoch, const Contender* holder) {
    detail::WriterLock lock(st_->mu);
    if (holder) {
      st_->names[name] = Claim{holder->pid, epoch, holder->clock};
    } else {
      st_->names.erase(name);
    }
  }
  std::optional<Claim> find(const std::string& name) const {
    detail::ReaderLock lock(st_->mu);
    auto it = st_->names.find(name);
    if (it == st_->names.end()) return std::nullopt;
    return it->second;
  }
  // The holder of `name`, unless it is a process of this node known to be dead.
  std::optional<Claim> find_live(const std::string& name) const {
    auto c = find(name);
    if (c && known_dead(*node_, me_, c->pid)) return std::nullopt;
    return c;
  }
  std::vector<Atom> peers() const {
    detail::ReaderLock lock(st_->mu);
    return {st_->peers.begin(), st_->peers.end()};
  }
  std::uint64_t known_epoch(const std::string& name) const {
    auto it = records_.find(name);
    return it == records_.end() ? 0 : it->second.fence;
  }
  bool linked(Atom node) const {
    if (node == me_) return true;
    const std::vector<Atom> up = node_->nodes();
    return std::find(up.begin(), up.end(), node) != up.end();
  }
  void tick(std::uint64_t seen) { clock_ = std::max(clock_, seen) + 1; }

  // Whether a message from `node` may change this node's names or locks: not when `node` is a
  // hidden node, which is no member (docs/protocol.md section 11). Counted when not.
  bool member(Atom node) {
    if (node == me_ || !node_->is_hidden(node)) return true;
    st_->ignored.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  // For a Hello, which makes its sender a peer: the sender must be a member whose link this
  // node counts as up. A hidden node never is; a Hello that overtook its sender's link coming
  // up here is ignored too, and its state comes again in the answer to the Hello this node
  // sends when it sees the link up. Counted when not.
  bool linked_member(Atom node) {
    const std::vector<Atom> up = node_->nodes();  // hidden nodes excepted
    if (std::find(up.begin(), up.end(), node) != up.end()) return true;
    st_->ignored.fetch_add(1, std::memory_order_relaxed);
    return false;
  }

  void peer_send(Atom peer, Message m) { send(named(kServerName, peer.name()), std::move(m)); }
  template <typename M>
  void broadcast(const M& m) {
    for (Atom peer : peers()) peer_send(peer, m);
  }

  // -- membership -------------------------------------------------------------------------

  void send_hello(Atom peer, bool want_answer) {
    proto::Hello h;
    h.node = me_;
    h.claims.reserve(records_.size());
    for (const auto& [name, r] : records_) {
      for (const Contender& c : r.claims) {
        h.claims.push_back(
            proto::Claim{name, c.pid, r.epoch.counter, c.clock, c.gone, c.replaced, r.epoch.node});
      }
      if (r.claims.empty() || r.fence > r.epoch.counter) {
        h.seen.push_back(proto::Seen{name, r.fence});
      }
    }
    h.clock = ++clock_;
    h.want_answer = want_answer;
    h.server = self();
    peer_send(peer, std::move(h));
  }

  void hello(const proto::Hello& m) {
    const Atom peer = m.node;
    const Pid& server = m.server;
    bool fresh;
    {
      detail::WriterLock lock(st_->mu);
      fresh = st_->peers.insert(peer).second;
    }
    // Its server may exit while its node stays up: then it is no peer any more (we would wait
    // for its lock answers in vain).
    if (fresh && server.node == peer && !peer_servers_.count(server)) {
      peer_servers_[server] = peer;
      monitor(server);
    }
    if (fresh || m.want_answer) send_hello(peer, false);  // our table may have changed since
    std::set<Atom> up;
    for (Atom a : node_->nodes()) up.insert(a);
    Changes ch;
    for (const proto::Claim& c : m.claims) {
      // A live claim of a process on a node this one is not linked to is not kept (that node
      // may be gone for good): this node learns it again, from its node, once linked.
      if (!c.gone && c.pid.node != me_ && !up.count(c.pid.node)) {
        fence(c.name, c.epoch);
        continue;
      }
      join(ch, c.name, GlobalEpoch{c.epoch, c.by}, Contender{c.pid, c.clock, c.gone, c.replaced},
           true);
    }
    for (const proto::Seen& s : m.seen) fence(s.name, s.epoch);
    settle_all(ch);
  }

  void tell_loser(const std::string& name, const Pid& loser, const Pid& winner) {
    Term why = tuple("global_name_conflict", bin(name), winner);
    if (st_->options.on_conflict == ConflictAction::kExit) {
      nodus::exit(loser, why);
    } else {
      send(loser, why);
    }
  }

  // A node went down (the claims of its processes go: it may be gone for good, and it tells
  // them again when it is back), or only its server exited (its processes may live on).
  void peer_gone(Atom node, bool node_down) {
    {
      detail::WriterLock lock(st_->mu);
      st_->peers.erase(node);
    }
    if (node_down) {
      std::erase_if(peer_servers_, [&](const auto& kv) { return kv.second == node; });
      for (auto& [name, r] : records_) {
        auto on_node = [&](const Contender& c) { return !c.gone && c.pid.node == node; };
        if (std::none_of(r.claims.begin(), r.claims.end(), on_node)) continue;
        std::vector<Contender> before = r.claims;
        std::erase_if(r.claims, on_node);
        settle(name, before);
      }
    }
    std::erase_if(locks_, [&](const auto& kv) { return kv.second.node == node; });
    std::vector<std::uint64_t> ready;
    for (auto& [req, p] : pending_) {
      if (!p.round.drop(node)) continue;  // a voter less: the majority is counted anew
      if (p.round.settled()) ready.push_back(req);
    }
    for (std::uint64_t req : ready) decide(req);
  }

  void down(const Down& d) {
    if (auto it = peer_servers_.find(d.pid); it != peer_servers_.end()) {
      const Atom peer = it->second;
      peer_servers_.erase(it);
      peer_gone(peer, /*node_down=*/false);
    } else {
      process_down(d.pid);
    }
  }

  // A process of this node exited: its live claims end, here and everywhere.
  void process_down(const Pid& pid) {
    monitored_.erase(pid);
    for (auto& [name, r] : records_) {
      auto it = std::find_if(r.claims.begin(), r.claims.end(),
                             [&](const Contender& c) { return c.pid == pid && !c.gone; });
      if (it == r.claims.end()) continue;
      std::vector<Contender> before = r.claims;
      it->gone = true;
      broadcast(proto::Unregister{name, pid, r.epoch.counter, 0, me_, r.epoch.node});
      settle(name, before);
    }
  }

  // -- locks ------------------------------------------------------------------------------

  bool lock_free_for(const std::string& name, Atom node, std::uint64_t req) {
    auto it = locks_.find(name);
    if (it == locks_.end()) return true;
    if (it->second.node == node && it->second.req == req) return true;
    if (Clock::now() - it->second.since > st_->options.lock_timeout) {
      locks_.erase(it);
      return true;
    }
    return false;
  }

  void lock_request(const proto::Lock& m) {
    const bool granted = lock_free_for(m.name, m.node, m.req);
    if (granted) locks_[m.name] = Lock{m.node, m.req, Clock::now()};
    auto c = find_live(m.name);
    peer_send(m.node, proto::LockReply{m.name, m.req, me_, granted, c ? c->pid : Pid{},
                                       known_epoch(m.name)});
  }

  void release(const std::string& name, Atom node, std::uint64_t req) {
    auto it = locks_.find(name);
    if (it != locks_.end() && it->second.node == node && it->second.req == req) locks_.erase(it);
  }

  // -- registration -------------------------------------------------------------------------

  void start_registration(const std::string& name, const Pid& pid, bool re_register, From from,
                          int attempt) {
    // A name locked by another registrar may be about to change: ask again later.
    if (!re_register && lock_free_for(name, me_, 0)) {
      if (auto c = find_live(name)) {
        if (c->pid == pid) {
          reply(from, proto::Reply{Status::Ok(), c->epoch.counter, Pid{}, c->epoch.node});
        } else {
          reply(from, taken(c->pid));
        }
        return;
      }
    }
    const std::uint64_t req = ++next_req_;
    Pending p;
    p.name = name;
    p.pid = pid;
    p.re_register = re_register;
    p.from = from;
    p.attempt = attempt;
    p.max_epoch = known_epoch(name);
    lock_round(req, std::move(p));
  }

  // Takes this node's lock on p.name and asks every global peer for theirs; decide() ends the
  // round as soon as its vote is settled (lock_round.hpp): at once when this node's own lock
  // is taken or it has no peers, else when a majority granted it or can no longer.
  void lock_round(std::uint64_t req, Pending p) {
    const std::string name = p.name;
    if (!lock_free_for(name, me_, req)) {
      p.round = proto::LockRound({}, false);  // lost: another round holds this node's lock
      pending_.emplace(req, std::move(p));
      decide(req);
      return;
    }
    locks_[name] = Lock{me_, req, Clock::now()};
    const std::vector<Atom> asked = peers();
    p.round = proto::LockRound({asked.begin(), asked.end()}, true);
    for (Atom peer : asked) peer_send(peer, proto::Lock{name, req, me_});
    const bool ready = p.round.settled();  // at once for a node alone
    p.started = Clock::now();
    pending_.emplace(req, std::move(p));
    if (ready) {
      decide(req);
    } else {
      arm_sweep();
    }
  }

  // Unregistering takes the same locks, and the removal releases them: a registration that
  // follows on any node finds the name gone everywhere it asks. not_found only for a name
  // nobody held when asked: one that goes while the rounds are lost and retried is removed.
  void start_unregistration(const std::string& name, From from, int attempt) {
    auto c = find(name);
    if (!c) {
      reply(from, attempt == 0 ? failed(Status(ErrorCode::kNotFound, name)) : proto::Reply{});
      return;
    }
    const std::uint64_t req = ++next_req_;
    Pending p;
    p.name = name;
    p.pid = c->pid;
    p.unregister = true;
    p.from = from;
    p.attempt = attempt;
    lock_round(req, std::move(p));
  }

  void lock_reply(const proto::LockReply& m) {
    auto it = pending_.find(m.req);
    if (it == pending_.end()) return;
    Pending& p = it->second;
    if (!p.round.answer(m.node, m.granted)) return;  // late, or from a peer gone since
    if (m.holder && m.holder != p.pid) p.holder = m.holder;
    p.max_epoch = std::max(p.max_epoch, m.epoch);
    if (p.round.settled()) decide(m.req);
  }

  void decide(std::uint64_t req) {
    auto it = pending_.find(req);
    if (it == pending_.end()) return;
    Pending p = std::move(it->second);
    pending_.erase(it);
    const bool won = p.round.outcome() == proto::LockRound::Outcome::kWon;
    st_->rounds.fetch_add(1, std::memory_order_relaxed);
    if (!won) st_->rounds_lost.fetch_add(1, std::memory_order_relaxed);
    auto give_back = [&] {
      // Those still waiting may grant it yet: the release reaches them after the request.
      for (const std::set<Atom>* peers : {&p.round.granted(), &p.round.waiting()}) {
        for (Atom peer : *peers) peer_send(peer, proto::Release{p.name, req, me_});
      }
      release(p.name, me_, req);
    };
    if (!won) {
      give_back();
      // Someone else holds a lock on the name: try again after a random pause that grows
      // with each attempt, so racing registrars fall out of step.
      if (p.attempt >= kMaxAttempts) {
        reply(p.from, failed(Status(ErrorCode::kNoQuorum,
                                    "no majority of the nodes granted the lock on " + p.name +
                                        " in " + std::to_string(p.attempt + 1) + " rounds")));
        return;
      }
      const std::uint64_t retry_id = ++next_req_;
      const int cap = 1 << std::min(p.attempt, 5);
      std::uniform_int_distribution<int> pause(0, cap);
      retries_.emplace(retry_id, std::move(p));
      const int ms = pause(rng_);
      if (ms == 0) {
        retry(retry_id);
      } else {
        send_after(self(), RetryRound{retry_id}, std::chrono::milliseconds(ms));
      }
      return;
    }
    if (p.unregister) {
      auto c = find(p.name);
      if (!c) {  // it was there when asked, and went meanwhile (its holder exited ...): done
        give_back();
        reply(p.from, proto::Reply{});
        return;
      }
      Changes ch;
      join(ch, p.name, c->epoch, Contender{c->pid, c->clock, true, Pid{}}, false);
      settle_all(ch);
      release(p.name, me_, req);
      reply(p.from, proto::Reply{Status::Ok(), c->epoch.counter, Pid{}, c->epoch.node});
      broadcast(proto::Unregister{p.name, c->pid, c->epoch.counter, req, me_, c->epoch.node});
      return;
    }
    const auto current = find_live(p.name);
    if (current && !p.re_register && current->pid != p.pid) p.holder = current->pid;
    if (p.holder && !p.re_register) {
      give_back();
      reply(p.from, taken(p.holder));
      return;
    }
    tick(0);
    // Above every counter the voters reported, and any this node learnt meanwhile; this node's
    // (a registrar on the other side of a partition may reach the same counter).
    const GlobalEpoch epoch{std::max(p.max_epoch, known_epoch(p.name)) + 1, me_};
    // A re-registration takes the name from its holder on purpose: that one is not told.
    Pid replaced;
    if (current && current->pid != p.pid) {
      replaced = current->pid;
    } else if (p.holder != p.pid) {
      replaced = p.holder;
    }
    Changes ch;
    join(ch, p.name, epoch, Contender{p.pid, clock_, false, replaced}, false);
    settle_all(ch);
    release(p.name, me_, req);
    // The caller first (this node's table has it already); every peer hears of it next, also
    // one that synchronised with us during the lock round.
    reply(p.from, proto::Reply{Status::Ok(), epoch.counter, Pid{}, epoch.node});
    broadcast(proto::Commit{p.name, p.pid, epoch.counter, clock_, req, me_, replaced, epoch.node});
  }

  // One timer for all registrations (not one each: a timer costs the timer thread a wake-up).
  void arm_sweep() {
    if (sweep_armed_) return;
    sweep_armed_ = true;
    send_after(self(), SweepRounds{}, st_->options.lock_timeout / 2);
  }

  void sweep() {
    sweep_armed_ = false;
    const auto now = Clock::now();
    std::vector<std::uint64_t> expired;
    for (auto& [req, p] : pending_) {
      if (!p.round.settled() && now - p.started > st_->options.lock_timeout) expired.push_back(req);
    }
    for (std::uint64_t req : expired) {
      pending_.at(req).round.expire();  // released and retried; a silent peer is asked again
      decide(req);
    }
    if (!pending_.empty()) arm_sweep();
  }

  // Applied in the step that releases the lock: a node that granted it knows the holder before
  // it grants the next lock on the name.
  void commit_from(const proto::Commit& m) {
    if (linked(m.pid.node)) {
      Changes ch;
      join(ch, m.name, GlobalEpoch{m.epoch, m.by}, Contender{m.pid, m.clock, false, m.replaced},
           true);
      settle_all(ch);
    } else {
      fence(m.name, m.epoch);  // see hello()
    }
    release(m.name, m.node, m.req);
  }

  void unregister_from(const proto::Unregister& m) {
    Changes ch;
    join(ch, m.name, GlobalEpoch{m.epoch, m.by}, Contender{m.pid, 0, true, Pid{}}, true);
    settle_all(ch);
    release(m.name, m.node, m.req);
  }

  static proto::Reply taken(const Pid& holder) {
    return proto::Reply{Status(ErrorCode::kAlreadyStarted, holder.to_string()), 0, holder, Atom{}};
  }
  static proto::Reply failed(Status s) { return proto::Reply{std::move(s), 0, Pid{}, Atom{}}; }

  void retry(std::uint64_t retry_id) {
    auto it = retries_.find(retry_id);
    if (it == retries_.end()) return;
    Pending p = std::move(it->second);
    retries_.erase(it);
    if (p.unregister) {
      start_unregistration(p.name, p.from, p.attempt + 1);
    } else {
      start_registration(p.name, p.pid, p.re_register, p.from, p.attempt + 1);
    }
  }

  Node* node_ = nullptr;
  std::shared_ptr<GlobalState> st_;
  Atom me_;
  std::uint64_t clock_ = 0;
  std::uint64_t next_req_ = 0;
  // Every name this node has heard of, kept after the name is gone (its ended claims, its
  // fence), so that neither a claim nor an epoch comes round again.
  std::unordered_map<std::string, Record> records_;
  std::unordered_map<std::string, Lock> locks_;
  std::unordered_map<std::uint64_t, Pending> pending_;
  std::unordered_map<std::uint64_t, Pending> retries_;
  std::set<Pid> monitored_;
  std::map<Pid, Atom> peer_servers_;  // the peers' global servers we monitor, and their nodes
  bool sweep_armed_ = false;
  std::mt19937 rng_;  // retry pauses; seeded in init
};

// The NameResolver behind global(name).
class GlobalNames final : public NameResolver {
 public:
  Pid whereis_name(Node& node, const Term& key) const override {
    if (!key.is_bin()) return Pid{};
    return whereis_global(node, key.as_bin()).value_or(Pid{});
  }
  NameStatus register_name(Node& node, const Term& key, const Pid& pid) const override {
    if (!key.is_bin()) return Status(ErrorCode::kBadArg, "a global name is a binary");
    auto r = register_global(node, key.as_bin(), pid);
    return r.ok() ? NameStatus() : r.error();
  }
  bool unregister_name(Node& node, const Term& key) const override {
    return key.is_bin() && unregister_global(node, key.as_bin()).ok();
  }
  std::string describe(const Term& key) const override {
    std::string out = "global(";
    out += key.is_bin() ? key.as_bin() : key.to_string();
    out += ")";
    return out;
  }
};

const std::shared_ptr<const GlobalNames>& global_names_resolver() {
  static const auto r = std::make_shared<const GlobalNames>();
  return r;
}

// Asks `node`'s global name server. Errors: kNotFound when the service does not run there;
// the call's failure as its code (timeout, noproc when the server is gone, protocol_error for
// an answer that is no Reply).
Result<proto::Reply> ask(Node& node, Message request) {
  GlobalState* st = state_of(node);
  if (!st) return Status(ErrorCode::kNotFound, "the global name service is not running here");
  auto r = call_as<proto::Reply>(st->server, std::move(request), kRequestTimeout);
  if (!r) return reasons::to_status(r.error());
  return std::move(*r);
}

Result<GlobalEpoch, NameStatus> registration(Node& node, std::string_view name, Pid pid, bool re) {
  if (name.empty()) return NameStatus(Status(ErrorCode::kBadArg, "an empty global name"));
  if (!pid) return NameStatus(Status(ErrorCode::kBadArg, "an invalid pid"));
  auto r = ask(node, proto::RegisterRequest{name, pid, re});
  if (!r) return NameStatus(r.error());
  if (r->status.code() == ErrorCode::kAlreadyStarted) return NameStatus::taken(r->holder);
  if (!r->status.ok()) return NameStatus(r->status);
  return GlobalEpoch{r->epoch, r->by};
}

}  // namespace

std::string GlobalEpoch::to_string() const {
  return std::to_string(counter) + "@" + std::string(node.name());
}

Pid resolve_earliest(const std::string&, const GlobalEntry& a, const GlobalEntry& b) {
  if (a.clock != b.clock) return a.clock < b.clock ? a.pid : b.pid;
  if (a.pid.node != b.pid.node) return a.pid.node < b.pid.node ? a.pid : b.pid;
  return a.pid < b.pid ? a.pid : b.pid;
}

Status start_global(Node& node, GlobalOptions options) {
  if (state_of(node)) return Status::Ok();
  if (Status s = proto::register_messages(); !s.ok()) return s;
  auto st = std::make_shared<GlobalState>();
  st->me = node.name();
  st->options = std::move(options);
  if (!st->options.resolver) st->options.resolver = resolve_earliest;
  if (node.set_service(st) != st.get()) return Status::Ok();  // another thread started it first
  SpawnOptions o;
  o.name = kServerName;
  auto server = start<GlobalServer>(node, o, &node, st);
  if (!server) return Status(ErrorCode::kInternal, server.error().to_string());
  detail::WriterLock lock(st->mu);
  st->server = *server;
  return Status::Ok();
}

Dest global(std::string_view name) { return via_name(global_names_resolver(), bin(name)); }

Result<GlobalEpoch, NameStatus> register_global(Node& node, std::string_view name, Pid pid) {
  return registration(node, name, pid, false);
}

Result<GlobalEpoch, NameStatus> re_register_global(Node& node, std::string_view name, Pid pid) {
  return registration(node, name, pid, true);
}

Status unregister_global(Node& node, std::string_view name) {
  auto r = ask(node, proto::UnregisterRequest{name});
  if (!r) return r.error();
  return r->status;
}

std::optional<Pid> whereis_global(Node& node, std::string_view name) {
  GlobalState* st = state_of(node);
  if (!st) return std::nullopt;
  detail::ReaderLock lock(st->mu);
  auto it = st->names.find(name);
  if (it == st->names.end() || known_dead(node, st->me, it->second.pid)) return std::nullopt;
  return it->second.pid;
}

std::optional<GlobalEpoch> global_epoch(Node& node, std::string_view name) {
  GlobalState* st = state_of(node);
  if (!st) return std::nullopt;
  detail::ReaderLock lock(st->mu);
  auto it = st->names.find(name);
  if (it == st->names.end() || known_dead(node, st->me, it->second.pid)) return std::nullopt;
  return it->second.epoch;
}

std::vector<GlobalEntry> global_names(Node& node) {
  std::vector<GlobalEntry> out;
  GlobalState* st = state_of(node);
  if (!st) return out;
  {
    detail::ReaderLock lock(st->mu);
    for (const auto& [name, c] : st->names) {
      if (!known_dead(node, st->me, c.pid)) out.push_back(entry_of(name, c));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const GlobalEntry& a, const GlobalEntry& b) { return a.name < b.name; });
  return out;
}

GlobalStats global_stats(Node& node) {
  GlobalStats out;
  GlobalState* st = state_of(node);
  if (!st) return out;
  out.rounds = st->rounds.load(std::memory_order_relaxed);
  out.rounds_lost = st->rounds_lost.load(std::memory_order_relaxed);
  out.ignored = st->ignored.load(std::memory_order_relaxed);
  return out;
}

std::vector<Atom> global_nodes(Node& node) {
  GlobalState* st = state_of(node);
  if (!st) return {};
  detail::ReaderLock lock(st->mu);
  return {st->peers.begin(), st->peers.end()};
}

}  // namespace nodus
