// Expiry (TTL, kv/src/ttl.hpp) on the simulated network, on virtual time: an expired value reads
// as absent at once on every node, the sweep turns it into a tombstone that is counted and
// reaped, nothing expired comes back (from a replica that missed the write, or through hinted
// hand-off), puts after expiry, the term protocol's options, and the expiry kept by the durable
// engine across a restart.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "nodus/kv/client.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/kv/partition.hpp"
#include "sim/sim_cluster.hpp"
#include "sim_store.hpp"
#include "state.hpp"
#include "ttl.hpp"

namespace nodus::kv {
namespace {

using namespace std::chrono_literals;
using testing::numbered;
using testing::SimCluster;

constexpr std::uint32_t kQ = 16;

class TtlTest : public ::testing::Test {
 protected:
  // Nodes n1..nCount, meshed, the store on each (all initial members); waits for the ring.
  void start_cluster(int count, const std::function<void(Options&)>& tweak = {}) {
    sim_ = std::make_unique<SimCluster>(7);
    names_ = sim::add_meshed(*sim_, count);
    ASSERT_TRUE(sim::start_store(
        *sim_, names_,
        [&](Options& o) {
          o.partitions = kQ;
          o.replicas = std::min<std::uint32_t>(3, static_cast<std::uint32_t>(count));
          o.write_quorum = o.read_quorum = std::min<std::uint32_t>(2, o.replicas);
          o.ttl_sweep_interval = 100ms;
          if (tweak) tweak(o);
        },
        &options_));
  }
  Node& node(const std::string& name) { return sim_->node(name); }

  // Runs `body` as a process on `at` until it is done (at most 10 s of virtual time).
  template <class T>
  T on(const std::string& at, std::function<T()> body) {
    auto out = std::make_shared<std::optional<T>>();
    sim_->spawn(at, [body, out] { *out = body(); });
    EXPECT_TRUE(sim_->run_until([&] { return out->has_value(); }, 10s)) << "no answer";
    return out->has_value() ? std::move(**out) : T(Status(ErrorCode::kTimeout));
  }
  Result<std::string> put(const std::string& at, const std::string& key, const std::string& value,
                          RequestOptions o = {}) {
    const Client c(node(at));
    return on<Result<std::string>>(at, [=] { return c.put(key, value, o); });
  }
  Result<std::string> put_ttl(const std::string& at, const std::string& key,
                              const std::string& value, std::chrono::milliseconds ttl,
                              std::string context = {}) {
    RequestOptions o;
    o.ttl = ttl;
    o.context = std::move(context);
    return put(at, key, value, o);
  }
  static RequestOptions with_context(std::string context) {
    RequestOptions o;
    o.context = std::move(context);
    return o;
  }
  Result<GetResult> get(const std::string& at, const std::string& key) {
    const Client c(node(at));
    return on<Result<GetResult>>(at, [=] { return c.get(key); });
  }
  Result<Term> ask(const std::string& at, Term request) {
    return on<Result<Term>>(at, [request]() -> Result<Term> {
      auto r = call(named("nodus_kv"), request, 5000ms);
      if (!r) return Status(ErrorCode::kTimeout, r.error().to_string());
      return *r;
    });
  }
  // What node `at`'s engine holds for `key`: its values ("<tombstone>" for one), or nothing.
  std::vector<std::string> replica_values(const std::string& at, const std::string& key) {
    std::string bytes;
    if (!state_of(node(at))->engine->get(partition_of(key, kQ), key, &bytes).ok()) return {};
    std::vector<std::string> out;
    for (const Sibling& s : decode_object(bytes)->values()) {
      out.push_back(s.tombstone ? "<tombstone>" : s.value);
    }
    return out;
  }
  std::optional<Object> replica_object(const std::string& at, const std::string& key) {
    std::string bytes;
    if (!state_of(node(at))->engine->get(partition_of(key, kQ), key, &bytes).ok()) {
      return std::nullopt;
    }
    return *decode_object(bytes);
  }
  std::uint64_t total(std::atomic<std::uint64_t> Counters::*c) {
    std::uint64_t sum = 0;
    for (const auto& n : names_) sum += (state_of(node(n))->counters.*c).load();
    return sum;
  }
  bool sees(const std::string& at, const std::string& other, bool up) {
    auto v = state_of(node(at))->view();
    const int i = v->ring ? v->ring->member_index(other) : -1;
    return i >= 0 && v->up[i] == up;
  }
  std::vector<std::string> primaries(const std::string& key) {
    const Ring r = *ring(node("n1"));
    std::vector<std::string> out;
    for (std::uint32_t m : r.preference_list(partition_of(key, kQ), r.replicas())) {
      out.push_back(r.members()[m]);
    }
    return out;
  }
  void expect_not_found(const std::string& at, const std::string& key) {
    auto r = get(at, key);
    ASSERT_FALSE(r.ok()) << "read " << (r.ok() && !r->values.empty() ? r->values[0] : "") << " at "
                         << at;
    EXPECT_EQ(r.error().code(), ErrorCode::kNotFound) << r.error().to_string();
  }

