// The store on the simulated network (tests/sim/sim_cluster.hpp): several nodes in one thread
// on virtual time, so a request can be left waiting for a replica while the test cuts, pauses
// or floods a node, and the outcome does not depend on the machine's speed. The quorum paths
// that need a failing replica live here: a replica's node going down, a deadline passing, a
// vnode's mailbox flooded while its timers fall due.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "../test_support.hpp"
#include "nodus/kv/client.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/kv/partition.hpp"
#include "nodus/node/gen_server.hpp"
#include "nodus/node/supervisor.hpp"
#include "sim/sim_cluster.hpp"
#include "sim_store.hpp"
#include "state.hpp"
#include "test_engines.hpp"

namespace nodus::kv {
namespace {

using namespace std::chrono_literals;
using testing::SimCluster;

using testing::numbered;

class KvSimTest : public ::testing::Test {
 protected:
  // Nodes n1..nCount on the simulated network, meshed, the store on each with them all as
  // initial members; waits for the ring everywhere.
  void start_cluster(int count, const std::function<void(NodeOptions&)>& node_tweak = {},
                     const std::function<void(Options&)>& tweak = {}) {
    sim_.reset();
    sim_ = std::make_unique<SimCluster>(seed_);
    const auto names = sim::add_meshed(*sim_, count, node_tweak);
    options_.clear();
    ASSERT_TRUE(sim::start_store(*sim_, names, tweak, &options_));
  }
  Node& node(const std::string& name) { return sim_->node(name); }

  // A put started as a process on node `at`; its outcome lands in the returned slot.
  using Outcome = std::shared_ptr<std::optional<Status>>;
  Outcome put_async(const std::string& at, const std::string& key, const std::string& value,
                    RequestOptions o = {}) {
    auto out = std::make_shared<std::optional<Status>>();
    const Client c(node(at));
    sim_->spawn(at, [c, key, value, o, out] {
      auto r = c.put(key, value, o);
      *out = r.ok() ? Status() : r.error();
    });
    return out;
  }
  // A delete started as a process on node `at`.
  Outcome del_async(const std::string& at, const std::string& key, RequestOptions o = {}) {
    auto out = std::make_shared<std::optional<Status>>();
    const Client c(node(at));
    sim_->spawn(at, [c, key, o, out] {
      auto r = c.del(key, o);
      *out = r.ok() ? Status() : r.error();
    });
    return out;
  }
  // A get started as a process on node `at`.
  using GetOutcome = std::shared_ptr<std::optional<Result<GetResult>>>;
  GetOutcome get_async(const std::string& at, const std::string& key, RequestOptions o = {}) {
    auto out = std::make_shared<std::optional<Result<GetResult>>>();
    const Client c(node(at));
    sim_->spawn(at, [c, key, o, out] { *out = c.get(key, o); });
    return out;
  }
  // What node `at`'s engine holds for `key`, decoded ("<tombstone>" for one); empty: nothing.
  std::vector<std::string> replica_values(const std::string& at, const std::string& key) {
    std::string bytes;
    if (!state_of(node(at))->engine->get(partition_of(key, 16), key, &bytes).ok()) return {};
    std::vector<std::string> out;
    for (const Sibling& s : decode_object(bytes)->values()) {
      out.push_back(s.tombstone ? "<tombstone>" : s.value);
    }
    return out;
  }
  std::uint64_t counter(std::atomic<std::uint64_t> Counters::*c) {
    std::uint64_t sum = 0;
    for (const char* n : {"n1", "n2", "n3"}) sum += (state_of(node(n))->counters.*c).load();
    return sum;
  }
  std::uint64_t hints_pending() {
    std::uint64_t sum = 0;
    for (const char* n : {"n1", "n2", "n3"}) sum += stats(node(n))->hints_pending;
    return sum;
  }
  // Runs the simulation until `o` is known, at most `limit` of virtual time.
  template <class T>
  bool settle(const std::shared_ptr<std::optional<T>>& o, std::chrono::milliseconds limit) {
    return sim_->run_until([&] { return o->has_value(); }, limit);
  }
  // True when node `at`'s store sees node `other` up (or down, with up = false).
  bool sees(const std::string& at, const std::string& other, bool up = true) {
    auto v = state_of(node(at))->view();
    const int i = v->ring ? v->ring->member_index(other) : -1;
    return i >= 0 && v->up[i] == up;
  }
  // Two nodes n1 and n2 partitioned apart: "first" put to "k" through n1, then "second"
  // through n2 (each with `o`), each side checked to hold only its own, the partition healed;
  // `*values` is what a get of "k" through n1 then answers, sorted.
  void write_on_both_sides(const RequestOptions& o, std::vector<std::string>* values) {
    sim_->partition({"n1"}, {"n2"});
    ASSERT_TRUE(
        sim_->run_until([&] { return sees("n1", "n2", false) && sees("n2", "n1", false); }, 10s));
    Outcome first = put_async("n1", "k", "first", o);
    ASSERT_TRUE(settle(first, 5s));
    ASSERT_OK(**first);
    sim_->run_for(10ms);
    Outcome second = put_async("n2", "k", "second", o);
    ASSERT_TRUE(settle(second, 5s));
    ASSERT_OK(**second);
    EXPECT_EQ(replica_values("n1", "k"), std::vector<std::string>{"first"});
    EXPECT_EQ(replica_values("n2", "k"), std::vector<std::string>{"second"});
    sim_->heal();
    ASSERT_TRUE(sim_->run_until([&] { return sees("n1", "n2") && sees("n2", "n1"); }, 10s));
    GetOutcome got = get_async("n1", "k");
    ASSERT_TRUE(settle(got, 5s));
    ASSERT_OK(**got);
    *values = (**got)->values;
    std::sort(values->begin(), values->end());
  }
  // The primaries of `key`, as node names, in preference order.
  std::vector<std::string> primaries(const std::string& key) { return sim::primaries(*sim_, key); }
  // The requests node `at`'s vnode of `key` coordinates now.
  std::size_t in_flight(const std::string& at, const std::string& key) {
    auto info = node(at).process_info(node(at).whereis(vnode_name(partition_of(key, 16))));
    if (!info.ok() || !info->status) return 0;
    const Term* puts = info->status->find(Term("puts_in_flight"));
    const Term* gets = info->status->find(Term("gets_in_flight"));
    return static_cast<std::size_t>((puts ? puts->as_int() : 0) + (gets ? gets->as_int() : 0));
  }

