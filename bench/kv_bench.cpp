// The store's scenarios of nodus-bench (DESIGN.md): kv-put, kv-get, kv-mixed, kv-durable,
// kv-memory, kv-aae, kv-watch, kv-handoff. Three store nodes (N = 3, W = 2, R = 2, 64
// partitions) run as child processes; the parent runs a hidden client node whose client
// processes each send one request at a time, spread over the three nodes. kv-durable is kv-put
// on RocksDB in a temp dir, sync = always, DW = 2.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
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
  // Newest first: each child holds copies of the pipes to the children forked before it, so
  // an older child sees its pipe close only once the younger ones are gone (in fork order, all
  // but the last waited 10 s and were killed, before they could print their stage timings).
  ~Cluster() {
    for (auto it = children.rbegin(); it != children.rend(); ++it) it->finish();
  }
};

// Forks the store nodes; each says its endpoint once its ring has formed.
// With `data_root`, each node keeps its data in data_root/NAME, synced always, DW = 2.
// `tweak` may change each node's store options.
using Tweak = std::function<void(kv::Options&)>;
void start_node(Cluster& cl, std::size_t i, unsigned schedulers, const std::string& data_root,
                const Tweak& tweak);
void start_cluster(Cluster& cl, int nodes, unsigned schedulers, const std::string& data_root = {},
                   const Tweak& tweak = {}) {
  for (int i = 1; i <= nodes; ++i) cl.names.push_back(numbered("kv", i));
  for (int i = 0; i < nodes; ++i) {
    start_node(cl, static_cast<std::size_t>(i), schedulers, data_root, tweak);
    cl.endpoints.push_back(cl.children.back().read_line());
  }
}

// Forks node cl.names[i], seeded with the endpoints known so far (cl.endpoints, but its own).
void start_node(Cluster& cl, std::size_t i, unsigned schedulers, const std::string& data_root,
                const Tweak& tweak) {
  {
    const std::string name = cl.names[i];
    std::vector<std::string> seeds;
    for (std::size_t j = 0; j < cl.endpoints.size(); ++j) {
      if (j != i) seeds.push_back(cl.endpoints[j]);
    }
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
      if (tweak) tweak(ko);
      if (!kv::start(**node, ko).ok()) std::_Exit(4);
      say((*node)->endpoint());
      wait_for_parent();
      if (const char* t = std::getenv("NODUS_KV_TIMING"); t && *t && *t != '0') {
        if (auto s = kv::stats(**node); s.ok()) {
          for (const kv::StageTiming& st : s->stages) {
            std::fprintf(stderr,
                         "%s stage %-12s n=%-8llu mean %8.1f us  p50 %8.1f us  p99 %8.1f us\n",
                         name.c_str(), st.name.c_str(), static_cast<unsigned long long>(st.count),
                         st.mean_us, st.p50_us, st.p99_us);
          }
        }
      }
      (*node)->shutdown();
      std::_Exit(0);
    }));
  }
}

struct Figures {
  double rate = 0, p50 = 0, p99 = 0;
  long errors = 0;
  double client_cpu = 0, store_cpu = 0;  // cores busy over the run: this process, the nodes
};

// CPU time (user + system) a process has used so far, in seconds; 0 when unreadable.
double cpu_seconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return 0;
  const auto close = line.rfind(')');  // the command name may hold spaces
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double cluster_cpu_seconds(const Cluster& cl) {
  double sum = 0;
  for (const auto& c : cl.children) sum += cpu_seconds(c.pid);
  return sum;
}

