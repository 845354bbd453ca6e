// The store on the simulated network (tests/sim/sim_cluster.hpp), step by step from a seed:
// 3 or 5 nodes with N=3, W=2, R=2, and clients putting, getting and deleting (with and without
// causal contexts) while the network drops, delays and reorders messages, partitions and heals,
// and nodes are paused or crash and restart (losing what their memory engine held). After the
// heal and a settle period every seed checks:
// - every acknowledged put is readable: its value among the siblings, or superseded by a write
//   whose context saw it (a history checker over the dots the engines stored);
// - an acknowledged delete made with the context of a read that saw every value of its key
//   stays deleted after hints are handed back, read repair ran and tombstones were reaped;
// - no put reports success before W replicas (PW of them primaries) stored it, and puts from
//   a minority side that cannot meet W, or PW=2, are refused (no_quorum or timeout);
// - concurrent blind writes are kept as siblings, and a put with their merged context
//   resolves them to one value;
// - the hints fallbacks kept are handed back: hints_pending reaches 0 on every node.
// A failing seed replays exactly: run it alone (NODUS_SIM_SEED=N) with NODUS_SIM_TRACE=1 for
// its story (NODUS_SIM_FIRST / NODUS_SIM_LAST for a range, NODUS_SIM_ALL=1 to list every
// failing seed and every problem of each, instead of five seeds and three problems).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "../test_support.hpp"
#include "nodus/kv/client.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/kv/partition.hpp"
#include "nodus/node/process.hpp"
#include "object.hpp"
#include "sim/sim_cluster.hpp"
#include "state.hpp"

namespace nodus::kv {
namespace {

using namespace std::chrono_literals;
using nodus::testing::SimCluster;
using ms = std::chrono::milliseconds;
// An actor of a version vector: a vnode id, or (vnode, epoch) where vnodes take epochs.
using ActorId = std::remove_cvref_t<decltype(VersionVector{}.front().first)>;
using Dot = std::pair<ActorId, std::uint64_t>;  // (actor, counter): one write

constexpr char kSecret[] = "sim-context-secret";
constexpr std::uint32_t kPartitions = 8;
constexpr std::uint32_t kReplicas = 3;
constexpr std::uint32_t kW = 2;
constexpr auto kRequestTimeout = 1000ms;
constexpr auto kHandoffInterval = 200ms;
constexpr auto kChaos = 5000ms;  // virtual time of the workload and its faults

bool covers(const VersionVector& vv, const Dot& d) {
  for (const auto& [actor, n] : vv) {
    if (actor == d.first) return n >= d.second;
  }
  return false;
}

template <class A>
std::string actor_string(const A& a) {
  char buf[48];
  if constexpr (std::is_integral_v<A>) {
    std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(a & 0xffffff));
  } else {
    std::snprintf(buf, sizeof buf, "%llx.%llu", static_cast<unsigned long long>(a.vnode & 0xffffff),
                  static_cast<unsigned long long>(a.epoch));
  }
  return buf;
}

std::string dot_string(const Dot& d) {
  return actor_string(d.first) + ":" + std::to_string(d.second);
}

std::string join(const std::set<std::string>& s) {
  std::string out = "{";
  for (const std::string& v : s) out += (out.size() > 1 ? " " : "") + v;
  return out + "}";
}

// -- what the engines stored -------------------------------------------------------------------

/// Everything any node's engine was asked to store, seen through RecordingEngine: where and
/// after what each dot (one coordinator's write) first appeared, the dot of every value (each
/// put writes a value of its own), and which nodes stored an object that had seen a dot.
class Recorder {
 public:
  struct Birth {
    std::string key;
    std::string node;  // the coordinator: the first engine that stored it
    std::string value;
    std::uint64_t timestamp = 0;
    bool tombstone = false;
    bool sole = false;     // the coordinator's object held nothing else afterwards
    VersionVector before;  // what the coordinator's copy had seen before this write
    ms at{0};
  };

  /// Virtual time, for the story of a failing seed.
  std::function<ms()> now = [] { return ms(0); };

  void stored(const std::string& node, std::string_view key, std::string_view bytes,
              const std::string* previous) {
    const ms at = this->now();
    Result<Object> obj = decode_object(bytes);
    if (!obj) {
      problems_.push_back(node + " stored an undecodable object for " + std::string(key));
      return;
    }
    VersionVector before;
    if (previous) {
      if (Result<Object> p = decode_object(*previous); p) before = p->join();
    }
    const std::string k(key);
    for (const auto& e : obj->entries()) {
      for (std::size_t i = 0; i < e.values.size(); ++i) {
        const Dot d(e.id, e.counter - i);
        const Sibling& s = e.values[i];
        auto known = births_.find({k, d});
        if (known != births_.end()) {
          const Birth& b = known->second;
          if (b.value == s.value && b.tombstone == s.tombstone && b.timestamp == s.timestamp) {
            continue;
          }
          // One dot naming two writes (Riak's kv679): replicas that saw the first take the
          // second as seen, and drop it.
          std::string why =
              "dot " + dot_string(d) + " of " + k +
              " names two writes: " + (b.tombstone ? std::string("a tombstone") : b.value) +
              " (on " + b.node + " at " + std::to_string(b.at.count()) + " ms) and " +
              (s.tombstone ? std::string("a tombstone") : s.value) + " (on " + node + " at " +
              std::to_string(at.count()) + " ms)";
          auto erased = erased_.find({k, node});
          if (erased != erased_.end()) {
            why += ", after " + node + " erased its copy at " +
                   std::to_string(erased->second.count()) + " ms";
          }
          reused_.push_back(why);
        }
        births_[{k, d}] =
            Birth{k, node, s.value, s.timestamp, s.tombstone, obj->value_count() == 1, before, at};
        if (s.tombstone) continue;
        auto [it, fresh] = dots_.emplace(s.value, d);
        if (!fresh && it->second != d) problems_.push_back("value " + s.value + " written twice");
      }
    }
    VersionVector& seen = seen_[k][node];
    seen = vv_merge(seen, obj->join());
  }

  void erased(const std::string& node, std::string_view key) {
    erased_[{std::string(key), node}] = now();
    log_.push_back(std::to_string(now().count()) + " ms: " + node + " erased " + std::string(key));
  }
  const std::vector<std::string>& log() const { return log_; }

