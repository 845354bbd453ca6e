// Name scenarios of nodus-bench: global names across three nodes (this process and two forked
// children) and the Registry's lookups and dispatch on one node.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "nodus/registry/global.hpp"
#include "nodus/registry/registry.hpp"
#include "remote_bench.hpp"

namespace nodus::bench {

namespace {

const char* kCookie = "nodus-bench-names";

Child start_global_node(const std::string& name, unsigned schedulers) {
  return fork_child([name, schedulers](auto say, auto wait_for_parent) {
    NodeOptions o;
    o.name = name;
    o.schedulers = schedulers;
    o.listen = "tcp://127.0.0.1:*";
    o.cookie = kCookie;
    auto node = Node::start(o);
    if (!node.ok() || !start_global(**node).ok()) std::_Exit(2);
    say((*node)->endpoint());
    wait_for_parent();
  });
}

}  // namespace

void global_register_scenario(const Args& a) {
  // Both children are forked before this process has a thread or a ZeroMQ context.
  Child b = start_global_node("bench_b", a.schedulers);
  Child c = start_global_node("bench_c", a.schedulers);
  std::string eb = b.read_line(), ec = c.read_line();
  NodeOptions o;
  o.name = "bench_a";
  o.schedulers = a.schedulers;
  o.listen = "tcp://127.0.0.1:*";
  o.cookie = kCookie;
  o.seeds = {eb, ec};
  auto node = std::move(Node::start(o).value());
  if (!start_global(*node).ok()) std::exit(1);
  auto deadline = Clock::now() + std::chrono::seconds(15);
  while (global_nodes(*node).size() < 2 && Clock::now() < deadline) ::usleep(1000);
  if (global_nodes(*node).size() < 2) {
    std::fprintf(stderr, "nodus-bench: the three nodes did not mesh\n");
    std::exit(1);
  }
  Inbox me(*node);
  Pid holder = spawn(*node, [] { (void)receive(); });
  const double per_phase = a.seconds / 2;
  // Register and unregister one name in a loop, from a process of this node.
  Pid sink = me.pid();
  Node* n = node.get();
  spawn(*node, [n, holder, sink, per_phase] {
    std::vector<double> reg, unreg;
    for (int i = 0; i < 200; ++i) {  // warm-up
      (void)register_global(*n, "bench", holder);
      (void)unregister_global(*n, "bench");
    }
    auto start = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - start).count() < per_phase) {
      auto t0 = Clock::now();
      if (!register_global(*n, "bench", holder).ok()) std::abort();
      auto t1 = Clock::now();
      if (!unregister_global(*n, "bench").ok()) std::abort();
      auto t2 = Clock::now();
      reg.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      unreg.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
    }
    send(sink, tuple(percentile(reg, 0.5), percentile(unreg, 0.5), percentile(reg, 0.99),
                     static_cast<std::int64_t>(reg.size())));
  });
  Message m = *receive(infinity);
  std::printf("global_register_p50: %.1f us\n", m.term()[0].as_number());
  std::printf("global_unregister_p50: %.1f us\n", m.term()[1].as_number());
  std::printf("global_register_p99: %.1f us\n", m.term()[2].as_number());
  // whereis: a local read; one thread, then one thread per core.
  if (!register_global(*node, "bench", holder).ok()) std::exit(1);
  {
    long k = 0;
    auto t0 = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - t0).count() < per_phase / 2) {
      for (int i = 0; i < 1024; ++i) {
        if (whereis_global(*node, "bench")) ++k;
      }
    }
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("global_whereis_1thread_rate: %.0f lookups/s\n", k / secs);
  }
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  std::atomic<long> total{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  auto start = Clock::now();
  for (unsigned t = 0; t < threads; ++t) {
    readers.emplace_back([&] {
      long k = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 1024; ++i) {
          if (whereis_global(*node, "bench")) ++k;
        }
      }
      total += k;
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(per_phase));
  stop = true;
  for (auto& t : readers) t.join();
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("global_whereis_rate: %.0f lookups/s (%u threads)\n", total / secs, threads);
  send(holder, "stop");
  me.close();
  node->shutdown();
  b.finish();
  c.finish();
}

void registry_scenario(const Args& a) {
  Node node(NodeOptions{.name = "bench", .schedulers = a.schedulers});
  auto unique = Registry::start(node, {.keys = RegistryKeys::kUnique, .partitions = 2}).value();
  auto topics = Registry::start(node, {.keys = RegistryKeys::kDuplicate}).value();
  Inbox me(node);
  // 1,000 processes, each under its own unique key and in one topic of ten subscribers.
  constexpr int kProcs = 1000;
  std::vector<Pid> procs;
  for (int i = 0; i < kProcs; ++i) {
    procs.push_back(spawn(node, [unique, topics, i, sink = me.pid()] {
      (void)unique->register_key(i, i);
      (void)topics->register_key(i % 100, i);
      send(sink, "ready");
      (void)receive();
    }));
  }
  for (int i = 0; i < kProcs; ++i) (void)receive(infinity);
  const double per_phase = a.seconds / 2;
  auto run = [&](auto&& body) {
    long n = 0;
    auto start = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - start).count() < per_phase) {
      for (int i = 0; i < 1024; ++i) body(n++);
    }
    return n / std::chrono::duration<double>(Clock::now() - start).count();
  };
  long found = 0;
  double lookups = run([&](long i) { found += unique->whereis_name(node, i % kProcs) ? 1 : 0; });
  std::printf("registry_lookup_rate: %.0f lookups/s (1 thread)\n", lookups);
  long reached = 0;
  double dispatches = run([&](long i) {
    (void)topics->dispatch(i % 100, [&](const std::vector<RegistryEntry>& entries) {
      reached += static_cast<long>(entries.size());
    });
  });
  std::printf("registry_dispatch_rate: %.0f dispatches/s (10 entries each, 1 thread)\n",
              dispatches);
  if (found == 0 || reached == 0) std::fprintf(stderr, "nodus-bench: nothing found\n");
  for (const Pid& p : procs) send(p, "stop");
}

}  // namespace nodus::bench