  std::string debug_state(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) {
      auto st = stats(node(n));
      auto r = ring(node(n));
      out.append("\n").append(n);
      out.append(": epoch ").append(std::to_string(r ? r->epoch() : 0));
      out.append(", bad ").append(std::to_string(st->bad_messages));
      out.append(", expired ").append(std::to_string(st->expired_skipped));
      out.append(", hints ").append(std::to_string(st->hints_pending));
      out.append(", linked to");
      for (Atom a : node(n).nodes()) out.append(" ").append(a.name());
    }
    return out;
  }
  std::map<std::string, Options> options_;  // each node's store options, for restarts
  std::uint64_t seed_ = 1;
  bool next_durable_ = true;
  std::unique_ptr<SimCluster> sim_;
};

// A put waiting for a replica whose node goes down ends when the coordinator sees the node
// down: W can no longer be met, so no_quorum then, not timeout at the deadline (8 s here).
TEST_F(KvSimTest, APutWhoseReplicaNodeGoesDownFailsWhenTheNodeIsSeenDown) {
  start_cluster(3);
  sim_->partition({"n1"}, {"n3"});  // n1 sees n3 down after down_after (2 s)
  const auto t0 = sim_->now();
  RequestOptions w3;
  w3.w = 3;
  w3.timeout = 8000ms;
  Outcome r = put_async("n1", "k", "v", w3);
  ASSERT_TRUE(settle(r, 20s));
  EXPECT_EQ((*r)->code(), ErrorCode::kNoQuorum) << (*r)->to_string();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(sim_->now() - t0);
  EXPECT_LT(took, 3500ms) << "answered after " << took.count() << " ms";
  EXPECT_EQ(in_flight("n1", "k"), 0u);
}

// Likewise a get: R = 3 cannot be met once a replica's node is down.
TEST_F(KvSimTest, AGetWhoseReplicaNodeGoesDownFailsWhenTheNodeIsSeenDown) {
  start_cluster(3);
  ASSERT_TRUE(settle(put_async("n1", "k", "v"), 5s));
  sim_->partition({"n1"}, {"n3"});
  const auto t0 = sim_->now();
  RequestOptions r3;
  r3.r = 3;
  r3.timeout = 8000ms;
  GetOutcome out = get_async("n1", "k", r3);
  ASSERT_TRUE(settle(out, 20s));
  ASSERT_FALSE((*out)->ok());
  EXPECT_EQ((*out)->error().code(), ErrorCode::kNoQuorum) << (*out)->error().to_string();
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(sim_->now() - t0), 3500ms);
}