  std::optional<Dot> dot_of(const std::string& value) const {
    auto it = dots_.find(value);
    if (it == dots_.end()) return std::nullopt;
    return it->second;
  }
  /// Nodes whose engine stored an object of `key` that had seen `d`.
  std::set<std::string> holders(const std::string& key, const Dot& d) const {
    std::set<std::string> out;
    auto it = seen_.find(key);
    if (it == seen_.end()) return out;
    for (const auto& [node, vv] : it->second) {
      if (covers(vv, d)) out.insert(node);
    }
    return out;
  }
  /// By key and dot (a dot names a write of one key).
  const std::map<std::pair<std::string, Dot>, Birth>& births() const { return births_; }
  const std::vector<std::string>& problems() const { return problems_; }
  /// Dots that named two writes (see AWriteAfterItsKeyWasReapedIsNotLostToAnOlderContext).
  const std::vector<std::string>& reused() const { return reused_; }

 private:
  std::map<std::pair<std::string, Dot>, Birth> births_;
  std::map<std::string, Dot> dots_;
  std::map<std::string, std::map<std::string, VersionVector>> seen_;
  std::map<std::pair<std::string, std::string>, ms> erased_;  // (key, node): last erase
  std::vector<std::string> log_;
  std::vector<std::string> problems_;
  std::vector<std::string> reused_;
};

/// The memory engine, telling a Recorder what it stores (the fault-injection pattern of
/// leveldb's memenv: the layer below swapped through its interface).
class RecordingEngine final : public Engine {
 public:
  RecordingEngine(std::unique_ptr<Engine> inner, Recorder* rec, std::string node)
      : inner_(std::move(inner)), rec_(rec), node_(std::move(node)) {}
  Status put(std::uint32_t p, std::string_view key, std::string_view value) override {
    std::string before;
    const bool had = inner_->get(p, key, &before).ok();
    rec_->stored(node_, key, value, had ? &before : nullptr);
    return inner_->put(p, key, value);
  }
  Status get(std::uint32_t p, std::string_view key, std::string* value) const override {
    return inner_->get(p, key, value);
  }
  Status erase(std::uint32_t p, std::string_view key) override {
    std::string before;
    if (inner_->get(p, key, &before).ok()) rec_->erased(node_, key);
    return inner_->erase(p, key);
  }
  void fold(std::uint32_t p,
            const std::function<bool(std::string_view, std::string_view)>& fn) const override {
    inner_->fold(p, fn);
  }
  std::uint64_t keys(std::uint32_t p) const override { return inner_->keys(p); }
  std::uint64_t data_bytes(std::uint32_t p) const override { return inner_->data_bytes(p); }
  EngineStats stats() const override { return inner_->stats(); }
  bool durable() const override { return false; }

 private:
  std::unique_ptr<Engine> inner_;
  Recorder* rec_;
  std::string node_;
};

// -- the history --------------------------------------------------------------------------------

/// One client operation, as invoked and as answered.
struct Op {
  int client = 0;
  std::string node;  // where the client ran
  char kind = 'g';   // g(et) p(ut) d(elete)
  std::string key;
  std::string value;                     // puts: unique per put
  std::optional<VersionVector> context;  // the decoded context sent (puts and deletes)
  std::uint32_t r = 0, w = 0, pw = 0;    // 0: the defaults
  bool probe = false;                    // a minority-side put that must be refused
  ms invoked{0}, completed{0};
  bool done = false;
  Status result;
  std::set<std::string> values;                  // gets
  std::size_t holders = 0, primary_holders = 0;  // acknowledged puts: at the acknowledgement
};

std::string describe(const Op& op) {
  std::string s = "[" + std::to_string(op.invoked.count()) + "-" +
                  (op.done ? std::to_string(op.completed.count()) : std::string("?")) + " ms] c" +
                  std::to_string(op.client) + "@" + op.node + " ";
  s += op.kind == 'g' ? "get " : op.kind == 'p' ? "put " : "del ";
  s += op.key;
  if (op.kind == 'p') s += " " + op.value;
  if (op.context) {
    s += " ctx{";
    for (const auto& [a, n] : *op.context) s += " " + dot_string(Dot(a, n));
    s += " }";
  }
  if (op.r) s += " r=" + std::to_string(op.r);
  if (op.w) s += " w=" + std::to_string(op.w);
  if (op.pw) s += " pw=" + std::to_string(op.pw);
  if (op.probe) s += " (probe)";
  s += " -> ";
  if (!op.done) return s + "no answer";
  s += op.result.ok() ? std::string("ok") : op.result.to_string();
  if (op.kind == 'g' && op.result.ok()) s += " " + join(op.values);
  if (op.kind == 'p' && op.result.ok()) {
    s += " (stored on " + std::to_string(op.holders) + ", " + std::to_string(op.primary_holders) +
         " primaries)";
  }
  return s;
}

/// What a seed's run is made of and what it found. The SimCluster goes first when it ends
/// (declared last), so no process outlives what it points to.
struct SeedRun {
  std::uint64_t seed = 0;
  std::vector<std::string> names;
  std::chrono::milliseconds tombstone_ttl{2000};
  Recorder rec;
  std::deque<Op> ops;
  std::map<std::string, std::set<std::string>> primaries;  // per key, by node name
  bool stop = false;
  std::set<std::string> probe_nodes;  // the minority side, while cut off; else empty
  int next_client = 0;
  int running_clients = 0;
  std::map<std::string, ms> restarted;  // node -> when it last came back from a crash
  std::vector<std::string> faults;      // what happened, for the report
  std::vector<std::string> problems;
  std::unique_ptr<SimCluster> sim;

