// The store's scenarios of nodus-bench (DESIGN.md): kv-put, kv-get and kv-durable. Three store
// nodes (N = 3, W = 2, R = 2, 64 partitions) run as child processes; the parent runs a hidden
// client node whose client processes each send one request at a time, spread over the three
// nodes. kv-durable is kv-put on RocksDB in a temp dir, sync = always, DW = 2.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "nodus/kv/client.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/node/gen_server.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/process.hpp"
#include "remote_bench.hpp"

namespace nodus::bench {

namespace {

const char* kCookie = "nodus-bench-kv";

// prefix + number, appended (`"k" + std::to_string(i)` trips GCC 12's -Wrestrict).
std::string numbered(const char* prefix, long i) {
  std::string s = prefix;
  s += std::to_string(i);
  return s;
}

struct Cluster {
  std::vector<Child> children;
  std::vector<std::string> endpoints;
  std::vector<std::string> names;
  ~Cluster() {
    for (auto& c : children) c.finish();
  }
};

// Forks the store nodes; each says its endpoint once its ring has formed.
// With `data_root`, each node keeps its data in data_root/NAME, synced always, DW = 2.
void start_cluster(Cluster& cl, int nodes, unsigned schedulers, const std::string& data_root = {}) {
  for (int i = 1; i <= nodes; ++i) cl.names.push_back(numbered("kv", i));
  for (int i = 0; i < nodes; ++i) {
    const std::string name = cl.names[i];
    const std::vector<std::string> seeds = cl.endpoints;
    const std::vector<std::string> members = cl.names;
    cl.children.push_back(fork_child([=](auto say, auto wait_for_parent) {
      NodeOptions o;
      o.name = name;
      o.schedulers = schedulers;
      o.listen = "tcp://127.0.0.1:*";
      o.cookie = kCookie;
      o.seeds = seeds;
      auto node = Node::start(o);
      if (!node) std::_Exit(3);
      kv::Options ko;
      ko.partitions = 64;
      ko.replicas = 3;
      ko.write_quorum = 2;
      ko.read_quorum = 2;
      ko.initial_members = members;
      ko.context_secret = kCookie;
      if (!data_root.empty()) {
        ko.data_dir = data_root + "/" + name;
        ko.sync = kv::SyncMode::kAlways;
        ko.durable_write_quorum = 2;
      }
      if (!kv::start(**node, ko).ok()) std::_Exit(4);
      say((*node)->endpoint());
      wait_for_parent();
      (*node)->shutdown();
      std::_Exit(0);
    }));
    cl.endpoints.push_back(cl.children.back().read_line());
  }
}

struct Figures {
  double rate = 0, p50 = 0, p99 = 0;
  long errors = 0;
};

// Runs `clients` processes on `node` for `seconds`, each calling `op(client, i)` in a loop.
template <class Op>
Figures run_clients(Node& node, int clients, double seconds, Op op) {
  Inbox me(node);
  const Pid sink = me.pid();
  const auto budget =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  std::atomic<long> errors{0};
  auto samples = std::make_shared<std::vector<std::vector<double>>>(clients);
  const auto start = Clock::now();
  for (int c = 0; c < clients; ++c) {
    spawn(node, [c, op, sink, budget, start, samples, &errors] {
      auto& mine = (*samples)[c];
      mine.reserve(200000);
      long i = 0;
      for (auto now = Clock::now(); now - start < budget; ++i) {
        const auto t0 = now;
        if (!op(c, i)) errors.fetch_add(1);
        now = Clock::now();
        mine.push_back(std::chrono::duration<double, std::micro>(now - t0).count());
      }
      send(sink, "done");
    });
  }
  for (int c = 0; c < clients; ++c) (void)receive(infinity);
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& v : *samples) all.insert(all.end(), v.begin(), v.end());
  Figures f;
  f.rate = static_cast<double>(all.size() - static_cast<std::size_t>(errors.load())) / secs;
  f.p50 = percentile(all, 0.5);
  f.p99 = percentile(all, 0.99);
  f.errors = errors.load();
  return f;
}

std::unique_ptr<Node> client_node(const Cluster& cl, unsigned schedulers) {
  NodeOptions o;
  o.name = "kv_client";
  o.schedulers = schedulers;
  o.listen = "tcp://127.0.0.1:*";
  o.cookie = kCookie;
  o.hidden = true;
  o.seeds = cl.endpoints;
  auto node = Node::start(o);
  if (!node) std::abort();
  // Wait until every store node answers.
  for (const auto& name : cl.names) {
    kv::Client c(**node, name);
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (!c.get("warmup").ok() && c.get("warmup").error().code() != ErrorCode::kNotFound) {
      if (Clock::now() > deadline) {
        std::fprintf(stderr, "kv: node %s did not answer\n", name.c_str());
        std::abort();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return std::move(*node);
}

void kv_scenario(const Args& a, bool gets, const std::string& data_root = {}) {
  const int nodes = a.nodes ? static_cast<int>(a.nodes) : 3;
  const int clients = a.clients ? static_cast<int>(a.clients) : 50;
  const std::string value(a.value ? static_cast<std::size_t>(a.value) : 64, 'v');
  Cluster cl;
  start_cluster(cl, nodes, a.schedulers, data_root);
  auto node = client_node(cl, a.schedulers);
  std::vector<std::unique_ptr<kv::Client>> via;
  for (const auto& name : cl.names) via.push_back(std::make_unique<kv::Client>(*node, name));
  auto* vp = &via;
  if (!gets) {
    Figures f = run_clients(*node, clients, a.seconds, [vp, &value](int c, long i) {
      const std::string key = numbered("b", c) + numbered("-", i);
      return (*vp)[static_cast<std::size_t>(c) % vp->size()]->put(key, value).ok();
    });
    const char* name = data_root.empty() ? "kv_put" : "kv_durable_put";
    std::printf("%s_rate: %.0f puts/s\n", name, f.rate);
    std::printf("%s_p50: %.1f us\n", name, f.p50);
    std::printf("%s_p99: %.1f us\n", name, f.p99);
    if (f.errors) std::printf("%s_errors: %ld\n", name, f.errors);
    return;
  }
  const long keys = a.keys ? a.keys : 10000;
  {  // the keys, written first by the same clients
    Inbox me(*node);
    const Pid sink = me.pid();
    for (int c = 0; c < clients; ++c) {
      spawn(*node, [c, vp, &value, keys, clients, sink] {
        for (long k = c; k < keys; k += clients) {
          (void)(*vp)[static_cast<std::size_t>(k) % vp->size()]->put(numbered("g", k), value);
        }
        send(sink, "done");
      });
    }
    for (int c = 0; c < clients; ++c) (void)receive(infinity);
  }
  Figures f = run_clients(*node, clients, a.seconds, [vp, keys](int c, long i) {
    const long k = (static_cast<long>(c) * 7919 + i * 104729) % keys;
    return (*vp)[static_cast<std::size_t>(c) % vp->size()]->get(numbered("g", k)).ok();
  });
  std::printf("kv_get_rate: %.0f gets/s\n", f.rate);
  std::printf("kv_get_p50: %.1f us\n", f.p50);
  std::printf("kv_get_p99: %.1f us\n", f.p99);
  if (f.errors) std::printf("kv_get_errors: %ld\n", f.errors);
}

}  // namespace

void kv_put_scenario(const Args& a) { kv_scenario(a, false); }
void kv_get_scenario(const Args& a) { kv_scenario(a, true); }
void kv_durable_scenario(const Args& a) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "nodus-bench-kv-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) {
    std::fprintf(stderr, "kv-durable: cannot make a temp dir\n");
    return;
  }
  kv_scenario(a, false, tmpl);  // the nodes stop (and sync) before it returns
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
}

}  // namespace nodus::bench
