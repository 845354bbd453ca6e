// The operating tools end to end: the real nodusd and nodusctl binaries against a real cluster
// started from a copy of cluster-configs/local-3 (nodusd_cluster.hpp).
#include <pty.h>
#include <sys/stat.h>

#include <algorithm>
#include <regex>

#include "nodusd_cluster.hpp"

namespace {

using namespace nodus::test;

// How many TCP sockets in TIME_WAIT have `port` as their local port (from /proc/net/tcp).
int time_wait_on(int port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // the header
  int n = 0;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string slot, local, remote, state;
    f >> slot >> local >> remote >> state;
    auto colon = local.find(':');
    if (colon == std::string::npos) continue;
    if (std::stoi(local.substr(colon + 1), nullptr, 16) == port && state == "06") ++n;
  }
  return n;
}

class ToolsTest : public NodusdClusterTest {
 protected:
  void SetUp() override { copy_cluster("local-3", "720", "920"); }
};

TEST_F(ToolsTest, StatusNodesNamesProcsAndCallAnswerInJson) {
  up();
  json s = ctl_json(2, {"status"});
  ASSERT_TRUE(s.is_object()) << s;
  EXPECT_EQ("local-3", s["cluster"]);
  EXPECT_EQ(64, s["ring"]["partitions"]);
  EXPECT_EQ(2, s["ring"]["replicas"]) << "local-3 keeps 2 copies, so a third node can stand in";
  EXPECT_EQ(1, s["ring"]["epoch"]) << "up waits for the store's ring";
  ASSERT_EQ(3u, s["nodes"].size()) << "nodusctl itself must not show up (hidden): " << s;
  int owned = 0;
  for (int i = 1; i <= 3; ++i) {
    const json& n = s["nodes"][i - 1];
    EXPECT_EQ(node_file("n", i, ""), n["name"]);
    EXPECT_EQ(endpoint(i), n["endpoint"]);
    EXPECT_EQ("up", n["state"]);
    ASSERT_TRUE(n["partitions"].is_number() && n["keys"].is_number()) << n;
    EXPECT_TRUE(n["partitions"] == 21 || n["partitions"] == 22) << "a balanced claim: " << n;
    owned += n["partitions"].get<int>();
  }
  EXPECT_EQ(64, owned) << s;

  json nodes = ctl_json(3, {"nodes"});
  ASSERT_EQ(3u, nodes.size());
  for (const json& n : nodes) {
    EXPECT_TRUE(n.contains("name") && n.contains("endpoint")) << n;
    EXPECT_EQ("up", n["state"]);
  }

  // The global counter of n1.conf, called from n2 and n3.
  json names = ctl_json(2, {"names", "--global"});
  ASSERT_EQ(1u, names.size()) << names;
  EXPECT_EQ("hits", names[0]["name"]);
  EXPECT_EQ("n1", names[0]["node"]);
  EXPECT_EQ(0u, std::string(names[0]["pid"]).rfind("<n1.", 0));
  EXPECT_EQ(1, ctl_json(2, {"call", "global:hits", "\"increment\""}));
  EXPECT_EQ(2, ctl_json(3, {"call", "global:hits", "\"increment\""}));

  // A local name on another node, a cast and the JSON <-> term mapping.
  EXPECT_EQ(0, ctl(3, {"cast", "local:stack@n1", R"(["push", {"$bin": "x"}])"}).code);
  EXPECT_EQ(json::parse(R"(["ok", {"$bin": "x"}])"),
            ctl_json(3, {"call", "local:stack@n1", "\"pop\""}));
  EXPECT_EQ(json::parse(R"(["error", "empty"])"),
            ctl_json(2, {"call", "local:stack@n1", "\"pop\""}));

  json locals = ctl_json(1, {"names", "--local", "n1"});
  std::vector<std::string> local_names;
  for (const json& e : locals) local_names.push_back(e["name"]);
  EXPECT_NE(local_names.end(), std::find(local_names.begin(), local_names.end(), "stack"));

  json procs = ctl_json(2, {"procs", "n1"});
  ASSERT_GE(procs.size(), 4u);
  for (std::size_t i = 1; i < procs.size(); ++i) {  // mailbox, then handled, descending
    const json& a = procs[i - 1];
    const json& b = procs[i];
    EXPECT_TRUE(a["mailbox"] > b["mailbox"] ||
                (a["mailbox"] == b["mailbox"] && a["handled"] >= b["handled"]))
        << procs;
  }
  std::string stack_pid;
  for (const json& p : procs) {
    if (p["name"] == "stack") stack_pid = p["pid"];
  }
  ASSERT_FALSE(stack_pid.empty()) << procs;
  json info = ctl_json(3, {"info", "n1", stack_pid});
  EXPECT_EQ("stack::Stack", info["type"]);
  EXPECT_TRUE(info.contains("status")) << info;

  EXPECT_EQ(0, ctl(2, {"ping", "n3"}).code);
}

