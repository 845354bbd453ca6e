// Applications: the servers named by `apps.start`, started under the node's application
// supervisor (one_for_one) with their names. KIND is one of the classic examples (examples/),
// listed once, in apps.cpp's factory table; app_kinds() and nodusd --help show it.
//
// Thread-safety: free functions; start_apps from one thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/supervisor.hpp"
#include "nodus/registry/registry.hpp"

namespace nodus::tools {

/// One kind of server apps.start can run.
struct AppKind {
  const char* name;  ///< "counter"
  const char* help;  ///< what it is and the requests it answers
};

/// Every kind, from the factory table, sorted by name.
const std::vector<AppKind>& app_kinds();

/// Starts the application supervisor and its children. Errors: the supervisor's (a child
/// that failed to start, a name already taken), as a reason.
Result<Pid, Reason> start_apps(Node& node, const std::vector<AppSpec>& apps);

/// The via registries that start_apps made on `node` (apps.start's via:REG/KEY), by REG; empty
/// when it made none. Thread-safe. A registry is listed while the apps that name it hold it.
std::map<std::string, std::shared_ptr<Registry>> app_registries(const Node& node);

/// The via names of the processes of `node` in those registries, as "via:REG/KEY" by pid (a
/// key that is not a binary shows as its term text). Thread-safe.
std::multimap<Pid, std::string> app_via_names(Node& node);

}  // namespace nodus::tools
