// The Node: how it starts (and why it could not), linking to another node and waiting for the
// link, the per-type services other layers attach, and introspection.
#include "nodus/node/node.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "nodus/node/process.hpp"
#include "test_util.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using testing::eventually;

TEST(NodeTest, StartSaysWhyItCannotListen) {
  auto first = testing::start_loopback_node("s1");
  ASSERT_NE(first, nullptr);
  NodeOptions o = testing::loopback_options("s2");
  o.listen = first->endpoint();  // taken
  auto second = Node::start(o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code(), ErrorCode::kBadConfig);
  EXPECT_NE(second.error().message().find(first->endpoint()), std::string::npos)
      << second.error().to_string();
}

TEST(NodeTest, ConnectWaitsUntilTheLinkIsUp) {
  auto a = testing::start_loopback_node("c1");
  auto b = testing::start_loopback_node("c2");
  ASSERT_TRUE(a && b);
  ASSERT_OK(a->connect(b->endpoint(), 10s));
  // Up in both directions when it returns: either side can send at once.
  EXPECT_EQ(a->nodes(), std::vector<Atom>{Atom("c2")});
  EXPECT_OK(a->connect(b->endpoint(), 0ms));  // linked already
  EXPECT_OK(a->connect(a->endpoint(), 0ms));  // itself
}

TEST(NodeTest, ConnectToNobodyTimesOut) {
  auto a = testing::start_loopback_node("t1");
  ASSERT_NE(a, nullptr);
  std::string nobody;
  {
    auto gone = testing::start_loopback_node("t2");
    ASSERT_NE(gone, nullptr);
    nobody = gone->endpoint();
  }
  Status s = a->connect(nobody, 200ms);
  EXPECT_EQ(s.code(), ErrorCode::kTimeout) << s.to_string();
}

TEST(NodeTest, ConnectWithAnotherCookieSaysAuthNotTimeout) {
  auto a = testing::start_loopback_node("k1", "one-cookie");
  auto b = testing::start_loopback_node("k2", "another-cookie");
  ASSERT_TRUE(a && b);
  Status s = a->connect(b->endpoint(), 30s);
  EXPECT_EQ(s.code(), ErrorCode::kAuth) << s.to_string();  // not kTimeout after 30 s
  EXPECT_TRUE(a->nodes().empty());
}

TEST(NodeTest, ConnectWithoutNetworkingIsBadConfig) {
  Node local(NodeOptions{.name = "local", .schedulers = 1});
  EXPECT_EQ(local.connect("tcp://127.0.0.1:1", 10ms).code(), ErrorCode::kBadConfig);
}

TEST(NodeTest, ConnectFromAProcessParksOnlyThatProcess) {
  auto a = testing::start_loopback_node("p1", "test-cookie", 1000ms, /*schedulers=*/1);
  ASSERT_NE(a, nullptr);
  std::string nobody;
  {
    auto gone = testing::start_loopback_node("p2");
    ASSERT_NE(gone, nullptr);
    nobody = gone->endpoint();
  }
  Inbox me(*a);
  const Pid caller = me.pid();
  Node* node = a.get();
  spawn(*a,
        [node, nobody, caller] { send(caller, tuple("linked", node->connect(nobody, 3s).ok())); });
  // The node's one scheduler thread stays free while that process waits its 3 s.
  Pid echo = spawn(*a, [] {
    Message m = receive();
    if (auto x = m.match({"ping", _pid})) send(x[0].as_pid(), "pong");
  });
  send(echo, tuple("ping", caller));
  EXPECT_EQ(testing::next_message(1s), "pong");
  EXPECT_EQ(testing::next_message(), tuple("linked", false));
}

struct Counter {
  int value = 0;
};
struct Other {
  std::string text;
};

TEST(NodeTest, ServicesAreKeptPerTypeAndTheFirstOneStays) {
  Node node(NodeOptions{.name = "svc", .schedulers = 1});
  EXPECT_EQ(node.service<Counter>(), nullptr);
  auto first = std::make_shared<Counter>(Counter{1});
  EXPECT_EQ(node.set_service(first), first.get());
  EXPECT_EQ(node.set_service(std::make_shared<Counter>(Counter{2})), first.get());
  EXPECT_EQ(node.service<Counter>()->value, 1);
  EXPECT_EQ(node.service<Other>(), nullptr);  // another type, another slot
  node.set_service(std::make_shared<Other>(Other{"x"}));
  EXPECT_EQ(node.service<Other>()->text, "x");
  Node another(NodeOptions{.name = "svc2", .schedulers = 1});
  EXPECT_EQ(another.service<Counter>(), nullptr);  // per node
}

// -- introspection ------------------------------------------------------------------------

TEST(IntrospectionTest, ANewProcessIsListedWithItsPid) {
  Node node{NodeOptions{.name = "r5", .schedulers = 2}};
  std::atomic<bool> done{false};
  std::thread spawner([&] {
    for (int i = 0; i < 2000; ++i) spawn(node, [] {});
    done = true;
  });
  bool all_valid = true;
  while (!done.load()) {
    for (const ProcessInfo& info : node.processes()) all_valid = all_valid && info.pid.valid();
  }
  spawner.join();
  EXPECT_TRUE(all_valid);
}

}  // namespace
}  // namespace nodus
