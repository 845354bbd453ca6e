// nodus-testnode: one node in its own OS process, for the multi-process tests.
//
//   NODUS_TEST_NAME=N NODUS_TEST_LISTEN=tcp://127.0.0.1:* NODUS_TEST_COOKIE_FILE=F ...
//   nodus-testnode
//
// Started by nodus::testing::Cluster (the NODUS_TEST_* variables: node_options_from_env).
// Starts a Node, the global name service, the harness's control server and an Echo server,
// prints one line to stdout,
//   READY <endpoint> <node-name> <creation> <echo-pid-id>
// and runs until SIGTERM or SIGINT (then shuts the node down and exits 0). Bad arguments or a
// node that cannot start: one line on stderr, exit 2. Log lines go to stderr.
#include <signal.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include "nodus/node/gen_server.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "nodus/registry/global.hpp"
#include "nodus/testing/cluster.hpp"

namespace {

using nodus::Action;
using nodus::From;
using nodus::Message;
using nodus::Term;

// Holds a global name for the tests: remembers the global_name_conflict messages it gets.
//   "conflicts" -> [{global_name_conflict, Name, Winner}...]
//   crash       -> the server throws
class Holder : public nodus::GenServer {
 public:
  Action handle_call(Message& req, From) override {
    if (req == "conflicts") return reply(Term(conflicts_));
    if (req == "crash") throw std::runtime_error("crash requested");
    return reply("holder");
  }
  Action handle_info(Message& msg) override {
    if (msg.match({"global_name_conflict", nodus::_, nodus::_pid}))
      conflicts_.push_back(msg.term());
    return noreply();
  }

 private:
  nodus::List conflicts_;
};

// Answers what the tests ask of a remote server:
//   "nodes"        -> [Atom...]: the nodes this node is linked to
//   "stats"        -> #{frames_in, frames_rejected, auth_failures, messages_rejected}
//   {sleep, Ms}    -> slept, after sleeping in the process
//   crash          -> the server throws (ends with {exception, ...})
//   {relay, Pid, Request} -> {ok, Reply} or {error, Reason}: this node calls Pid (1 s)
//   {global_register, Name} -> {ok, HolderPid, {Counter, Registrar}} (the fencing epoch) or
//                     {error, "reason"}: starts a Holder
//                     on this node and registers it under the global name
//   {global_whereis, Name}  -> the holder's pid, or undefined (this node's table)
//   {global_epoch, Name}    -> the name's epoch {Counter, Registrar}, or undefined
//   global_nodes   -> [Atom...]: the nodes whose global name service this one synced with
//   {block, Node} / {unblock, Node} -> ok: cut / restore traffic with Node (a partition)
//   anything else  -> {echo, Request}
// A cast is remembered; the plain message {tell, Pid} sends {last, LastCast} to Pid.
class Echo : public nodus::GenServer {
 public:
  Action init(nodus::Node* node) {
    node_ = node;
    return ok();
  }
  Action handle_call(Message& req, From) override {
    if (req == "nodes") {
      nodus::List out;
      for (nodus::Atom a : node_->nodes()) out.emplace_back(a);
      return reply(Term(std::move(out)));
    }
    if (req == "stats") {
      nodus::NetworkStats s = node_->network_stats();
      return reply(nodus::map({{"frames_in", s.frames_in},
                               {"frames_rejected", s.frames_rejected},
                               {"auth_failures", s.auth_failures},
                               {"messages_rejected", s.messages_rejected}}));
    }
    if (auto m = req.match({"sleep", nodus::_int})) {
      nodus::sleep_for(std::chrono::milliseconds(m[0].as_int()));
      return reply("slept");
    }
    if (req == "crash") throw std::runtime_error("crash requested");
    if (auto m = req.match({"global_register", nodus::_bin})) {
      auto holder = nodus::start<Holder>(*node_);
      if (!holder) return reply(nodus::tuple("error", nodus::bin(holder.error().to_string())));
      auto epoch = nodus::register_global(*node_, m[0].as_bin(), *holder);
      if (!epoch) {
        (void)nodus::stop(*holder);
        return reply(nodus::tuple("error", nodus::bin(epoch.error().to_string())));
      }
      return reply(nodus::tuple(
          "ok", *holder, nodus::tuple(static_cast<std::int64_t>(epoch->counter), epoch->node)));
    }
    if (auto m = req.match({"global_whereis", nodus::_bin})) {
      auto pid = nodus::whereis_global(*node_, m[0].as_bin());
      return reply(pid ? Term(*pid) : Term());
    }
    if (auto m = req.match({"global_epoch", nodus::_bin})) {
      auto e = nodus::global_epoch(*node_, m[0].as_bin());
      return reply(e ? nodus::tuple(static_cast<std::int64_t>(e->counter), e->node) : Term());
    }
    if (req == "global_nodes") {
      nodus::List out;
      for (nodus::Atom a : nodus::global_nodes(*node_)) out.emplace_back(a);
      return reply(Term(std::move(out)));
    }
    if (auto m = req.match({"block", nodus::_atom})) {
      node_->block_peer(m[0].as_atom().name());
      return reply("ok");
    }
    if (auto m = req.match({"unblock", nodus::_atom})) {
      node_->unblock_peer(m[0].as_atom().name());
      return reply("ok");
    }
    if (auto m = req.match({"relay", nodus::_pid, nodus::_})) {
      auto r = nodus::call(m[0].as_pid(), m[1], std::chrono::seconds(1));
      return reply(r.ok() ? nodus::tuple("ok", *r) : nodus::tuple("error", r.error().term()));
    }
    return reply(nodus::tuple("echo", req.is_term() ? req.term() : Term("typed")));
  }
  Action handle_cast(Message& req) override {
    last_ = req.is_term() ? req.term() : Term("typed");
    return noreply();
  }
  Action handle_info(Message& msg) override {
    if (auto m = msg.match({"tell", nodus::_pid})) {
      nodus::send(m[0].as_pid(), nodus::tuple("last", last_));
    }
    return noreply();
  }