  SimCluster& cluster() { return *sim; }
  ms now() const { return sim->elapsed(); }
  void problem(std::string p) { problems.push_back(std::move(p)); }
};

const std::vector<std::string>& general_keys() {
  static const std::vector<std::string> keys = {"k0", "k1", "k2", "k3", "k4"};
  return keys;
}
const char kSiblingKey[] = "sib";  // blind puts only
const char kGoneKey[] = "gone";    // written, then deleted, by the deleter alone

std::vector<std::string> all_keys() {
  std::vector<std::string> keys = general_keys();
  keys.push_back(kSiblingKey);
  keys.push_back(kGoneKey);
  return keys;
}

Status start_store(SeedRun& run, const std::string& name) {
  Options o;
  o.partitions = kPartitions;
  o.replicas = kReplicas;
  o.write_quorum = kW;
  o.read_quorum = 2;
  o.initial_members = run.names;
  o.context_secret = kSecret;
  o.request_timeout = kRequestTimeout;
  o.handoff_interval = kHandoffInterval;
  o.tombstone_ttl = run.tombstone_ttl;
  o.clock = run.sim->net().clock();
  Recorder* rec = &run.rec;
  o.engine = [rec, name](std::uint32_t q) -> std::unique_ptr<Engine> {
    return std::make_unique<RecordingEngine>(new_memory_engine(q), rec, name);
  };
  return start(run.cluster()[name], std::move(o));
}

bool ring_ready(SeedRun& run, const std::string& name) {
  std::optional<Ring> r = ring(run.cluster()[name]);
  return r && !r->empty() && r->members().size() == run.names.size();
}

/// True when every node's store has its ring and sees every member up.
bool store_settled(SeedRun& run) {
  for (const std::string& n : run.cluster().names()) {
    if (!ring_ready(run, n)) return false;
    auto v = state_of(run.cluster()[n])->view();
    for (bool up : v->up) {
      if (!up) return false;
    }
  }
  return run.cluster().names().size() == run.names.size();
}

// -- clients -----------------------------------------------------------------------------------

/// Counts a client process while it runs; a crash of its node unwinds it too.
class Running {
 public:
  explicit Running(SeedRun* run) : run_(run) { ++run_->running_clients; }
  ~Running() { --run_->running_clients; }
  Running(const Running&) = delete;
  Running& operator=(const Running&) = delete;

 private:
  SeedRun* run_;
};

/// Sends one operation from the calling process (a client on `node`) and records it.
class Recorded {
 public:
  Recorded(SeedRun& run, int client, const std::string& node)
      : run_(run), client_(client), node_(node), kv_(run.cluster()[node]) {}

  /// A get; its context (when found) is kept for the key's next write.
  Op& get(const std::string& key, std::uint32_t r = 0) {
    Op& op = begin('g', key);
    op.r = r;
    RequestOptions o;
    o.r = r;
    o.timeout = kRequestTimeout;
    auto res = kv_.get(key, o);
    finish(op, res.ok() ? Status() : res.error());
    if (res.ok()) {
      op.values.insert(res->values.begin(), res->values.end());
      contexts_[key] = res->context;
    }
    return op;
  }
  /// A put of a new value; with `use_context`, the key's last context from this client.
  Op& put(const std::string& key, bool use_context, std::uint32_t w = 0, std::uint32_t pw = 0,
          bool probe = false) {
    Op& op = begin('p', key);
    op.value = key + "/c" + std::to_string(client_) + "." + std::to_string(++puts_);
    op.w = w;
    op.pw = pw;
    op.probe = probe;
    const std::string ctx = use_context ? contexts_[key] : std::string();
    if (!ctx.empty()) op.context = decode(key, ctx);
    RequestOptions o;
    o.context = ctx;
    o.w = w;
    o.pw = pw;
    o.timeout = kRequestTimeout;
    auto res = kv_.put(key, op.value, o);
    finish(op, res.ok() ? Status() : res.error());
    if (res.ok()) {
      contexts_[key] = *res;
      if (std::optional<Dot> d = run_.rec.dot_of(op.value)) {
        const std::set<std::string> h = run_.rec.holders(key, *d);
        op.holders = h.size();
        for (const std::string& n : h) op.primary_holders += run_.primaries[key].count(n);
      }
    }
    return op;
  }
  /// A delete with the key's last context from this client, or without one.
  Op& del(const std::string& key, bool use_context) {
    Op& op = begin('d', key);
    const std::string ctx = use_context ? contexts_[key] : std::string();
    if (!ctx.empty()) op.context = decode(key, ctx);
    RequestOptions o;
    o.context = ctx;
    o.timeout = kRequestTimeout;
    auto res = kv_.del(key, o);
    finish(op, res.ok() ? Status() : res.error());
    if (res.ok()) contexts_[key] = *res;
    return op;
  }
  void set_context(const std::string& key, std::string ctx) { contexts_[key] = std::move(ctx); }
  bool has_context(const std::string& key) const {
    auto it = contexts_.find(key);
    return it != contexts_.end() && !it->second.empty();
  }
  const std::string& context(const std::string& key) { return contexts_[key]; }

 private:
  Op& begin(char kind, const std::string& key) {
    run_.ops.push_back(Op{});
    Op& op = run_.ops.back();  // a deque: stays where it is
    op.client = client_;
    op.node = node_;
    op.kind = kind;
    op.key = key;
    op.invoked = run_.now();
    return op;
  }
  void finish(Op& op, Status s) {
    op.done = true;
    op.completed = run_.now();
    op.result = std::move(s);
  }
  VersionVector decode(const std::string& key, const std::string& ctx) {
    Result<VersionVector> vv = ContextSigner(kSecret).decode(key, ctx);
    if (!vv) run_.problem("a context the store gave does not decode: " + vv.error().to_string());
    return vv ? *vv : VersionVector{};
  }

