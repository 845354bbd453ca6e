// Local names: register / unregister / whereis / registered, names gone with their process,
// start with a name (already_started), and every messaging call taking a name, locally and as
// {name, node} on another node.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "nodus/node/gen_server.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "test_util.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using testing::eventually;

class Counter : public GenServer {
 public:
  Action handle_call(Message& req, From) override {
    if (req == "increment") return reply(++count_);
    if (req == "crash") throw std::runtime_error("crash");
    return reply(count_);
  }
  Action handle_cast(Message&) override {
    ++count_;
    return noreply();
  }

 private:
  std::int64_t count_ = 0;
};

class NamesTest : public ::testing::Test {
 protected:
  Node node{NodeOptions{.name = "names", .schedulers = 2}};
  Inbox me{node};

  Pid start_counter(const std::string& name) {
    SpawnOptions o;
    o.name = name;
    auto r = start<Counter>(node, o);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
    return r.ok() ? r.value() : Pid{};
  }
};

TEST_F(NamesTest, RegisterWhereisUnregister) {
  Pid p = start<Counter>(node).value();
  ASSERT_OK(register_name("counter", p));
  EXPECT_EQ(whereis("counter"), p);
  EXPECT_EQ(node.whereis("counter"), p);
  EXPECT_EQ(node.registered(), std::vector<std::string>{"counter"});
  EXPECT_TRUE(unregister_name("counter"));
  EXPECT_FALSE(whereis("counter"));
  EXPECT_FALSE(unregister_name("counter"));
}

TEST_F(NamesTest, ATakenNameAndASecondNameAreRefused) {
  Pid a = start<Counter>(node).value();
  Pid b = start<Counter>(node).value();
  ASSERT_OK(register_name("one", a));
  Status taken = register_name("one", b);
  EXPECT_EQ(taken.code(), ErrorCode::kAlreadyStarted);
  EXPECT_NE(taken.message().find(a.to_string()), std::string::npos) << taken.to_string();
  EXPECT_EQ(register_name("two", a).code(), ErrorCode::kBadArg);  // one name per process
}

TEST_F(NamesTest, ANameGoesWithItsProcess) {
  Pid p = start_counter("short_lived");
  ASSERT_TRUE(p);
  Ref r = monitor(p);
  ASSERT_OK(stop(p));
  (void)receive(2s);  // its Down
  (void)r;
  EXPECT_FALSE(whereis("short_lived"));
  EXPECT_TRUE(start_counter("short_lived"));  // free again
}

TEST_F(NamesTest, StartWithATakenNameIsAlreadyStartedWithTheHolder) {
  Pid first = start_counter("stack");
  SpawnOptions o;
  o.name = "stack";
  auto second = start<Counter>(node, o);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error(), tuple("already_started", first));
  EXPECT_EQ(node.process_count(), 2u);  // the counter and the Inbox: nothing else started
}

TEST_F(NamesTest, CallCastSendAndMonitorTakeAName) {
  Pid p = start_counter("counter");
  EXPECT_EQ(call(named("counter"), "increment").value(), Term(1));
  cast(named("counter"), "bump");
  EXPECT_EQ(call(named("counter"), "get").value(), Term(2));
  Ref r = monitor(named("counter"));
  (void)call(named("counter"), "crash");
  auto m = receive(2s);
  ASSERT_TRUE(m && m->get<Down>());
  EXPECT_EQ(m->get<Down>()->ref, r);
  EXPECT_EQ(m->get<Down>()->pid, p);
}

TEST_F(NamesTest, ANameNobodyHoldsIsNoproc) {
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(call(named("nobody"), "hi", 10s).error(), "noproc");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  Ref r = monitor(named("nobody"));
  auto m = receive(2s);
  ASSERT_TRUE(m && m->get<Down>());
  EXPECT_EQ(m->get<Down>()->ref, r);
  EXPECT_EQ(m->get<Down>()->reason, "noproc");
  send(named("nobody"), "dropped");  // like Erlang's send to an unregistered name: nothing
}

TEST_F(NamesTest, IntrospectionShowsTheName) {
  Pid p = start_counter("shown");
  bool found = false;
  for (const auto& info : node.processes()) {
    if (info.pid == p) {
      found = true;
      EXPECT_EQ(info.registered_name, "shown");
    }
  }
  EXPECT_TRUE(found);
}

TEST(RemoteNamesTest, ANameOnAnotherNodeIsReachedAsNameAtNode) {
  auto a = testing::start_loopback_node("na", "names-cookie", 1000ms, 1);
  auto b = testing::start_loopback_node("nb", "names-cookie", 1000ms, 1);
  ASSERT_TRUE(a && b);
  a->connect(b->endpoint());
  ASSERT_TRUE(eventually([&] { return a->nodes().size() == 1 && b->nodes().size() == 1; }));
  SpawnOptions o;
  o.name = "counter";
  Pid remote = start<Counter>(*b, o).value();
  Inbox me(*a);
  EXPECT_EQ(call(named("counter", "nb"), "increment").value(), Term(1));
  cast(named("counter", "nb"), "bump");
  EXPECT_EQ(call(named("counter", "nb"), "get").value(), Term(2));
  EXPECT_EQ(call(named("nobody", "nb"), "get", 2s).error(), "noproc");
  Ref r = monitor(named("counter", "nb"));
  (void)call(remote, "crash");
  auto m = receive(2s);
  ASSERT_TRUE(m && m->get<Down>()) << (m ? m->to_string() : "nothing");
  EXPECT_EQ(m->get<Down>()->ref, r);
  EXPECT_EQ(m->get<Down>()->pid, remote);
}

}  // namespace
}  // namespace nodus
