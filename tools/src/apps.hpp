// Applications: the servers named by `apps.start`, started under the node's application
// supervisor (one_for_one) with their names. KIND is one of the classic examples (examples/):
//   counter      RegisteredCounter: increment -> the new count
//   stack        Stack: {push, X} (cast), pop, peek
//   logger       Logger: {log, Level, Text, Ms} (cast), {get_logs, Level}, clear
//   cache        CacheServer: {put, K, V, TtlMs}, {get, K}
//   pool         DatabasePool with 3 connections: checkout, {checkin, C} (cast), status
//   ratelimiter  RateLimiter, 10 tokens, 2 a second: {allow, Cost}, status
//   slow         SlowServer: fast, {slow, Ms}
#pragma once

#include <vector>

#include "config.hpp"
#include "nodus/node/node.hpp"
#include "nodus/node/supervisor.hpp"

namespace nodus::tools {

/// Starts the application supervisor and its children. Errors: the supervisor's (a child
/// that failed to start, a name already taken), as a reason.
Result<Pid, Reason> start_apps(Node& node, const std::vector<AppSpec>& apps);

}  // namespace nodus::tools
