// Runs the ServerProcess exercise: a hand-written generic server with a Counter callback.

#include "nodus/node/format.hpp"
#include "server_process.hpp"

int main() {
  using namespace server_process;
  Node node(NodeOptions{.name = "demo"});
  Inbox me(node);  // main() acts as a process: it receives the responses
  Pid pid = ServerProcess::start<Counter>(node);
  fmt::print("started counter {}\n", pid);
  fmt::print("call(increment) -> {}\n", ServerProcess::call(pid, "increment"));
  fmt::print("call(get)       -> {}\n", ServerProcess::call(pid, "get"));
  return 0;
}
