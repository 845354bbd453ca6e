// Runs the RegisteredCounter exercise: by name on its node, then by {name, node} from a
// second node linked over loopback.
#include <chrono>

#include "nodus/node/format.hpp"
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
    fmt::print("on n1: increment() -> {}\n", *RegisteredCounter::increment());
    fmt::print("on n1: increment() -> {}\n", *RegisteredCounter::increment());
  }
  if (nodus::Status linked = n2->connect(n1->endpoint(), std::chrono::seconds(5)); !linked.ok()) {
    fmt::print(stderr, "n2 cannot link to n1: {}\n", linked);
    return 1;
  }
  nodus::Inbox me(*n2);
  auto r = RegisteredCounter::increment("n1");
  if (!r.ok()) {
    fmt::print("on n2: increment(\"n1\") -> error {}\n", r.error());
    return 1;
  }
  fmt::print("on n2: increment(\"n1\") -> {}\n", *r);
  return 0;
}
