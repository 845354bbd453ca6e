// Two-process scenarios of nodus-bench: raw ZeroMQ as the baseline, then nodus remote calls and
// casts. Each forks a child (before any ZeroMQ context or thread exists in the parent), which
// reports its endpoint on a pipe and runs until the parent closes the pipe.
#include "remote_bench.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "nodus/node/gen_server.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"

namespace nodus::bench {

namespace {

// -- raw ZeroMQ -----------------------------------------------------------------------------

void zmq_baseline(double seconds) {
  Child child = fork_child([](auto say, auto wait_for_parent) {
    zmq::context_t ctx;
    zmq::socket_t rep(ctx, zmq::socket_type::rep);
    zmq::socket_t pull(ctx, zmq::socket_type::pull);
    rep.bind("tcp://127.0.0.1:*");
    pull.bind("tcp://127.0.0.1:*");
    say(rep.get(zmq::sockopt::last_endpoint) + " " + pull.get(zmq::sockopt::last_endpoint));
    std::atomic<bool> stop{false};
    std::thread echo([&] {
      rep.set(zmq::sockopt::rcvtimeo, 100);
      while (!stop) {
        zmq::message_t m;
        if (rep.recv(m)) (void)rep.send(m, zmq::send_flags::none);
      }
    });
    std::thread sink([&] {
      pull.set(zmq::sockopt::rcvtimeo, 100);
      while (!stop) {
        zmq::message_t m;
        (void)pull.recv(m);
      }
    });
    wait_for_parent();
    stop = true;
    echo.join();
    sink.join();
  });
  std::string line = child.read_line();
  std::string rep_ep = line.substr(0, line.find(' '));
  std::string pull_ep = line.substr(line.find(' ') + 1);
  {
    zmq::context_t ctx;
    zmq::socket_t req(ctx, zmq::socket_type::req);
    req.connect(rep_ep);
    std::string payload(64, 'x');
    std::vector<double> samples;
    const auto budget = std::chrono::duration<double>(seconds / 2);
    auto start = Clock::now();
    long n = 0;
    while (Clock::now() - start < budget) {
      auto t0 = Clock::now();
      req.send(zmq::buffer(payload), zmq::send_flags::none);
      zmq::message_t m;
      (void)req.recv(m);
      samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      ++n;
    }
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf("zmq_rr_p50: %.1f us\n", percentile(samples, 0.5));
    std::printf("zmq_rr_rate: %.0f round trips/s\n", n / secs);

    zmq::socket_t push(ctx, zmq::socket_type::push);
    push.set(zmq::sockopt::linger, 0);
    push.connect(pull_ep);
    const long kMessages = 2'000'000;
    start = Clock::now();
    for (long i = 0; i < kMessages; ++i) push.send(zmq::buffer(payload), zmq::send_flags::none);
    secs = std::chrono::duration<double>(Clock::now() - start).count();
    std::printf("zmq_push_rate: %.0f msgs/s (sender side, 64 B)\n", kMessages / secs);
  }
  child.finish();
}

// -- nodus ----------------------------------------------------------------------------------

class Echo : public GenServer {
 public:
  Action handle_call(Message& req, From) override { return reply(std::move(req)); }
};

class Counter : public GenServer {
 public:
  Action handle_cast(Message&) override {
    ++count_;
    return noreply();
  }
  Action handle_call(Message&, From) override { return reply(count_); }

