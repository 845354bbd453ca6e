// Runs the UnregisteredCounter exercise: every call needs the pid.

#include "nodus/node/format.hpp"
#include "unregistered_counter.hpp"

int main() {
  using unregistered_counter::UnregisteredCounter;
  nodus::Node node(nodus::NodeOptions{.name = "demo"});
  nodus::Inbox me(node);
  nodus::Pid pid = UnregisteredCounter::start_link(node).value();
  fmt::print("started counter {}\n", pid);
  for (int i = 0; i < 3; ++i) {
    fmt::print("increment({}) -> {}\n", pid, *UnregisteredCounter::increment(pid));
  }
  return 0;
}
