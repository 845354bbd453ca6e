// Hidden nodes (docs/protocol.md section 11): a node that links like a peer but is no member.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>

#include "nodus/node/gen_server.hpp"
#include "nodus/node/node.hpp"
#include "test_util.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::start_loopback_node;

class Echo : public GenServer {
 public:
  Action handle_call(Message& req, From) override { return reply(tuple("echo", req.term())); }
};

std::unique_ptr<Node> start_hidden(const std::string& name, const std::string& seed) {
  NodeOptions o = testing::loopback_options(name, "test-cookie", 1000ms, 1);
  o.hidden = true;
  o.seeds = {seed};
  auto n = Node::start(std::move(o));
  EXPECT_TRUE(n.ok());
  return n.ok() ? std::move(n.value()) : nullptr;
}

bool has_peer(const Node& n, const char* name) {
  auto peers = n.peers();
  return std::any_of(peers.begin(), peers.end(),
                     [&](const PeerStats& p) { return p.up && p.name == Atom(name); });
}

class HiddenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    n1_ = start_loopback_node("n1");
    n2_ = start_loopback_node("n2");
    n2_->connect(n1_->endpoint());
    ASSERT_TRUE(eventually([&] { return n1_->nodes().size() == 1 && n2_->nodes().size() == 1; }));
  }
  std::unique_ptr<Node> n1_, n2_;
};

TEST_F(HiddenTest, IsNoMemberButCanCall) {
  auto echo = start<Echo>(*n1_);
  ASSERT_TRUE(echo.ok());
  auto echo2 = start<Echo>(*n2_);
  ASSERT_TRUE(echo2.ok());
  auto h = start_hidden("ctl", n1_->endpoint());
  ASSERT_TRUE(eventually([&] { return h->nodes() == std::vector<Atom>{Atom("n1")}; }));
  ASSERT_TRUE(eventually([&] { return has_peer(*n1_, "ctl"); }));
  // n1 links to it, but does not count it as a member...
  EXPECT_EQ(std::vector<Atom>{Atom("n2")}, n1_->nodes());
  for (const PeerStats& p : n1_->peers()) {
    if (p.name == Atom("ctl")) {
      EXPECT_TRUE(p.hidden);
    }
  }
  // ... and tells nobody of it: n2 never links to it, and it never links to n2 (told of n2
  // by nobody either). n1 would have sent PEERS when the link came up (section 6), and a
  // link's frames arrive in order: a call from n1 to n2 made after that is answered once n2
  // has handled them, ...
  {
    Inbox on_n1(*n1_);
    auto to_n2 = call(*echo2, "after", 2s);
    ASSERT_TRUE(to_n2.ok()) << to_n2.error().to_string();
  }
  // ... and the answer to a call from ctl comes after any PEERS n1 sent ctl.
  Inbox from_ctl(*h);  // the call goes from the hidden node over its link
  auto r = call(*echo, "hi", 2s);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(tuple("echo", "hi"), *r);
  EXPECT_FALSE(has_peer(*n2_, "ctl"));
  EXPECT_FALSE(has_peer(*h, "n2"));
  EXPECT_EQ(std::vector<Atom>{Atom("n1")}, n2_->nodes());
}

TEST_F(HiddenTest, ItsDepartureIsNotANodeEventButEndsItsLinks) {
  auto h = start_hidden("ctl", n1_->endpoint());
  ASSERT_TRUE(eventually([&] { return has_peer(*n1_, "ctl"); }));
  const auto before = n1_->network_stats();
  EXPECT_EQ(1u, before.hidden_up_events);
  EXPECT_EQ(0u, before.hidden_down_events);
  h.reset();  // leaves with BYE
  ASSERT_TRUE(eventually(
      [&] { return !has_peer(*n1_, "ctl") && n1_->network_stats().hidden_down_events == 1; }));
  const auto after = n1_->network_stats();
  EXPECT_EQ(before.node_down_events, after.node_down_events);
  EXPECT_EQ(1u, after.node_up_events);  // n2 only
}

TEST_F(HiddenTest, TrafficIsCountedPerPeer) {
  auto echo = start<Echo>(*n1_);
  ASSERT_TRUE(echo.ok());
  Inbox inbox(*n2_);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(call(*echo, i, 2s).ok());
  auto find = [](const Node& n, const char* name) {
    for (const PeerStats& p : n.peers()) {
      if (p.name == Atom(name)) return p;
    }
    return PeerStats{};
  };
  EXPECT_TRUE(eventually([&] { return find(*n1_, "n2").messages_in >= 10; }));
  EXPECT_GE(find(*n2_, "n1").messages_out, 10u);
  EXPECT_GE(n2_->call_latency().count, 10u);
  std::uint64_t total = 0;
  for (auto c : n2_->call_latency().counts) total += c;
  EXPECT_EQ(n2_->call_latency().count, total);
}

}  // namespace
}  // namespace nodus
