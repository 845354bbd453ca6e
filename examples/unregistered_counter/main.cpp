// Runs the UnregisteredCounter exercise: every call needs the pid.
#include <cstdio>

#include "unregistered_counter.hpp"

int main() {
  using unregistered_counter::UnregisteredCounter;
  nodus::Node node(nodus::NodeOptions{.name = "demo"});
  nodus::Inbox me(node);
  nodus::Pid pid = UnregisteredCounter::start_link(node).value();
  std::printf("started counter %s\n", pid.to_string().c_str());
  for (int i = 0; i < 3; ++i) {
    std::printf("increment(%s) -> %s\n", pid.to_string().c_str(),
                UnregisteredCounter::increment(pid)->to_string().c_str());
  }
  return 0;
}
