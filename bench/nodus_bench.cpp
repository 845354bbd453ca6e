// nodus-bench SCENARIO [--seconds N] [--schedulers N] [--count N]
//
// Prints one `name: value unit` line per figure. Scenarios:
//   local-call   process-to-process calls on one node: local_call_rate, local_call_p50
//   local-cast   casts from one process to another: local_cast_rate
//   idle-memory  1,000,000 idle GenServers: idle_memory_per_process (RSS growth / count)
//   zmq-baseline raw cppzmq between two processes: zmq_rr_p50, zmq_rr_rate, zmq_push_rate
//   remote-call  calls to a GenServer in another node process: p50, p99, 1 and 64 callers
//   remote-cast  64-byte casts to a GenServer in another node process: remote_cast_rate
//   kv-put       the store, 3 nodes N=3 W=2, 50 clients on a 4th (hidden) node, 64 B values:
//                kv_put_rate, kv_put_p50, kv_put_p99 (--nodes --clients --value --seconds)
//   kv-get       the same cluster, R=2, 10,000 keys written first: kv_get_rate, p50, p99 (--keys)
//   kv-mixed     the same, half gets and half puts with context, keys zipfian: kv_mixed_rate
//   kv-durable   kv-put on RocksDB (a temp dir), sync = always, DW=2: kv_durable_put_rate, p50,
//                and per node syncs/s, writes per sync, time per sync (--sync interval|none)
//   kv-memory    one store node, --keys (200,000) put plain, with a TTL, with LRU tracking:
//                kv_memory_*: resident bytes per key, and the engine's estimate
//   kv-aae       kv-put through kv1/kv2 with anti-entropy off, on and idle, and on while it repairs
//                kv3 restarted empty (--keys loaded first, default 20,000): kv_aae_*_put_rate
//   kv-watch     100 watchers (10 per key group) on the client node, --clients writers (10):
//                kv_watch_events_rate, kv_watch_lag_p50/p99 (ms from the put's start)
//   kv-handoff   a 4th node joins the 3-node ring holding --keys (default 1,000,000) while clients
//                put: kv_join_transfer_seconds, kv_join_keys_per_s, put rate/p99 during vs after
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "nodus/node/gen_server.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "remote_bench.hpp"

namespace {

using namespace nodus;
using Clock = std::chrono::steady_clock;

using bench::Args;

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "nodus-bench: %s\n"
               "usage: nodus-bench SCENARIO [--seconds N] [--schedulers N] [--count N]\n"
               "       kv scenarios: [--nodes N] [--clients C] [--value BYTES] [--keys K]\n"
               "       kv-durable: [--sync always|interval|none]\n"
               "scenarios: local-call, local-cast, idle-memory, zmq-baseline, remote-call, "
               "global-register, registry, "
               "remote-cast, kv-put, kv-get, kv-mixed, kv-durable, kv-memory, kv-aae, kv-watch, "
               "kv-handoff\n",
               why);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  if (argc < 2) usage("no scenario given");
  a.scenario = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + flag).c_str());
    if (flag == "--sync") {
      a.sync = argv[++i];
      if (a.sync != "always" && a.sync != "interval" && a.sync != "none") {
        usage(("--sync must be always, interval or none, not " + a.sync).c_str());
      }
      continue;
    }
    char* end = nullptr;
    double v = std::strtod(argv[++i], &end);
    if (!end || *end || v < 0) usage(("bad number for " + flag + ": " + argv[i]).c_str());
    if (flag == "--seconds") {
      a.seconds = v;
    } else if (flag == "--schedulers") {
      a.schedulers = static_cast<unsigned>(v);
    } else if (flag == "--count") {
      a.count = static_cast<long>(v);
    } else if (flag == "--nodes") {
      a.nodes = static_cast<long>(v);
    } else if (flag == "--clients") {
      a.clients = static_cast<long>(v);
    } else if (flag == "--value") {
      a.value = static_cast<long>(v);
    } else if (flag == "--keys") {
      a.keys = static_cast<long>(v);
    } else {
      usage(("unknown flag " + flag).c_str());
    }
  }
  return a;
}

std::size_t rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

class Echo : public GenServer {
 public:
  Action handle_call(Message& req, From) override { return reply(std::move(req.term())); }
};