TEST_F(ToolsTest, TopShowsTheClusterAndItsBusiestProcessesAndQuitsOnQ) {
  up();
  // top needs a terminal: give it a pseudo-terminal and read the screen it draws.
  int master = -1;
  winsize size{};
  size.ws_row = 40;
  size.ws_col = 140;
  const std::string config = conf(1);
  pid_t pid = ::forkpty(&master, nullptr, nullptr, &size);
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::setenv("TERM", "xterm", 1);
    std::vector<char*> argv = {const_cast<char*>(kCtl.c_str()), const_cast<char*>("--config"),
                               const_cast<char*>(config.c_str()), const_cast<char*>("top"),
                               nullptr};
    ::execv(argv[0], argv.data());
    std::_Exit(127);
  }
  std::string screen;
  auto read_some = [&] {
    pollfd fd{master, POLLIN, 0};
    if (::poll(&fd, 1, 100) <= 0) return;
    char buf[4096];
    ssize_t n = ::read(master, buf, sizeof(buf));
    if (n > 0) screen.append(buf, static_cast<std::size_t>(n));
  };
  auto shows = [&](const char* what) { return screen.find(what) != std::string::npos; };
  const auto deadline = Clock::now() + 20s;
  while (Clock::now() < deadline &&
         !(shows("q quits") && shows("IN/s") && shows("nodus_global") && shows("n3"))) {
    read_some();
  }
  EXPECT_TRUE(shows("IN/s") && shows("nodus_global") && shows("n3"))
      << "top drew no cluster view; the screen so far:\n"
      << screen;
  ASSERT_EQ(1, ::write(master, "q", 1));
  int status = -1;
  const auto quit_by = Clock::now() + 10s;
  while (Clock::now() < quit_by && ::waitpid(pid, &status, WNOHANG) == 0) read_some();
  if (::waitpid(pid, &status, WNOHANG) == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    ADD_FAILURE() << "top did not quit on q";
  }
  ::close(master);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

TEST_F(ToolsTest, FailuresExitOneAndBadUsageExitsTwo) {
  up();
  Outcome r = ctl(2, {"call", "local:nobody@n1", "\"x\""});
  EXPECT_EQ(1, r.code);
  EXPECT_NE(std::string::npos, r.err.find("noproc")) << r.err;
  r = ctl(2, {"call", "global:nobody", "\"x\""});
  EXPECT_EQ(1, r.code) << r.err;
  r = ctl(2, {"call", "local:stack@n1", "{not json"});
  EXPECT_EQ(2, r.code);
  EXPECT_NE(std::string::npos, r.err.find("not JSON")) << r.err;
  r = ctl(2, {"procs", "n9"});
  EXPECT_EQ(1, r.code) << r.err;
  r = ctl(2, {"frobnicate"});
  EXPECT_EQ(2, r.code);
  EXPECT_NE(std::string::npos, r.err.find("unknown command")) << r.err;
  // Errors are one line.
  EXPECT_EQ(1, std::count(r.err.begin(), r.err.end(), '\n')) << r.err;
}

// Issue 10: malformed pids and integers beyond 64 bits are refused by nodusctl itself (exit 2,
// one line), before it connects: here no node listens at all.
TEST_F(ToolsTest, MalformedPidsAndHugeIntegersAreRefusedLocallyWithExitTwo) {
  const std::string nowhere = "tcp://127.0.0.1:" + std::to_string(free_port());
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"call", "<n1.x.y>", "\"x\""}, "is not a pid"},
      {{"cast", "<n1.4.0", "\"x\""}, "is not a pid"},
      {{"info", "n1", "garbage"}, "is not a pid"},
      {{"info", "n1", "<n1.4>"}, "is not a pid"},
      {{"info", "n1", "<n2.4.0>"}, "is a process of n2"},
      {{"call", "local:stack@n1", R"(["push", 12345678901234567890123])"}, "64 signed bits"},
      {{"cast", "global:hits", "-99999999999999999999"}, "64 signed bits"},
  };
  for (const auto& [args, says] : cases) {
    std::vector<std::string> argv = {
        kCtl, "--node", nowhere, "--cookie-file", (dir_ / "cookie").string(), "--timeout", "0.5"};
    argv.insert(argv.end(), args.begin(), args.end());
    Outcome r = run(argv);
    EXPECT_EQ(2, r.code) << args[1] << ": " << r.err;
    EXPECT_NE(std::string::npos, r.err.find(says)) << args[1] << ": " << r.err;
    EXPECT_EQ(1, std::count(r.err.begin(), r.err.end(), '\n')) << "one line: " << r.err;
  }
}

