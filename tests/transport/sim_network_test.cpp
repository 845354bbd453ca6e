// The in-memory network (nodus/transport/sim.hpp) with transports alone, no nodes: transports
// link and exchange data on virtual time, a run is reproducible from its seed, and the link
// logic recovers from what the network does to it (partitions, pauses, broken connections).
#include "nodus/transport/sim.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../test_support.hpp"

namespace nodus::transport {
namespace {

using namespace std::chrono_literals;

/// One transport on the network and what its callbacks saw (one thread: no locks).
struct SimPeer {
  std::unique_ptr<Transport> t;
  std::vector<std::pair<std::string, Data>> received;
  std::vector<std::string> ups;
  std::vector<std::pair<std::string, std::string>> downs;
  std::vector<std::string> logs;

  bool up(const std::string& name) const {
    for (const auto& p : t->peers()) {
      if (p.name == name) return true;
    }
    return false;
  }
};

class SimNetworkTest : public ::testing::Test {
 protected:
  SimPeer& make(const std::string& name, std::optional<CurveKeys> keys = std::nullopt,
                std::vector<std::string> allowed = {}) {
    return make_as(name, name, std::move(keys), std::move(allowed));
  }
  /// A transport listening on sim://KEY under node name `name` (a copy of another node, or a
  /// hidden one with `hidden`), of incarnation `creation`.
  SimPeer& make_as(const std::string& key, const std::string& name,
                   std::optional<CurveKeys> keys = std::nullopt,
                   std::vector<std::string> allowed = {}, bool hidden = false,
                   std::uint32_t creation = 1) {
    auto& p = peers_[key];
    p = std::make_unique<SimPeer>();
    SimPeer* raw = p.get();
    TransportOptions o;
    o.name = name;
    o.creation = creation;
    o.hidden = hidden;
    o.listen = "sim://" + key;
    o.cookie = "secret";
    o.curve = keys;
    o.curve_allowed = std::move(allowed);
    o.log = [raw](const std::string& line) { raw->logs.push_back(line); };
    TransportCallbacks cb;
    cb.on_data = [raw](const std::string& peer, Data&& d) {
      raw->received.emplace_back(peer, std::move(d));
    };
    cb.on_peer_up = [raw](const PeerInfo& i) { raw->ups.push_back(i.name); };
    cb.on_peer_down = [raw](const std::string& peer, const std::string& why) {
      raw->downs.emplace_back(peer, why);
    };
    auto t = net_->start(std::move(o), std::move(cb));
    EXPECT_OK(t);
    p->t = std::move(t.value());
    return *p;
  }

  /// Runs the network (its own driver) until `done` or `limit` of virtual time.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 10s) {
    const auto end = net_->now() + limit;
    while (!done()) {
      if (net_->now() > end || !net_->clock()->advance()) return done();
    }
    return true;
  }
  void run_for(std::chrono::milliseconds d) {
    const auto end = net_->now() + d;
    run_until([&] { return net_->now() >= end; }, d + 1ms);
  }

  static Data data_with(std::uint64_t seq) {
    Data d;
    d.kind = 1;
    d.to = std::string("sink");
    d.budget_us = seq;
    return d;
  }

  ~SimNetworkTest() override { peers_.clear(); }  // transports before the network