// Runs `clients` processes on `node` for `seconds`, each calling `op(client, i)` in a loop.
template <class Op>
Figures run_clients(const Cluster& cl, Node& node, int clients, double seconds, Op op) {
  const double client_cpu0 = cpu_seconds(::getpid());
  const double store_cpu0 = cluster_cpu_seconds(cl);
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
  f.client_cpu = (cpu_seconds(::getpid()) - client_cpu0) / secs;
  f.store_cpu = (cluster_cpu_seconds(cl) - store_cpu0) / secs;
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

// CPU per request: where the machine's two cores went (the client node is this process).
void print_cpu(const char* what, const Figures& f) {
  std::printf("%s_client_cpu: %.2f cores\n", what, f.client_cpu);
  std::printf("%s_store_cpu: %.2f cores\n", what, f.store_cpu);
  if (f.rate > 0) {
    std::printf("%s_cpu_per_op: %.1f us (client %.1f, store %.1f)\n", what,
                1e6 * (f.client_cpu + f.store_cpu) / f.rate, 1e6 * f.client_cpu / f.rate,
                1e6 * f.store_cpu / f.rate);
  }
}

// A field of node `at`'s store stats (nodus_kv's "stats" call); -1 when it does not answer.
long remote_stat(Node& node, const std::string& at, const char* field) {
  Inbox me(node);
  auto r = call(named("nodus_kv", at), Term("stats"), std::chrono::milliseconds(2000));
  if (!r) return -1;
  auto m = r->match({"ok", _map});
  if (!m) return -1;
  const Term* f = m[0].find(Term(field));
  return f && f->is_int() ? static_cast<long>(f->as_int()) : -1;
}

// The engine's log, per node (kv::Stats::syncs ...), read before and after a run.
struct SyncFigures {
  long syncs = 0, writes = 0, sync_us = 0, waits = 0;
};
std::vector<SyncFigures> sync_figures(Node& node, const Cluster& cl) {
  std::vector<SyncFigures> v;
  for (const auto& name : cl.names) {
    v.push_back(
        SyncFigures{remote_stat(node, name, "syncs"), remote_stat(node, name, "sync_writes"),
                    remote_stat(node, name, "sync_us"), remote_stat(node, name, "sync_waits")});
  }
  return v;
}
void print_syncs(const Cluster& cl, const std::vector<SyncFigures>& before,
                 const std::vector<SyncFigures>& after, double seconds) {
  for (std::size_t i = 0; i < cl.names.size() && i < before.size() && i < after.size(); ++i) {
    const double syncs = static_cast<double>(after[i].syncs - before[i].syncs);
    const double writes = static_cast<double>(after[i].writes - before[i].writes);
    const double us = static_cast<double>(after[i].sync_us - before[i].sync_us);
    const double waits = static_cast<double>(after[i].waits - before[i].waits);
    std::printf(
        "kv_durable_%s_syncs: %.0f/s, %.1f writes per sync, %.0f us per sync, %.1f wake-ups "
        "per sync, %.0f%% of the time syncing\n",
        cl.names[i].c_str(), syncs / seconds, syncs > 0 ? writes / syncs : 0,
        syncs > 0 ? us / syncs : 0, syncs > 0 ? waits / syncs : 0, us / (seconds * 1e4));
  }
}

enum class Mix { kPut, kGet, kMixed };

// Zipfian ranks 0..n-1 (s = 0.99, as YCSB): rank i drawn with weight 1 / (i + 1)^s.
class Zipf {
 public:
  explicit Zipf(long n) : cdf_(static_cast<std::size_t>(n)) {
    double sum = 0;
    for (long i = 0; i < n; ++i) {
      sum += 1.0 / std::pow(static_cast<double>(i + 1), 0.99);
      cdf_[static_cast<std::size_t>(i)] = sum;
    }
    for (double& c : cdf_) c /= sum;
  }
  long operator()(std::mt19937_64& rng) const {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng);
    return static_cast<long>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }

 private:
  std::vector<double> cdf_;
};