TEST_F(ToolsTest, WrongCookieIsRefusedWithExitTwo) {
  up();
  spit(dir_ / "wrong", "not-the-cookie\n");
  Outcome r =
      run({kCtl, "--node", endpoint(1), "--cookie-file", (dir_ / "wrong").string(), "status"});
  EXPECT_EQ(2, r.code);
  EXPECT_NE(std::string::npos, r.err.find("authentication refused")) << r.err;
  // Nothing listens there: unreachable, exit 2 as well.
  r = run({kCtl, "--node", "tcp://127.0.0.1:" + std::to_string(free_port()), "--cookie-file",
           (dir_ / "cookie").string(), "--timeout", "0.5", "status"});
  EXPECT_EQ(2, r.code);
  EXPECT_NE(std::string::npos, r.err.find("no answer")) << r.err;
}

TEST_F(ToolsTest, UpAndDownTwiceInARowAreHarmless) {
  up();
  Outcome again = run({kCtl, "up", dir_.string()});
  EXPECT_EQ(0, again.code) << again.err;
  EXPECT_NE(std::string::npos, again.out.find("already running")) << again.out;
  std::vector<pid_t> pids;
  for (int i = 1; i <= 3; ++i) {
    std::ifstream in(dir_ / "run" / node_file("n", i, ".pid"));
    pid_t p = 0;
    in >> p;
    pids.push_back(p);
  }
  Outcome down = run({kCtl, "down", dir_.string(), "--json"});
  ASSERT_EQ(0, down.code) << down.err;
  json stopped = json::parse(down.out);
  ASSERT_EQ(3u, stopped.size());
  for (const json& s : stopped) EXPECT_EQ("gracefully", s["stopped"]) << s;
  for (pid_t p : pids) EXPECT_FALSE(alive(p)) << "pid " << p << " still runs";
  Outcome down_again = run({kCtl, "down", dir_.string()});
  EXPECT_EQ(0, down_again.code);
  EXPECT_NE(std::string::npos, down_again.out.find("nothing running")) << down_again.out;
}

TEST_F(ToolsTest, SigtermStopsGracefullyAndPeersAreTold) {
  // Long failure detection, so that only the BYE of a graceful stop can tell n2 in time.
  std::vector<pid_t> pids = {start_direct(1, {"--node.down_after_ms=30000"}),
                             start_direct(2, {"--node.down_after_ms=30000"})};
  auto n2_sees_n1 = [&](const char* state) {
    Outcome r = ctl(2, {"nodes", "--json"});
    if (r.code != 0) return false;
    json j = json::parse(r.out, nullptr, false);
    for (const json& n : j) {
      if (n["name"] == "n1") return n["state"] == state;
    }
    return false;
  };
  ASSERT_TRUE(eventually([&] { return n2_sees_n1("up"); }, 10s));
  ASSERT_EQ(0, ::kill(pids[0], SIGTERM));
  int status = 0;
  ASSERT_EQ(pids[0], ::waitpid(pids[0], &status, 0));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::string log = slurp(dir_ / "direct-n1.log");
  EXPECT_NE(std::string::npos, log.find("stopping gracefully")) << log;
  EXPECT_NE(std::string::npos, log.find("app <n1.")) << "the apps' terminate ran:\n" << log;
  EXPECT_NE(std::string::npos, log.find("stopped (shutdown)")) << log;
  // Told by BYE, long before the 30 s failure detection.
  EXPECT_TRUE(eventually([&] { return n2_sees_n1("down"); }, 10s));
  fs::remove(dir_ / "run" / "direct-n1.pid");
  ::kill(pids[1], SIGINT);
  ASSERT_EQ(pids[1], ::waitpid(pids[1], &status, 0));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  fs::remove(dir_ / "run" / "direct-n2.pid");
}

