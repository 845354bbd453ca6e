// ring, members: the store's ring and who is in it, as the connected node sees them.
#include <iostream>
#include <map>

#include "client.hpp"
#include "ctl.hpp"
#include "json_term.hpp"

namespace nodus::ctl {

namespace {

using nlohmann::json;

// The store's `ring` reply, as plain JSON: {epoch, partitions, replicas, members:
// [[name, up|down]...], owners: [name...]}.
json store_ring(Context& ctx) {
  Client& c = ctx.client();
  Term reply = c.kv("ring", ctx.options().timeout);
  if (reply.match({"error", "unavailable"})) {
    throw CtlError(ErrorCode::kUnavailable,
                   "unavailable: node " + c.target() +
                       " has no ring yet: it forms once every node of kv.initial_members is up "
                       "(nodusctl status)");
  }
  auto m = reply.match({"ok", _map});
  if (!m) throw CtlError(ErrorCode::kProtocol, "unexpected ring reply " + reply.to_string());
  return tools::term_to_json(m[0], tools::JsonStyle::kPlain);
}

int run_ring(Context& ctx, const std::vector<std::string>& args) {
  expect_args(args, 0, 0, "ring");
  json r = store_ring(ctx);
  json owners = json::array();
  std::map<std::string, int> balance;
  for (const auto& m : r["members"]) balance[m[0].get<std::string>()] = 0;
  for (std::size_t p = 0; p < r["owners"].size(); ++p) {
    const std::string node = r["owners"][p].get<std::string>();
    owners.push_back(json{{"partition", p}, {"node", node}});
    ++balance[node];
  }
  if (ctx.json()) {
    json members = json::array();
    for (const auto& m : r["members"]) members.push_back(json{{"node", m[0]}, {"state", m[1]}});
    print_json(json{{"partitions", r["partitions"]},
                    {"replicas", r["replicas"]},
                    {"epoch", r["epoch"]},
                    {"owners", owners},
                    {"balance", balance},
                    {"members", members},
                    {"claimant", r["claimant"]},
                    {"leaving", r["leaving"]},
                    {"transfers", r["transfers"]}});
    return kExitOk;
  }
  std::cout << "ring epoch " << r["epoch"].dump() << ": " << r["partitions"].dump()
            << " partitions, " << r["replicas"].dump() << (r["replicas"] == 1 ? " copy" : " copies")
            << " of each key, " << balance.size()
            << (balance.size() == 1 ? " member\n\n" : " members\n\n");
  Table t({"NODE", "STATE", "PARTITIONS"});
  for (const auto& m : r["members"]) {
    const std::string name = m[0].get<std::string>();
    t.add({name, state_text(m[1].get<std::string>()), std::to_string(balance[name])});
  }
  t.print({2});
  if (!r["transfers"].empty()) {
    std::cout << "\n"
              << r["transfers"].size()
              << " partition(s) moving (the owner serves until handed off):";
    for (const auto& m : r["transfers"]) {
      std::cout << " " << m["partition"].dump() << ":" << m["from"].get<std::string>() << "->"
                << m["to"].get<std::string>();
    }
    std::cout << "\n";
  }
  std::cout << "\nowners (partition:node):\n";
  std::string line;
  for (std::size_t p = 0; p < owners.size(); ++p) {
    const std::string cell = std::to_string(p) + ":" + owners[p]["node"].get<std::string>();
    if (!line.empty()) line.resize(std::max<std::size_t>(line.size() + 1, 10 * (p % 8)), ' ');
    line += cell;
    if ((p + 1) % 8 == 0 || p + 1 == owners.size()) {
      std::cout << "  " << line << "\n";
      line.clear();
    }
  }
  return kExitOk;
}

// The ring's members (up or down, as the connected node sees them) and the candidates: nodes
// meshed with them that run the store but are not in the ring. Status as Riak's member_status:
// valid (a member), leaving (committed or staged to leave), joining (a staged join), candidate.
int run_members(Context& ctx, const std::vector<std::string>& args) {
  expect_args(args, 0, 0, "members");
  json r = store_ring(ctx);
  std::map<std::string, std::string> staged;  // node -> join|leave|remove, from the claimant
  Term plan = ctx.client().kv(tuple("cluster", "plan"), ctx.options().timeout);
  if (auto m = plan.match({"ok", _map})) {
    json p = tools::term_to_json(m[0], tools::JsonStyle::kPlain);
    for (const auto& s : p["staged"]) staged[s["node"]] = s["action"];
  }
  auto status_of = [&](const std::string& node, bool member) -> std::string {
    const auto it = staged.find(node);
    for (const auto& l : r["leaving"]) {
      if (l == node) return "leaving";
    }
    if (it != staged.end() && it->second == "leave") return "leaving";
    if (it != staged.end() && it->second == "join") return "joining";
    return member ? "valid" : "candidate";
  };
  json s = tools::term_to_json(ctx.client().ask("status"), tools::JsonStyle::kPlain);
  std::map<std::string, int> owned;
  for (const auto& o : r["owners"]) ++owned[o.get<std::string>()];
  std::map<std::string, json> row_of;  // status rows by node
  for (const auto& n : s["nodes"]) row_of[n["name"].get<std::string>()] = n;
  json out = json::array();
  auto figure = [&](const std::string& node, const char* key) {
    auto it = row_of.find(node);
    return it != row_of.end() && it->second[key].is_number() ? it->second[key] : json(nullptr);
  };
  for (const auto& m : r["members"]) {
    const std::string name = m[0].get<std::string>();
    out.push_back(json{{"node", name},
                       {"status", status_of(name, true)},
                       {"state", m[1]},
                       {"partitions", owned[name]},
                       {"keys", figure(name, "keys")}});
  }
  for (const auto& [name, row] : row_of) {
    if (owned.count(name) || row["kv"] != true) continue;
    bool member = false;
    for (const auto& m : r["members"]) member |= m[0] == name;
    if (member) continue;
    out.push_back(json{{"node", name},
                       {"status", status_of(name, false)},
                       {"state", row["state"]},
                       {"partitions", 0},
                       {"keys", figure(name, "keys")}});
  }
  if (ctx.json()) {
    print_json(out);
    return kExitOk;
  }
  Table t({"NODE", "STATUS", "STATE", "PARTITIONS", "KEYS"});
  for (const auto& m : out) {
    t.add({m["node"].get<std::string>(), m["status"].get<std::string>(),
           state_text(m["state"].get<std::string>()), m["partitions"].dump(),
           m["keys"].is_number() ? m["keys"].dump() : "-"});
  }
  t.print({3, 4});
  return kExitOk;
}

const Registrar kRingCommand({"ring", "ring",
                              "the store's ring: epoch, partitions, N, who owns each partition",
                              run_ring});
const Registrar kMembersCommand({"members", "members",
                                 "the ring's members (and candidates: nodes with the store "
                                 "outside the ring), up or down",
                                 run_members});

}  // namespace

}  // namespace nodus::ctl