class Counter : public GenServer {
 public:
  Action init(long expected, Pid notify) {
    expected_ = expected;
    notify_ = notify;
    return ok();
  }
  Action handle_cast(Message&) override {
    if (++seen_ == expected_) send(notify_, "done");
    return noreply();
  }

 private:
  long expected_ = 0;
  long seen_ = 0;
  Pid notify_;
};

class Idle : public GenServer {};

void local_call(const Args& a) {
  Node node(NodeOptions{.name = "bench", .schedulers = a.schedulers});
  Inbox me(node);
  Pid server = start<Echo>(node).value();
  Pid sink = me.pid();
  const auto budget = std::chrono::duration<double>(a.seconds);
  spawn(node, [server, sink, budget] {
    // Warm up, then count round trips for the time budget; time every 64th call.
    for (int i = 0; i < 10000; ++i) (void)call(server, i);
    std::vector<double> samples;
    long calls = 0;
    const auto start = Clock::now();
    const auto stop_at = start + std::chrono::duration_cast<Clock::duration>(budget);
    auto now = start;
    while (now < stop_at) {
      for (int i = 0; i < 64; ++i) (void)call(server, i);
      auto t0 = Clock::now();
      (void)call(server, 0);
      now = Clock::now();
      samples.push_back(std::chrono::duration<double, std::micro>(now - t0).count());
      calls += 65;
    }
    double secs = std::chrono::duration<double>(now - start).count();
    std::sort(samples.begin(), samples.end());
    send(sink, tuple(calls / secs, samples[samples.size() / 2]));
  });
  Message m = *receive(infinity);
  std::printf("local_call_rate: %.0f calls/s\n", m.term()[0].as_number());
  std::printf("local_call_p50: %.2f us\n", m.term()[1].as_number());
}

void local_cast(const Args& a) {
  Node node(NodeOptions{.name = "bench", .schedulers = a.schedulers});
  Inbox me(node);
  long n = a.count ? a.count : static_cast<long>(a.seconds * 5'000'000);
  Pid counter = start<Counter>(node, n, me.pid()).value();
  Pid sink = me.pid();
  auto start = Clock::now();
  spawn(node, [counter, n] {
    for (long i = 0; i < n; ++i) cast(counter, i);
  });
  (void)sink;
  Message done = *receive(infinity);
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("local_cast_rate: %.0f casts/s\n", n / secs);
}

void idle_memory(const Args& a) {
  long n = a.count ? a.count : 1'000'000;
  Node node(NodeOptions{.name = "bench", .schedulers = a.schedulers});
  Inbox me(node);
  Pid sink = me.pid();
  std::size_t before = rss_bytes();
  auto t0 = Clock::now();
  Node* np = &node;
  spawn(node, [np, n, sink] {
    for (long i = 0; i < n; ++i) {
      if (!start<Idle>(*np).ok()) std::abort();
    }
    send(sink, "started");
  });
  (void)*receive(infinity);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::size_t after = rss_bytes();
  std::printf("idle_processes: %ld processes\n", n);
  std::printf("idle_spawn_rate: %.0f processes/s\n", n / secs);
  std::printf("idle_memory_per_process: %.0f bytes\n",
              static_cast<double>(after - before) / static_cast<double>(n));
  std::printf("idle_memory_total: %.1f MiB\n", (after - before) / 1048576.0);
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  std::map<std::string, std::function<void(const Args&)>> scenarios = {
      {"local-call", local_call},
      {"local-cast", local_cast},
      {"idle-memory", idle_memory},
      {"zmq-baseline", bench::zmq_baseline_scenario},
      {"remote-call", bench::remote_call_scenario},
      {"remote-cast", bench::remote_cast_scenario},
      {"global-register", bench::global_register_scenario},
      {"registry", bench::registry_scenario},
      {"kv-put", bench::kv_put_scenario},
      {"kv-get", bench::kv_get_scenario},
      {"kv-mixed", bench::kv_mixed_scenario},
      {"kv-durable", bench::kv_durable_scenario},
      {"kv-memory", bench::kv_memory_put_scenario},
      {"kv-aae", bench::kv_aae_put_scenario},
      {"kv-watch", bench::kv_watch_put_scenario},
      {"kv-handoff", bench::kv_handoff_bench_scenario}};
  auto it = scenarios.find(a.scenario);
  if (it == scenarios.end()) usage(("unknown scenario " + a.scenario).c_str());
  it->second(a);
  return 0;
}