// A vnode whose mailbox is flooded while its timers fall due keeps expiring its requests:
// a put left waiting for a cut replica (never seen down here) is answered timeout at its
// deadline. (A bounded mailbox used to refuse the vnode's own tick; the request then waited
// forever.)
TEST_F(KvSimTest, AVnodeKeepsExpiringRequestsAfterItsMailboxWasFlooded) {
  start_cluster(
      3, [](NodeOptions& o) { o.down_after = 60s; }, [](Options& o) { o.vnode_queue = 2; });
  ASSERT_OK(register_protocol());
  sim_->partition({"n1"}, {"n3"});
  RequestOptions w3;
  w3.w = 3;
  w3.timeout = 1000ms;
  const auto t0 = sim_->now();
  Outcome r = put_async("n1", "k", "v", w3);
  ASSERT_TRUE(sim_->run_until([&] { return in_flight("n1", "k") == 1; }, 5s));
  // n1 stands still while its vnode's mailbox fills and its next tick falls due.
  sim_->pause("n1");
  const std::uint32_t p = partition_of("k", 16);
  for (std::uint64_t i = 0; i < 50; ++i) {
    send(Pid(node("n1").whereis(vnode_name(p))), ReplicaGet{p, 5000 + i, 0, 0, "k"});
  }
  sim_->run_for(50ms);
  sim_->resume("n1");
  ASSERT_TRUE(settle(r, 5s)) << "the put was never answered";
  EXPECT_EQ((*r)->code(), ErrorCode::kTimeout) << (*r)->to_string();
  // By the store at the deadline, not by the client's call giving up 500 ms later.
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(sim_->now() - t0), 1100ms);
  EXPECT_EQ(in_flight("n1", "k"), 0u);
}

// Only members change the ring: a linked node outside it (a client's node, or a hidden one)
// that sends a ring of a higher epoch is refused and counted (every member used to adopt it,
// and the store stopped serving); a member's newer ring is taken and spreads.
TEST_F(KvSimTest, OnlyMembersChangeTheRing) {
  start_cluster(3);
  ASSERT_TRUE(settle(put_async("n1", "before", "v"), 5s));
  sim_->add("outsider", {"n1"});
  sim_->add("hidden", {"n1"}, [](NodeOptions& o) { o.hidden = true; });
  ASSERT_TRUE(sim_->run_until(
      [&] {
        const auto ns = node("n1").nodes();
        return std::find(ns.begin(), ns.end(), Atom("outsider")) != ns.end() &&
               node("n1").is_hidden(Atom("hidden"));
      },
      10s));
  const std::uint64_t bad = stats(node("n1"))->bad_messages;
  for (const char* from : {"outsider", "hidden"}) {
    sim_->spawn(from, [] {
      send(named("nodus_kv", "n1"),
           RingGossip{1000, 16, 3, {"mallory"}, std::vector<std::uint16_t>(16, 0), {}, {}});
    });
  }
  sim_->run_for(3s);
  for (const char* n : {"n1", "n2", "n3"}) EXPECT_EQ(ring(node(n))->epoch(), 1u) << n;
  EXPECT_EQ(stats(node("n1"))->bad_messages, bad + 2);
  GetOutcome got = get_async("n2", "before");
  ASSERT_TRUE(settle(got, 5s));
  EXPECT_OK(**got);
  // A member's ring of a higher epoch is taken, and gossip brings it to every member.
  const Ring next = *ring(node("n2"))->with_members(ring(node("n2"))->members());
  ASSERT_EQ(next.epoch(), 2u);
  sim_->spawn("n2", [next] {
    send(named("nodus_kv", "n1"), RingGossip{next.epoch(),
                                             next.partitions(),
                                             next.replicas(),
                                             next.members(),
                                             next.owners(),
                                             {},
                                             {}});
  });
  EXPECT_TRUE(sim_->run_until(
      [&] {
        for (const char* n : {"n1", "n2", "n3"}) {
          if (ring(node(n))->epoch() != 2u) return false;
        }
        return true;
      },
      10s));
}

