// The application under test: a node program of "your own". Each node runs a Tally server
// (local name "tally") that counts increments and passes each one it is given to the same
// server on every other node, so that all nodes agree on the total.
//
//   increment -> ok       (counted here, and cast to every peer's tally)
//   total     -> Integer  (as this node has counted)
//
// Started by nodus::testing::Cluster: its settings come from node_options_from_env(), and
// serve_control() lets the test partition it.
#include <signal.h>

#include <cstdio>

#include "nodus/node/gen_server.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "nodus/testing/cluster.hpp"

namespace {

class Tally : public nodus::GenServer {
 public:
  nodus::Action init(nodus::Node* node) {
    node_ = node;
    return ok();
  }
  nodus::Action handle_call(nodus::Message& req, nodus::From) override {
    if (req == "increment") {
      ++total_;
      for (nodus::Atom peer : node_->nodes()) {
        nodus::cast(nodus::named("tally", peer.name()), "replicated_increment");
      }
      return reply("ok");
    }
    if (req == "total") return reply(nodus::Term(total_));
    return reply(nodus::tuple("error", "unknown_request"));
  }
  nodus::Action handle_cast(nodus::Message& req) override {
    if (req == "replicated_increment") ++total_;
    return noreply();
  }

 private:
  nodus::Node* node_ = nullptr;
  std::int64_t total_ = 0;
};

}  // namespace

int main() {
  auto options = nodus::testing::node_options_from_env();
  if (!options.ok()) {
    std::fprintf(stderr, "app_node: %s\n", options.error().to_string().c_str());
    return 2;
  }
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before the node's threads: sigwait takes them
  auto node = nodus::Node::start(*options);
  if (!node.ok()) {
    std::fprintf(stderr, "app_node: %s\n", node.error().to_string().c_str());
    return 2;
  }
  auto tally = nodus::start<Tally>(**node, nodus::SpawnOptions{.name = "tally"}, node->get());
  if (!tally.ok() || !nodus::testing::serve_control(**node).ok()) return 1;
  int sig = 0;
  sigwait(&stop, &sig);
  (*node)->shutdown();
  return 0;
}