  SeedRun& run_;
  int client_;
  std::string node_;
  Client kv_;
  std::map<std::string, std::string> contexts_;
  int puts_ = 0;
};

/// A client of the general keys and of the sibling key until the run stops.
void client_loop(SeedRun* run, int id, std::string node, std::uint64_t seed) {
  Running running(run);
  std::mt19937_64 rng(seed);
  Recorded c(*run, id, node);
  int blind_siblings = 0;
  while (!run->stop) {
    sleep_for(ms(rng() % 60));
    if (run->stop) break;
    const std::uint64_t roll = rng() % 100;
    if (roll < 6) {  // concurrent blind writes of one key: siblings (a few, below the limit)
      if (blind_siblings++ < 3) c.put(kSiblingKey, false);
      continue;
    }
    const std::string& key = general_keys()[rng() % general_keys().size()];
    if (roll < 35) {
      c.get(key, rng() % 8 == 0 ? 3 : 0);
    } else if (roll < 55) {
      c.put(key, false);
    } else if (roll < 75) {
      c.put(key, true);
    } else if (roll < 80) {
      c.put(key, true, 0, 2);  // PW=2
    } else if (roll < 83) {
      c.put(key, true, 3);  // W=3
    } else if (roll < 93) {
      if (c.has_context(key)) {
        c.del(key, true);
      } else {
        c.get(key);
      }
    } else {
      c.del(key, false);
    }
  }
}

/// Writes the gone key a few times, then deletes it with the context of a read that saw every
/// value ever written to it (the dots the engines stored say so), retrying until the delete
/// is acknowledged or the run stops.
void deleter_loop(SeedRun* run, int id, std::string node, std::uint64_t seed) {
  Running running(run);
  std::mt19937_64 rng(seed);
  Recorded c(*run, id, node);
  const int writes = 2 + static_cast<int>(rng() % 4);
  for (int i = 0; i < writes && !run->stop; ++i) {
    sleep_for(ms(rng() % 500));
    c.put(kGoneKey, rng() % 2 == 0);
  }
  while (!run->stop) {
    sleep_for(ms(50 + rng() % 200));
    if (run->stop) break;
    Op& got = c.get(kGoneKey);
    if (!got.result.ok()) continue;
    const VersionVector ctx = *ContextSigner(kSecret).decode(kGoneKey, c.context(kGoneKey));
    bool saw_all = true;
    for (const auto& [at, birth] : run->rec.births()) {
      if (birth.key == kGoneKey && !covers(ctx, at.second)) saw_all = false;
    }
    if (!saw_all) continue;  // a read that missed something: read again (read repair helps)
    if (c.del(kGoneKey, true).result.ok()) break;
  }
}

/// Puts from the minority side while it is cut off, that cannot be acknowledged: W above the
/// side's size, or PW=2 for a key with at most one primary on that side.
void probe_loop(SeedRun* run, int id, std::string node, std::uint64_t seed,
                std::set<std::string> side) {
  Running running(run);
  std::mt19937_64 rng(seed);
  Recorded c(*run, id, node);
  std::vector<std::string> pw_keys;
  for (const std::string& k : general_keys()) {
    std::size_t inside = 0;
    for (const std::string& n : side) inside += run->primaries[k].count(n);
    if (inside <= 1) pw_keys.push_back(k);
  }
  while (!run->stop && run->probe_nodes == side) {
    const std::string& key = general_keys()[rng() % general_keys().size()];
    c.put(key, rng() % 2 == 0, static_cast<std::uint32_t>(side.size() + 1), 0, true);
    if (!pw_keys.empty() && run->probe_nodes == side) {
      c.put(pw_keys[rng() % pw_keys.size()], rng() % 2 == 0, 0, 2, true);
    }
    sleep_for(ms(20 + rng() % 100));
  }
}

void spawn_client(SeedRun& run, const std::string& node) {
  const int id = run.next_client++;
  SeedRun* r = &run;
  run.cluster().spawn(node, [r, id, node] { client_loop(r, id, node, r->seed * 1000 + id); });
}

// -- the run -------------------------------------------------------------------------------------

/// What the network and the nodes do during a seed's workload.
enum class Mix {
  kOneFault,    ///< one partition, pause or crash at a time, on a clean network
  kManyFaults,  ///< drops and reordering, with overlapping partitions, pauses and a crash
};

/// The final reads: per key, the values a get with R=N found (empty: not found).
using Snapshot = std::map<std::string, std::set<std::string>>;

/// Reads every key from `node` with `r`; "" if all answered, else what failed.
std::string read_all(SeedRun& run, const std::string& node, std::uint32_t r, Snapshot* out) {
  auto done = std::make_shared<bool>(false);
  auto failure = std::make_shared<std::string>();
  auto snap = std::make_shared<Snapshot>();
  const int id = run.next_client++;
  SeedRun* rp = &run;
  run.cluster().spawn(node, [rp, id, node, r, done, failure, snap] {
    Recorded c(*rp, id, node);
    for (const std::string& key : all_keys()) {
      Op* op = nullptr;
      for (int attempt = 0; attempt < 3; ++attempt) {
        op = &c.get(key, r);
        if (op->result.ok() || op->result.code() == ErrorCode::kNotFound) break;
      }
      if (!op->result.ok() && op->result.code() != ErrorCode::kNotFound) {
        *failure = "get " + key + " from " + node + ": " + op->result.to_string();
        break;
      }
      (*snap)[key] = op->values;
    }
    *done = true;
  });
  if (!run.cluster().run_until([&] { return *done; }, 20s)) return "reads from " + node + " hang";
  *out = *snap;
  return *failure;
}

/// Runs `body` as a process on `node` until it returns; false if it did not within 10 s.
bool run_process(SeedRun& run, const std::string& node, std::function<void(Recorded&)> body) {
  auto done = std::make_shared<bool>(false);
  const int id = run.next_client++;
  SeedRun* rp = &run;
  run.cluster().spawn(node, [rp, id, node, body, done] {
    Recorded c(*rp, id, node);
    body(c);
    *done = true;
  });
  return run.cluster().run_until([&] { return *done; }, 10s);
}

/// The checks over the history against the final reads `fin` (see the file's comment).
void check_history(SeedRun& run, const Snapshot& fin) {
  const auto& ops = run.ops;
  std::set<std::string> written;  // every value a put tried
  for (const Op& op : ops) {
    if (op.kind == 'p') written.insert(op.value);
  }
  for (const Op& op : ops) {
    if (op.done && !op.result.ok()) {
      const ErrorCode code = op.result.code();
      const bool expected = code == ErrorCode::kNoQuorum || code == ErrorCode::kTimeout ||
                            (op.kind == 'g' && code == ErrorCode::kNotFound);
      // A restarted node answers unavailable until it has learnt the ring from a peer, once
      // linked again (its peers' links to it come back with their reconnect backoff: up to
      // ~1.8 s here).
      if (code == ErrorCode::kUnavailable && run.restarted.count(op.node) &&
          op.invoked >= run.restarted.at(op.node)) {
        continue;
      }
      if (!expected) run.problem("an unexpected error: " + describe(op));
    }
    if (op.kind == 'g' && op.done && op.result.ok()) {
      for (const std::string& v : op.values) {
        if (!written.count(v) || v.rfind(op.key + "/", 0) != 0) {
          run.problem("a get returned a value never written to its key: " + describe(op));
        }
      }
    }
    if (op.kind != 'p' || !op.done) continue;
    if (op.probe && op.result.ok()) {
      run.problem("a put the minority side cannot meet was acknowledged: " + describe(op));
    }
    if (!op.result.ok()) continue;
    // Acknowledged: W replicas had stored it, PW of them primaries.
    const std::uint32_t w = op.w ? op.w : kW;
    if (op.holders < w || op.primary_holders < op.pw) {
      run.problem("a put was acknowledged before its quorum stored it: " + describe(op));
    }
    std::optional<Dot> d = run.rec.dot_of(op.value);
    if (!d) {
      run.problem("an acknowledged put was never stored: " + describe(op));
      continue;
    }
    const std::set<std::string>& now = fin.at(op.key);
    if (now.count(op.value)) continue;
    // Gone: only a write whose context saw it may have superseded it -- a put or delete that
    // sent such a context (and was stored somewhere), or a delete without a context whose
    // coordinator had seen it and dropped everything.
    bool superseded = false;
    for (const Op& q : ops) {
      if (q.key != op.key || q.kind == 'g' || !q.context || !covers(*q.context, *d)) continue;
      if (q.kind == 'd' || run.rec.dot_of(q.value)) superseded = true;
    }
    for (const auto& [at, b] : run.rec.births()) {
      if (b.key == op.key && b.tombstone && b.sole && covers(b.before, *d)) superseded = true;
    }
    if (!superseded) {
      run.problem("an acknowledged put is lost (final values " + join(now) + ", its dot " +
                  dot_string(*d) + "): " + describe(op));
    }
  }
  // Blind writes only: every acknowledged one is a sibling.
  std::size_t acked_siblings = 0;
  for (const Op& op : ops) {
    if (op.key == kSiblingKey && op.kind == 'p' && op.done && op.result.ok()) ++acked_siblings;
  }
  if (fin.at(kSiblingKey).size() < acked_siblings) {
    run.problem("blind writes of " + std::string(kSiblingKey) + ": " +
                std::to_string(acked_siblings) + " acknowledged, " +
                std::to_string(fin.at(kSiblingKey).size()) + " kept");
  }
}

std::string trace_of(SeedRun& run) {
  std::string out;
  for (const auto& [key, nodes] : run.primaries)
    out += "primaries " + key + " " + join(nodes) + "\n";
  for (const std::string& f : run.faults) out += "fault " + f + "\n";
  for (const Op& op : run.ops) out += "op " + describe(op) + "\n";
  for (const auto& [at, b] : run.rec.births()) {
    out += "dot " + dot_string(at.second) + " " + b.key + " on " + b.node + ": " +
           (b.tombstone ? std::string("tombstone") : b.value) + (b.sole ? " (sole)" : "") + " at " +
           std::to_string(b.at.count()) + " ms\n";
  }
  for (const std::string& l : run.rec.log()) out += "engine " + l + "\n";
  for (const std::string& l : run.cluster().logs()) out += "log " + l + "\n";
  return out;
}

/// Starts `node_count` nodes n1.. with the store on `run`'s seed and waits for the ring; "" if
/// it formed, else what went wrong.
std::string form_cluster(SeedRun& run, std::size_t node_count, transport::SimFaults faults) {
  run.sim = std::make_unique<SimCluster>(run.seed, faults);
  run.rec.now = [&run] { return run.now(); };
  SimCluster& sim = run.cluster();
  for (std::size_t i = 1; i <= node_count; ++i) {
    std::string name = "n";  // appended: "n" + std::to_string(i) trips GCC 12's -Wrestrict
    name += std::to_string(i);
    run.names.push_back(std::move(name));
  }
  for (const std::string& n : run.names) {
    sim.add(n, n == "n1" ? std::vector<std::string>{} : std::vector<std::string>{"n1"});
  }
  if (!sim.run_until([&] { return sim.meshed(); }, 5s)) return "never meshed";
  for (const std::string& n : run.names) {
    if (Status s = start_store(run, n); !s.ok()) return "start: " + s.to_string();
  }
  if (!sim.run_until([&] { return store_settled(run); }, 5s)) return "the ring never formed";
  const Ring r = *ring(sim["n1"]);
  for (const std::string& k : all_keys()) {
    for (std::uint32_t m : r.preference_list(partition_of(k, kPartitions), kReplicas)) {
      run.primaries[k].insert(r.members()[m]);
    }
  }
  return std::string();
}

/// What the seeds of a test exercised, summed: a check that never ran proves nothing.
struct Coverage {
  std::uint64_t seeds = 0, puts_acked = 0, puts_refused = 0, probes_refused = 0, deletes_acked = 0,
                gone_deleted = 0, siblings_resolved = 0, hints = 0, handoffs = 0, reaped = 0,
                read_repairs = 0, partitions = 0, pauses = 0, crashes = 0, dots_reused = 0;