// Issue 10: nodusd logs one line per link event and per refused peer, and warns of a secret
// file that others may read (as ssh does).
TEST_F(ToolsTest, LinkEventsRefusalsAndOpenSecretsAreLogged) {
  const std::string cookie = (dir_ / "cookie").string();
  ASSERT_EQ(0, ::chmod(cookie.c_str(), 0644));
  std::vector<pid_t> pids = {start_direct(1, {}), start_direct(2, {})};
  auto log_of = [&](int i) { return slurp(dir_ / node_file("direct-n", i, ".log")); };
  auto logged = [&](int i, const std::string& what) {
    return eventually([&] { return log_of(i).find(what) != std::string::npos; }, 10s);
  };
  EXPECT_TRUE(logged(1, "node n2 up at " + endpoint(2))) << log_of(1);
  EXPECT_TRUE(logged(2, "node n1 up at " + endpoint(1))) << log_of(2);
  EXPECT_TRUE(logged(1, cookie + " holds a secret but others than its owner may read it (mode "
                                 "0644); chmod 600"))
      << log_of(1);

  spit(dir_ / "wrong", "not-the-cookie\n");
  Outcome r = run({kCtl, "--node", endpoint(1), "--cookie-file", (dir_ / "wrong").string(),
                   "--timeout", "2", "status"});
  EXPECT_EQ(2, r.code) << r.err;
  EXPECT_TRUE(logged(1, "authentication failed")) << log_of(1);

  ASSERT_EQ(0, ::kill(pids[1], SIGTERM));
  int status = 0;
  ASSERT_EQ(pids[1], ::waitpid(pids[1], &status, 0));
  fs::remove(dir_ / "run" / "direct-n2.pid");
  EXPECT_TRUE(logged(1, "node n2 down (")) << log_of(1);
  // A link event is one line each: n2 came up once and went down once.
  const std::string log = log_of(1);
  std::size_t ups = 0;
  for (auto at = log.find("node n2 up "); at != std::string::npos;
       at = log.find("node n2 up ", at + 1)) {
    ++ups;
  }
  EXPECT_EQ(1u, ups) << log;

  // Owner-only, no warning.
  ASSERT_EQ(0, ::chmod(cookie.c_str(), 0600));
  Outcome check = run({kNodusd, "--config", conf(3), "--check"});
  EXPECT_EQ(0, check.code) << check.err;
  EXPECT_EQ(std::string::npos, check.err.find("warning")) << check.err;
  ASSERT_EQ(0, ::chmod(cookie.c_str(), 0640));
  check = run({kNodusd, "--config", conf(3), "--check"});
  EXPECT_NE(std::string::npos, check.err.find("warning: " + cookie)) << check.err;
}

TEST_F(ToolsTest, AppsStartUnderLocalGlobalAndViaNames) {
  pid_t p = start_direct(1, {"--apps.start=pool local:db", "--apps.start=counter global:visits",
                             "--apps.start=stack via:reg/s1"});
  ASSERT_TRUE(eventually([&] { return ctl(1, {"ping", "n1"}).code == 0; }, 10s));
  EXPECT_EQ(json::parse(R"(["ok", ["conn", 1]])"),
            ctl_json(1, {"call", "local:db@n1", "\"checkout\""}));
  EXPECT_EQ(1, ctl_json(1, {"call", "global:visits", "\"increment\""}));
  json procs = ctl_json(1, {"procs", "n1"});
  std::map<std::string, std::string> type_of;
  for (const json& e : procs) type_of[e["type"]] = e["name"];
  EXPECT_EQ("db", type_of["database_pool::DatabasePool"]) << procs;
  EXPECT_EQ("global:visits", type_of["registered_counter::RegisteredCounter"]) << procs;
  EXPECT_EQ("via:reg/s1", type_of["stack::Stack"]) << procs;
  // A via name is callable and listed, like a local one (issue 16).
  EXPECT_EQ(0, ctl(1, {"cast", "via:reg/s1", R"(["push", 7])"}).code);
  EXPECT_EQ(json::parse(R"(["ok", 7])"), ctl_json(1, {"call", "via:reg/s1@n1", "\"pop\""}));
  json names = ctl_json(1, {"names", "--local", "n1"});
  EXPECT_NE(std::string::npos, names.dump().find("\"via:reg/s1\"")) << names;
  Outcome missing = ctl(1, {"call", "via:reg/nobody", "\"pop\""});
  EXPECT_EQ(1, missing.code) << missing.out;
  EXPECT_NE(std::string::npos, missing.err.find("nobody")) << missing.err;
  EXPECT_EQ(2, ctl(1, {"call", "via:noslash", "\"pop\""}).code);
  // top wants a terminal.
  EXPECT_EQ(2, ctl(1, {"top"}).code);
  ::kill(p, SIGTERM);
  int status = 0;
  ASSERT_EQ(p, ::waitpid(p, &status, 0));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  fs::remove(dir_ / "run" / "direct-n1.pid");
}

