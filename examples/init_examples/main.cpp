// Runs the InitExamples exercise: simple, with params, a failing validation, deferred.
#include <chrono>

#include "init_examples.hpp"
#include "nodus/node/format.hpp"

int main() {
  using init_examples::InitExamples;
  using namespace std::chrono_literals;
  nodus::Node node(nodus::NodeOptions{.name = "demo"});
  nodus::Inbox me(node);
  auto show = [](const char* what, const nodus::Result<nodus::Pid, nodus::Reason>& r) {
    if (!r) return fmt::print("{:<26} -> {{error, {}}}\n", what, r.error());
    return fmt::print("{:<26} -> {{ok, {}}} state {}\n", what, *r, *InitExamples::state(*r));
  };
  show("start_simple()", InitExamples::start_simple(node));
  show("start_with_params(42)", InitExamples::start_with_params(node, 42));
  show("start_with_validation(-5)", InitExamples::start_with_validation(node, -5));
  auto t0 = std::chrono::steady_clock::now();
  auto deferred = InitExamples::start_deferred(node, {1s});
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  fmt::print("start_deferred() returned after {} ms (loading takes 1000 ms)\n", took.count());
  show("start_deferred()", deferred);  // the state call waits until the load is done
  return 0;
}