  std::string to_string() const {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "%llu seeds: %llu puts acknowledged, %llu refused (%llu minority probes); "
                  "%llu deletes acknowledged; the deleted key deleted in %llu seeds; siblings "
                  "resolved in %llu; %llu hints, %llu handed back; %llu tombstones reaped; "
                  "%llu read repairs; %llu partitions, %llu pauses, %llu crashes; %llu dots "
                  "named two writes",
                  u(seeds), u(puts_acked), u(puts_refused), u(probes_refused), u(deletes_acked),
                  u(gone_deleted), u(siblings_resolved), u(hints), u(handoffs), u(reaped),
                  u(read_repairs), u(partitions), u(pauses), u(crashes), u(dots_reused));
    return buf;
  }

 private:
  static unsigned long long u(std::uint64_t v) { return static_cast<unsigned long long>(v); }
};

/// One seed's run; returns "" if every check held (a dot that names two writes included),
/// else what went wrong. `story` (if given) gets the run's history.
std::string run_seed(std::uint64_t seed, std::size_t node_count, Mix mix, Coverage* cov,
                     std::string* story) {
  std::mt19937_64 rng(seed);  // the schedule; the simulation has its own generator
  transport::SimFaults base;
  base.max_latency = std::chrono::microseconds(50 + rng() % 3000);
  SeedRun run;
  run.seed = seed;
  run.tombstone_ttl = ms(300 + rng() % 3000);
  if (std::string f = form_cluster(run, node_count, base); !f.empty()) return f;
  SimCluster& sim = run.cluster();

  // The workload: two clients per node, and the deleter.
  for (const std::string& n : run.names) {
    spawn_client(run, n);
    spawn_client(run, n);
  }
  {
    const std::string n = run.names[rng() % run.names.size()];
    const int id = run.next_client++;
    SeedRun* rp = &run;
    sim.spawn(n, [rp, id, n] { deleter_loop(rp, id, n, rp->seed * 1000 + id); });
  }

  // The faults: a timeline of actions over the workload's kChaos.
  struct Action {
    ms at;
    std::function<void()> fn;
  };
  std::vector<Action> actions;
  auto pick = [&](std::size_t count) {
    std::vector<std::string> shuffled = run.names;
    std::shuffle(shuffled.begin(), shuffled.end(), rng);
    shuffled.resize(count);
    return std::set<std::string>(shuffled.begin(), shuffled.end());
  };
  auto window = [&](ms min_len, ms max_len) {
    const ms len = min_len + ms(rng() % (max_len - min_len).count());
    const ms start = ms(rng() % (kChaos - std::min(len, kChaos - 100ms)).count());
    return std::make_pair(start, std::min(start + len, kChaos));
  };
  const std::size_t minority = (node_count - 1) / 2;
  auto add_partition = [&] {
    const auto [from, to] = window(300ms, 4000ms);
    const std::set<std::string> side = pick(minority);
    actions.push_back(
        {from, [&run, side] {
           std::vector<std::string> a(side.begin(), side.end()), b;
           for (const std::string& n : run.names) {
             if (!side.count(n)) b.push_back(n);
           }
           run.cluster().partition(a, b);
           run.faults.push_back(std::to_string(run.now().count()) + " ms: cut " + join(side) +
                                " off");
           run.probe_nodes = side;
           // A prober on the minority side, once it has its ring.
           const std::string at = *side.begin();
           const auto live = run.cluster().names();
           if (std::find(live.begin(), live.end(), at) != live.end() && ring_ready(run, at)) {
             const int id = run.next_client++;
             SeedRun* rp = &run;
             run.cluster().spawn(
                 at, [rp, id, at, side] { probe_loop(rp, id, at, rp->seed * 1000 + id, side); });
           }
         }});
    actions.push_back({to, [&run] {
                         run.probe_nodes.clear();
                         run.cluster().heal();
                         run.faults.push_back(std::to_string(run.now().count()) + " ms: heal");
                       }});
  };
  auto add_pause = [&] {
    const auto [from, to] = window(100ms, 3500ms);
    const std::string n = *pick(1).begin();
    actions.push_back({from, [&run, n] {
                         if (!run.cluster().paused(n)) run.cluster().pause(n);
                         run.faults.push_back(std::to_string(run.now().count()) + " ms: pause " +
                                              n);
                       }});
    actions.push_back({to, [&run, n] {
                         if (run.cluster().paused(n)) run.cluster().resume(n);
                         run.faults.push_back(std::to_string(run.now().count()) + " ms: resume " +
                                              n);
                       }});
  };
  auto add_crash = [&] {
    const auto [from, to] = window(50ms, 3000ms);
    const std::string n = *pick(1).begin();
    actions.push_back({from, [&run, n] {
                         if (run.cluster().paused(n)) run.cluster().resume(n);
                         run.cluster().crash(n);
                         run.faults.push_back(std::to_string(run.now().count()) + " ms: crash " +
                                              n);
                       }});
    actions.push_back({to, [&run, n] {
                         std::vector<std::string> seeds;
                         for (const std::string& o : run.cluster().names()) seeds.push_back(o);
                         run.cluster().add(n, seeds);
                         if (Status s = start_store(run, n); !s.ok()) {
                           run.problem("restart of " + n + ": " + s.to_string());
                         }
                         spawn_client(run, n);
                         run.restarted[n] = run.now();
                         run.faults.push_back(std::to_string(run.now().count()) + " ms: restart " +
                                              n);
                       }});
  };
  if (mix == Mix::kOneFault) {
    const std::uint64_t kind = rng() % 3;
    if (kind == 0) add_partition();
    if (kind == 1) add_pause();
    if (kind == 2) add_crash();
  } else {
    transport::SimFaults f = base;
    f.drop = 0.002 * static_cast<double>(1 + rng() % 10);
    f.reorder = rng() % 2 ? 0.05 : 0.0;
    const auto [from, to] = window(500ms, 4000ms);
    actions.push_back({from, [&run, f] {
                         run.cluster().net().set_faults(f);
                         run.faults.push_back(std::to_string(run.now().count()) + " ms: drops " +
                                              std::to_string(f.drop) +
                                              (f.reorder > 0 ? ", reordering" : ""));
                       }});
    actions.push_back({to, [&run, base] {
                         run.cluster().net().set_faults(base);
                         run.faults.push_back(std::to_string(run.now().count()) +
                                              " ms: clean network");
                       }});
    if (rng() % 2) add_partition();
    if (rng() % 2) add_pause();
    if (rng() % 2) add_crash();
  }
  std::stable_sort(actions.begin(), actions.end(),
                   [](const Action& a, const Action& b) { return a.at < b.at; });
  const ms chaos_start = run.now();
  for (Action& a : actions) {
    const ms wait = chaos_start + a.at - run.now();
    if (wait > 0ms) sim.run_for(wait);
    a.fn();
  }
  if (run.now() < chaos_start + kChaos) sim.run_for(chaos_start + kChaos - run.now());

  // The heal: clients stop, every fault ends, crashed nodes are back.
  run.stop = true;
  run.probe_nodes.clear();
  sim.heal();
  sim.net().set_faults(base);
  for (const std::string& n : sim.names()) {
    if (sim.paused(n)) sim.resume(n);
  }
  if (!sim.run_until([&] { return run.running_clients == 0; }, 5s)) {
    run.problem("clients still waiting 5 s after the heal");
  }
  if (!sim.run_until([&] { return sim.meshed() && store_settled(run); }, 15s)) {
    return "not meshed, or the stores do not see each other, 15 s after the heal";
  }
  // Hints go back to the primaries.
  auto pending = [&] {
    std::string out;
    for (const std::string& n : sim.names()) {
      const std::uint64_t h = stats(sim[n])->hints_pending;
      if (h) out += " " + n + "=" + std::to_string(h);
    }
    return out;
  };
  if (!sim.run_until([&] { return pending().empty(); }, 20s)) {
    run.problem("hints still pending 20 s after the heal:" + pending());
  }

  // Round 1: every key read from every replica (R=N), then read repair lands.
  Snapshot fin;
  if (std::string f = read_all(run, run.names[rng() % run.names.size()], kReplicas, &fin);
      !f.empty()) {
    run.problem("final reads: " + f);
    return std::string();
  }
  sim.run_for(1s);
  // Round 2: every node reads (R=2) what round 1 read: the replicas converged.
  for (const std::string& n : run.names) {
    Snapshot s;
    if (std::string f = read_all(run, n, 0, &s); !f.empty()) {
      run.problem("reads after repair: " + f);
      break;
    }
    for (const auto& [key, values] : fin) {
      if (s[key] != values) {
        run.problem("after read repair " + n + " reads " + key + " as " + join(s[key]) +
                    ", a read of all replicas found " + join(values));
      }
    }
  }
  check_history(run, fin);

  // The deleted key: acknowledged with a context that saw every value, it reads as not found.
  bool deleted = false;
  for (const Op& op : run.ops) {
    if (op.key == kGoneKey && op.kind == 'd' && op.done && op.result.ok()) deleted = true;
  }
  if (deleted && !fin.at(kGoneKey).empty()) {
    run.problem("the deleted key came back: " + join(fin.at(kGoneKey)));
  }

  // Siblings resolved by a put with their merged context.
  const std::size_t fin_siblings = fin.at(kSiblingKey).size();
  if (fin_siblings >= 2) {
    bool resolved = false;
    const bool ran = run_process(run, run.names[rng() % run.names.size()], [&](Recorded& c) {
      if (!c.get(kSiblingKey, kReplicas).result.ok()) return;
      resolved = c.put(kSiblingKey, true).result.ok();
    });
    if (!ran || !resolved) {
      run.problem("the put with the siblings' merged context failed");
    } else {
      fin[kSiblingKey] = {run.ops.back().value};
    }
  }

  // Round 3, after tombstones could be reaped and hand-off ran again: nothing changed, nothing
  // came back.
  sim.run_for(run.tombstone_ttl + 3 * kHandoffInterval + 1s);
  for (const std::string& n : run.names) {
    Snapshot s;
    if (std::string f = read_all(run, n, kReplicas, &s); !f.empty()) {
      run.problem("late reads: " + f);
      break;
    }
    for (const auto& [key, values] : fin) {
      if (s[key] != values) {
        run.problem("late: " + n + " reads " + key + " as " + join(s[key]) + ", was " +
                    join(values));
      }
    }
  }
  if (std::string p = pending(); !p.empty()) run.problem("hints pending at the end:" + p);
  for (const std::string& p : run.rec.problems()) run.problem(p);
  for (const std::string& p : run.rec.reused()) run.problem(p);

  if (cov) {
    ++cov->seeds;
    for (const Op& op : run.ops) {
      if (!op.done || op.kind == 'g') continue;
      if (op.kind == 'd' && op.result.ok()) ++cov->deletes_acked;
      if (op.kind != 'p') continue;
      if (op.result.ok()) ++cov->puts_acked;
      if (!op.result.ok()) ++cov->puts_refused;
      if (!op.result.ok() && op.probe) ++cov->probes_refused;
    }
    cov->gone_deleted += deleted;
    cov->siblings_resolved += fin.at(kSiblingKey).size() == 1 && fin_siblings >= 2;
    for (const std::string& n : sim.names()) {
      const Stats st = *stats(sim[n]);
      cov->hints += st.hints;
      cov->handoffs += st.handoffs;
      cov->reaped += st.tombstones_reaped;
      cov->read_repairs += st.read_repairs;
    }
    for (const std::string& f : run.faults) {
      cov->partitions += f.find(" cut ") != std::string::npos;
      cov->pauses += f.find(" pause ") != std::string::npos;
      cov->crashes += f.find(" crash ") != std::string::npos;
    }
    cov->dots_reused += run.rec.reused().size();
  }
  if (story) *story = trace_of(run);
  if (run.problems.empty()) return std::string();
  std::string out;
  for (const std::string& f : run.faults) out += "[" + f + "] ";
  const std::size_t shown = std::getenv("NODUS_SIM_ALL") ? run.problems.size() : 3;
  for (std::size_t i = 0; i < run.problems.size() && i < shown; ++i) {
    out += "\n  " + run.problems[i];
  }
  return out;
}

