// nodusctl: the admin CLI (DESIGN.md "Admin CLI").
//
//   nodusctl [--node ENDPOINT | --config FILE] [--cookie-file F]
//            [--curve-secret-file F --curve-server-key K] [--json] [--timeout S] COMMAND
//
// Exit status: 0 success, 1 the operation failed, 2 bad usage, unreachable node or refused.
// Errors are one stderr line saying what failed and what to try.
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "ctl.hpp"

using namespace nodus::ctl;

namespace {

void usage(std::ostream& out) {
  out << "usage: nodusctl [--node ENDPOINT | --config FILE] [--cookie-file F]\n"
         "                [--curve-secret-file F --curve-server-key KEY] [--json]\n"
         "                [--timeout SECONDS] COMMAND [ARGS]\n\n"
         "Talks to a running nodus node (nodusd) as a hidden peer: it is authenticated with the\n"
         "cluster's cookie (and CURVE keys) and never joins the cluster. --node may also come\n"
         "from NODUS_NODE and the cookie file from NODUS_COOKIE_FILE; --config NODE.conf gives\n"
         "both, and that node's CURVE keys. Without a node's config, a CURVE cluster takes a\n"
         "secret key its nodes allow (--curve-secret-file, from nodusctl keygen) and the\n"
         "node's public key (--curve-server-key, or --node ENDPOINT#KEY).\n\ncommands:\n";
  // Help in a column after the usages; a usage too long for it puts its help on the next line.
  constexpr std::size_t kMostWidth = 44;
  std::size_t w = 0;
  for (const Command& c : commands()) {
    const std::size_t n = std::string(c.usage).size();
    if (n <= kMostWidth) w = std::max(w, n);
  }
  for (const Command& c : commands()) {
    std::string u = c.usage;
    if (u.size() > w) {
      out << "  " << u << "\n";
      u.clear();
    }
    u.resize(w, ' ');
    out << "  " << u << "  " << c.help << "\n";
  }
  out << "\nexit status: 0 success, 1 the operation failed, 2 bad usage, unreachable node or "
         "authentication refused\n";
}

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "nodusctl: %s\n", message.c_str());
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  GlobalOptions o;
  std::vector<std::string> rest;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto value = [&](const char* flag) {
        if (i + 1 >= argc)
          throw CtlError(nodus::ErrorCode::kBadArg, std::string(flag) + " needs a value");
        return std::string(argv[++i]);
      };
      if (a == "--json") {
        o.json = true;
      } else if (a == "--node" && !(rest.size() >= 2 && rest[0] == "kv" && rest[1] == "stats")) {
        // (after `kv stats`, --node names the member whose figures to show: its own flag)
        o.node = value("--node");
      } else if (a == "--config") {
        o.config = value("--config");
      } else if (a == "--cookie-file") {
        o.cookie_file = value("--cookie-file");
      } else if (a == "--curve-secret-file") {
        o.curve_secret_file = value("--curve-secret-file");
      } else if (a == "--curve-server-key") {
        o.curve_server_key = value("--curve-server-key");
      } else if (a == "--timeout") {
        std::string v = value("--timeout");
        char* end = nullptr;
        double s = std::strtod(v.c_str(), &end);
        if (!end || *end || s <= 0 || s > 3600) {
          throw CtlError(nodus::ErrorCode::kBadArg, "--timeout takes seconds, e.g. --timeout 10");
        }
        o.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(s * 1000));
      } else if (rest.empty() && (a == "--help" || a == "-h" || a == "help")) {
        usage(std::cout);
        return kExitOk;
      } else {
        rest.push_back(a);
      }
    }
    if (rest.empty()) {
      usage(std::cerr);
      return kExitUsage;
    }
    const std::string name = rest.front();
    std::vector<std::string> args(rest.begin() + 1, rest.end());
    std::string subs;  // a group's commands, for its error
    for (const Command& c : commands()) {
      if (name != c.name) continue;
      if (c.sub) {
        subs += (subs.empty() ? "" : ", ") + std::string(c.sub);
        if (args.empty() || args.front() != c.sub) continue;
        args.erase(args.begin());
      }
      Context ctx(o);
      return c.run(ctx, args);
    }
    const std::string two = args.empty() ? name : name + " " + args.front();
    if (!subs.empty()) {
      return fail(kExitUsage, "unknown command '" + two + "'; the " + name + " commands are " +
                                  subs + " (nodusctl --help)");
    }
    return fail(kExitUsage, "unknown command '" + name + "'; nodusctl --help lists them");
  } catch (const CtlError& e) {
    return fail(e.status, e.what());
  } catch (const std::exception& e) {
    return fail(kExitFailed, std::string("unexpected error: ") + e.what());
  }
}