  std::unique_ptr<SimNetwork> net_ = std::make_unique<SimNetwork>(42);
  std::map<std::string, std::unique_ptr<SimPeer>> peers_;
};

TEST_F(SimNetworkTest, TwoTransportsLinkOnVirtualTimeAndExchangeDataInOrder) {
  SimPeer& a = make("a");
  SimPeer& b = make("b");
  const auto start = net_->now();
  a.t->connect("sim://b");
  ASSERT_TRUE(run_until([&] { return a.up("b") && b.up("a"); }));
  // Two handshakes of two round trips each, at 20-200 us a hop: well under a millisecond.
  EXPECT_LT(net_->now() - start, 5ms);
  for (std::uint64_t i = 0; i < 100; ++i) ASSERT_OK(a.t->send("b", data_with(i)));
  ASSERT_TRUE(run_until([&] { return b.received.size() == 100; }));
  for (std::uint64_t i = 0; i < 100; ++i) EXPECT_EQ(b.received[i].second.budget_us, i);
}

TEST_F(SimNetworkTest, ARunIsReproducibleFromItsSeed) {
  auto story = [](std::uint64_t seed) {
    SimFaults f;
    f.drop = 0.05;
    f.max_latency = 2ms;
    SimNetwork net(seed, f);
    std::vector<std::string> lines;
    net.set_trace([&](const std::string& l) { lines.push_back(l); });
    std::vector<std::unique_ptr<Transport>> ts;
    for (const char* name : {"a", "b", "c"}) {
      TransportOptions o;
      o.name = name;
      o.creation = 1;
      o.listen = std::string("sim://") + name;
      o.cookie = "secret";
      o.log = [](const std::string&) {};
      ts.push_back(std::move(net.start(std::move(o), {}).value()));
    }
    ts[0]->connect("sim://b");
    ts[2]->connect("sim://a");
    const auto end = net.now() + 10s;
    while (net.now() < end && net.clock()->advance()) {
    }
    const auto s = net.stats();
    lines.push_back(std::to_string(s.sent) + " " + std::to_string(s.delivered) + " " +
                    std::to_string(s.dropped));
    ts.clear();
    return lines;
  };
  const auto one = story(7);
  EXPECT_EQ(one, story(7));
  EXPECT_NE(one, story(8));
  EXPECT_GT(one.size(), 3u);
}

TEST_F(SimNetworkTest, APartitionTakesBothSidesDownAndHealingBringsThemBack) {
  SimPeer& a = make("a");
  SimPeer& b = make("b");
  a.t->connect("sim://b");
  ASSERT_TRUE(run_until([&] { return a.up("b") && b.up("a"); }));
  net_->partition({"a"}, {"b"});
  const auto cut = net_->now();
  ASSERT_TRUE(run_until([&] { return !a.up("b") && !b.up("a"); }));
  EXPECT_GE(net_->now() - cut, 2000ms);  // down_after
  EXPECT_LT(net_->now() - cut, 2200ms);
  run_for(3s);
  EXPECT_FALSE(a.up("b"));
  net_->heal();
  // Back within the reconnect backoff (it grew while cut) and a handshake.
  ASSERT_TRUE(run_until([&] { return a.up("b") && b.up("a"); }, 6s));
  ASSERT_OK(a.t->send("b", data_with(1)));
  ASSERT_TRUE(run_until([&] { return b.received.size() == 1; }));
}

// Issue 10: a node paused past down_after (SIGSTOP) is down at its peer, but when it resumes it
// finds its peer's heartbeats waiting and still thinks the link is up; the peer must not drop
// its frames as "before the handshake" for ever. Whenever two nodes disagree about their link,
// the disagreement resolves within a bounded time.
TEST_F(SimNetworkTest, ANodePausedPastDownAfterIsUpAgainOnBothSidesSoonAfterItResumes) {
  SimPeer& a = make("a");
  SimPeer& b = make("b");
  a.t->connect("sim://b");
  ASSERT_TRUE(run_until([&] { return a.up("b") && b.up("a"); }));
  net_->pause("b");
  ASSERT_TRUE(run_until([&] { return !a.up("b"); }, 3s));
  run_for(5s);  // 7 s in all, as in the issue
  net_->resume("b");
  // Bounded: a heartbeat interval to notice, the reconnect backoff, a handshake each way.
  ASSERT_TRUE(run_until([&] { return a.up("b") && b.up("a"); }, 8s))
      << "a sees b " << (a.up("b") ? "up" : "down") << ", b sees a " << (b.up("a") ? "up" : "down");
  run_for(10s);  // and it stays so
  EXPECT_TRUE(a.up("b") && b.up("a"));
  ASSERT_OK(b.t->send("a", data_with(1)));
  ASSERT_OK(a.t->send("b", data_with(2)));
  ASSERT_TRUE(run_until([&] { return a.received.size() == 1 && b.received.size() == 1; }));
}

// The kind of issue 10's fault: whatever the network did (pauses past down_after, partitions,
// dropped messages breaking connections, blips, in any interleaving a seed makes), once it
// behaves again every pair of nodes agrees within a bounded time that their link is up, and it
// stays up. Each seed's story is reproducible: run it alone with --gtest_filter and the seed.
TEST(SimLinkConvergenceTest, LinksAgreeSoonAfterAnyScheduleOfFaults) {
  const int kSeeds = std::getenv("SIM_SEEDS") ? std::atoi(std::getenv("SIM_SEEDS")) : 300;
  const std::vector<std::string> names = {"a", "b", "c"};
  for (int seed = 1; seed <= kSeeds; ++seed) {
    SimNetwork net(seed);
    std::mt19937_64& rng = net.random();
    std::map<std::string, std::unique_ptr<Transport>> ts;
    std::map<std::string, int> downs;  // after the faults: must stay zero
    bool settled = false;
    for (const std::string& n : names) {
      TransportOptions o;
      o.name = n;
      o.creation = 1;
      o.listen = "sim://" + n;
      o.cookie = "secret";
      o.log = [](const std::string&) {};
      TransportCallbacks cb;
      cb.on_peer_down = [&, n](const std::string& peer, const std::string& why) {
        if (!settled) return;
        ++downs[n];
        if (std::getenv("SIM_TRACE")) {
          std::printf("%s: %s down (%s) at %lld ms\n", n.c_str(), peer.c_str(), why.c_str(),
                      static_cast<long long>((net.now() - SimClock().now()) / 1ms));
        }
      };
      ts[n] = std::move(net.start(std::move(o), std::move(cb)).value());
    }
    ts["a"]->connect("sim://b");
    ts["c"]->connect("sim://a");
    auto up = [&](const std::string& x, const std::string& y) {
      for (const auto& p : ts[x]->peers()) {
        if (p.name == y) return true;
      }
      return false;
    };
    auto all_up = [&] {
      for (const auto& x : names) {
        for (const auto& y : names) {
          if (x != y && !up(x, y)) return false;
        }
      }
      return true;
    };
    auto run_until = [&](SimNetwork::TimePoint end, const std::function<bool()>& done) {
      std::uint64_t steps = 0;
      while (!done() && net.now() < end) {
        if (!net.clock()->advance()) net.advance_to(end);  // nothing due: every node paused
        if (++steps > 2000000) {
          ADD_FAILURE() << "stuck at " << (net.now() - SimClock().now()).count() << " ns";
          return false;
        }
      }
      return done();
    };
    // 20 s of faults, one every 0-1.5 s.
    const auto faults_end = net.now() + 20s;
    std::uniform_int_distribution<int> pick(0, 2), kind(0, 4), gap(0, 1500), span(200, 8000);
    std::vector<std::pair<SimNetwork::TimePoint, std::function<void()>>> undo;
    while (net.now() < faults_end) {
      const std::string x = names[pick(rng)], y = names[(pick(rng) % 2 + 1 + 0) % 3];
      const auto until = net.now() + std::chrono::milliseconds(span(rng));
      switch (kind(rng)) {
        case 0:
          if (!net.paused(x)) {
            net.pause(x);
            undo.emplace_back(until, [&net, x] { net.resume(x); });
          }
          break;
        case 1:
          net.cut(x, y);
          undo.emplace_back(until, [&net] { net.heal(); });
          break;
        case 2: {
          SimFaults f;
          f.drop = 0.02;
          net.set_faults(f);
          undo.emplace_back(until, [&net] { net.set_faults(SimFaults{}); });
          break;
        }
        case 3:
          net.break_connections(x);
          break;
        default:
          break;  // a quiet spell
      }
      run_until(net.now() + std::chrono::milliseconds(gap(rng)), [] { return false; });
      for (auto it = undo.begin(); it != undo.end();) {
        if (it->first <= net.now()) {
          it->second();
          it = undo.erase(it);
        } else {
          ++it;
        }
      }
    }
    // The network behaves again.
    net.heal();
    net.set_faults(SimFaults{});
    for (const auto& n : names) net.resume(n);
    const auto healed = net.now();
    // Views left over from the faults (a node resumed with its peers' last heartbeats in hand
    // counts them up) are stale for at most down_after; then, bounded: the reconnect
    // backoff's cap (5 s), handshakes, and a heartbeat interval to hear a refusal.
    run_until(healed + 2100ms, [] { return false; });
    ASSERT_TRUE(run_until(healed + 10s, all_up)) << "seed " << seed;
    settled = true;
    run_until(net.now() + 10s, [] { return false; });
    EXPECT_TRUE(all_up()) << "seed " << seed;
    for (const auto& [n, count] : downs) EXPECT_EQ(count, 0) << "seed " << seed << " node " << n;
    ts.clear();
  }
}

// A partition shorter than down_after: both ends still count the link up when it heals, and
// both find their connections broken at once. Each is down once and up again, and it stays so
// (each end's reconnect must not make the other reconnect in turn, for ever).
TEST_F(SimNetworkTest, APartitionShorterThanDownAfterHealsWithOneDownEachAndNoFlapping) {
  SimPeer& a = make("a");
  SimPeer& b = make("b");
  a.t->connect("sim://b");
  ASSERT_TRUE(run_until([&] { return a.up("b") && b.up("a"); }));
  net_->partition({"a"}, {"b"});
  run_for(1s);
  net_->heal();
  run_for(5s);
  EXPECT_TRUE(a.up("b") && b.up("a"));
  EXPECT_LE(a.downs.size(), 1u);
  EXPECT_LE(b.downs.size(), 1u);
  const std::size_t ups = a.ups.size() + b.ups.size();
  run_for(10s);
  EXPECT_EQ(a.ups.size() + b.ups.size(), ups);
}

// Issue 10: a careless copy of n1's config with another port. The copy is refused by every node
// it reaches; the real node's links never go down (no flapping), nobody links to the copy, each
// side logs why (once per interval), and when the copy stops the real node is still up everywhere.
TEST_F(SimNetworkTest, ACopyOfANodeUnderItsNameIsRefusedAndTheRealOneIsUndisturbed) {
  SimPeer& a = make("a");
  SimPeer& b = make("b");
  SimPeer& c = make("c");
  b.t->connect("sim://a");
  c.t->connect("sim://a");
  auto meshed = [&] { return a.up("b") && a.up("c") && b.up("a") && b.up("c") && c.up("a"); };
  ASSERT_TRUE(run_until(meshed));
  SimPeer& copy = make_as("a-copy", "a", std::nullopt, {}, false, /*creation=*/7);
  copy.t->connect("sim://b");
  copy.t->connect("sim://c");
  run_for(30s);
  EXPECT_TRUE(meshed());
  for (SimPeer* p : {&a, &b, &c}) EXPECT_TRUE(p->downs.empty());
  EXPECT_EQ(b.ups.size(), 2u);  // a and c, once each
  EXPECT_TRUE(copy.t->peers().empty());
  for (const auto& p : b.t->peers()) {
    if (p.name == "a") {
      EXPECT_EQ(p.endpoint, "sim://a");
    }
  }
  auto count = [](const SimPeer& p, const std::string& text) {
    std::size_t n = 0;
    for (const std::string& l : p.logs) n += l.find(text) != std::string::npos;
    return n;
  };
  // About one line per 10 s on each side, saying what is wrong.
  EXPECT_GE(count(b, "refused node a at sim://a-copy: the name a is in use by the node at sim://a"),
            1u);
  EXPECT_LE(count(b, "the name a is in use"), 4u);
  EXPECT_GE(count(copy, "refused us: name in use: a is the node at sim://a"), 1u);
  EXPECT_LE(count(copy, "name in use"), 8u);  // two nodes refuse it
  // The copy stops; the real a stays up everywhere.
  peers_.erase("a-copy");
  run_for(30s);
  EXPECT_TRUE(meshed());
  for (SimPeer* p : {&a, &b, &c}) EXPECT_TRUE(p->downs.empty());
}

// Issue 10: nodusctl run after run (a hidden node under a fresh name and endpoint each time,
// leaving with BYE, or killed): a node forgets each one that left, and redials none of them.
TEST_F(SimNetworkTest, HiddenNodesThatLeftAreForgottenNotRedialled) {
  SimPeer& a = make("a");
  SimPeer& b = make("b");
  b.t->connect("sim://a");
  ASSERT_TRUE(run_until([&] { return a.up("b") && b.up("a"); }));
  for (int i = 0; i < 100; ++i) {
    const std::string key = "ctl-" + std::to_string(i);
    SimPeer& ctl = make_as(key, key, std::nullopt, {}, /*hidden=*/true);
    ctl.t->connect("sim://a");
    ASSERT_TRUE(run_until([&] { return a.up(key) && ctl.up("a"); })) << key;
    if (i % 2 == 0) {
      peers_.erase(key);  // leaves: BYE
    } else {
      net_->crash(key);  // killed: silent
      peers_.erase(key);
    }
  }
  run_for(5s);  // the silent ones are declared down
  EXPECT_EQ(a.t->peers().size(), 1u);
  const auto before = net_->stats();
  run_for(60s);
  const auto after = net_->stats();
  EXPECT_EQ(after.unroutable, before.unroutable);  // no attempt to reach a departed one
  // Two links' heartbeats (300 ms) and their answers: a few hundred messages a minute.
  EXPECT_LT(after.sent - before.sent, 1000u);
  EXPECT_TRUE(a.up("b") && b.up("a"));
}

TEST_F(SimNetworkTest, CurveNodesWithEachOthersKeysLinkAndAStrangerIsRefused) {
  auto key = [] { return generate_curve_keys().value(); };
  const CurveKeys ka = key(), kb = key(), kx = key();
  SimPeer& a = make("a", ka, {kb.public_key});
  SimPeer& b = make("b", kb, {ka.public_key});
  SimPeer& x = make("x", kx, {ka.public_key});
  a.t->connect("sim://b", kb.public_key);
  ASSERT_TRUE(run_until([&] { return a.up("b") && b.up("a"); }));
  x.t->connect("sim://a", ka.public_key);
  run_for(3s);
  EXPECT_FALSE(x.up("a"));
  EXPECT_FALSE(a.up("x"));
  EXPECT_GT(a.t->stats().curve_refused, 0u);
}

}  // namespace
}  // namespace nodus::transport
