#include "apps.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <memory>

#include "cache_server.hpp"
#include "database_pool.hpp"
#include "kv_store.hpp"
#include "logger.hpp"
#include "nodus/registry/global.hpp"
#include "nodus/registry/registry.hpp"
#include "nodus/transport/detail/mutex.hpp"
#include "rate_limiter.hpp"
#include "registered_counter.hpp"
#include "slow_server.hpp"
#include "stack.hpp"

namespace nodus::tools {

namespace {

// An example server that traps exits (so its supervisor's shutdown runs its terminate, as an
// OTP worker that needs cleanup does) and logs its terminate, so an operator sees a graceful
// stop.
template <class Server>
class Logged : public Server {
 public:
  template <class... Args>
  Action init(Args... args) {
    trap_exit(true);
    return Server::init(std::move(args)...);
  }
  void terminate(const Reason& reason) override {
    spdlog::info("app {} stopped ({})", nodus::self().to_string(), reason.to_string());
    Server::terminate(reason);
  }
};

// The via registries of apps.start (via:REG/KEY): one unique-key Registry per REG, started
// with the first app that names it. The child specs' names keep them alive.
using Registries = std::map<std::string, std::shared_ptr<Registry>>;

// The start name of an app: local:X, global:X or via:REG/KEY.
Result<Name, Reason> start_name(Node& node, const AppSpec& app, Registries& registries) {
  if (app.scope == "local") return Name(app.name);
  if (app.scope == "global") return Name(global(app.name));
  const auto slash = app.name.find('/');  // config.cpp checked there is one
  const std::string reg = app.name.substr(0, slash);
  auto it = registries.find(reg);
  if (it == registries.end()) {
    RegistryOptions o;
    o.name = reg;
    auto started = Registry::start(node, o);
    if (!started.ok()) return reasons::from_status(started.error());
    it = registries.emplace(reg, std::move(started.value())).first;
  }
  return Name(via(it->second, Term(bin(app.name.substr(slash + 1)))));
}

bool name_ok(const Reason& r) { return r.is_atom("undefined"); }

template <class Server, class... Args>
ChildSpec app_child(Node& node, const AppSpec& app, Registries& registries, Args... args) {
  Node* n = &node;
  SpawnOptions opts;
  auto name = start_name(node, app, registries);
  if (name.ok()) opts.name = *name;
  ChildSpec spec;
  spec.id = app.scope + ":" + app.name;
  Reason failed = name.ok() ? Reason() : name.error();
  spec.start = [n, opts, failed, args...]() -> Result<Pid, Reason> {
    if (!name_ok(failed)) return failed;
    return start_link<Logged<Server>>(*n, opts, args...);
  };
  return spec;
}

// The registries of every node start_apps ran on, for the admin server (app_registries). Weak:
// the apps' child specs own them, and a registry must not outlive its node.
struct Published {
  detail::Mutex mu;
  std::map<const Node*, std::map<std::string, std::weak_ptr<Registry>>> by_node
      NODUS_GUARDED_BY(mu);
};

Published& published() {
  static Published* p = new Published();  // never destroyed: read until the process exits
  return *p;
}

using Factory = ChildSpec (*)(Node&, const AppSpec&, Registries&);

// The kinds apps.start knows, each once: its name, its help and how to start it. Sorted by name.
const std::pair<AppKind, Factory> kKinds[] = {
    {{"cache", "CacheServer: {put, K, V, TtlMs}, {get, K}"},
     [](Node& n, const AppSpec& a, Registries& r) {
       return app_child<cache_server::CacheServer>(n, a, r, cache_server::CacheOptions{});
     }},
    {{"counter", "RegisteredCounter: increment -> the new count"},
     [](Node& n, const AppSpec& a, Registries& r) {
       return app_child<registered_counter::RegisteredCounter>(n, a, r);
     }},
    {{"kv_store",
      "KVStore over the store (needs [kv]): {put, K, V, #{ttl => Ms, replicate => B}}, {get, K}, "
      "{delete, K}, {keys, Glob}, subscribe, {add_replica, Node}, {multi_get, Ks}, "
      "{multi_put, KVs}, stats"},
     [](Node& n, const AppSpec& a, Registries& r) {
       return app_child<kv_store::KVStore>(n, a, r, &n);
     }},
    {{"logger", "Logger: {log, Level, Text, Ms} (cast), {get_logs, Level}, clear"},
     [](Node& n, const AppSpec& a, Registries& r) { return app_child<logger::Logger>(n, a, r); }},
    {{"pool", "DatabasePool with 3 connections: checkout, {checkin, C} (cast), status"},
     [](Node& n, const AppSpec& a, Registries& r) {
       return app_child<database_pool::DatabasePool>(n, a, r, 3);
     }},
    {{"ratelimiter", "RateLimiter, 10 tokens, 2 a second: {allow, Cost}, status"},
     [](Node& n, const AppSpec& a, Registries& r) {
       return app_child<rate_limiter::RateLimiter>(n, a, r, rate_limiter::Bucket{10, 2});
     }},
    {{"slow", "SlowServer: fast, {slow, Ms}"},
     [](Node& n, const AppSpec& a, Registries& r) {
       return app_child<slow_server::SlowServer>(n, a, r);
     }},
    {{"stack", "Stack: {push, X} (cast), pop, peek"},
     [](Node& n, const AppSpec& a, Registries& r) {
       return app_child<stack::Stack>(n, a, r, List{});
     }},
};

}  // namespace

const std::vector<AppKind>& app_kinds() {
  static const std::vector<AppKind> kList = [] {
    std::vector<AppKind> out;
    for (const auto& [kind, make] : kKinds) out.push_back(kind);
    return out;
  }();
  return kList;
}

Result<Pid, Reason> start_apps(Node& node, const std::vector<AppSpec>& apps) {
  std::vector<ChildSpec> children;
  Registries registries;
  for (const AppSpec& app : apps) {
    auto it = std::find_if(std::begin(kKinds), std::end(kKinds),
                           [&](const auto& k) { return app.kind == k.first.name; });
    if (it == std::end(kKinds)) {  // parse_app checked the kind: only a caller of our own
      return reasons::from_status(Status(ErrorCode::kBadArg, "unknown app kind " + app.kind));
    }
    children.push_back(it->second(node, app, registries));
  }
  {
    Published& p = published();
    detail::MutexLock lock(p.mu);
    auto& mine = p.by_node[&node];
    for (const auto& [name, registry] : registries) mine[name] = registry;
  }
  return start_supervisor(node, SupervisorFlags{.strategy = Strategy::kOneForOne},
                          std::move(children), SpawnOptions{.name = "nodus_apps"});
}

std::map<std::string, std::shared_ptr<Registry>> app_registries(const Node& node) {
  std::map<std::string, std::shared_ptr<Registry>> out;
  Published& p = published();
  detail::MutexLock lock(p.mu);
  auto it = p.by_node.find(&node);
  if (it == p.by_node.end()) return out;
  for (const auto& [name, weak] : it->second) {
    if (auto r = weak.lock()) out.emplace(name, std::move(r));
  }
  return out;
}

std::multimap<Pid, std::string> app_via_names(Node& node) {
  std::multimap<Pid, std::string> out;
  const auto registries = app_registries(node);
  if (registries.empty()) return out;
  for (const ProcessInfo& proc : node.processes()) {
    for (const auto& [reg, registry] : registries) {
      for (const Term& key : registry->keys(proc.pid)) {
        out.emplace(proc.pid, "via:" + reg + "/" + (key.is_bin() ? key.as_bin() : key.to_string()));
      }
    }
  }
  return out;
}

}  // namespace nodus::tools
