// Runs the SlowServer exercise with the chapter's delays (about 40 s in all).

#include "nodus/node/format.hpp"
#include "slow_server.hpp"

int main() {
  using slow_server::SlowServer;
  using namespace std::chrono_literals;
  nodus::Node node(nodus::NodeOptions{.name = "demo"});
  nodus::Inbox me(node);
  nodus::Pid s = SlowServer::start_link(node).value();
  auto show = [](const char* what, const nodus::CallResult& r) {
    if (r) return fmt::print("{:<40} -> {}\n", what, *r);
    if (r.error() == "timeout") return fmt::print("{:<40} -> Timed out!\n", what);
    return fmt::print("{:<40} -> error {}\n", what, r.error());
  };
  show("fast_operation()", SlowServer::fast_operation(s));
  show("slow_operation(3000)", SlowServer::slow_operation(s, 3000ms));
  show("slow_operation(6000)", SlowServer::slow_operation(s, 6000ms));
  show("slow_operation_with_timeout(6000, 10000)",
       SlowServer::slow_operation_with_timeout(s, 6000ms, 10s));
  show("infinite_wait(20000)", SlowServer::infinite_wait(s, 20000ms));
  return 0;
}