// W + R > N reads an acknowledged write only while both reach primaries: under sloppy quorum a
// fallback that never saw the write answers not_found, which counts toward R (Riak's
// notfound_ok), so a read can miss the write. PR counts primaries only: with PW + PR > N such a
// read fails no_quorum instead. (kv.hpp says so at read_quorum.)
TEST_F(KvSimTest, AFallbacksNotFoundCountsTowardRButNotTowardPr) {
  start_cluster(4);
  const std::string key = "k";
  const std::vector<std::string> p = primaries(key);
  ASSERT_EQ(p.size(), 3u);
  std::string other;
  for (const char* n : {"n1", "n2", "n3", "n4"}) {
    if (std::find(p.begin(), p.end(), n) == p.end()) other = n;
  }
  // p[2] misses the write: cut off, not yet seen down; W = PW = 2 are p[0] and p[1].
  sim_->partition({p[2]}, {p[0], p[1], other});
  RequestOptions w2;
  w2.w = 2;
  w2.pw = 2;
  Outcome put = put_async(p[0], key, "v", w2);
  ASSERT_TRUE(settle(put, 5s));
  ASSERT_OK(**put);
  // Now only p[2] and `other` are up: a read finds the primary p[2] and the fallback `other`.
  sim_->heal();
  sim_->pause(p[0]);
  sim_->pause(p[1]);
  ASSERT_TRUE(sim_->run_until(
      [&] {
        return sees(p[2], p[0], false) && sees(p[2], p[1], false) && sees(p[2], other) &&
               sees(other, p[2]);
      },
      20s));
  RequestOptions r2;
  r2.r = 2;
  GetOutcome missed = get_async(p[2], key, r2);
  ASSERT_TRUE(settle(missed, 5s));
  EXPECT_EQ((*missed)->error().code(), ErrorCode::kNotFound) << "R = 2 met by not_founds";
  r2.pr = 2;
  GetOutcome refused = get_async(p[2], key, r2);
  ASSERT_TRUE(settle(refused, 5s));
  EXPECT_EQ((*refused)->error().code(), ErrorCode::kNoQuorum);
  EXPECT_EQ((*refused)->error().message(), "pr: needed 2, got 1");
}

// DW counts replicas whose engine is durable (Engine::durable): here only n1's. (The
// coordinator used to count its own write durable whatever its engine, and replicas too.)
TEST_F(KvSimTest, ADurableWriteQuorumCountsOnlyDurableEngines) {
  start_cluster(3, {}, [this](Options& o) {
    if (next_durable_) {
      o.engine = durable_memory_engine;
    }
    next_durable_ = false;  // n1 (started first) only
  });
  for (const char* at : {"n1", "n2"}) {
    RequestOptions dw1;
    dw1.dw = 1;
    Outcome ok = put_async(at, "k", at, dw1);
    ASSERT_TRUE(settle(ok, 5s));
    EXPECT_OK(**ok) << "coordinated by " << at;
    RequestOptions dw2;
    dw2.dw = 2;
    Outcome refused = put_async(at, "k", at, dw2);
    ASSERT_TRUE(settle(refused, 5s));
    EXPECT_EQ((*refused)->code(), ErrorCode::kNoQuorum) << "coordinated by " << at;
    // (got: the durable acks when it could no longer be met, 0 or 1 by arrival order)
    EXPECT_EQ((*refused)->message().rfind("dw: needed 2, got ", 0), 0u) << (*refused)->message();
  }
}

// A delete made while a primary is away keeps its tombstones while that primary could bring
// the value back, then, once it returns, they are reaped without any read: the reap check runs
// again while a primary is away, repairs the primary that missed the delete, and reaps once
// every primary holds the tombstone. (It ran once; the tombstones stayed until a read.)
TEST_F(KvSimTest, ATombstoneIsReapedWithoutAReadOnceAPrimaryThatMissedTheDeleteReturns) {
  start_cluster(3, {}, [](Options& o) { o.tombstone_ttl = 200ms; });
  ASSERT_TRUE(settle(put_async("n1", "kept", "v"), 5s));
  ASSERT_TRUE(sim_->run_until([&] { return !replica_values("n3", "kept").empty(); }, 5s));
  sim_->partition({"n3"}, {"n1", "n2"});
  ASSERT_TRUE(
      sim_->run_until([&] { return sees("n1", "n3", false) && sees("n2", "n3", false); }, 10s));
  Outcome del = del_async("n1", "kept");
  ASSERT_TRUE(settle(del, 5s));
  ASSERT_OK(**del);
  // Checks come and go, well past the ttl; the tombstones stay, as n3 still holds the value.
  const std::uint64_t checks = counter(&Counters::reap_checks);
  ASSERT_TRUE(sim_->run_until([&] { return counter(&Counters::reap_checks) >= checks + 3; }, 10s));
  EXPECT_EQ(replica_values("n1", "kept"), std::vector<std::string>{"<tombstone>"});
  EXPECT_EQ(replica_values("n2", "kept"), std::vector<std::string>{"<tombstone>"});
  EXPECT_EQ(replica_values("n3", "kept"), std::vector<std::string>{"v"});
  EXPECT_EQ(counter(&Counters::tombstones_reaped), 0u);
  sim_->heal();
  EXPECT_TRUE(sim_->run_until(
      [&] {
        for (const char* n : {"n1", "n2", "n3"}) {
          if (!replica_values(n, "kept").empty()) return false;
        }
        return true;
      },
      20s))
      << "n3: " << replica_values("n3", "kept").size();
  EXPECT_EQ(counter(&Counters::tombstones_reaped), 3u);
  GetOutcome got = get_async("n2", "kept");
  ASSERT_TRUE(settle(got, 5s));
  EXPECT_EQ((*got)->error().code(), ErrorCode::kNotFound);
}

