// names [--local NODE | --global]: registered names.
#include <iostream>

#include "client.hpp"
#include "ctl.hpp"
#include "json_term.hpp"

namespace nodus::ctl {

namespace {

using nlohmann::json;

constexpr const char* kUsage = "names [--local NODE | --global]";

int run_names(Context& ctx, const std::vector<std::string>& args) {
  Client& c = ctx.client();
  std::vector<std::string> nodes;
  if (args.size() == 2 && args[0] == "--local") {
    nodes.push_back(args[1]);
  } else if (args.size() == 1 && args[0] == "--global") {
    json out = json::array();
    for (auto& e : tools::term_to_json(c.ask("global_names"), tools::JsonStyle::kPlain)) {
      out.push_back(
          json{{"name", e["name"]}, {"pid", e["pid"]}, {"node", e["node"]}, {"epoch", e["epoch"]}});
    }
    if (ctx.json()) {
      print_json(out);
      return kExitOk;
    }
    Table t({"GLOBAL NAME", "PID", "NODE", "EPOCH"});
    for (const auto& e : out) {
      t.add({e["name"].get<std::string>(), e["pid"].get<std::string>(),
             e["node"].get<std::string>(), std::to_string(e["epoch"].get<std::int64_t>())});
    }
    t.print({3});
    return kExitOk;
  } else if (args.empty()) {
    for (const auto& n : tools::term_to_json(c.ask("nodes"), tools::JsonStyle::kPlain)) {
      if (n["state"] == "up") nodes.push_back(n["name"].get<std::string>());
    }
  } else {
    throw CtlError(ErrorCode::kBadArg, std::string("usage: nodusctl ") + kUsage);
  }
  json out = json::array();
  for (const std::string& node : nodes) {
    for (auto& e : tools::term_to_json(c.ask_node(node, "names"), tools::JsonStyle::kPlain)) {
      out.push_back(json{{"name", e["name"]}, {"pid", e["pid"]}, {"node", node}});
    }
  }
  if (ctx.json()) {
    print_json(out);
    return kExitOk;
  }
  Table t({"NAME", "PID", "NODE"});
  for (const auto& e : out) {
    t.add(
        {e["name"].get<std::string>(), e["pid"].get<std::string>(), e["node"].get<std::string>()});
  }
  t.print();
  return kExitOk;
}

const Registrar kNamesCommand({"names", kUsage,
                               "registered names: of every node, of one node, or global",
                               run_names});

}  // namespace

}  // namespace nodus::ctl