// Issue 10: every nodusctl run left its endpoint in the node's links, redialled for ever (after
// 1,000 runs ~1,300 connect()/s and ~350 descriptors). A hidden node that left is forgotten: a
// hundred runs leave the node's descriptors where they were.
TEST_F(ToolsTest, NodusctlRunAfterRunLeavesNothingBehindInTheNode) {
  pid_t p = start_direct(1, {});
  ASSERT_TRUE(eventually([&] { return ctl(1, {"ping", "n1"}).code == 0; }, 10s));
  auto open_files = [p] {
    std::size_t n = 0;
    for ([[maybe_unused]] const auto& e :
         fs::directory_iterator("/proc/" + std::to_string(p) + "/fd")) {
      ++n;
    }
    return n;
  };
  // Read through /metrics, which adds no link of its own: every hidden peer that came (the
  // nodusctl runs) went again, and no hidden peer is left among the node's links, so none can
  // be redialled.
  auto counter = [](const std::string& text, const std::string& name) -> long {
    const std::string head = name + "{node=\"n1\"} ";
    const std::size_t at = text.find(head);
    return at == std::string::npos ? -1 : std::atol(text.c_str() + at + head.size());
  };
  long came = 0;
  auto all_gone = [&] {
    const std::string text = http_get(http_[1], "/metrics");
    came = counter(text, "nodus_hidden_node_up_events_total");
    return came > 0 && counter(text, "nodus_hidden_node_down_events_total") == came &&
           text.find("hidden=\"true\"") == std::string::npos;
  };
  ASSERT_TRUE(eventually(all_gone, 10s)) << http_get(http_[1], "/metrics");
  const long came_before = came;
  const std::size_t before = open_files();
  for (int i = 0; i < 100; ++i) ASSERT_EQ(0, ctl(1, {"ping", "n1"}).code) << i;
  // Not exactly 100 more: one run in a hundred was once neither counted up nor down by the node
  // (its link's up and down both unreported: a quick run, under investigation).
  ASSERT_TRUE(eventually([&] { return all_gone() && came >= came_before + 90; }, 10s))
      << http_get(http_[1], "/metrics");
  // Its seeds n2 and n3 are not running: their redials open and close a socket or two.
  EXPECT_LE(open_files(), before + 6) << "before the runs " << before;
  const std::string log = slurp(dir_ / "run" / "direct-n1.log");
  EXPECT_EQ(std::string::npos, log.find("cannot connect")) << log;
}

TEST_F(ToolsTest, MetricsEndpointServesPrometheusText) {
  up();
  EXPECT_EQ(1, ctl_json(2, {"call", "global:hits", "\"increment\""}));
  EXPECT_NE(std::string::npos, http_get(http_[1], "/health").find("\"ok\""));
  std::string text = http_get(http_[1], "/metrics");
  ASSERT_FALSE(text.empty());
  // Every sample line: name{labels} value. Every family has HELP and TYPE.
  const std::regex sample(R"(^([a-z_]+)\{([^}]*)\} (-?[0-9.e+-]+|\+Inf)$)");
  std::map<std::string, std::vector<std::pair<std::string, double>>> families;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# ", 0) == 0) continue;
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, sample)) << "not a sample: " << line;
    families[m[1]].emplace_back(m[2], std::stod(m[3]));
  }
  for (const char* f :
       {"nodus_processes", "nodus_mailbox_messages", "nodus_mailbox_max_messages",
        "nodus_messages_in_total", "nodus_messages_out_total", "nodus_frames_rejected_total",
        "nodus_node_up_events_total", "nodus_node_down_events_total",
        "nodus_hidden_node_up_events_total", "nodus_hidden_node_down_events_total",
        "nodus_registry_names", "nodus_remote_call_duration_seconds_bucket",
        "nodus_remote_call_duration_seconds_count"}) {
    EXPECT_TRUE(families.count(f)) << f << " missing from\n" << text;
  }
  EXPECT_GE(families["nodus_processes"][0].second, 4);
  // Per peer: n2 and n3 (nodusctl's hidden links too, flagged hidden in nodus_peer_up).
  int peers = 0;
  for (const auto& [labels, v] : families["nodus_messages_in_total"]) {
    peers += labels.find("peer=\"n2\"") != std::string::npos ||
             labels.find("peer=\"n3\"") != std::string::npos;
  }
  EXPECT_EQ(2, peers) << text;
  // The histogram's buckets are cumulative and end in the count.
  const auto& buckets = families["nodus_remote_call_duration_seconds_bucket"];
  for (std::size_t i = 1; i < buckets.size(); ++i) {
    EXPECT_LE(buckets[i - 1].second, buckets[i].second);
  }
  ASSERT_FALSE(buckets.empty());
  EXPECT_NE(std::string::npos, buckets.back().first.find("le=\"+Inf\""));
  EXPECT_EQ(buckets.back().second, families["nodus_remote_call_duration_seconds_count"][0].second);
  bool global_counted = false;
  for (const auto& [labels, v] : families["nodus_registry_names"]) {
    if (labels.find("registry=\"global\"") != std::string::npos) global_counted = v >= 1;
  }
  EXPECT_TRUE(global_counted) << text;
}

