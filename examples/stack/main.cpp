// Runs the Stack exercise and prints each step with its result.
#include <cstdio>

#include "stack.hpp"

int main() {
  nodus::Node node(nodus::NodeOptions{.name = "demo"});
  nodus::Inbox me(node);  // main() acts as a process: start_link links to it
  nodus::Pid s = stack::Stack::start_link(node).value();
  std::printf("started stack %s, registered as \"stack\"\n", s.to_string().c_str());
  for (int i = 1; i <= 3; ++i) {
    stack::Stack::push(i);
    std::printf("push(%d)\n", i);
  }
  std::printf("peek() -> %s\n", stack::Stack::peek().to_string().c_str());
  std::printf("pop()  -> %s\n", stack::Stack::pop().to_string().c_str());
  std::printf("pop()  -> %s\n", stack::Stack::pop().to_string().c_str());
  std::printf("peek() -> %s\n", stack::Stack::peek().to_string().c_str());
  std::printf("pop()  -> %s\n", stack::Stack::pop().to_string().c_str());
  std::printf("pop()  -> %s   (empty)\n", stack::Stack::pop().to_string().c_str());
  return 0;
}
