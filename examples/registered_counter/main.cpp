// Runs the RegisteredCounter exercise: by name on its node, then by {name, node} from a
// second node linked over loopback.
#include <chrono>
#include <cstdio>

#include "registered_counter.hpp"

using registered_counter::RegisteredCounter;

int main() {
  auto make = [](const char* name) {
    nodus::NodeOptions o;
    o.name = name;
    o.listen = "tcp://127.0.0.1:*";
    o.cookie = "registered-counter-demo";
    return std::move(nodus::Node::start(o).value());
  };
  auto n1 = make("n1");
  auto n2 = make("n2");
  {
    nodus::Inbox me(*n1);
    RegisteredCounter::start_link(*n1).value();
    std::printf("on n1: increment() -> %s\n", RegisteredCounter::increment()->to_string().c_str());
    std::printf("on n1: increment() -> %s\n", RegisteredCounter::increment()->to_string().c_str());
  }
  if (nodus::Status linked = n2->connect(n1->endpoint(), std::chrono::seconds(5)); !linked.ok()) {
    std::fprintf(stderr, "n2 cannot link to n1: %s\n", linked.to_string().c_str());
    return 1;
  }
  nodus::Inbox me(*n2);
  auto r = RegisteredCounter::increment("n1");
  std::printf("on n2: increment(\"n1\") -> %s\n",
              r.ok() ? r->to_string().c_str() : r.error().to_string().c_str());
  return r.ok() ? 0 : 1;
}
