// The scheduler: deterministic manual stepping, and work queued behind a long handler moving
// to an idle thread.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "nodus/node/gen_server.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "test_util.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using testing::eventually;

// -- manual stepping ----------------------------------------------------------------------

class SchedulerTest : public ::testing::Test {
 protected:
  Node node{NodeOptions{.name = "manual", .manual_scheduling = true}};
  std::vector<std::string> trace;  // touched only by the stepping thread

  Pid traced(std::string name, int receives) {
    return spawn(node, [this, name, receives] {
      trace.push_back(name + ":start");
      for (int i = 0; i < receives; ++i) {
        Message m = receive();
        trace.push_back(name + ":" + m.to_string());
      }
    });
  }
};

TEST_F(SchedulerTest, NothingRunsUntilStepped) {
  traced("a", 0);
  EXPECT_TRUE(trace.empty());
  EXPECT_EQ(node.schedulers(), 0u);
  EXPECT_TRUE(node.step());
  EXPECT_EQ(trace, std::vector<std::string>{"a:start"});
  EXPECT_FALSE(node.step());
}

TEST_F(SchedulerTest, StepsRunProcessesInTheOrderTheyBecameRunnable) {
  traced("a", 0);
  traced("b", 0);
  traced("c", 0);
  EXPECT_EQ(node.run_until_idle(), 3u);
  EXPECT_EQ(trace, (std::vector<std::string>{"a:start", "b:start", "c:start"}));
}

TEST_F(SchedulerTest, AMessageRunsItsReceiverOnlyAtTheNextStep) {
  Pid a = traced("a", 2);
  node.run_until_idle();  // a waits in receive
  send(a, "one");
  send(a, "two");
  EXPECT_EQ(trace.size(), 1u);
  EXPECT_TRUE(node.step());  // one scheduling handles what has arrived
  EXPECT_EQ(trace, (std::vector<std::string>{"a:start", "a:one", "a:two"}));
  EXPECT_EQ(node.process_count(), 0u);  // a returned: gone
}

class Forward : public GenServer {
 public:
  Action init(Pid next, std::vector<std::string>* trace, std::string name) {
    next_ = next;
    trace_ = trace;
    name_ = std::move(name);
    return ok();
  }
  Action handle_call(Message& req, From) override {
    trace_->push_back(name_ + " called");
    Term answer = next_ ? call(next_, req.term()).value() : tuple(atom(name_), req.term());
    trace_->push_back(name_ + " answers");
    return reply(answer);
  }

 private:
  Pid next_;
  std::vector<std::string>* trace_ = nullptr;
  std::string name_;
};

std::vector<std::string> run_chain() {
  Node n(NodeOptions{.name = "chain", .manual_scheduling = true});
  std::vector<std::string> trace;
  Pid c = start<Forward>(n, Pid{}, &trace, std::string("c")).value();
  Pid b = start<Forward>(n, c, &trace, std::string("b")).value();
  Pid a = start<Forward>(n, b, &trace, std::string("a")).value();
  // The plain thread's call runs the processes itself while it waits.
  EXPECT_EQ(call(a, "x").value(), tuple("c", "x"));
  return trace;
}

TEST_F(SchedulerTest, ACallChainRunsInTheSameOrderEveryTime) {
  std::vector<std::string> first = run_chain();
  EXPECT_EQ(first, (std::vector<std::string>{"a called", "b called", "c called", "c answers",
                                             "b answers", "a answers"}));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(run_chain(), first);
}

// -- a long handler does not hold up other work -------------------------------------------

TEST(SchedulerThreadsTest, WorkQueuedBehindALongHandlerMovesToAnIdleThread) {
  Node node(NodeOptions{.name = "busy", .schedulers = 2});
  Inbox me(node);
  std::atomic<bool> release{false};
  Pid sink = me.pid();
  Pid waiter = spawn(node, [sink] {
    receive();
    send(sink, "waiter_ran");
  });
  ASSERT_TRUE(eventually([&] {
    for (auto& p : node.processes()) {
      if (p.pid == waiter) return p.waiting;
    }
    return false;
  }));
  // The busy process wakes the waiter from its own thread (so the waiter lands right behind
  // it), then spins without yielding.
  spawn(node, [waiter, &release] {
    send(waiter, "go");
    while (!release.load()) std::this_thread::yield();
  });
  auto m = receive(5s);
  release = true;
  ASSERT_TRUE(m.has_value()) << "the waiter never ran while its thread was busy";
  EXPECT_EQ(*m, "waiter_ran");
}

}  // namespace
}  // namespace nodus