// Puts `count` keys prefix0.. with `value` through n1 (W = 2), each checked.
#define PUT_KEYS(prefix, count, value)                         \
  for (int i = 0; i < (count); ++i) {                          \
    Outcome put = put_async("n1", numbered(prefix, i), value); \
    ASSERT_TRUE(settle(put, 5s));                              \
    ASSERT_OK(**put) << numbered(prefix, i);                   \
  }

// A fallback offers a hinted key to its primary once and waits for the answer (up to a request
// timeout) rather than offering it again every hand-off round (100 ms here) while the primary
// is slow to answer.
TEST_F(KvSimTest, AHintIsNotOfferedAgainWhileItsOfferIsUnanswered) {
  start_cluster(3, {}, [](Options& o) { o.replicas = 2; });
  sim_->partition({"n3"}, {"n1", "n2"});
  ASSERT_TRUE(
      sim_->run_until([&] { return sees("n1", "n3", false) && sees("n2", "n3", false); }, 10s));
  PUT_KEYS("h", 60, "v");
  const std::uint64_t hinted = hints_pending();
  ASSERT_GT(hinted, 10u);
  sim_->heal();
  ASSERT_TRUE(sim_->run_until([&] { return sees("n1", "n3") && sees("n2", "n3"); }, 10s));
  // n3 stands still (not yet seen down: that takes 2 s): the offers go unanswered.
  sim_->pause("n3");
  const std::uint64_t offers = counter(&Counters::handoff_offers);
  sim_->run_for(1800ms);
  ASSERT_TRUE(sees("n1", "n3") && sees("n2", "n3"));
  EXPECT_LE(counter(&Counters::handoff_offers) - offers, hinted) << "offered over and over";
  sim_->resume("n3");
  EXPECT_TRUE(sim_->run_until([&] { return hints_pending() == 0; }, 30s)) << hints_pending();
}

// Hinted keys whose hand-off keeps failing (too large for the primary, here) do not starve the
// others: each round goes on after the last key offered. (Every round used to start from the
// first key and stop after 1,000 offers.)
TEST_F(KvSimTest, FailingHandOffsDoNotStarveTheRest) {
  int started = 0;
  start_cluster(3, {}, [&](Options& o) {
    o.replicas = 2;
    if (++started == 3) {  // n3 stores objects of 4 KiB at most
      o.max_value_bytes = 1024;
      o.max_object_bytes = 4096;
    }
  });
  // A hash tag whose partition has n3 as a primary: its keys share one vnode, in key order.
  std::string tag;
  for (int i = 0; tag.empty(); ++i) {
    const std::string t = "{" + numbered("t", i) + "}";
    const auto p = primaries(t);
    if (std::find(p.begin(), p.end(), "n3") != p.end()) tag = t;
  }
  sim_->partition({"n3"}, {"n1", "n2"});
  ASSERT_TRUE(
      sim_->run_until([&] { return sees("n1", "n3", false) && sees("n2", "n3", false); }, 10s));
  PUT_KEYS((tag + "a").c_str(), 1100, std::string(8192, 'x'));  // n3 refuses these
  PUT_KEYS((tag + "z").c_str(), 10, "small");
  sim_->heal();
  EXPECT_TRUE(sim_->run_until(
      [&] {
        for (int i = 0; i < 10; ++i) {
          if (replica_values("n3", numbered((tag + "z").c_str(), i)).empty()) return false;
        }
        return true;
      },
      60s))
      << "the small keys were never handed back";
  EXPECT_TRUE(replica_values("n3", numbered((tag + "a").c_str(), 0)).empty());
}
#undef PUT_KEYS

// A replica stand-in that acks every write twice: for itself, and for another replica of the
// same request (target 1 or 2).
class ForgingReplica : public GenServer {
 public:
  Action handle_info(Message& m) override {
    if (const ReplicaPut* rp = m.get<ReplicaPut>()) {
      const std::uint8_t other = rp->target == 1 ? 2 : 1;
      send(sender(), ReplicaPutAck{rp->partition, rp->req_id, rp->target, 0, false});
      send(sender(), ReplicaPutAck{rp->partition, rp->req_id, other, 0, false});
    }
    return noreply();
  }
};

