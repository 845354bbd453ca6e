// serve_control and node_options_from_env: the node side of nodus::testing::Cluster.
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "nodus/node/gen_server.hpp"
#include "nodus/node/process.hpp"
#include "nodus/testing/cluster.hpp"

namespace nodus::testing {

namespace {

// The control server: what the Cluster asks of a node (see serve_control's docstring).
class Control : public GenServer {
 public:
  Action init(Node* node) {
    node_ = node;
    return ok();
  }
  Action handle_call(Message& req, From) override {
    if (req == "ping") return reply("pong");
    if (req == "nodes") {
      List out;
      for (Atom a : node_->nodes()) out.emplace_back(a);
      return reply(Term(std::move(out)));
    }
    if (auto m = req.match({"block", _atom})) {
      node_->block_peer(m[0].as_atom().name());
      return reply("ok");
    }
    if (auto m = req.match({"unblock", _atom})) {
      node_->unblock_peer(m[0].as_atom().name());
      return reply("ok");
    }
    return reply(tuple(
        "error", bin("unknown request " + (req.is_term() ? req.term().to_string() : "(typed)"))));
  }

 private:
  Node* node_ = nullptr;
};

Status missing(const char* var) {
  return Status(ErrorCode::kBadConfig, std::string(var) +
                                           " is not set: this program expects to be started by "
                                           "nodus::testing::Cluster");
}

Result<std::chrono::milliseconds> millis(const char* var) {
  const char* text = std::getenv(var);
  if (!text) return missing(var);
  long long v = 0;
  const std::string_view sv(text);
  auto [end, ec] = std::from_chars(sv.data(), sv.data() + sv.size(), v);
  if (ec != std::errc() || end != sv.data() + sv.size() || v <= 0) {
    return Status(ErrorCode::kBadConfig,
                  std::string(var) + " is not a positive number of milliseconds: " + text);
  }
  return std::chrono::milliseconds(v);
}

}  // namespace

Result<NodeOptions> node_options_from_env() {
  NodeOptions o;
  for (auto [var, field] :
       {std::pair{"NODUS_TEST_NAME", &o.name}, std::pair{"NODUS_TEST_LISTEN", &o.listen}}) {
    const char* v = std::getenv(var);
    if (!v || !*v) return missing(var);
    *field = v;
  }
  const char* cookie_file = std::getenv("NODUS_TEST_COOKIE_FILE");
  if (!cookie_file || !*cookie_file) return missing("NODUS_TEST_COOKIE_FILE");
  std::ifstream in(cookie_file, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  o.cookie = text.str();
  while (!o.cookie.empty() && std::isspace(static_cast<unsigned char>(o.cookie.back()))) {
    o.cookie.pop_back();
  }
  if (!in || o.cookie.empty()) {
    return Status(ErrorCode::kBadConfig,
                  std::string("NODUS_TEST_COOKIE_FILE: cannot read a cookie from ") + cookie_file);
  }
  if (const char* seeds = std::getenv("NODUS_TEST_SEEDS")) {
    std::istringstream words(seeds);
    for (std::string w; words >> w;) o.seeds.push_back(w);
  }
  auto heartbeat = millis("NODUS_TEST_HEARTBEAT_MS");
  if (!heartbeat.ok()) return heartbeat.error();
  auto down_after = millis("NODUS_TEST_DOWN_AFTER_MS");
  if (!down_after.ok()) return down_after.error();
  o.heartbeat_interval = *heartbeat;
  o.down_after = *down_after;
  return o;
}

Status serve_control(Node& node) {
  auto pid = start<Control>(node, SpawnOptions{.name = kControlName}, &node);
  if (!pid.ok()) return reasons::to_status(pid.error());
  return Status::Ok();
}

}  // namespace nodus::testing
