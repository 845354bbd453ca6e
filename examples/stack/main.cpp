// Runs the Stack exercise and prints each step with its result.

#include "nodus/node/format.hpp"
#include "stack.hpp"

int main() {
  nodus::Node node(nodus::NodeOptions{.name = "demo"});
  nodus::Inbox me(node);  // main() acts as a process: start_link links to it
  nodus::Pid s = stack::Stack::start_link(node).value();
  fmt::print("started stack {}, registered as \"stack\"\n", s);
  for (int i = 1; i <= 3; ++i) {
    stack::Stack::push(i);
    fmt::print("push({})\n", i);
  }
  fmt::print("peek() -> {}\n", stack::Stack::peek());
  fmt::print("pop()  -> {}\n", stack::Stack::pop());
  fmt::print("pop()  -> {}\n", stack::Stack::pop());
  fmt::print("peek() -> {}\n", stack::Stack::peek());
  fmt::print("pop()  -> {}\n", stack::Stack::pop());
  fmt::print("pop()  -> {}   (empty)\n", stack::Stack::pop());
  return 0;
}
