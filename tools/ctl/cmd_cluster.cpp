// cluster join|leave|remove NODE, cluster plan|commit|clear: the store's staged membership
// changes (Riak's `riak-admin cluster ...`). The connected node hands each to the claimant,
// which holds the staged changes; plan shows the partitions a commit would move.
#include <iostream>

#include "client.hpp"
#include "ctl.hpp"
#include "json_term.hpp"
#include "nodus/kv/errors.hpp"

namespace nodus::ctl {

namespace {

using nlohmann::json;

// The store's answer to a cluster request: `ok` or `{ok, Value}` (Value returned, or null);
// an `{error, ...}` throws CtlError with the exit status of its code.
json cluster_call(Context& ctx, const Term& request, const std::string& what) {
  static const bool kKvErrors = kv::detail::errors_registered();  // the store's error names
  (void)kKvErrors;
  Term reply = ctx.client().kv(request, ctx.options().timeout);
  if (reply == Term("ok")) return json(nullptr);
  if (auto m = reply.match({"ok", _})) return tools::term_to_json(m[0], tools::JsonStyle::kPlain);
  std::string name = "error";
  std::string message;
  if (auto e = reply.match({"error", _atom})) {
    name = std::string(e[0].as_atom().name());
  } else if (auto e2 = reply.match({"error", {_atom, _bin}})) {
    name = std::string(e2[0].as_atom().name());
    message = e2[1].as_bin();
  } else {
    throw CtlError(ErrorCode::kProtocol, what + ": unexpected reply " + reply.to_string());
  }
  const ErrorCode code = error_from_name(name).value_or(ErrorCode::kInternal);
  if (message.empty()) message = std::string(error_message(code));
  throw CtlError(code, what + ": " + name + ": " + message);
}

void print_moves(const json& moves) {
  Table t({"PARTITION", "FROM", "TO", "KIND"});
  for (const auto& m : moves) {
    t.add({m["partition"].dump(), m["from"].get<std::string>(), m["to"].get<std::string>(),
           m["kind"].get<std::string>()});
  }
  t.print({0});
}

int stage(Context& ctx, const std::vector<std::string>& args, const char* action,
          const char* usage) {
  expect_args(args, 1, 1, usage);
  const std::string& node = args[0];
  cluster_call(ctx, tuple("cluster", action, bin(node)), std::string("cluster ") + action);
  if (ctx.json()) {
    print_json(json{{"staged", json{{"action", action}, {"node", node}}}});
  } else {
    std::cout << "staged: " << action << " " << node
              << "; `nodusctl cluster plan` shows what it moves, `cluster commit` applies it\n";
  }
  return kExitOk;
}

int run_join(Context& ctx, const std::vector<std::string>& a) {
  return stage(ctx, a, "join", "cluster join NODE");
}
int run_leave(Context& ctx, const std::vector<std::string>& a) {
  return stage(ctx, a, "leave", "cluster leave NODE");
}
int run_remove(Context& ctx, const std::vector<std::string>& a) {
  return stage(ctx, a, "remove", "cluster remove NODE");
}

int run_plan(Context& ctx, const std::vector<std::string>& args) {
  expect_args(args, 0, 0, "cluster plan");
  json p = cluster_call(ctx, tuple("cluster", "plan"), "cluster plan");
  if (ctx.json()) {
    print_json(p);
    return p.contains("error") ? kExitFailed : kExitOk;
  }
  std::cout << "claimant " << p["claimant"].get<std::string>() << ", ring epoch "
            << p["epoch"].dump();
  if (p["pending"].get<int>() > 0) {
    std::cout << ", " << p["pending"].dump() << " partition(s) still being handed off";
  }
  std::cout << "\n";
  if (p["staged"].empty()) {
    std::cout << "nothing staged (cluster join|leave|remove NODE stages a change)\n";
    return kExitOk;
  }
  std::cout << "staged:\n";
  for (const auto& s : p["staged"]) {
    std::cout << "  " << s["action"].get<std::string>() << " " << s["node"].get<std::string>()
              << "\n";
  }
  if (p.contains("error")) {
    std::cerr << "cluster plan: cannot be committed now: " << p["error"].get<std::string>() << "\n";
    return kExitFailed;
  }
  std::cout << "\ncommitting makes ring epoch " << p["next_epoch"].dump() << ": "
            << p["moves"].size() << " partition(s) move\n\n";
  if (!p["moves"].empty()) print_moves(p["moves"]);
  return kExitOk;
}

int run_commit(Context& ctx, const std::vector<std::string>& args) {
  expect_args(args, 0, 0, "cluster commit");
  json c = cluster_call(ctx, tuple("cluster", "commit"), "cluster commit");
  if (ctx.json()) {
    print_json(c);
    return kExitOk;
  }
  std::cout << "committed: ring epoch " << c["epoch"].dump() << ", " << c["moves"].size()
            << " partition(s) to move (nodusctl transfers shows their progress)\n";
  return kExitOk;
}

int run_clear(Context& ctx, const std::vector<std::string>& args) {
  expect_args(args, 0, 0, "cluster clear");
  cluster_call(ctx, tuple("cluster", "clear"), "cluster clear");
  if (ctx.json()) {
    print_json(json{{"staged", json::array()}});
  } else {
    std::cout << "staged changes dropped\n";
  }
  return kExitOk;
}

// transfers: every hand-off of the moving partitions, as each sending node reports it.
int run_transfers(Context& ctx, const std::vector<std::string>& args) {
  expect_args(args, 0, 0, "transfers");
  json all = cluster_call(ctx, Term("transfers"), "transfers");
  json out = json::array();
  for (const auto& t : all) {
    out.push_back(json{{"partition", t["partition"]},
                       {"moving", t["moving"]},
                       {"from", t["from"]},
                       {"to", t["to"]},
                       {"state", t["state"]},
                       {"keys_sent", t["keys_sent"]},
                       {"keys_forwarded", t.value("keys_forwarded", json(0))},
                       {"keys_total", t["keys_total"]}});
  }
  if (ctx.json()) {
    print_json(out);
    return kExitOk;
  }
  if (out.empty()) {
    std::cout << "no transfers: no partition is moving\n";
    return kExitOk;
  }
  Table t({"PARTITION", "FOR", "FROM", "TO", "STATE", "KEYS SENT", "TOTAL"});
  for (const auto& x : out) {
    t.add({x["partition"].dump(), x["moving"].dump(), x["from"].get<std::string>(),
           x["to"].get<std::string>(), x["state"].get<std::string>(), x["keys_sent"].dump(),
           x["keys_total"].dump()});
  }
  t.print({0, 1, 5, 6});
  return kExitOk;
}

const Registrar kTransfers({"transfers", "transfers",
                            "the partitions being handed off: from, to, keys sent / total",
                            run_transfers});
const Registrar kJoin({"cluster", "cluster join NODE", "stage NODE (a candidate) joining the ring",
                       run_join, "join"});
const Registrar kLeave({"cluster", "cluster leave NODE",
                        "stage NODE leaving: it hands its partitions off first", run_leave,
                        "leave"});
const Registrar kRemove({"cluster", "cluster remove NODE",
                         "stage removing a dead member; its replicas are rebuilt", run_remove,
                         "remove"});
const Registrar kPlan({"cluster", "cluster plan",
                       "the staged changes and the partitions they would move", run_plan, "plan"});
const Registrar kCommit({"cluster", "cluster commit", "apply the staged changes", run_commit,
                         "commit"});
const Registrar kClear({"cluster", "cluster clear", "drop the staged changes", run_clear, "clear"});

}  // namespace

}  // namespace nodus::ctl