 private:
  nodus::Node* node_ = nullptr;
  Term last_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) {
    std::fprintf(stderr,
                 "nodus-testnode: takes no arguments (nodus::testing::Cluster starts it "
                 "with NODUS_TEST_* variables), got %s\n",
                 argv[1]);
    return 2;
  }
  auto from_env = nodus::testing::node_options_from_env();
  if (!from_env.ok()) {
    std::fprintf(stderr, "nodus-testnode: %s\n", from_env.error().to_string().c_str());
    return 2;
  }
  nodus::NodeOptions options = std::move(from_env.value());

  // Block the stop signals before the node starts its threads, so that they all inherit the
  // mask and sigwait below is the only taker.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto started = nodus::Node::start(options);
  if (!started.ok()) {
    std::fprintf(stderr, "nodus-testnode: cannot start node %s: %s\n", options.name.c_str(),
                 started.error().to_string().c_str());
    return 2;
  }
  std::unique_ptr<nodus::Node> node = std::move(started.value());
  if (nodus::Status s = nodus::start_global(*node); !s.ok()) {
    std::fprintf(stderr, "nodus-testnode: cannot start global names: %s\n", s.to_string().c_str());
    return 1;
  }
  if (nodus::Status s = nodus::testing::serve_control(*node); !s.ok()) {
    std::fprintf(stderr, "nodus-testnode: cannot start the control server: %s\n",
                 s.to_string().c_str());
    return 1;
  }
  auto echo = nodus::start<Echo>(*node, node.get());
  if (!echo.ok()) {
    std::fprintf(stderr, "nodus-testnode: cannot start the echo server: %s\n",
                 echo.error().to_string().c_str());
    return 1;
  }

  std::printf("READY %s %s %u %llu\n", node->endpoint().c_str(),
              std::string(node->name().name()).c_str(), node->creation(),
              static_cast<unsigned long long>(echo->id));
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::fprintf(stderr, "nodus-testnode: %s stopping on signal %d\n", options.name.c_str(), sig);
  node->shutdown();
  return 0;
}
