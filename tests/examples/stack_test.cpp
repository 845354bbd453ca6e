// Replays the Stack exercise's expected results.
#include "stack.hpp"

#include <gtest/gtest.h>

namespace {

using namespace nodus;
using stack::Stack;

class StackTest : public ::testing::Test {
 protected:
  Node node{NodeOptions{.name = "stack_test", .schedulers = 2}};
  Inbox me{node};
};

TEST_F(StackTest, PopsInReverseOrderOfPushes) {
  ASSERT_TRUE(Stack::start_link(node).ok());
  Stack::push(1);
  Stack::push(2);
  Stack::push(3);
  EXPECT_EQ(Stack::peek(), tuple("ok", 3));
  EXPECT_EQ(Stack::pop(), tuple("ok", 3));
  EXPECT_EQ(Stack::pop(), tuple("ok", 2));
  EXPECT_EQ(Stack::peek(), tuple("ok", 1));
}

TEST_F(StackTest, EmptyStackAnswersErrorEmpty) {
  ASSERT_TRUE(Stack::start_link(node).ok());
  EXPECT_EQ(Stack::pop(), tuple("error", "empty"));
  EXPECT_EQ(Stack::peek(), tuple("error", "empty"));
}

TEST_F(StackTest, StartsWithAnInitialStack) {
  ASSERT_TRUE(Stack::start_link(node, List{"a", "b"}).ok());
  EXPECT_EQ(Stack::pop(), tuple("ok", "b"));
}

TEST_F(StackTest, IsStartedUnderItsNameOnlyOnce) {
  Pid s = Stack::start_link(node).value();
  EXPECT_EQ(node.whereis("stack"), s);
  EXPECT_EQ(Stack::start_link(node).error(), tuple("already_started", s));
}

TEST_F(StackTest, UnknownCallStopsTheServerWithBadCall) {
  Pid s = Stack::start_link(node).value();
  auto r = call(s, "shuffle");
  EXPECT_EQ(r.error(), tuple("bad_call", "shuffle"));
}

}  // namespace