// Under a sanitizer a seed costs some 50 times more (2.7 s in CI's Debug build with ASan and
// UBSan, against 50 ms in Release): a fortieth of the seeds there, 14 in all.
constexpr std::uint64_t kSeedFactor = testing::kSanitized ? 40 : 1;

/// Runs seeds 1..`seeds` (or as the environment says); a failure per failing seed. Returns
/// what they exercised.
Coverage run_seeds(std::uint64_t seeds, std::size_t nodes, Mix mix) {
  std::uint64_t first = 1, last = std::max<std::uint64_t>(1, seeds / kSeedFactor);
  if (const char* one = std::getenv("NODUS_SIM_SEED")) {
    first = last = std::strtoull(one, nullptr, 10);
  }
  if (const char* from = std::getenv("NODUS_SIM_FIRST")) first = std::strtoull(from, nullptr, 10);
  if (const char* to = std::getenv("NODUS_SIM_LAST")) last = std::strtoull(to, nullptr, 10);
  const bool trace = std::getenv("NODUS_SIM_TRACE") != nullptr;
  const int max_failures = std::getenv("NODUS_SIM_ALL") ? 1000000 : 5;
  int failures = 0;
  Coverage cov;
  for (std::uint64_t seed = first; seed <= last; ++seed) {
    std::string story;
    const std::string problem =
        run_seed(seed, nodes, mix, &cov, trace && seed == last ? &story : nullptr);
    if (!story.empty()) std::printf("%s", story.c_str());
    if (!problem.empty()) {
      ADD_FAILURE() << "seed " << seed << ": " << problem;
      if (++failures == max_failures) break;
    }
  }
  std::printf("%s\n", cov.to_string().c_str());
  return cov;
}

