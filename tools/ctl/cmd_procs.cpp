// procs NODE, info NODE PID: processes of a node.
#include <algorithm>
#include <iostream>

#include "admin.hpp"
#include "client.hpp"
#include "ctl.hpp"
#include "json_term.hpp"

namespace nodus::ctl {

namespace {

using nlohmann::json;

int run_procs(Context& ctx, const std::vector<std::string>& args) {
  expect_args(args, 1, 1, "procs NODE");
  json procs =
      tools::term_to_json(ctx.client().ask_node(args[0], "procs"), tools::JsonStyle::kPlain);
  std::vector<json> rows(procs.begin(), procs.end());
  // The busiest first: the longest mailbox, then the most messages handled.
  std::stable_sort(rows.begin(), rows.end(), [](const json& a, const json& b) {
    if (a["mailbox"] != b["mailbox"]) return a["mailbox"] > b["mailbox"];
    return a["handled"] > b["handled"];
  });
  if (ctx.json()) {
    print_json(json(rows));
    return kExitOk;
  }
  Table t({"PID", "NAME", "BEHAVIOUR", "TYPE", "MAILBOX", "HANDLED", "MEMORY"});
  for (const auto& p : rows) {
    t.add({p["pid"].get<std::string>(), p["name"].get<std::string>(),
           p["behaviour"].get<std::string>(), p["type"].get<std::string>(),
           std::to_string(p["mailbox"].get<std::int64_t>()),
           std::to_string(p["handled"].get<std::int64_t>()),
           bytes_text(p["memory"].get<std::uint64_t>())});
  }
  t.print({4, 5, 6});
  std::cout << rows.size() << " processes on " << args[0] << "\n";
  return kExitOk;
}

int run_info(Context& ctx, const std::vector<std::string>& args) {
  expect_args(args, 2, 2, "info NODE PID");
  auto pid = tools::parse_pid_text(args[1]);  // refused here, not by a node that has no such pid
  if (!pid.ok()) throw CtlError(pid.error().code(), "PID: " + pid.error().message());
  if (pid->node != args[0]) {
    throw CtlError(ErrorCode::kBadArg, args[1] + " is a process of " + pid->node + ", not of " +
                                           args[0] + "; try nodusctl info " + pid->node + " " +
                                           args[1]);
  }
  Term info;
  try {
    info = ctx.client().ask_node(args[0], tuple("info", bin(args[1])));
  } catch (const CtlError& e) {
    if (e.code != ErrorCode::kNoProc) throw;
    throw CtlError(e.code,
                   std::string(e.what()) + "; nodusctl procs " + args[0] + " lists the live ones");
  }
  json j = tools::term_to_json(info, tools::JsonStyle::kPlain);
  const Term* status = info.find(Term("status"));
  if (ctx.json()) {
    if (status) j["status"] = tools::term_to_json(*status);
    print_json(j);
    return kExitOk;
  }
  const char* keys[] = {"pid",     "name",   "behaviour", "type",  "mailbox",
                        "handled", "memory", "waiting",   "links", "monitors"};
  for (const char* k : keys) {
    std::string key = k;
    key.resize(10, ' ');
    std::string v = j[k].is_string() ? j[k].get<std::string>() : j[k].dump();
    if (std::string(k) == "memory") v = bytes_text(j[k].get<std::uint64_t>());
    std::cout << colour(key, "1") << v << "\n";
  }
  std::cout << colour("status    ", "1") << (status ? status->to_string() : "-") << "\n";
  return kExitOk;
}

const Registrar kProcsCommand({"procs", "procs NODE",
                               "NODE's processes, the longest mailbox first, then the busiest",
                               run_procs});
const Registrar kInfoCommand({"info", "info NODE PID",
                              "one process: counters, links, and its format_status", run_info});

}  // namespace

}  // namespace nodus::ctl
