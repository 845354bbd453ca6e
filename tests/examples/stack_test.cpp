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
  Pid s = Stack::start_link(node).value();
  Stack::push(s, 1);
  Stack::push(s, 2);
  Stack::push(s, 3);
  EXPECT_EQ(Stack::peek(s), tuple("ok", 3));
  EXPECT_EQ(Stack::pop(s), tuple("ok", 3));
  EXPECT_EQ(Stack::pop(s), tuple("ok", 2));
  EXPECT_EQ(Stack::peek(s), tuple("ok", 1));
}

TEST_F(StackTest, EmptyStackAnswersErrorEmpty) {
  Pid s = Stack::start_link(node).value();
  EXPECT_EQ(Stack::pop(s), tuple("error", "empty"));
  EXPECT_EQ(Stack::peek(s), tuple("error", "empty"));
}

TEST_F(StackTest, StartsWithAnInitialStack) {
  Pid s = Stack::start_link(node, List{"a", "b"}).value();
  EXPECT_EQ(Stack::pop(s), tuple("ok", "b"));
}

TEST_F(StackTest, UnknownCallStopsTheServerWithBadCall) {
  Pid s = Stack::start_link(node).value();
  auto r = call(s, "shuffle");
  EXPECT_EQ(r.error(), tuple("bad_call", "shuffle"));
}

}  // namespace