/// The checks ran: over all the seeds of a test, each had something to check.
void expect_exercised(const Coverage& c, std::size_t nodes, bool faults_each_seed) {
  if (c.seeds < 20) return;  // one seed, or a short range: nothing to say
  EXPECT_GT(c.puts_acked, c.seeds * 50);
  EXPECT_GT(c.puts_refused, 0u);
  EXPECT_GT(c.probes_refused, 0u);
  EXPECT_GT(c.deletes_acked, c.seeds);
  EXPECT_GT(c.gone_deleted, c.seeds / 2);
  EXPECT_GT(c.siblings_resolved, c.seeds / 2);
  if (nodes > kReplicas) {  // with N nodes every node is a primary: no fallback, no hint
    EXPECT_GT(c.hints, 0u);
    EXPECT_GT(c.handoffs, 0u);
  }
  EXPECT_GT(c.reaped, 0u);
  EXPECT_GT(c.read_repairs, 0u);
  EXPECT_GT(c.partitions, 0u);
  EXPECT_GT(c.pauses, 0u);
  EXPECT_GT(c.crashes, 0u);
  if (faults_each_seed) {
    EXPECT_GE(c.partitions + c.pauses + c.crashes, c.seeds);
  }
}

TEST(KvSimHistoryTest, ThreeNodesThroughOnePartitionPauseOrCrash) {
  expect_exercised(run_seeds(200, 3, Mix::kOneFault), 3, true);
}