// A replica answers only for itself: an ack that names another replica's slot of the request
// is refused (and counted), so it cannot make up a quorum. (Acks were matched by request id and
// slot alone.) Here n3's vnode is a stand-in that forges n2's ack while n2 stands still: W = 3
// fails when n2 is seen down instead of succeeding.
TEST_F(KvSimTest, AReplicaAnswersOnlyForItself) {
  start_cluster(3);
  const std::uint32_t p = partition_of("k", 16);
  ASSERT_OK(terminate_child(node("n3").whereis("nodus_kv_sup"), vnode_name(p)));
  SpawnOptions as_vnode;
  as_vnode.name = vnode_name(p);
  ASSERT_OK(nodus::start<ForgingReplica>(node("n3"), as_vnode));
  const std::uint64_t bad = stats(node("n1"))->bad_messages;
  sim_->pause("n2");
  RequestOptions w3;
  w3.w = 3;
  w3.timeout = 8000ms;
  Outcome r = put_async("n1", "k", "v", w3);
  ASSERT_TRUE(settle(r, 20s));
  EXPECT_EQ((*r)->code(), ErrorCode::kNoQuorum) << (*r)->to_string();
  EXPECT_EQ(stats(node("n1"))->bad_messages, bad + 1);
}

// A Client that sends through another node's store and names no timeout waits for that
// store's answer, whatever that node's kv.request_timeout (8 s here): a put acknowledged after
// 6 s is ok, not a timeout of the client's own. (It gave up after 5.5 s.)
TEST_F(KvSimTest, AClientThroughAnotherNodeWaitsForThatNodesTimeout) {
  start_cluster(
      3, [](NodeOptions& o) { o.down_after = 60s; },
      [](Options& o) { o.request_timeout = 8000ms; });
  sim_->pause("n3");  // its ack waits until it resumes
  auto out = std::make_shared<std::optional<Status>>();
  const Client via_n2(node("n1"), "n2");
  const auto t0 = sim_->now();
  sim_->spawn("n1", [via_n2, out] {
    RequestOptions w3;
    w3.w = 3;
    auto r = via_n2.put("k", "v", w3);
    *out = r.ok() ? Status() : r.error();
  });
  sim_->run_for(6000ms);
  sim_->resume("n3");
  ASSERT_TRUE(settle(out, 10s));
  EXPECT_OK(**out);
  EXPECT_GE(std::chrono::duration_cast<std::chrono::milliseconds>(sim_->now() - t0), 6000ms);
}

// conflicts = lww: writes made at the same time on both sides of a partition are concurrent;
// once the partition heals, every read answers the later one (by hybrid-logical-clock time),
// the other is lost (by design), and reads repair the replicas to it. With siblings, both stay.
TEST_F(KvSimTest, UnderLwwConcurrentWritesOnTwoSidesKeepTheLaterOne) {
  for (Conflicts mode : {Conflicts::kLww, Conflicts::kSiblings}) {
    SCOPED_TRACE(mode == Conflicts::kLww ? "lww" : "siblings");
    start_cluster(2, {}, [mode](Options& o) {
      o.replicas = 2;
      o.write_quorum = 1;
      o.read_quorum = 2;
      o.conflicts = mode;
    });
    std::vector<std::string> values;
    ASSERT_NO_FATAL_FAILURE(write_on_both_sides({}, &values));
    if (mode == Conflicts::kLww) {
      EXPECT_EQ(values, std::vector<std::string>{"second"});
      EXPECT_TRUE(sim_->run_until(
          [&] {
            return replica_values("n1", "k") == std::vector<std::string>{"second"} &&
                   replica_values("n2", "k") == std::vector<std::string>{"second"};
          },
          5s));
    } else {
      EXPECT_EQ(values, (std::vector<std::string>{"first", "second"}));
    }
  }
}