// Issue 10: clients that connect to admin.http and send half a request, nothing, or a head whose
// body never comes, and wait, must not keep /health and /metrics from answering, and the server
// drops them in bounded time.
TEST_F(ToolsTest, HealthAnswersWhileHalfSentRequestsAreHeldOpen) {
  start_direct(1, {});
  ASSERT_TRUE(eventually([&] { return !http_get(http_[1], "/health", 1s).empty(); }, 10s));
  for (int held : {10, 200}) {
    SCOPED_TRACE(std::to_string(held) + " connections held");
    std::vector<int> fds;
    for (int i = 0; i < held; ++i) {
      int fd = connect_to(http_[1]);
      ASSERT_GE(fd, 0);
      // A third sends the start of a request, a third nothing at all, and a third a whole
      // request head that announces a body it never sends.
      std::string part;
      if (i % 3 == 0) part = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n";
      if (i % 3 == 2) part = "GET /health HTTP/1.1\r\nContent-Length: 100000\r\n\r\n";
      if (!part.empty()) {
        ASSERT_EQ(static_cast<ssize_t>(part.size()), ::write(fd, part.data(), part.size()));
      }
      fds.push_back(fd);
    }
    const auto t0 = Clock::now();
    EXPECT_NE(std::string::npos, http_get(http_[1], "/health", 5s).find("\"ok\""));
    EXPECT_NE(std::string::npos, http_get(http_[1], "/metrics", 5s).find("nodus_processes"));
    // cpp-httplib's own pool took 10 s for ten such clients, and never answered with 200.
    EXPECT_LT(Clock::now() - t0, 2s) << "health and metrics waited for the idle clients";
    // Each held connection is closed by the server within its head deadline (5 s) + slack.
    std::vector<pollfd> polls;
    for (int fd : fds) polls.push_back(pollfd{fd, POLLIN, 0});
    std::size_t closed = 0;
    const auto deadline = Clock::now() + 15s;
    while (closed < fds.size() && Clock::now() < deadline) {
      if (::poll(polls.data(), polls.size(), 100) <= 0) continue;
      for (pollfd& p : polls) {
        if (p.fd < 0 || !(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
        char c;
        if (::read(p.fd, &c, 1) <= 0) {
          ::close(p.fd);
          p.fd = -1;
          ++closed;
        }
      }
    }
    EXPECT_EQ(fds.size(), closed) << "the server kept idle connections open past its deadline";
    for (const pollfd& p : polls) {
      if (p.fd >= 0) ::close(p.fd);
    }
  }
}

// Issue 10: after a scrape (and with peers and clients connected) the node's ports hold
// connections in TIME_WAIT once it stops; up again must bind them at once, not ~60 s later.
// admin.http's port always has them here (the node closes the held connections first); which
// node.listen ports get one depends on which side of each ZeroMQ link closes first, so the
// rounds go on until one did (in practice the first).
TEST_F(ToolsTest, PortsAreReusableAtOnceAfterDownEvenAfterAScrape) {
  up();
  int node_port_waits = 0;
  for (int round = 0; round < 5 && node_port_waits == 0; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    // Idle connections the nodes will close first when they stop: their side of each goes to
    // TIME_WAIT on the node's own port, as after a Prometheus scrape.
    std::vector<int> fds;
    for (int i = 1; i <= 3; ++i) {
      ASSERT_NE(std::string::npos, http_get(http_[i], "/metrics").find("nodus_processes"));
      fds.push_back(connect_to(http_[i]));
      fds.push_back(connect_to(ports_[i]));
    }
    for (int fd : fds) ASSERT_GE(fd, 0);
    Outcome down = run({kCtl, "down", dir_.string()});
    ASSERT_EQ(0, down.code) << down.err;
    for (int fd : fds) {  // the nodes closed them: read the end, then close ours
      char c;
      pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, 5000);
      (void)!::read(fd, &c, 1);
      ::close(fd);
    }
    for (int i = 1; i <= 3; ++i) {
      EXPECT_TRUE(eventually([&] { return time_wait_on(http_[i]) > 0; }, 5s))
          << "no TIME_WAIT on admin.http port " << http_[i] << ": the test would prove nothing";
      node_port_waits += time_wait_on(ports_[i]);
    }
    const auto t0 = Clock::now();
    Outcome again = run({kCtl, "up", dir_.string()});
    ASSERT_EQ(0, again.code) << again.out << again.err;
    EXPECT_LT(Clock::now() - t0, 15s);
    for (int i = 1; i <= 3; ++i) {
      EXPECT_NE(std::string::npos, http_get(http_[i], "/health").find("\"ok\"")) << i;
    }
  }
  EXPECT_GT(node_port_waits, 0) << "no node.listen port was in TIME_WAIT in five rounds";
}

// -- CURVE: nodusctl uses the keys of the node whose config it is given ----------------------

class SecureTest : public ToolsTest {
 protected:
  void SetUp() override { copy_cluster("secure-3", "740", "940"); }
};

TEST_F(SecureTest, ANodesKeysLetNodusctlInAndTheCookieAloneDoesNot) {
  up();
  json s = ctl_json(2, {"status"});
  ASSERT_EQ(3u, s["nodes"].size()) << s;
  for (const json& n : s["nodes"]) EXPECT_EQ("up", n["state"]) << s;
  Outcome r = run({kCtl, "--node", endpoint(1), "--cookie-file", (dir_ / "cookie").string(),
                   "--timeout", "1", "status"});
  EXPECT_EQ(2, r.code) << r.out;
  // A key pair that is not the cluster's: refused by CURVE too.
  Outcome keys = run({kCtl, "keygen", "--secret-file", (dir_ / "stranger.key").string(), "--json"});
  ASSERT_EQ(0, keys.code) << keys.err;
  std::string text = slurp(conf(3));
  const std::string pub = json::parse(keys.out)["public_key"];
  text = set_line(text, "curve_secret_file = ", "stranger.key");
  text = set_line(text, "curve_public_key = ", pub);
  spit(dir_ / "stranger.conf.txt", text);  // not *.conf: no member of the folder
  std::smatch n1_key;
  const std::string n1_conf = slurp(conf(1));
  ASSERT_TRUE(std::regex_search(n1_conf, n1_key, std::regex("curve_public_key = (\\S+)")));
  r = run({kCtl, "--config", (dir_ / "stranger.conf.txt").string(), "--node",
           endpoint(1) + "#" + n1_key[1].str(), "--timeout", "1", "status"});
  EXPECT_EQ(2, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.err.find("no answer")) << r.err;
}

TEST_F(SecureTest, KeysGivenDirectlyLetNodusctlInWithoutANodesConfig) {
  up();
  std::smatch n1_key;
  const std::string n1_conf = slurp(conf(1));
  ASSERT_TRUE(std::regex_search(n1_conf, n1_key, std::regex("curve_public_key = (\\S+)")));
  const std::string cookie = (dir_ / "cookie").string();
  // n2's secret key is one n1 allows; n1's public key says whom nodusctl may link to.
  Outcome r =
      run({kCtl, "--node", endpoint(1), "--cookie-file", cookie, "--curve-secret-file",
           (dir_ / "n2.key").string(), "--curve-server-key", n1_key[1].str(), "--json", "status"});
  ASSERT_EQ(0, r.code) << r.err;
  EXPECT_EQ(3u, json::parse(r.out)["nodes"].size()) << r.out;
  // A key the cluster does not allow: refused.
  ASSERT_EQ(0, run({kCtl, "keygen", "--secret-file", (dir_ / "other.key").string()}).code);
  r = run({kCtl, "--node", endpoint(1), "--cookie-file", cookie, "--curve-secret-file",
           (dir_ / "other.key").string(), "--curve-server-key", n1_key[1].str(), "--timeout", "1",
           "status"});
  EXPECT_EQ(2, r.code) << r.out;
  // Half the pair, or a key that is none: bad usage, said before anything is dialled.
  r = run({kCtl, "--node", endpoint(1), "--cookie-file", cookie, "--curve-server-key",
           n1_key[1].str(), "status"});
  EXPECT_EQ(2, r.code);
  EXPECT_NE(std::string::npos, r.err.find("--curve-secret-file")) << r.err;
  r = run({kCtl, "--node", endpoint(1), "--cookie-file", cookie, "--curve-secret-file",
           (dir_ / "n2.key").string(), "--curve-server-key", "nokey", "status"});
  EXPECT_EQ(2, r.code);
  EXPECT_NE(std::string::npos, r.err.find("--curve-server-key")) << r.err;
}

TEST_F(SecureTest, RefusesAPublicKeyThatIsNotTheSecretKeys) {
  Outcome other = run({kCtl, "keygen", "--json"});
  const std::string pub = json::parse(other.out)["public_key"];
  Outcome r = run({kNodusd, "--config", conf(1), "--check", "--node.curve_public_key=" + pub});
  EXPECT_EQ(2, r.code) << r.out;
  EXPECT_NE(std::string::npos, r.err.find("node.curve_public_key")) << r.err;
}

// -- configuration refusals: each exits 2 with one line naming the key -------------------------

class ConfigTest : public ToolsTest {
 protected:
  Outcome check(std::vector<std::string> extra,
                const std::map<std::string, std::string>& env = {}) {
    std::vector<std::string> argv = {kNodusd, "--config", conf(1), "--check"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run(argv, env);
  }
  void append(const std::string& text) { std::ofstream(conf(1), std::ios::app) << text; }
  void expect_refused(const Outcome& r, const std::string& key) {
    EXPECT_EQ(2, r.code) << r.out << r.err;
    EXPECT_NE(std::string::npos, r.err.find(key)) << "the message names " << key << ": " << r.err;
    EXPECT_EQ(1, std::count(r.err.begin(), r.err.end(), '\n')) << "one line: " << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
};

TEST_F(ConfigTest, CheckShowsEachValueAndWhereItCameFrom) {
  Outcome r = check({});
  ASSERT_EQ(0, r.code) << r.err;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(node\.name +=\s*n1 +# file)"))) << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(log\.format +=\s*text +# default)")));
  r = check({}, {{"NODUS_NODE_NAME", "from_env"}});
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(node\.name +=\s*from_env +# env)"))) << r.out;
  r = check({"--node.name=from_flag"}, {{"NODUS_NODE_NAME", "from_env"}});
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(node\.name +=\s*from_flag +# flag)")))
      << r.out;
}

TEST_F(ConfigTest, RefusesUnknownKeys) {
  append("[node]\nnmae = typo\n");
  expect_refused(check({}), "node.nmae");
}

TEST_F(ConfigTest, RefusesUnknownSections) {
  append("[nodes]\nname = x\n");
  expect_refused(check({}), "[nodes]");
}

TEST_F(ConfigTest, RefusesBadValues) {
  expect_refused(check({"--log.level=loud"}), "log.level");
  expect_refused(check({}, {{"NODUS_LOG_FORMAT", "xml"}}), "log.format");
  expect_refused(check({"--kv.write_quorum=5"}), "kv.write_quorum");
  expect_refused(check({"--kv.partitions=many"}), "kv.partitions");
  expect_refused(check({"--kv.primary_read_quorum=4"}), "kv.primary_read_quorum");
  expect_refused(check({}, {{"NODUS_KV_PRIMARY_WRITE_QUORUM", "x"}}), "kv.primary_write_quorum");
  expect_refused(check({"--kv.max_object_bytes=1000"}), "kv.max_object_bytes");
  expect_refused(check({"--node.listen=udp://nowhere"}), "node.listen");
  expect_refused(check({"--cluster.seed=127.0.0.1"}), "cluster.seed");
  expect_refused(check({"--apps.start=juggler local:x"}), "apps.start");
  expect_refused(check({"--apps.start=counter hits"}), "apps.start");
  expect_refused(check({"--admin.http=localhost"}), "admin.http");
  expect_refused(check({}, {{"NODUS_NODE_NAEM", "x"}}), "NODUS_NODE_NAEM");
  expect_refused(check({"--no-such-flag"}), "--no-such-flag");
}

TEST_F(ConfigTest, RefusesAnUnreadableCookieFile) {
  expect_refused(check({"--cluster.cookie_file=missing-cookie"}), "cluster.cookie_file");
}

TEST_F(ConfigTest, RefusesAPortInUse) {
  // Someone else listens on n1's port.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(ports_[1]));
  ASSERT_EQ(0, ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)));
  ASSERT_EQ(0, ::listen(fd, 1));
  expect_refused(run({kNodusd, "--config", conf(1)}), "node.listen");
  ::close(fd);
}

TEST_F(ConfigTest, RefusesAMissingConfigFile) {
  Outcome r = run({kNodusd, "--config", (dir_ / "nope.conf").string()});
  EXPECT_EQ(2, r.code);
  EXPECT_NE(std::string::npos, r.err.find("nope.conf")) << r.err;
}

}  // namespace
