// call NAME REQUEST, cast NAME REQUEST: talk to any server, with JSON as the term syntax
// (tools/src/json_term.hpp has the mapping).
#include <iostream>

#include "admin.hpp"
#include "client.hpp"
#include "ctl.hpp"
#include "json_term.hpp"

namespace nodus::ctl {

namespace {

using nlohmann::json;

// NAME is local:X@NODE, local:X (on the connected node), via:REG/KEY[@NODE] (a Registry of
// apps.start), global:X or a pid <n1.4.0>. Checked
// before nodusctl connects: a malformed NAME is bad usage whether or not a node answers.
Term target_of(Context& ctx, const std::string& name) {
  if (name.rfind("local:", 0) == 0) {
    std::string rest = name.substr(6);
    std::string node;
    if (auto at = rest.rfind('@'); at != std::string::npos) {
      node = rest.substr(at + 1);
      rest = rest.substr(0, at);
    } else if (!rest.empty()) {
      node = ctx.client().target();
    }
    if (rest.empty() || node.empty() || rest.size() > 255 || node.size() > 255) {
      throw CtlError(ErrorCode::kBadArg, "\"" + name + "\" is not local:NAME@NODE");
    }
    return tuple("local", bin(rest), Atom(node));
  }
  if (name.rfind("via:", 0) == 0) {  // via:REG/KEY[@NODE], an apps.start Registry's name
    std::string rest = name.substr(4);
    std::string node = ctx.client().target();
    if (auto at = rest.rfind('@'); at != std::string::npos) {
      node = rest.substr(at + 1);
      rest = rest.substr(0, at);
    }
    const auto slash = rest.find('/');
    if (slash == std::string::npos || slash == 0 || slash + 1 == rest.size() || rest.size() > 511 ||
        node.empty() || node.size() > 255) {
      throw CtlError(ErrorCode::kBadArg, "\"" + name + "\" is not via:REGISTRY/KEY@NODE");
    }
    return tuple("via", bin(rest.substr(0, slash)), bin(rest.substr(slash + 1)), Atom(node));
  }
  if (name.rfind("global:", 0) == 0) {
    std::string rest = name.substr(7);
    if (rest.empty() || rest.size() > 255) {
      throw CtlError(ErrorCode::kBadArg, "\"" + name + "\" is not global:NAME");
    }
    return tuple("global", bin(rest));
  }
  if (!name.empty() && name.front() == '<') {
    auto pid = tools::parse_pid_text(name);  // refused here, not by a node that knows no such pid
    if (!pid.ok()) throw CtlError(pid.error().code(), "NAME: " + pid.error().message());
    return tuple("pid", bin(name));
  }
  throw CtlError(ErrorCode::kBadArg, "\"" + name +
                                         "\" is not local:NAME@NODE, via:REGISTRY/KEY@NODE, "
                                         "global:NAME or a pid like <n1.4.0>");
}

Term request_of(const std::string& text) {
  auto t = tools::json_text_to_term(text);
  if (!t.ok()) throw CtlError(ErrorCode::kBadArg, "REQUEST: " + t.error().message());
  return t.value();
}

int run(Context& ctx, const std::vector<std::string>& args, bool is_call) {
  expect_args(args, 2, 2, is_call ? "call NAME REQUEST" : "cast NAME REQUEST");
  Term request = request_of(args[1]);
  Term target = target_of(ctx, args[0]);
  Client& c = ctx.client();
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
    if (e.status != kExitFailed) throw;  // nodusctl's own failures say what they are
    throw CtlError(
        e.code, std::string(is_call ? "call" : "cast") + " to " + args[0] + " failed: " + e.what());
  }
  json out = tools::term_to_json(reply);
  if (ctx.json()) {
    print_json(out);
  } else {
    std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  }
  return kExitOk;
}

const Registrar kCallCommand({"call", "call NAME REQUEST",
                              "calls a server (NAME: local:X@NODE, via:REG/KEY@NODE, global:X or a "
                              "pid) with a JSON "
                              "request; prints the reply as JSON",
                              [](Context& ctx, const std::vector<std::string>& a) {
                                return run(ctx, a, true);
                              }});
const Registrar kCastCommand({"cast", "cast NAME REQUEST", "casts a JSON request to a server",
                              [](Context& ctx, const std::vector<std::string>& a) {
                                return run(ctx, a, false);
                              }});

}  // namespace

}  // namespace nodus::ctl