 private:
  std::int64_t count_ = 0;
};

const char* kCookie = "nodus-bench";

Child start_server_node(unsigned schedulers) {
  return fork_child([schedulers](auto say, auto wait_for_parent) {
    NodeOptions o;
    o.name = "bench_b";
    o.schedulers = schedulers;
    o.listen = "tcp://127.0.0.1:*";
    o.cookie = kCookie;
    auto node = Node::start(o);
    if (!node.ok()) std::_Exit(2);
    Pid echo = start<Echo>(**node).value();
    Pid counter = start<Counter>(**node).value();
    say((*node)->endpoint() + " " + std::to_string(echo.creation) + " " + std::to_string(echo.id) +
        " " + std::to_string(counter.id));
    wait_for_parent();
  });
}

struct Remote {
  Child child;
  std::unique_ptr<Node> node;
  Pid echo, counter;
};

Remote connect_remote(unsigned schedulers) {
  Remote r;
  r.child = start_server_node(schedulers);
  std::string line = r.child.read_line();
  char ep[256];
  unsigned long creation = 0, echo_id = 0, counter_id = 0;
  if (std::sscanf(line.c_str(), "%255s %lu %lu %lu", ep, &creation, &echo_id, &counter_id) != 4) {
    std::fprintf(stderr, "nodus-bench: the server node did not start: %s\n", line.c_str());
    std::exit(1);
  }
  NodeOptions o;
  o.name = "bench_a";
  o.schedulers = schedulers;
  o.listen = "tcp://127.0.0.1:*";
  o.cookie = kCookie;
  o.seeds = {ep};
  r.node = std::move(Node::start(o).value());
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (r.node->nodes().empty() && Clock::now() < deadline) ::usleep(1000);
  r.echo = Pid{atom("bench_b"), static_cast<std::uint32_t>(creation), echo_id};
  r.counter = Pid{atom("bench_b"), static_cast<std::uint32_t>(creation), counter_id};
  return r;
}

}  // namespace

void zmq_baseline_scenario(const Args& a) { zmq_baseline(a.seconds); }

void remote_call_scenario(const Args& a) {
  Remote r = connect_remote(a.schedulers);
  Inbox me(*r.node);
  Pid echo = r.echo;
  Pid sink = me.pid();
  const double per_phase = a.seconds / 2;
  // One caller: latency and rate.
  spawn(*r.node, [echo, sink, per_phase] {
    for (int i = 0; i < 1000; ++i) (void)call(echo, i);
    std::vector<double> samples;
    auto start = Clock::now();
    long n = 0;
    while (std::chrono::duration<double>(Clock::now() - start).count() < per_phase) {
      auto t0 = Clock::now();
      (void)call(echo, n);
      samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      ++n;
    }
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    double p50 = percentile(samples, 0.5), p99 = percentile(samples, 0.99);
    send(sink, tuple(p50, p99, n / secs));
  });
  Message one = *receive(infinity);
  std::printf("remote_call_p50: %.1f us\n", one.term()[0].as_number());
  std::printf("remote_call_p99: %.1f us\n", one.term()[1].as_number());
  std::printf("remote_call_1caller_rate: %.0f calls/s\n", one.term()[2].as_number());
  // 64 concurrent callers.
  const int kCallers = 64;
  auto start = Clock::now();
  for (int c = 0; c < kCallers; ++c) {
    spawn(*r.node, [echo, sink, per_phase, start] {
      long n = 0;
      while (std::chrono::duration<double>(Clock::now() - start).count() < per_phase) {
        if (call(echo, n).ok()) ++n;
      }
      send(sink, n);
    });
  }
  long total = 0;
  for (int c = 0; c < kCallers; ++c) total += receive(infinity)->term().as_int();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("remote_call_64callers_rate: %.0f calls/s\n", total / secs);
  r.child.finish();
}

void remote_cast_scenario(const Args& a) {
  Remote r = connect_remote(a.schedulers);
  Inbox me(*r.node);
  Pid counter = r.counter;
  Pid sink = me.pid();
  const long n = a.count ? a.count : static_cast<long>(a.seconds * 400'000);
  auto start = Clock::now();
  spawn(*r.node, [counter, sink, n] {
    const std::string payload(64, 'x');
    for (long i = 0; i < n; ++i) cast(counter, bin(payload));
    // Casts and the call travel in order: when the call returns, every cast was handled.
    send(sink, call(counter, "count", infinity).value_or(-1));
  });
  Message m = *receive(infinity);
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  if (m.term().as_int() != n) {
    std::fprintf(stderr, "nodus-bench: %ld casts sent, %lld arrived\n", n,
                 static_cast<long long>(m.term().as_int()));
  }
  std::printf("remote_cast_rate: %.0f casts/s (64 B)\n", m.term().as_int() / secs);
  r.child.finish();
}

}  // namespace nodus::bench