void kv_scenario(const Args& a, Mix mix, const std::string& data_root = {}) {
  const bool gets = mix != Mix::kPut;
  const int nodes = a.nodes ? static_cast<int>(a.nodes) : 3;
  const int clients = a.clients ? static_cast<int>(a.clients) : 50;
  const std::string value(a.value ? static_cast<std::size_t>(a.value) : 64, 'v');
  Cluster cl;
  Tweak tweak;
  if (a.sync == "interval" || a.sync == "none") {
    const kv::SyncMode mode = a.sync == "none" ? kv::SyncMode::kNone : kv::SyncMode::kInterval;
    tweak = [mode](kv::Options& o) {
      o.sync = mode;
      o.durable_write_quorum = 0;  // DW = 2 would refuse every put: the engine is not durable
    };
  }
  start_cluster(cl, nodes, a.schedulers, data_root, tweak);
  auto node = client_node(cl, a.schedulers);
  std::vector<std::unique_ptr<kv::Client>> via;
  for (const auto& name : cl.names) via.push_back(std::make_unique<kv::Client>(*node, name));
  auto* vp = &via;
  if (!gets) {
    const auto sync0 = data_root.empty() ? std::vector<SyncFigures>() : sync_figures(*node, cl);
    Figures f = run_clients(cl, *node, clients, a.seconds, [vp, &value](int c, long i) {
      const std::string key = numbered("b", c) + numbered("-", i);
      return (*vp)[static_cast<std::size_t>(c) % vp->size()]->put(key, value).ok();
    });
    const auto sync1 = data_root.empty() ? std::vector<SyncFigures>() : sync_figures(*node, cl);
    const char* name = data_root.empty() ? "kv_put" : "kv_durable_put";
    std::printf("%s_rate: %.0f puts/s\n", name, f.rate);
    std::printf("%s_p50: %.1f us\n", name, f.p50);
    std::printf("%s_p99: %.1f us\n", name, f.p99);
    if (f.errors) std::printf("%s_errors: %ld\n", name, f.errors);
    print_cpu(name, f);
    if (!data_root.empty()) print_syncs(cl, sync0, sync1, a.seconds);
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
  if (mix == Mix::kMixed) {
    // Half gets, half puts with the context of the client's last get or put of the key (a
    // blind put when it has none yet), keys drawn zipfian: the hot keys see concurrent puts,
    // which become siblings until a put with a context that saw them resolves them.
    const auto zipf = std::make_shared<const Zipf>(keys);
    struct State {
      std::mt19937_64 rng;
      std::vector<std::string> context;
    };
    auto states = std::make_shared<std::vector<State>>(static_cast<std::size_t>(clients));
    for (int c = 0; c < clients; ++c) {
      (*states)[static_cast<std::size_t>(c)].rng.seed(static_cast<std::uint64_t>(c) + 1);
      (*states)[static_cast<std::size_t>(c)].context.resize(static_cast<std::size_t>(keys));
    }
    Figures f = run_clients(cl, *node, clients, a.seconds, [vp, zipf, states, &value](int c, long) {
      State& st = (*states)[static_cast<std::size_t>(c)];
      const long k = (*zipf)(st.rng);
      const std::string key = numbered("g", k);
      std::string& ctx = st.context[static_cast<std::size_t>(k)];
      const kv::Client& client = *(*vp)[static_cast<std::size_t>(c) % vp->size()];
      if (st.rng() & 1) {
        auto g = client.get(key);
        if (g) ctx = std::move(g->context);
        return g.ok();
      }
      kv::RequestOptions o;
      o.context = ctx;
      auto p = client.put(key, value, o);
      if (p) ctx = std::move(*p);
      return p.ok();
    });
    std::printf("kv_mixed_rate: %.0f ops/s\n", f.rate);
    std::printf("kv_mixed_p50: %.1f us\n", f.p50);
    std::printf("kv_mixed_p99: %.1f us\n", f.p99);
    if (f.errors) std::printf("kv_mixed_errors: %ld\n", f.errors);
    print_cpu("kv_mixed", f);
    return;
  }
  Figures f = run_clients(cl, *node, clients, a.seconds, [vp, keys](int c, long i) {
    const long k = (static_cast<long>(c) * 7919 + i * 104729) % keys;
    return (*vp)[static_cast<std::size_t>(c) % vp->size()]->get(numbered("g", k)).ok();
  });
  std::printf("kv_get_rate: %.0f gets/s\n", f.rate);
  std::printf("kv_get_p50: %.1f us\n", f.p50);
  std::printf("kv_get_p99: %.1f us\n", f.p99);
  if (f.errors) std::printf("kv_get_errors: %ld\n", f.errors);
  print_cpu("kv_get", f);
}

// kv-aae: the put rate with anti-entropy off, on and idle (every exchange finds equal trees or
// only the writes in flight), and on while it repairs a replica restarted empty (kv3 killed and
// started again on the memory engine, `keys` keys to get back), then on again once kv3 caught
// up: the same cluster with and without exchanges running, side by side at the end. Puts go
// through kv1 and kv2 only (the same in every run), so kv3's restart costs no client an error.
// kv.aae_cpu_percent stays at its default.
void kv_aae_scenario(const Args& a) {
  const int clients = a.clients ? static_cast<int>(a.clients) : 50;
  const long keys = a.keys ? a.keys : 20000;
  const std::string value(a.value ? static_cast<std::size_t>(a.value) : 64, 'v');
  constexpr std::uint32_t kRepairsPerSecond = 5000;
  auto measure = [&](Cluster& cl, Node& node, const char* run) -> Figures {
    std::vector<std::unique_ptr<kv::Client>> via;
    for (std::size_t i = 0; i < 2; ++i)
      via.push_back(std::make_unique<kv::Client>(node, cl.names[i]));
    auto* vp = &via;
    Figures f = run_clients(cl, node, clients, a.seconds, [vp, &value, run](int c, long i) {
      const std::string key = std::string(run) + numbered("-", c) + numbered("-", i);
      return (*vp)[static_cast<std::size_t>(c) % vp->size()]->put(key, value).ok();
    });
    const std::string name = std::string("kv_aae_") + run;
    std::printf("%s_put_rate: %.0f puts/s\n", name.c_str(), f.rate);
    std::printf("%s_put_p50: %.1f us\n", name.c_str(), f.p50);
    std::printf("%s_put_p99: %.1f us\n", name.c_str(), f.p99);
    if (f.errors) std::printf("%s_put_errors: %ld\n", name.c_str(), f.errors);
    print_cpu(name.c_str(), f);
    return f;
  };
  auto load = [&](Node& node, const Cluster& cl) {
    Inbox me(node);
    const Pid sink = me.pid();
    auto via = std::make_shared<std::vector<std::unique_ptr<kv::Client>>>();
    for (std::size_t i = 0; i < 2; ++i)
      via->push_back(std::make_unique<kv::Client>(node, cl.names[i]));
    for (int c = 0; c < clients; ++c) {
      spawn(node, [c, via, &value, keys, clients, sink] {
        for (long k = c; k < keys; k += clients) {
          (void)(*via)[static_cast<std::size_t>(k) % via->size()]->put(numbered("g", k), value);
        }
        send(sink, "done");
      });
    }
    for (int c = 0; c < clients; ++c) (void)receive(infinity);
  };
  {  // anti-entropy off
    Cluster cl;
    start_cluster(cl, 3, a.schedulers, {}, [](kv::Options& o) { o.aae = false; });
    auto node = client_node(cl, a.schedulers);
    load(*node, cl);
    measure(cl, *node, "off");
  }
  Cluster cl;
  start_cluster(cl, 3, a.schedulers, {}, [](kv::Options& o) {
    o.aae = true;
    o.aae_exchange_interval = std::chrono::milliseconds(1000);
    o.aae_concurrency = 1;
    o.aae_repairs_per_second = kRepairsPerSecond;
  });
  auto node = client_node(cl, a.schedulers);
  load(*node, cl);
  std::this_thread::sleep_for(std::chrono::seconds(2));  // a round of exchanges, all equal
  const Figures idle = measure(cl, *node, "idle");
  const long exchanges = remote_stat(*node, "kv1", "aae_exchanges");
  std::printf("kv_aae_idle_exchanges_kv1: %ld\n", exchanges);
  // kv3 killed and started again, empty.
  const long held = remote_stat(*node, "kv1", "keys");
  ::kill(cl.children[2].pid, SIGKILL);
  cl.children[2].finish();
  // Its peers must see it down first: until then they refuse a new node of its name.
  for (int i = 0; i < 600; ++i) {
    const auto linked = node->nodes();
    if (std::find(linked.begin(), linked.end(), Atom("kv3")) == linked.end()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // kv1 and kv2 see it as this node did
  start_node(cl, 2, a.schedulers, {}, [](kv::Options& o) {
    o.aae = true;
    o.aae_exchange_interval = std::chrono::milliseconds(1000);
    o.aae_concurrency = 1;
    o.aae_repairs_per_second = kRepairsPerSecond;
  });
  cl.children[2] = cl.children.back();  // start_node added it last
  cl.children.pop_back();
  cl.endpoints[2] = cl.children[2].read_line();
  node->connect(cl.endpoints[2]);  // the client node reads kv3's stats
  const auto restarted = Clock::now();
  // The repair under way: kv3 has some keys back.
  for (int i = 0; i < 400 && remote_stat(*node, "kv3", "keys") <= 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const long before = remote_stat(*node, "kv3", "keys");
  long busy0 = 0, busy1 = 0;
  for (const char* n : {"kv1", "kv2", "kv3"}) busy0 += remote_stat(*node, n, "aae_busy_us");
  const Figures repairing = measure(cl, *node, "repairing");
  for (const char* n : {"kv1", "kv2", "kv3"}) busy1 += remote_stat(*node, n, "aae_busy_us");
  const long after = remote_stat(*node, "kv3", "keys");
  std::printf("kv_aae_repairing_keys_back_kv3: %ld of %ld before the run, %ld after\n", before,
              held, after);
  std::printf("kv_aae_repairing_busy: %.2f s of anti-entropy work on the three nodes in %.0f s\n",
              static_cast<double>(busy1 - busy0) / 1e6, static_cast<double>(a.seconds));
  // Until kv3 holds what kv1 holds (120 s at most).
  const auto deadline = Clock::now() + std::chrono::seconds(120);
  long now_held = 0, target = 0;
  while (Clock::now() < deadline) {
    now_held = remote_stat(*node, "kv3", "keys");
    target = remote_stat(*node, "kv1", "keys");
    if (now_held >= target && target > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::printf("kv_aae_converge_seconds: %.1f (kv3 holds %ld of %ld keys)\n",
              std::chrono::duration<double>(Clock::now() - restarted).count(), now_held, target);
  long repaired = 0;
  for (const char* n : {"kv1", "kv2", "kv3"})
    repaired += remote_stat(*node, n, "aae_keys_repaired");
  std::printf("kv_aae_keys_repaired: %ld (kv.aae_repairs_per_second = %u per node)\n", repaired,
              kRepairsPerSecond);
  long throttled = 0;
  for (const char* n : {"kv1", "kv2", "kv3"}) throttled += remote_stat(*node, n, "aae_throttled");
  std::printf("kv_aae_throttled: %ld (kv.aae_cpu_percent = %u)\n", throttled,
              kv::Options().aae_cpu_percent);
  // Caught up: exchanges find equal trees again. The same cluster as the repairing run.
  const Figures converged = measure(cl, *node, "converged");
  std::printf(
      "kv_aae_same_cluster: puts/s %.0f (idle) %.0f (repairing) %.0f (converged); p99 us "
      "%.1f %.1f %.1f\n",
      idle.rate, repairing.rate, converged.rate, idle.p99, repairing.p99, converged.p99);
}

// kv-watch: 100 watcher processes on the client node, each watching the prefix of one of 10
// key groups ("w0:" .. "w9:") through one of the store nodes (watcher i through kv(i % 3 + 1):
// the watches are held there and the events cross the network to the client node, as for any
// remote watcher, which acknowledges them with watch_ack). `clients` writers (default 10) put
// keys of the groups in turn, so each put is one event to each of 10 watchers. A value starts
// with the steady-clock time its put started (writers and watchers share this process's clock):
// the lag is from the put's start to the watcher taking the event, so it includes the put's
// own round trip (kv_watch_put_p50 says how much that is).
void kv_watch_scenario(const Args& a) {
  constexpr int kWatchers = 100, kGroups = 10;
  const int writers = a.clients ? static_cast<int>(a.clients) : 10;
  const std::size_t value_bytes = std::max<std::size_t>(8, a.value ? a.value : 64);
  Cluster cl;
  start_cluster(cl, 3, a.schedulers);
  auto node = client_node(cl, a.schedulers);
  std::vector<std::unique_ptr<kv::Client>> via;
  for (const auto& name : cl.names) via.push_back(std::make_unique<kv::Client>(*node, name));
  auto* vp = &via;

  struct Watched {
    std::vector<double> lag_us;
    long events = 0, lost = 0;
  };
  auto seen = std::make_shared<std::vector<Watched>>(kWatchers);
  auto stop = std::make_shared<std::atomic<bool>>(false);
  std::atomic<long> delivered{0};
  Inbox me(*node);
  const Pid sink = me.pid();
  for (int w = 0; w < kWatchers; ++w) {
    spawn(*node, [w, vp, seen, stop, sink, &delivered] {
      const kv::Client& c = *(*vp)[static_cast<std::size_t>(w) % vp->size()];
      auto ref = c.watch(numbered("w", w % kGroups) + ":", kv::WatchMatch::kPrefix);
      send(sink, ref ? "ready" : "failed");
      if (!ref) return;
      Watched& mine = (*seen)[static_cast<std::size_t>(w)];
      mine.lag_us.reserve(1 << 18);
      std::uint32_t unacked = 0;
      while (!stop->load(std::memory_order_relaxed)) {
        auto m = receive(std::chrono::milliseconds(50));
        if (!m) {  // nothing waiting: say what was taken
          if (unacked) c.watch_ack(*ref, std::exchange(unacked, 0));
          continue;
        }
        if (auto e = kv::watch_event(*m)) {
          const auto now = Clock::now().time_since_epoch().count();
          std::int64_t started = 0;
          if (e->value.size() >= sizeof started) std::memcpy(&started, e->value.data(), 8);
          mine.lag_us.push_back(static_cast<double>(now - started) / 1000.0);
          ++mine.events;
          delivered.fetch_add(1, std::memory_order_relaxed);
          if (++unacked >= 64) c.watch_ack(*ref, std::exchange(unacked, 0));
        } else if (kv::watch_lost(*m)) {
          ++mine.lost;
          return;
        }
      }
    });
  }
  int ready = 0;
  for (int w = 0; w < kWatchers; ++w) {
    auto m = receive(std::chrono::seconds(30));
    if (m && m->is_term() && m->term() == Term("ready")) ++ready;
  }
  if (ready != kWatchers) {
    std::fprintf(stderr, "kv-watch: %d of %d watches were taken\n", ready, kWatchers);
    stop->store(true);
    return;
  }
  const auto t0 = Clock::now();
  std::atomic<long> puts{0};
  Figures f = run_clients(cl, *node, writers, a.seconds, [vp, value_bytes, &puts](int c, long i) {
    std::string value(value_bytes, 'v');
    const std::int64_t started = Clock::now().time_since_epoch().count();
    std::memcpy(value.data(), &started, sizeof started);
    const std::string key =
        numbered("w", (c + i) % kGroups) + ":" + numbered("", c) + numbered("-", i);
    const bool ok = (*vp)[static_cast<std::size_t>(c) % vp->size()]->put(key, value).ok();
    if (ok) puts.fetch_add(1, std::memory_order_relaxed);
    return ok;
  });
  // Until every event of every acknowledged put is in (10 s at most).
  const long expected = puts.load() * (kWatchers / kGroups);
  for (int i = 0; i < 1000 && delivered.load() < expected; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  stop->store(true);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the watchers see `stop`
  std::vector<double> lags;
  long events = 0, lost = 0;
  for (auto& w : *seen) {
    lags.insert(lags.end(), w.lag_us.begin(), w.lag_us.end());
    events += w.events;
    lost += w.lost;
  }
  std::printf("kv_watch_events_rate: %.0f events/s (%d watchers, %d per put)\n",
              static_cast<double>(events) / secs, kWatchers, kWatchers / kGroups);
  std::printf("kv_watch_lag_p50: %.2f ms (from the put's start)\n", percentile(lags, 0.5) / 1000);
  std::printf("kv_watch_lag_p99: %.2f ms (from the put's start)\n", percentile(lags, 0.99) / 1000);
  std::printf("kv_watch_put_rate: %.0f puts/s (%d writers)\n", f.rate, writers);
  std::printf("kv_watch_put_p50: %.1f us\n", f.p50);
  std::printf("kv_watch_delivered: %ld of %ld events\n", events, expected);
  std::printf("kv_watch_lost: %ld watches\n", lost);
  if (f.errors) std::printf("kv_watch_put_errors: %ld\n", f.errors);
  print_cpu("kv_watch", f);
}

// Resident memory of process `pid` (bytes; 0 when unreadable).
std::size_t rss_of(pid_t pid) {
  std::ifstream statm("/proc/" + std::to_string(pid) + "/statm");
  std::size_t total = 0, resident = 0;
  statm >> total >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

// kv-memory: what a key costs a node on the memory engine, one store node (N = 1), `keys`
// keys of 11 bytes ("m" and 10 digits) with 64-byte values put by the clients: plain, each
// with a TTL (an hour: none expires during the run), and with LRU tracking on (kv.max_keys
// above the count, so nothing is evicted). The node's resident memory growth per key, and the
// engine's own estimate (memory_bytes) per key.
void kv_memory_scenario(const Args& a) {
  const int clients = a.clients ? static_cast<int>(a.clients) : 50;
  const long keys = a.keys ? a.keys : 200000;
  const std::string value(a.value ? static_cast<std::size_t>(a.value) : 64, 'v');
  struct Run {
    const char* name;
    bool ttl;
    bool lru;
  };
  for (const Run& run : {Run{"plain", false, false}, Run{"ttl", true, false},
                         Run{"lru", false, true}, Run{"ttl_lru", true, true}}) {
    Cluster cl;
    const std::uint64_t bound = static_cast<std::uint64_t>(keys) * 2;
    start_cluster(cl, 1, a.schedulers, {}, [&run, bound](kv::Options& o) {
      o.replicas = 1;
      o.write_quorum = 1;
      o.read_quorum = 1;
      o.max_keys = run.lru ? bound : 0;
    });
    auto node = client_node(cl, a.schedulers);
    kv::Client client(*node, cl.names[0]);
    const std::size_t rss0 = rss_of(cl.children[0].pid);
    const long mem0 = remote_stat(*node, cl.names[0], "memory_bytes");
    Inbox me(*node);
    const Pid sink = me.pid();
    std::atomic<long> failed{0};
    const bool ttl = run.ttl;
    for (int c = 0; c < clients; ++c) {
      spawn(*node, [c, &client, &value, keys, clients, sink, ttl, &failed] {
        kv::RequestOptions o;
        if (ttl) o.ttl = std::chrono::hours(1);
        char key[24];
        for (long k = c; k < keys; k += clients) {
          std::snprintf(key, sizeof key, "m%010ld", k);
          if (!client.put(key, value, o).ok()) failed.fetch_add(1);
        }
        send(sink, "done");
      });
    }
    for (int c = 0; c < clients; ++c) (void)receive(infinity);
    const std::size_t rss1 = rss_of(cl.children[0].pid);
    const long mem1 = remote_stat(*node, cl.names[0], "memory_bytes");
    const long held = remote_stat(*node, cl.names[0], "keys");
    const double n = static_cast<double>(held > 0 ? held : 1);
    std::printf(
        "kv_memory_%s: %ld keys, %.0f bytes per key resident, %.0f bytes per key "
        "(engine's estimate)%s\n",
        run.name, held, static_cast<double>(rss1 - rss0) / n, static_cast<double>(mem1 - mem0) / n,
        failed.load() ? " (some puts failed)" : "");
  }
}

// A term field of a map, as a number (-1 when absent or not one).
long int_field(const Term& m, const char* field) {
  const Term* f = m.is_map() ? m.find(Term(field)) : nullptr;
  return f && f->is_int() ? static_cast<long>(f->as_int()) : -1;
}

// kv-handoff: a 4th node joins a 3-node ring holding `keys` keys (default 1,000,000, 64 B)
// while clients write new keys through kv1..kv3: the time from `cluster commit` until no
// partition moves and every node holds that ring, the keys kv4 then holds per second of it,
// and the clients' put rate and latency during the hand-off against runs of --seconds just
// before it (3 members) and just after it (4). kv.transfer_limit as shipped (2).
void kv_handoff_scenario(const Args& a) {
  const int clients = a.clients ? static_cast<int>(a.clients) : 50;
  const long keys = a.keys ? a.keys : 1000000;
  const std::string value(a.value ? static_cast<std::size_t>(a.value) : 64, 'v');
  Cluster cl;
  start_cluster(cl, 3, a.schedulers);
  const std::vector<std::string> members = cl.names;
  cl.names.push_back("kv4");  // a candidate: started with the members' initial_members
  start_node(cl, 3, a.schedulers, {}, [members](kv::Options& o) { o.initial_members = members; });
  cl.endpoints.push_back(cl.children.back().read_line());
  auto node = client_node(cl, a.schedulers);
  auto via = std::make_shared<std::vector<std::unique_ptr<kv::Client>>>();
  for (std::size_t i = 0; i < 3; ++i) {
    via->push_back(std::make_unique<kv::Client>(*node, cl.names[i]));
  }
  const auto load0 = Clock::now();
  {
    Inbox me(*node);
    const Pid sink = me.pid();
    for (int c = 0; c < clients; ++c) {
      spawn(*node, [c, via, &value, keys, clients, sink] {
        for (long k = c; k < keys; k += clients) {
          (void)(*via)[static_cast<std::size_t>(k) % via->size()]->put(numbered("h", k), value);
        }
        send(sink, "done");
      });
    }
    for (int c = 0; c < clients; ++c) (void)receive(infinity);
  }
  std::printf("kv_handoff_load_seconds: %.1f (%ld keys)\n",
              std::chrono::duration<double>(Clock::now() - load0).count(), keys);

  // Clients writing new keys until `stop`; latencies of puts begun while `sampling`.
  struct Load {
    std::atomic<bool> stop{false};
    std::atomic<long> errors{0};
    std::vector<std::vector<double>> samples;
  };
  auto run_load = [&](const char* prefix, const std::function<void()>& during) {
    auto load = std::make_shared<Load>();
    load->samples.resize(static_cast<std::size_t>(clients));
    Inbox me(*node);
    const Pid sink = me.pid();
    const double client_cpu0 = cpu_seconds(::getpid());
    const double store_cpu0 = cluster_cpu_seconds(cl);
    const auto start = Clock::now();
    for (int c = 0; c < clients; ++c) {
      spawn(*node, [c, via, load, sink, prefix, &value] {
        auto& mine = load->samples[static_cast<std::size_t>(c)];
        for (long i = 0; !load->stop.load(std::memory_order_relaxed); ++i) {
          const auto t0 = Clock::now();
          const std::string key = std::string(prefix) + numbered("-", c) + numbered("-", i);
          if (!(*via)[static_cast<std::size_t>(c) % via->size()]->put(key, value).ok()) {
            load->errors.fetch_add(1);
          }
          mine.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        }
        send(sink, "done");
      });
    }
    during();
    load->stop = true;
    for (int c = 0; c < clients; ++c) (void)receive(infinity);
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    std::vector<double> all;
    for (auto& v : load->samples) all.insert(all.end(), v.begin(), v.end());
    Figures f;
    f.errors = load->errors.load();
    f.rate = static_cast<double>(all.size() - static_cast<std::size_t>(f.errors)) / secs;
    f.p50 = percentile(all, 0.5);
    f.p99 = percentile(all, 0.99);
    f.client_cpu = (cpu_seconds(::getpid()) - client_cpu0) / secs;
    f.store_cpu = (cluster_cpu_seconds(cl) - store_cpu0) / secs;
    return f;
  };
  auto print = [](const char* name, const Figures& f) {
    std::printf("%s_put_rate: %.0f puts/s\n", name, f.rate);
    std::printf("%s_put_p50: %.1f us\n", name, f.p50);
    std::printf("%s_put_p99: %.1f us\n", name, f.p99);
    if (f.errors) std::printf("%s_put_errors: %ld\n", name, f.errors);
    print_cpu(name, f);
  };

  // The ring of node `at` ({ok, Map} of `ring`), or an empty term. From `during`, which runs
  // on run_load's inbox.
  auto ring_of = [&](const std::string& at) {
    auto r = call(named("nodus_kv", at), Term("ring"), std::chrono::milliseconds(2000));
    if (!r) return Term();
    auto m = r->match({"ok", _map});
    return m ? m[0] : Term();
  };
  double transfer_seconds = -1;
  long kv4_keys = 0;
  const Figures before =
      run_load("b", [&] { std::this_thread::sleep_for(std::chrono::duration<double>(a.seconds)); });
  const long held_before = remote_stat(*node, "kv1", "keys");  // N = 3 of 3: every key
  const Figures during = run_load("d", [&] {
    auto ask = [&](Term t) {
      auto r = call(named("nodus_kv", "kv1"), std::move(t), std::chrono::milliseconds(10000));
      return r ? *r : Term("no_answer");
    };
    // kv1 (the claimant) must have seen kv4 as a candidate running the store.
    Term join;
    for (int i = 0; i < 200; ++i) {
      join = ask(tuple("cluster", "join", bin("kv4")));
      if (join == Term("ok")) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    Term commit = ask(tuple("cluster", "commit"));
    const auto committed = Clock::now();
    if (join != Term("ok") || !commit.match({"ok", _map})) {
      std::fprintf(stderr, "kv-handoff: join %s, commit %s\n", join.to_string().c_str(),
                   commit.to_string().c_str());
      return;
    }
    const auto deadline = committed + std::chrono::seconds(600);
    while (Clock::now() < deadline) {
      Term r1 = ring_of("kv1");
      const Term* moving = r1.is_map() ? r1.find(Term("transfers")) : nullptr;
      if (moving && moving->is_list() && moving->as_list().empty()) {
        bool same = true;
        for (const char* n : {"kv2", "kv3", "kv4"}) same = same && ring_of(n) == r1;
        if (same) {
          transfer_seconds = std::chrono::duration<double>(Clock::now() - committed).count();
          break;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    auto st = call(named("nodus_kv", "kv4"), Term("stats"), std::chrono::milliseconds(2000));
    if (st) {
      if (auto m = st->match({"ok", _map})) kv4_keys = int_field(m[0], "keys");
    }
  });
  const Figures after =
      run_load("a", [&] { std::this_thread::sleep_for(std::chrono::duration<double>(a.seconds)); });
  std::printf("kv_join_transfer_seconds: %.2f s\n", transfer_seconds);
  std::printf(
      "kv_join_keys_per_s: %.0f keys/s (kv4 held %ld keys at the end; the store %ld at the "
      "commit)\n",
      transfer_seconds > 0 ? static_cast<double>(kv4_keys) / transfer_seconds : 0.0, kv4_keys,
      held_before);
  print("kv_handoff_before", before);
  print("kv_handoff_during", during);
  print("kv_handoff_after", after);
}

}  // namespace

void kv_memory_put_scenario(const Args& a) { kv_memory_scenario(a); }
void kv_aae_put_scenario(const Args& a) { kv_aae_scenario(a); }
void kv_handoff_bench_scenario(const Args& a) { kv_handoff_scenario(a); }
void kv_put_scenario(const Args& a) { kv_scenario(a, Mix::kPut); }
void kv_get_scenario(const Args& a) { kv_scenario(a, Mix::kGet); }
void kv_mixed_scenario(const Args& a) { kv_scenario(a, Mix::kMixed); }
void kv_watch_put_scenario(const Args& a) { kv_watch_scenario(a); }
void kv_durable_scenario(const Args& a) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "nodus-bench-kv-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) {
    std::fprintf(stderr, "kv-durable: cannot make a temp dir\n");
    return;
  }
  kv_scenario(a, Mix::kPut, tmpl);  // the nodes stop (and sync) before it returns
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
}

}  // namespace nodus::bench
