// status, nodes, ping: the cluster as the connected node sees it.
#include <iostream>

#include "client.hpp"
#include "ctl.hpp"
#include "json_term.hpp"

namespace nodus::ctl {

namespace {

using nlohmann::json;

std::string num(const json& v) {
  if (v.is_number()) return std::to_string(v.get<std::int64_t>());
  return "-";
}

int run_status(Context& ctx, const std::vector<std::string>& args) {
  expect_args(args, 0, 0, "status");
  json s = tools::term_to_json(ctx.client().ask("status"), tools::JsonStyle::kPlain);
  if (ctx.json()) {
    json out;
    out["cluster"] = s["cluster"];
    out["node"] = s["node"];
    out["nodes"] = s["nodes"];
    out["ring"] = s["ring"];
    print_json(out);
    return kExitOk;
  }
  std::size_t up = 0;
  for (const auto& n : s["nodes"]) up += n["state"] == "up";
  std::string cluster = s["cluster"].is_string() ? s["cluster"].get<std::string>() : "";
  std::cout << "cluster " << colour(cluster.empty() ? "(unnamed)" : cluster, "1") << ": " << up
            << " of " << s["nodes"].size() << " nodes up (as seen from "
            << s["node"].get<std::string>() << ")\n\n";
  Table t({"NODE", "ENDPOINT", "STATE", "PROCESSES", "PEERS", "MSGS IN", "MSGS OUT", "PARTITIONS",
           "KEYS", "UPTIME"});
  for (const auto& n : s["nodes"]) {
    t.add({n["name"].get<std::string>(), n["endpoint"].get<std::string>(),
           state_text(n["state"].get<std::string>()), num(n["processes"]), num(n["peers"]),
           num(n["messages_in"]), num(n["messages_out"]), num(n["partitions"]), num(n["keys"]),
           n["uptime_ms"].is_number() ? duration_text(n["uptime_ms"].get<std::int64_t>()) : "-"});
  }
  t.print({3, 4, 5, 6, 7, 8});
  const json& ring = s["ring"];
  if (ring["epoch"].is_number() && ring["epoch"].get<std::int64_t>() > 0) {
    std::cout << "\nstore: ring epoch " << ring["epoch"].dump() << ", " << ring["partitions"].dump()
              << " partitions, " << ring["replicas"].dump()
              << (ring["replicas"] == 1 ? " copy" : " copies") << " of each key\n";
  }
  return kExitOk;
}

int run_nodes(Context& ctx, const std::vector<std::string>& args) {
  expect_args(args, 0, 0, "nodes");
  json nodes = tools::term_to_json(ctx.client().ask("nodes"), tools::JsonStyle::kPlain);
  if (ctx.json()) {
    print_json(nodes);
    return kExitOk;
  }
  Table t({"NODE", "ENDPOINT", "STATE"});
  for (const auto& n : nodes) {
    t.add({n["name"].get<std::string>(), n["endpoint"].get<std::string>(),
           state_text(n["state"].get<std::string>())});
  }
  t.print();
  return kExitOk;
}

int run_ping(Context& ctx, const std::vector<std::string>& args) {
  expect_args(args, 1, 1, "ping NODE");
  Client& c = ctx.client();
  auto t0 = std::chrono::steady_clock::now();
  c.ask_node(args[0], "ping");
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (ctx.json()) {
    print_json(json{{"node", args[0]}, {"pong", true}, {"ms", ms}});
  } else {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.2f ms", ms);
    std::cout << "pong from " << args[0] << " in " << buf << "\n";
  }
  return kExitOk;
}

const Registrar kStatusCommand({"status", "status", "the cluster: every node, its state and load",
                                run_status});
const Registrar kNodesCommand({"nodes", "nodes", "the nodes and whether each is up", run_nodes});
const Registrar kPingCommand({"ping", "ping NODE", "checks that NODE answers, and how fast",
                              run_ping});

}  // namespace

}  // namespace nodus::ctl