// A blind overwrite (RequestOptions::overwrite) supersedes what its coordinator holds: with
// no concurrency one value is left wherever it is coordinated; two taken on the two sides of
// a partition supersede the same old value but not each other, so they become siblings (or,
// under lww, the later one wins) once the sides meet, as docs/protocol.md 12.3 says.
TEST_F(KvSimTest, BlindOverwritesOnPartitionedReplicasBecomeSiblingsOrTheLaterWins) {
  RequestOptions overwrite;
  overwrite.overwrite = true;
  for (Conflicts mode : {Conflicts::kLww, Conflicts::kSiblings}) {
    SCOPED_TRACE(mode == Conflicts::kLww ? "lww" : "siblings");
    start_cluster(2, {}, [mode](Options& o) {
      o.replicas = 2;
      o.write_quorum = 2;
      o.read_quorum = 2;
      o.conflicts = mode;
    });
    // No concurrency: each overwrite, on either node, leaves one value on both replicas.
    for (const auto& [at, v] : {std::pair{"n1", "old1"}, {"n2", "old2"}, {"n1", "old"}}) {
      Outcome put = put_async(at, "k", v, overwrite);
      ASSERT_TRUE(settle(put, 5s));
      ASSERT_OK(**put);
      EXPECT_EQ(replica_values("n1", "k"), std::vector<std::string>{v});
      EXPECT_EQ(replica_values("n2", "k"), std::vector<std::string>{v});
    }
    RequestOptions one = overwrite;
    one.w = 1;
    std::vector<std::string> values;
    ASSERT_NO_FATAL_FAILURE(write_on_both_sides(one, &values));
    if (mode == Conflicts::kLww) {
      EXPECT_EQ(values, std::vector<std::string>{"second"});
    } else {
      EXPECT_EQ(values, (std::vector<std::string>{"first", "second"}));  // "old" is gone
    }
    // Read repair made both replicas hold the merge: one more overwrite resolves it.
    ASSERT_TRUE(
        sim_->run_until([&] { return replica_values("n2", "k").size() == values.size(); }, 5s));
    Outcome last = put_async("n2", "k", "last", overwrite);
    ASSERT_TRUE(settle(last, 5s));
    ASSERT_OK(**last);
    EXPECT_EQ(replica_values("n1", "k"), std::vector<std::string>{"last"});
    EXPECT_EQ(replica_values("n2", "k"), std::vector<std::string>{"last"});
  }
}

