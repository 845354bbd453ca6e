#include "apps.hpp"

#include <spdlog/spdlog.h>

#include <map>
#include <memory>

#include "cache_server.hpp"
#include "database_pool.hpp"
#include "logger.hpp"
#include "nodus/registry/global.hpp"
#include "nodus/registry/registry.hpp"
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

ChildSpec child_for(Node& node, const AppSpec& app, Registries& r) {
  if (app.kind == "counter") return app_child<registered_counter::RegisteredCounter>(node, app, r);
  if (app.kind == "stack") return app_child<stack::Stack>(node, app, r, List{});
  if (app.kind == "logger") return app_child<logger::Logger>(node, app, r);
  if (app.kind == "cache")
    return app_child<cache_server::CacheServer>(node, app, r, cache_server::CacheOptions{});
  if (app.kind == "pool") return app_child<database_pool::DatabasePool>(node, app, r, 3);
  if (app.kind == "ratelimiter") {
    return app_child<rate_limiter::RateLimiter>(node, app, r, rate_limiter::Bucket{10, 2});
  }
  return app_child<slow_server::SlowServer>(node, app, r);  // "slow": config.cpp checked the kind
}

}  // namespace

Result<Pid, Reason> start_apps(Node& node, const std::vector<AppSpec>& apps) {
  std::vector<ChildSpec> children;
  Registries registries;
  for (const AppSpec& app : apps) children.push_back(child_for(node, app, registries));
  return start_supervisor(node, SupervisorFlags{.strategy = Strategy::kOneForOne},
                          std::move(children), SpawnOptions{.name = "nodus_apps"});
}

}  // namespace nodus::tools
