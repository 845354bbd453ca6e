// call NAME REQUEST, cast NAME REQUEST: talk to any server, with JSON as the term syntax
// (tools/src/json_term.hpp has the mapping).
#include <iostream>

#include "client.hpp"
#include "ctl.hpp"
#include "json_term.hpp"

namespace nodus::ctl {

namespace {

using nlohmann::json;

// NAME is local:X@NODE, local:X (on the connected node), global:X or a pid <n1.4.0>.
Term target_of(Client& c, const std::string& name) {
  if (name.rfind("local:", 0) == 0) {
    std::string rest = name.substr(6);
    std::string node = c.target();
    if (auto at = rest.rfind('@'); at != std::string::npos) {
      node = rest.substr(at + 1);
      rest = rest.substr(0, at);
    }
    if (rest.empty() || node.empty() || rest.size() > 255 || node.size() > 255) {
      throw CtlError(kExitUsage, "\"" + name + "\" is not local:NAME@NODE");
    }
    return tuple("local", bin(rest), Atom(node));
  }
  if (name.rfind("global:", 0) == 0) {
    std::string rest = name.substr(7);
    if (rest.empty() || rest.size() > 255) {
      throw CtlError(kExitUsage, "\"" + name + "\" is not global:NAME");
    }
    return tuple("global", bin(rest));
  }
  if (name.size() > 2 && name.front() == '<' && name.back() == '>') {
    return tuple("pid", bin(name));
  }
  throw CtlError(kExitUsage, "\"" + name +
                                 "\" is not local:NAME@NODE, global:NAME or a pid like "
                                 "<n1.4.0>");
}

Term request_of(const std::string& text) {
  auto t = tools::json_text_to_term(text);
  if (!t.ok()) throw CtlError(kExitUsage, "REQUEST: " + t.error().message());
  return t.value();
}

int run(Context& ctx, const std::vector<std::string>& args, bool is_call) {
  expect_args(args, 2, 2, is_call ? "call NAME REQUEST" : "cast NAME REQUEST");
  Term request = request_of(args[1]);
  Client& c = ctx.client();
  Term target = target_of(c, args[0]);
  const auto timeout = ctx.options().timeout;
  Term reply;
  try {
    if (is_call) {
      reply = c.ask(tuple("call", target, request, static_cast<std::int64_t>(timeout.count())),
                    timeout + std::chrono::seconds(2));
    } else {
      reply = c.ask(tuple("cast", target, request));
    }
  } catch (const CtlError& e) {
    if (e.code != kExitFailed) throw;
    std::string what = e.what();
    if (what.rfind("unreachable: ", 0) == 0) what = what.substr(13);
    throw CtlError(kExitFailed,
                   std::string(is_call ? "call" : "cast") + " to " + args[0] + " failed: " + what);
  }
  json out = tools::term_to_json(reply);
  if (ctx.json()) {
    print_json(out);
  } else {
    std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  }
  return kExitOk;
}

const Registrar call_cmd({"call", "call NAME REQUEST",
                          "calls a server (NAME: local:X@NODE, global:X or a pid) with a JSON "
                          "request; prints the reply as JSON",
                          [](Context& ctx, const std::vector<std::string>& a) {
                            return run(ctx, a, true);
                          }});
const Registrar cast_cmd({"cast", "cast NAME REQUEST", "casts a JSON request to a server",
                          [](Context& ctx, const std::vector<std::string>& a) {
                            return run(ctx, a, false);
                          }});

}  // namespace

}  // namespace nodus::ctl
