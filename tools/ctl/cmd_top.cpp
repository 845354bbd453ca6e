// top: a live view of the cluster's nodes (message rates) and busiest processes, refreshed
// every second (ncurses). q quits.
#include <unistd.h>

#include <algorithm>
#include <map>

#include "client.hpp"
#include "ctl.hpp"
#include "json_term.hpp"

// Last: curses defines macros (timeout, erase ...) that clash with C++ names.
#include <curses.h>

namespace nodus::ctl {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Sample {
  Clock::time_point at;
  std::map<std::string, std::pair<std::int64_t, std::int64_t>> node_msgs;  // in, out
  std::map<std::string, std::int64_t> handled;                             // by pid
};

struct ProcRow {
  std::string node, pid, name, type;
  std::int64_t mailbox = 0;
  double rate = 0;
};

int run_top(Context& ctx, const std::vector<std::string>& args) {
  expect_args(args, 0, 0, "top");
  if (!::isatty(STDOUT_FILENO) || !::isatty(STDIN_FILENO)) {
    throw CtlError(ErrorCode::kBadArg,
                   "top needs a terminal; for scripts use status --json and procs "
                   "NODE --json");
  }
  Client& c = ctx.client();
  ::initscr();
  ::cbreak();
  ::noecho();
  ::curs_set(0);
  ::wtimeout(stdscr, 1000);
  const bool colours = ::has_colors() && !std::getenv("NO_COLOR");
  if (colours) {
    ::start_color();
    ::use_default_colors();
    ::init_pair(1, COLOR_GREEN, -1);
    ::init_pair(2, COLOR_RED, -1);
  }
  Sample prev;
  std::string error;
  for (;;) {
    Sample now;
    now.at = Clock::now();
    json status;
    std::vector<ProcRow> procs;
    try {
      status = tools::term_to_json(c.ask("status"), tools::JsonStyle::kPlain);
      for (const auto& n : status["nodes"]) {
        const std::string name = n["name"].get<std::string>();
        if (n["state"] != "up") continue;
        if (n["messages_in"].is_number()) {
          now.node_msgs[name] = {n["messages_in"].get<std::int64_t>(),
                                 n["messages_out"].get<std::int64_t>()};
        }
        for (const auto& p :
             tools::term_to_json(c.ask_node(name, "procs"), tools::JsonStyle::kPlain)) {
          ProcRow r{name,
                    p["pid"].get<std::string>(),
                    p["name"].get<std::string>(),
                    p["type"].get<std::string>(),
                    p["mailbox"].get<std::int64_t>(),
                    0};
          const std::int64_t handled = p["handled"].get<std::int64_t>();
          now.handled[r.pid] = handled;
          auto it = prev.handled.find(r.pid);
          double dt = std::chrono::duration<double>(now.at - prev.at).count();
          if (it != prev.handled.end() && dt > 0) r.rate = (handled - it->second) / dt;
          procs.push_back(std::move(r));
        }
      }
      error.clear();
    } catch (const CtlError& e) {
      error = e.what();
    }
    std::sort(procs.begin(), procs.end(), [](const ProcRow& a, const ProcRow& b) {
      if (a.rate != b.rate) return a.rate > b.rate;
      return a.mailbox > b.mailbox;
    });
    ::werase(stdscr);
    int row = 0;
    std::string cluster = status.is_object() && status["cluster"].is_string()
                              ? status["cluster"].get<std::string>()
                              : "";
    ::attron(A_BOLD);
    ::mvprintw(row++, 0, "nodus top  cluster %s  via %s   (q quits)",
               cluster.empty() ? "(unnamed)" : cluster.c_str(), c.target().c_str());
    ::attroff(A_BOLD);
    if (!error.empty()) ::mvprintw(row++, 0, "error: %s", error.c_str());
    ++row;
    ::attron(A_BOLD);
    ::mvprintw(row++, 0, "%-16s %-6s %10s %10s %10s", "NODE", "STATE", "PROCS", "IN/s", "OUT/s");
    ::attroff(A_BOLD);
    if (status.is_object()) {
      for (const auto& n : status["nodes"]) {
        const std::string name = n["name"].get<std::string>();
        const std::string state = n["state"].get<std::string>();
        double in = 0, out = 0;
        auto a = now.node_msgs.find(name);
        auto b = prev.node_msgs.find(name);
        double dt = std::chrono::duration<double>(now.at - prev.at).count();
        if (a != now.node_msgs.end() && b != prev.node_msgs.end() && dt > 0) {
          in = (a->second.first - b->second.first) / dt;
          out = (a->second.second - b->second.second) / dt;
        }
        ::mvprintw(row, 0, "%-16s ", name.c_str());
        if (colours) ::attron(COLOR_PAIR(state == "up" ? 1 : 2));
        ::printw("%-6s", state.c_str());
        if (colours) ::attroff(COLOR_PAIR(state == "up" ? 1 : 2));
        ::printw(
            " %10s %10.0f %10.0f",
            n["processes"].is_number() ? std::to_string(n["processes"].get<int>()).c_str() : "-",
            in, out);
        ++row;
      }
    }
    ++row;
    ::attron(A_BOLD);
    ::mvprintw(row++, 0, "%-10s %-16s %-24s %-28s %8s %10s", "NODE", "PID", "NAME", "TYPE",
               "MAILBOX", "MSGS/s");
    ::attroff(A_BOLD);
    for (const ProcRow& p : procs) {
      if (row >= LINES - 1) break;
      ::mvprintw(row++, 0, "%-10.10s %-16.16s %-24.24s %-28.28s %8lld %10.0f", p.node.c_str(),
                 p.pid.c_str(), p.name.c_str(), p.type.c_str(), static_cast<long long>(p.mailbox),
                 p.rate);
    }
    ::refresh();
    prev = std::move(now);
    int ch = ::getch();
    if (ch == 'q' || ch == 'Q') break;
  }
  ::endwin();
  return kExitOk;
}

const Registrar kTopCommand({"top", "top",
                             "a live view of the nodes' message rates and the busiest processes "
                             "(q quits)",
                             run_top});

}  // namespace

}  // namespace nodus::ctl