// Every acknowledged write survives faults made while it is written: for many seeds, writes of
// distinct keys (W = 2) from any node of four, while up to two nodes at a time are partitioned
// away or paused, and one is crashed (its memory lost) and restarted, so some writes are
// acknowledged by a fallback whose copy is the only one left. Every request is answered by its
// deadline; once the faults end and hand-off is done, a read of every primary (R = 3) returns
// every acknowledged value. NODUS_SIM_SEEDS=N runs seeds 1..N (default 30), NODUS_SIM_SEED=S
// seed S alone; a failure prints the seed's story.
TEST_F(KvSimTest, EveryAcknowledgedWriteSurvivesFaultsDuringTheWrites) {
  const char* env = std::getenv("NODUS_SIM_SEEDS");
  const char* only = std::getenv("NODUS_SIM_SEED");
  const std::uint64_t first = only ? std::strtoull(only, nullptr, 10) : 1;
  const std::uint64_t last = only ? first : env ? std::strtoull(env, nullptr, 10) : 30;
  const std::vector<std::string> names = {"n1", "n2", "n3", "n4"};
  for (std::uint64_t seed = first; seed <= last && !HasFatalFailure(); ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    seed_ = seed;
    start_cluster(4);
    std::mt19937_64 rng(seed);
    auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
    std::string story;  // what happened, for a failing seed
    auto note = [&](const std::string& what) {
      story.append(std::to_string(sim_->elapsed().count())).append(" ms: ").append(what);
      story.append("\n");
    };
    enum class Kind { kPartition, kPause, kCrash };
    struct Fault {
      Kind kind;
      std::string node;
      SimCluster::TimePoint ends;
    };
    std::vector<Fault> faults;  // at most two at once, one partition, one crash in all
    bool crashed_once = false;
    std::set<std::string> crashed;  // writes issued on these nodes died with them
    auto others = [&](const std::string& n) {
      std::vector<std::string> out;
      for (const auto& m : names) {
        if (m != n) out.push_back(m);
      }
      return out;
    };
    auto end_fault = [&](const Fault& f) {
      note("end of the fault on " + f.node);
      if (f.kind == Kind::kPartition) sim_->heal();
      if (f.kind == Kind::kPause) sim_->resume(f.node);
      if (f.kind == Kind::kCrash) {
        sim_->add(f.node, others(f.node));
        ASSERT_OK(start(node(f.node), options_[f.node]));
      }
    };
    auto faulty = [&](const std::string& n) {
      return std::any_of(faults.begin(), faults.end(), [&](const Fault& f) { return f.node == n; });
    };
    struct Write {
      std::string key, value, at;
      SimCluster::TimePoint issued;
      std::shared_ptr<std::optional<std::pair<Status, SimCluster::TimePoint>>> outcome;
      bool frozen = false;  // its node was paused while it waited: time stood still there
    };
    std::vector<Write> writes;
    for (int step = 0; step < 60; ++step) {
      for (auto it = faults.begin(); it != faults.end();) {
        if (sim_->now() < it->ends) {
          ++it;
          continue;
        }
        end_fault(*it);
        it = faults.erase(it);
      }
      if (faults.size() < 2 && pick(3) == 0) {
        Fault f{Kind::kPause, names[pick(names.size())],
                sim_->now() + std::chrono::milliseconds(500 + pick(3500))};
        const bool partitioned = std::any_of(faults.begin(), faults.end(), [](const Fault& g) {
          return g.kind == Kind::kPartition;
        });
        const std::size_t kind = pick(3);
        if (kind == 0 && !partitioned) f.kind = Kind::kPartition;
        if (kind == 2 && !crashed_once) f.kind = Kind::kCrash;
        if (!faulty(f.node)) {
          if (f.kind == Kind::kPartition) {
            note("partition " + f.node);
            sim_->partition({f.node}, others(f.node));
          } else if (f.kind == Kind::kPause) {
            note("pause " + f.node);
            sim_->pause(f.node);
            for (Write& w : writes) {
              if (w.at == f.node && !w.outcome->has_value()) w.frozen = true;
            }
          } else {
            note("crash " + f.node);
            crashed_once = true;
            crashed.insert(f.node);
            sim_->crash(f.node);
          }
          faults.push_back(f);
        }
      }
      // A write from a node that runs now.
      std::string at = names[pick(names.size())];
      while (faulty(at)) at = names[pick(names.size())];
      Write w{numbered("key", step), numbered("value", step), at, sim_->now(),
              std::make_shared<std::optional<std::pair<Status, SimCluster::TimePoint>>>()};
      note(w.key + " from " + at);
      const Client c(node(at));
      SimCluster* sim = sim_.get();
      sim_->spawn(at, [c, key = w.key, value = w.value, out = w.outcome, sim] {
        RequestOptions w2;
        w2.w = 2;
        auto r = c.put(key, value, w2);
        *out = std::make_pair(r.ok() ? Status() : r.error(), sim->now());
      });
      writes.push_back(std::move(w));
      sim_->run_for(std::chrono::milliseconds(pick(300)));
    }
    for (const Fault& f : faults) end_fault(f);
    faults.clear();
    // Every request on a live node is answered, by its deadline.
    ASSERT_TRUE(sim_->run_until(
        [&] {
          for (const Write& w : writes) {
            if (!w.outcome->has_value() && !crashed.count(w.at)) return false;
          }
          return true;
        },
        30s))
        << "a request was never answered\n"
        << story;
    std::vector<const Write*> acked;
    for (const Write& w : writes) {
      if (!w.outcome->has_value()) continue;
      const auto& [status, when] = **w.outcome;
      // By its deadline (2 s) and the client's margin (0.5 s).
      if (!w.frozen) {
        EXPECT_LE(when - w.issued, 2600ms) << w.key << " answered " << status.to_string();
      }
      if (status.ok()) acked.push_back(&w);
    }
    EXPECT_GT(acked.size(), 0u);
    // Past the failure detector's horizon (a link that lost frames in a partition resets once
    // it carries them again), hand-off done and every node sees every other: each
    // acknowledged value is there.
    sim_->run_for(3s);
    ASSERT_TRUE(sim_->run_until(
        [&] {
          for (const auto& a : names) {
            if (stats(node(a))->hints_pending != 0) return false;
            for (const auto& b : names) {
              if (a != b && !sees(a, b)) return false;
            }
          }
          return true;
        },
        60s))
        << "hand-off did not finish" << debug_state(names) << "\n"
        << story;
    for (const Write* w : acked) {
      RequestOptions r3;
      r3.r = 3;
      GetOutcome got = get_async(names[pick(names.size())], w->key, r3);
      ASSERT_TRUE(settle(got, 10s));
      ASSERT_OK(**got) << w->key << " was acknowledged by " << w->at << debug_state(names) << "\n"
                       << story;
      const auto& values = (**got)->values;
      EXPECT_NE(std::find(values.begin(), values.end(), w->value), values.end())
          << w->key << " lost\n"
          << story;
    }
  }
}

// A timeout above the limit is refused (a request in flight holds its object until then).
TEST_F(KvSimTest, ATimeoutAboveTheLimitIsRefused) {
  start_cluster(1);
  RequestOptions o;
  o.timeout = kMaxRequestTimeout + 1ms;
  Outcome r = put_async("n1", "k", "v", o);
  ASSERT_TRUE(settle(r, 5s));
  EXPECT_EQ((*r)->code(), ErrorCode::kBadArg) << (*r)->to_string();
}

}  // namespace
}  // namespace nodus::kv
