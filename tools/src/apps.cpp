#include "apps.hpp"

#include <spdlog/spdlog.h>

#include "cache_server.hpp"
#include "database_pool.hpp"
#include "logger.hpp"
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

template <class Server, class... Args>
ChildSpec app_child(Node& node, const AppSpec& app, Args... args) {
  Node* n = &node;
  SpawnOptions opts;
  opts.name = app.name;
  ChildSpec spec;
  spec.id = app.scope + ":" + app.name;
  spec.start = [n, opts, args...]() -> Result<Pid, Reason> {
    return start_link<Logged<Server>>(*n, opts, args...);
  };
  return spec;
}

ChildSpec child_for(Node& node, const AppSpec& app) {
  if (app.kind == "counter") return app_child<registered_counter::RegisteredCounter>(node, app);
  if (app.kind == "stack") return app_child<stack::Stack>(node, app, List{});
  if (app.kind == "logger") return app_child<logger::Logger>(node, app);
  if (app.kind == "cache")
    return app_child<cache_server::CacheServer>(node, app, cache_server::CacheOptions{});
  if (app.kind == "pool") return app_child<database_pool::DatabasePool>(node, app, 3);
  if (app.kind == "ratelimiter") {
    return app_child<rate_limiter::RateLimiter>(node, app, rate_limiter::Bucket{10, 2});
  }
  return app_child<slow_server::SlowServer>(node, app);  // "slow": config.cpp checked the kind
}

}  // namespace

Result<Pid, Reason> start_apps(Node& node, const std::vector<AppSpec>& apps) {
  std::vector<ChildSpec> children;
  for (const AppSpec& app : apps) children.push_back(child_for(node, app));
  return start_supervisor(node, SupervisorFlags{.strategy = Strategy::kOneForOne},
                          std::move(children), SpawnOptions{.name = "nodus_apps"});
}

}  // namespace nodus::tools
