// Runs the ServerProcess exercise: a hand-written generic server with a Counter callback.
#include <cstdio>

#include "server_process.hpp"

int main() {
  using namespace server_process;
  Node node(NodeOptions{.name = "demo"});
  Inbox me(node);  // main() acts as a process: it receives the responses
  Pid pid = ServerProcess::start<Counter>(node);
  std::printf("started counter %s\n", pid.to_string().c_str());
  std::printf("call(increment) -> %s\n", ServerProcess::call(pid, "increment").to_string().c_str());
  std::printf("call(get)       -> %s\n", ServerProcess::call(pid, "get").to_string().c_str());
  return 0;
}
