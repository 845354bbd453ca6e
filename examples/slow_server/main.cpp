// Runs the SlowServer exercise with the chapter's delays (about 40 s in all).
#include <cstdio>

#include "slow_server.hpp"

int main() {
  using slow_server::SlowServer;
  using namespace std::chrono_literals;
  nodus::Node node(nodus::NodeOptions{.name = "demo"});
  nodus::Inbox me(node);
  nodus::Pid s = SlowServer::start_link(node).value();
  auto show = [](const char* what, const nodus::CallResult& r) {
    if (r) return std::printf("%-40s -> %s\n", what, r->to_string().c_str());
    if (r.error() == "timeout") return std::printf("%-40s -> Timed out!\n", what);
    return std::printf("%-40s -> error %s\n", what, r.error().to_string().c_str());
  };
  show("fast_operation()", SlowServer::fast_operation(s));
  show("slow_operation(3000)", SlowServer::slow_operation(s, 3000ms));
  show("slow_operation(6000)", SlowServer::slow_operation(s, 6000ms));
  show("slow_operation_with_timeout(6000, 10000)",
       SlowServer::slow_operation_with_timeout(s, 6000ms, 10s));
  show("infinite_wait(20000)", SlowServer::infinite_wait(s, 20000ms));
  return 0;
}