TEST(KvSimHistoryTest, ThreeNodesThroughDropsAndOverlappingFaults) {
  expect_exercised(run_seeds(200, 3, Mix::kManyFaults), 3, false);
}

TEST(KvSimHistoryTest, FiveNodesThroughOnePartitionPauseOrCrash) {
  expect_exercised(run_seeds(100, 5, Mix::kOneFault), 5, true);
}

TEST(KvSimHistoryTest, FiveNodesThroughDropsAndOverlappingFaults) {
  expect_exercised(run_seeds(100, 5, Mix::kManyFaults), 5, false);
}

// Riak's kv679: if a vnode's dots for a key restarted at 1 once its copy of the key was erased
// (a tombstone reaped; a fallback's copy dropped after hand-off), a new write would take a dot
// an older write of the key already had, and any context that saw the older write would
// "cover" the new one. Here: v1 is written, read and deleted; the tombstone is reaped on every
// primary; v2 is written blind and acknowledged; a put of v3 with the context of the read that
// saw only v1 must not supersede v2, which nobody read: they stay siblings. (The vnode takes a
// new epoch when its copy may lack its own writes. Before it did, the sweeps above met this in
// 9 of 600 seeds, as a dot that named two writes.)
TEST(KvSimHistoryTest, AWriteAfterItsKeyWasReapedIsNotLostToAnOlderContext) {
  SeedRun run;
  run.seed = 1;
  run.tombstone_ttl = 300ms;
  ASSERT_EQ(form_cluster(run, 3, {}), "");
  std::string v1_context;
  ASSERT_TRUE(run_process(run, "n1", [&](Recorded& c) {
    ASSERT_TRUE(c.put("k0", false).result.ok());  // v1
    ASSERT_TRUE(c.get("k0", kReplicas).result.ok());
    v1_context = c.context("k0");  // saw v1 alone
    ASSERT_TRUE(c.del("k0", true).result.ok());
  }));
  run.cluster().run_for(2s);  // past tombstone_ttl: reaped on every primary
  std::uint64_t reaped = 0;
  for (const std::string& n : run.names) reaped += stats(run.cluster()[n])->tombstones_reaped;
  ASSERT_EQ(reaped, kReplicas);
  std::string v2, v3;
  std::set<std::string> now;
  ASSERT_TRUE(run_process(run, "n1", [&](Recorded& c) {
    Op& put2 = c.put("k0", false);  // v2, blind: it supersedes nothing
    ASSERT_TRUE(put2.result.ok());
    v2 = put2.value;
    c.set_context("k0", v1_context);
    Op& put3 = c.put("k0", true);  // v3, with a context that never saw v2
    ASSERT_TRUE(put3.result.ok());
    v3 = put3.value;
    Op& got = c.get("k0", kReplicas);
    ASSERT_TRUE(got.result.ok());
    now = got.values;
  }));
  EXPECT_EQ(now, (std::set<std::string>{v2, v3})) << "v2 was acknowledged and nobody saw it\n"
                                                  << trace_of(run);
  EXPECT_TRUE(run.rec.reused().empty()) << run.rec.reused()[0];
}

// A seed is one history: two runs of it record the same operations, answers, dots and logs,
// to the millisecond of virtual time.
TEST(KvSimHistoryTest, ASeedReplaysItsHistoryExactly) {
  const std::vector<std::uint64_t> seeds =
      kSeedFactor > 1 ? std::vector<std::uint64_t>{7} : std::vector<std::uint64_t>{7, 18, 45};
  for (std::uint64_t seed : seeds) {
    for (std::size_t nodes : {3u, 5u}) {
      std::string first, second;
      (void)run_seed(seed, nodes, Mix::kManyFaults, nullptr, &first);
      (void)run_seed(seed, nodes, Mix::kManyFaults, nullptr, &second);
      EXPECT_GT(first.size(), 1000u);
      EXPECT_TRUE(first == second) << "seed " << seed << " on " << nodes << " nodes";
    }
  }
}

}  // namespace
}  // namespace nodus::kv