  std::unique_ptr<SimCluster> sim_;
  std::vector<std::string> names_;
  std::map<std::string, Options> options_;
};

// A value read before its expiry comes with the time it has left; at its expiry every node
// reads it as absent at once, with no sweep having run (the sweep waits an hour here): gets,
// keys and explain.
TEST_F(TtlTest, AnExpiredValueReadsAsAbsentAtOnceWithoutASweep) {
  start_cluster(3, [](Options& o) { o.ttl_sweep_interval = 3600s; });
  ASSERT_OK(put_ttl("n1", "k", "v", 500ms));
  ASSERT_OK(put("n1", "stays", "v"));
  auto before = get("n2", "k");
  ASSERT_OK(before);
  EXPECT_EQ(before->values, std::vector<std::string>{"v"});
  ASSERT_TRUE(before->ttl);
  EXPECT_GT(before->ttl->count(), 0);
  EXPECT_LE(before->ttl->count(), 500);
  EXPECT_FALSE(get("n2", "stays")->ttl) << "a value without ttl never expires";

  sim_->run_for(510ms);
  for (const auto& n : names_) expect_not_found(n, "k");
  auto keys = ask("n3", tuple("keys", bin("*")));
  ASSERT_OK(keys);
  ASSERT_TRUE(keys->match({"ok", _list, _}));
  EXPECT_EQ((*keys)[1], Term(List{bin("stays")})) << keys->to_string();
  auto explain = ask("n1", tuple("explain", bin("k")));
  ASSERT_OK(explain);
  for (const Term& r : (*explain)[1].find(Term("preflist"))->as_list()) {
    EXPECT_EQ(*r.find(Term("expired")), Term(true)) << r.to_string();
    EXPECT_EQ(*r.find(Term("siblings")), Term(0)) << r.to_string();
  }
  EXPECT_EQ(total(&Counters::expired), 0u) << "no sweep ran";
  for (const auto& n : names_) {
    EXPECT_EQ(replica_values(n, "k"), std::vector<std::string>{"v"}) << n << " still holds it";
  }
}

// The sweep turns each replica's expired value into a tombstone (counted as `expired`), and the
// tombstones are reaped by the tombstone rules once kv.tombstone_ttl has passed since the
// expiry; stats and the term `stats` say how many expired.
TEST_F(TtlTest, TheSweepTurnsExpiredValuesIntoTombstonesThatAreReaped) {
  start_cluster(3, [](Options& o) { o.tombstone_ttl = 300ms; });
  ASSERT_OK(put_ttl("n1", "k", std::string(1000, 'x'), 200ms));
  ASSERT_TRUE(sim_->run_until(
      [&] {
        for (const auto& n : names_) {
          if (replica_values(n, "k") != std::vector<std::string>{"<tombstone>"}) return false;
        }
        return true;
      },
      2s))
      << "the sweep did not run on every replica";
  EXPECT_EQ(total(&Counters::expired), 3u);
  EXPECT_EQ(stats(node("n1"))->expired, 1u);
  auto st = ask("n1", Term("stats"));
  ASSERT_OK(st);
  EXPECT_EQ(*(*st)[1].find(Term("expired")), Term(1)) << st->to_string();
  EXPECT_TRUE(state_of(node("n1"))->parts[partition_of("k", kQ)].expiries.empty());
  ASSERT_TRUE(sim_->run_until(
      [&] {
        for (const auto& n : names_) {
          if (!replica_values(n, "k").empty()) return false;
        }
        return true;
      },
      10s))
      << "the tombstones were not reaped";
  EXPECT_EQ(total(&Counters::tombstones_reaped), 3u);
  expect_not_found("n2", "k");
}

// No resurrection: primary A holds v1 without ttl and misses v2 (written with v1's context and
// a ttl) while it is cut off. v2 expires and is swept on the other two; A comes back. A read
// anywhere, A's included, finds nothing (v2's tombstone supersedes v1), read repair and the
// reap check give A the tombstone rather than spreading v1, and once reaped nothing is left.
TEST_F(TtlTest, AnExpiredKeyDoesNotComeBackFromAReplicaThatMissedItsWrite) {
  start_cluster(3, [](Options& o) { o.tombstone_ttl = 300ms; });
  ASSERT_OK(put("n1", "k", "v1"));
  ASSERT_TRUE(sim_->run_until([&] { return !replica_values("n3", "k").empty(); }, 5s));
  auto v1 = get("n1", "k");
  ASSERT_OK(v1);
  sim_->partition({"n3"}, {"n1", "n2"});
  ASSERT_TRUE(
      sim_->run_until([&] { return sees("n1", "n3", false) && sees("n2", "n3", false); }, 10s));
  ASSERT_OK(put_ttl("n1", "k", "v2", 300ms, v1->context));
  ASSERT_TRUE(sim_->run_until([&] { return total(&Counters::expired) == 2; }, 3s))
      << "n1 and n2 did not sweep";
  sim_->run_for(1s);  // reap checks come and go: n3 is away, so the tombstones stay
  EXPECT_EQ(replica_values("n3", "k"), std::vector<std::string>{"v1"});
  EXPECT_EQ(replica_values("n1", "k"), std::vector<std::string>{"<tombstone>"});
  EXPECT_EQ(replica_values("n2", "k"), std::vector<std::string>{"<tombstone>"});
  sim_->heal();
  ASSERT_TRUE(
      sim_->run_until([&] { return sees("n1", "n3", true) && sees("n3", "n1", true); }, 10s));
  expect_not_found("n3", "k");  // the stale replica coordinates: v1 is dominated
  expect_not_found("n1", "k");
  ASSERT_TRUE(sim_->run_until(
      [&] {
        for (const auto& n : names_) {
          if (!replica_values(n, "k").empty()) return false;
        }
        return true;
      },
      20s))
      << "n3 holds " << replica_values("n3", "k").size();
  for (const auto& n : names_) expect_not_found(n, "k");
  sim_->run_for(2s);
  for (const auto& n : names_) EXPECT_TRUE(replica_values(n, "k").empty()) << n;
}

// A fallback keeps a write with a ttl as a hint for a primary that is away; the hint expires
// there, is swept into a tombstone and handed back as one: the primary, which held an older
// value, ends with nothing readable, and a hint handed back before its expiry keeps it.
TEST_F(TtlTest, AHintedValueIsHandedBackWithItsExpiryAndDoesNotResurrect) {
  start_cluster(3, [](Options& o) {
    o.replicas = 2;
    o.write_quorum = o.read_quorum = 2;
    o.tombstone_ttl = 300ms;
  });
  // Keys whose primaries are n1 and n3 (n2 is their fallback while n3 is away).
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < 2; ++i) {
    const std::string k = numbered("h", i);
    auto p = primaries(k);
    if (std::find(p.begin(), p.end(), "n1") != p.end() &&
        std::find(p.begin(), p.end(), "n3") != p.end()) {
      keys.push_back(k);
    }
  }
  const std::string& old_key = keys[0];   // n3 holds v1; v2 with a short ttl is hinted
  const std::string& long_key = keys[1];  // hinted with a long ttl, handed back before it
  ASSERT_OK(put("n1", old_key, "v1"));
  ASSERT_TRUE(sim_->run_until([&] { return !replica_values("n3", old_key).empty(); }, 5s));
  auto v1 = get("n1", old_key);
  ASSERT_OK(v1);
  sim_->partition({"n3"}, {"n1", "n2"});
  ASSERT_TRUE(
      sim_->run_until([&] { return sees("n1", "n3", false) && sees("n2", "n3", false); }, 10s));
  ASSERT_OK(put_ttl("n1", old_key, "v2", 300ms, v1->context));
  ASSERT_OK(put_ttl("n1", long_key, "long", 60s));
  EXPECT_EQ(replica_values("n2", old_key), std::vector<std::string>{"v2"}) << "n2 keeps a hint";
  ASSERT_TRUE(
      sim_->run_until([&] { return state_of(node("n2"))->counters.expired.load() == 1; }, 3s))
      << "the hint was not swept";
  EXPECT_EQ(replica_values("n2", old_key), std::vector<std::string>{"<tombstone>"});
  const std::uint64_t expiry = replica_object("n2", long_key)->values()[0].expiry_ms;
  EXPECT_GT(expiry, 0u);
  sim_->heal();
  ASSERT_TRUE(sim_->run_until(
      [&] {
        return stats(node("n2"))->hints_pending == 0 && !replica_values("n3", long_key).empty();
      },
      20s))
      << "the hints were not handed back";
  // The long one arrived with its expiry; the short one as its tombstone, superseding v1.
  auto handed = replica_object("n3", long_key);
  ASSERT_TRUE(handed);
  EXPECT_EQ(handed->values()[0].expiry_ms, expiry);
  EXPECT_EQ(handed->values()[0].value, "long");
  EXPECT_NE(replica_values("n3", old_key), std::vector<std::string>{"v1"});
  expect_not_found("n3", old_key);
  expect_not_found("n1", old_key);
  EXPECT_EQ(get("n3", long_key)->values, std::vector<std::string>{"long"});
  ASSERT_TRUE(sim_->run_until(
      [&] {
        for (const auto& n : names_) {
          if (!replica_values(n, old_key).empty()) return false;
        }
        return true;
      },
      20s))
      << "the tombstones of the expired key were not reaped";
  expect_not_found("n3", old_key);
}

// After expiry, a put with the context of a read that saw the value supersedes it as usual, and
// a blind put makes a fresh value, not a sibling of what expired; a put without ttl over one
// with ttl takes the expiry away.
TEST_F(TtlTest, PutsAfterExpiryMakeFreshValues) {
  start_cluster(3);
  ASSERT_OK(put_ttl("n1", "a", "old", 200ms));
  auto read = get("n2", "a");
  ASSERT_OK(read);
  sim_->run_for(300ms);
  expect_not_found("n1", "a");
  ASSERT_OK(put("n2", "a", "new", with_context(read->context)));
  auto a = get("n3", "a");
  ASSERT_OK(a);
  EXPECT_EQ(a->values, std::vector<std::string>{"new"});
  EXPECT_FALSE(a->ttl);

  ASSERT_OK(put_ttl("n1", "b", "old", 200ms));
  sim_->run_for(300ms);  // expired, and swept into a tombstone
  ASSERT_OK(put("n1", "b", "fresh"));
  auto b = get("n1", "b");
  ASSERT_OK(b);
  EXPECT_EQ(b->values, std::vector<std::string>{"fresh"});
  EXPECT_EQ(replica_values("n1", "b"), std::vector<std::string>{"fresh"}) << "no tombstone kept";

  ASSERT_OK(put_ttl("n1", "c", "short", 200ms));
  auto c = get("n1", "c");
  ASSERT_OK(put("n1", "c", "kept", with_context(c->context)));
  sim_->run_for(500ms);
  auto kept = get("n2", "c");
  ASSERT_OK(kept);
  EXPECT_EQ(kept->values, std::vector<std::string>{"kept"});
  EXPECT_FALSE(kept->ttl);
  // a and b, each swept on three replicas; c was overwritten before its expiry.
  EXPECT_EQ(total(&Counters::expired), 6u);
}

// The term protocol: {put, K, V, #{ttl => Ms}}, {get, K, #{with_ttl => true}} answering the ms
// left (or infinity), and clear errors for a bad ttl or one where it has no place.
TEST_F(TtlTest, TheTermProtocolTakesTtlAndSaysWhatIsLeft) {
  start_cluster(3, [](Options& o) { o.ttl_sweep_interval = 3600s; });
  ASSERT_OK(ask("n1", tuple("put", bin("t"), bin("v"), map({{"ttl", 1000}}))));
  auto got = ask("n2", tuple("get", bin("t"), map({{"with_ttl", true}})));
  ASSERT_OK(got);
  auto m = got->match({"ok", _list, _bin, _int});
  ASSERT_TRUE(m) << got->to_string();
  EXPECT_GT(m[2].as_int(), 0);
  EXPECT_LE(m[2].as_int(), 1000);
  auto plain = ask("n2", tuple("get", bin("t")));
  EXPECT_TRUE(plain->match({"ok", _list, _bin})) << "without with_ttl: the usual reply";
  ASSERT_OK(ask("n1", tuple("put", bin("u"), bin("v"))));
  auto forever = ask("n3", tuple("get", bin("u"), map({{"with_ttl", true}})));
  EXPECT_TRUE(forever->match({"ok", _list, _bin, "infinity"})) << forever->to_string();

  const std::pair<Term, const char*> bad[] = {
      {tuple("put", bin("t"), bin("v"), map({{"ttl", 0}})), "ttl must be an integer >= 1"},
      {tuple("put", bin("t"), bin("v"), map({{"ttl", -5}})), "ttl must be an integer >= 1"},
      {tuple("put", bin("t"), bin("v"), map({{"ttl", "soon"}})), "ttl must be an integer"},
      {tuple("put", bin("t"), bin("v"), map({{"ttl", std::int64_t{1} << 60}})), "above the limit"},
      {tuple("get", bin("t"), map({{"ttl", 10}})), "ttl is an option of put only"},
      {tuple("delete", bin("t"), map({{"ttl", 10}})), "ttl is an option of put only"},
      {tuple("put", bin("t"), bin("v"), map({{"with_ttl", true}})), "with_ttl is an option of get"},
      {tuple("get", bin("t"), map({{"with_ttl", 1}})), "with_ttl must be true or false"},
  };
  for (const auto& [req, why] : bad) {
    auto r = ask("n1", req);
    ASSERT_OK(r);
    auto e = r->match({"error", {"badarg", _bin}});
    ASSERT_TRUE(e) << req.to_string() << " -> " << r->to_string();
    EXPECT_NE(e[0].as_bin().find(why), std::string::npos) << e[0].as_bin();
  }
  RequestOptions negative;
  negative.ttl = -1ms;
  auto neg = put("n1", "t", "v", negative);
  EXPECT_EQ(neg.error().code(), ErrorCode::kBadArg);
  // The key is as the first put left it, and the node serves on.
  EXPECT_EQ(get("n1", "t")->values, std::vector<std::string>{"v"});
}

// The encoding: an object without expiry keeps the version-2 bytes (data written before TTL
// stays readable, its digests unchanged); one with an expiry is version 3, and both decode.
TEST(TtlObjectTest, ObjectsKeepTheirOldEncodingUnlessAValueExpires) {
  Object plain = Object().update({}, Sibling{"v", 42 << 16, false, 0}, Actor{7, 1});
  const std::string old = encode_object(plain);
  EXPECT_EQ(static_cast<unsigned char>(old[1]), 2u);
  EXPECT_EQ(*decode_object(old), plain);
  Object timed = plain.update(plain.join(), Sibling{"w", 43 << 16, false, 1234}, Actor{7, 1});
  const std::string bytes = encode_object(timed);
  EXPECT_EQ(static_cast<unsigned char>(bytes[1]), 3u);
  auto back = decode_object(bytes);
  ASSERT_OK(back);
  EXPECT_EQ(*back, timed);
  EXPECT_EQ(back->values()[0].expiry_ms, 1234u);
  EXPECT_EQ(ttl_left_ms(timed, 1000), std::optional<std::uint64_t>(234));
  EXPECT_FALSE(ttl_left_ms(timed, 1234));
  EXPECT_TRUE(reads_absent(timed, 1234));
  EXPECT_EQ(expire_values(timed, 1234), 1u);
  EXPECT_TRUE(all_tombstones(timed));
  EXPECT_EQ(timed.join(), back->join()) << "the dot stays";
}

// The index the sweep takes keys from: earliest expiry first, keys due at the same moment in key
// order, a key noted again moved (sooner or later) and forgotten at 0, and its bytes counted:
// at least each key's bytes while it is in, back down when it is out.
TEST(ExpiryIndexTest, TakesDueKeysEarliestFirstAndCountsItsBytes) {
  ExpiryIndex index;
  EXPECT_EQ(index.memory_bytes(), 0u);
  for (int i = 0; i < 300; ++i)
    index.note(numbered("k", i), 1000 + static_cast<std::uint64_t>(i % 7));
  EXPECT_EQ(index.size(), 300u);
  const std::uint64_t full = index.memory_bytes();
  EXPECT_GE(full, 300u * (3 + 16));  // every key's bytes and an entry header at least
  index.note("k5", 10);              // sooner
  index.note("k0", 5000);            // later
  index.note("k1", 0);               // holds nothing that expires now
  index.note("absent", 0);           // nothing
  index.note("k3", 1003);            // unchanged
  EXPECT_EQ(index.size(), 299u);
  EXPECT_EQ(index.take_due(999, 10), std::vector<std::string>{"k5"});
  // Due at 1000: k7, k14, ... (i % 7 == 0), in key order; the limit holds.
  std::vector<std::string> at1000;
  for (int i = 7; i < 300; i += 7) at1000.push_back(numbered("k", i));
  std::sort(at1000.begin(), at1000.end());
  EXPECT_EQ(index.take_due(1000, 5), std::vector<std::string>(at1000.begin(), at1000.begin() + 5));
  EXPECT_EQ(index.take_due(1000, 100), std::vector<std::string>(at1000.begin() + 5, at1000.end()));
  std::vector<std::string> rest = index.take_due(1006, 1000);
  EXPECT_EQ(rest.size(), 299u - 2 - at1000.size());  // not k5 (taken), k0 (5000)
  for (std::size_t i = 1; i < rest.size(); ++i) {
    const auto expiry = [](const std::string& k) { return std::stoi(k.substr(1)) % 7; };
    EXPECT_LE(expiry(rest[i - 1]), expiry(rest[i])) << rest[i - 1] << " before " << rest[i];
  }
  EXPECT_EQ(index.take_due(4999, 10), std::vector<std::string>{});
  EXPECT_EQ(index.take_due(5000, 10), std::vector<std::string>{"k0"});
  EXPECT_TRUE(index.empty());
  EXPECT_LT(index.memory_bytes(), full / 2);  // the entries' bytes are back; the table stays
  ExpiryIndex moved(std::move(index));
  moved.note("m", 1);
  EXPECT_EQ(moved.take_due(1, 10), std::vector<std::string>{"m"});
}

// The durable engine keeps a value's expiry across a restart, and the restarted store finds the
// keys that expire (its sweep index is rebuilt from the engine) and sweeps them.
TEST_F(TtlTest, TheDurableEngineKeepsTheExpiryAcrossARestart) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("nodus-ttl-test-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto rocksdb = [dir](std::uint32_t partitions) -> std::unique_ptr<Engine> {
    auto e = new_rocksdb_engine(dir.string(), partitions, SyncMode::kNone);
    EXPECT_TRUE(e.ok()) << (e.ok() ? "" : e.error().to_string());
    return e.ok() ? std::move(*e) : nullptr;
  };
  start_cluster(1, [&](Options& o) {
    o.engine = rocksdb;
    o.ttl_sweep_interval = 100ms;
  });
  ASSERT_OK(put_ttl("n1", "k", "v", 2000ms));
  ASSERT_OK(put("n1", "plain", "p"));
  const std::uint64_t expiry = replica_object("n1", "k")->values()[0].expiry_ms;
  sim_->crash("n1");
  sim_->add("n1");
  ASSERT_OK(start(node("n1"), options_["n1"]));
  ASSERT_TRUE(sim_->run_until([&] { return ring(node("n1")) && !ring(node("n1"))->empty(); }, 5s));
  EXPECT_EQ(replica_object("n1", "k")->values()[0].expiry_ms, expiry);
  EXPECT_EQ(state_of(node("n1"))->parts[partition_of("k", kQ)].expiries.size(), 1u);
  EXPECT_EQ(get("n1", "k")->values, std::vector<std::string>{"v"});
  ASSERT_TRUE(sim_->run_until(
      [&] { return replica_values("n1", "k") == std::vector<std::string>{"<tombstone>"}; }, 5s));
  EXPECT_EQ(stats(node("n1"))->expired, 1u);
  expect_not_found("n1", "k");
  EXPECT_EQ(get("n1", "plain")->values, std::vector<std::string>{"p"});
  sim_.reset();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace nodus::kv
