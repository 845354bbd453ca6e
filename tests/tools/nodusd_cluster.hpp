// A cluster of real nodusd processes for the operating tools' tests, started from a copy of a
// folder of cluster-configs/ whose ports are rewritten to free ones, so that parallel runs (and
// a cluster someone left running) never clash; and the helpers those tests share: running
// nodusctl and collecting its output and exit status, free ports, files, a minimal HTTP GET.
//
// Every nodusd a test starts is stopped by `nodusctl down` in TearDown, and SIGKILLed by pid
// file if that failed. Waits poll with deadlines. The test target defines NODUS_NODUSD_PATH,
// NODUS_NODUSCTL_PATH and NODUS_SOURCE_DIR.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../test_support.hpp"

namespace nodus::test {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Outcome {
  int code = -1;
  std::string out;
  std::string err;
};

// Runs `argv` with `env` added to the environment, and collects its output (at most `limit`).
inline Outcome run(const std::vector<std::string>& argv,
                   const std::map<std::string, std::string>& env = {},
                   std::chrono::milliseconds limit = 30s) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return {};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    std::_Exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  Outcome r;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  const auto deadline = Clock::now() + limit;
  int open = 2;
  while (open > 0 && Clock::now() < deadline) {
    if (::poll(fds, 2, 100) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[4096];
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) ::close(f.fd);
  }
  if (open > 0) ::kill(pid, SIGKILL);  // over its time: the test fails on the code
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// A loopback TCP port nobody listens on now, below the ephemeral range (32768 and up on Linux),
// so that no process's own ephemeral port (nodusctl's node, a client socket) can take it before
// the nodusd it is meant for binds it; never the same port twice in one test run.
inline int free_port() {
  static std::mt19937 rng(static_cast<unsigned>(::getpid()) ^
                          static_cast<unsigned>(Clock::now().time_since_epoch().count()));
  static std::set<int> given;
  for (;;) {
    const int port = 20000 + static_cast<int>(rng() % 12000);
    if (given.count(port)) continue;
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    ::close(fd);
    if (!ok) continue;
    given.insert(port);
    return port;
  }
}

// "n2.conf", "direct-n1.pid" ... (appended, not "lit" + string: GCC 12 warns falsely on that)
inline std::string node_file(const char* prefix, int i, const char* ext) {
  std::string out(prefix);
  out.append(std::to_string(i)).append(ext);
  return out;
}

inline std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// True while `pid` runs (a zombie, reaped by nobody in some containers, does not count).
inline bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  auto close = line.rfind(')');
  return close != std::string::npos && close + 2 < line.size() && line[close + 2] != 'Z';
}

inline void spit(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

// `text` with the line that starts with `prefix` ending in `value` instead (no regex: keys
// hold '$').
inline std::string set_line(const std::string& text, const std::string& prefix,
                            const std::string& value) {
  std::istringstream in(text);
  std::string out;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) line = prefix + value;
    out.append(line).append("\n");
  }
  return out;
}

// A stand-in for a port while a config is rewritten: no digits, so no old port is in it.
inline std::string placeholder(const char* what, int i) {
  std::string s(1, '\x01');
  s.append(what).push_back(static_cast<char>('a' + i));
  s.push_back('\x02');
  return s;
}

inline std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size())) {
    s.replace(i, from.size(), to);
  }
  return s;
}

// A TCP connection to a loopback port, or -1.
inline int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// A minimal HTTP/1.0 GET on loopback: the body, or "" on failure or after `limit`.
inline std::string http_get(int port, const std::string& path,
                            std::chrono::milliseconds limit = 10s) {
  int fd = connect_to(port);
  if (fd < 0) return "";
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(limit.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((limit.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  (void)!::write(fd, req.data(), req.size());
  std::string resp;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof(buf))) > 0;) resp.append(buf, n);
  ::close(fd);
  auto body = resp.find("\r\n\r\n");
  return body == std::string::npos ? "" : resp.substr(body + 4);
}

// A child process whose output is read while it runs (nodusctl kv watch, redis-cli subscribe):
// lines of stdout and stderr as they come, a signal, its exit status. The destructor SIGKILLs
// and reaps it if it still runs, so a failed assertion leaves nothing behind.
class Streaming {
 public:
  explicit Streaming(const std::vector<std::string>& argv) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      std::_Exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    fd_[0] = out[0];
    fd_[1] = err[0];
  }
  ~Streaming() {
    if (pid_ > 0 && code_ < 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    for (int fd : fd_) {
      if (fd >= 0) ::close(fd);
    }
  }
  Streaming(const Streaming&) = delete;
  Streaming& operator=(const Streaming&) = delete;

  // Waits until stdout (which 0) or stderr (1) holds `n` whole lines, or `limit` passed; the
  // lines so far.
  std::vector<std::string> lines(int which, std::size_t n, std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    while (split(which).size() < n && Clock::now() < deadline && pump(50)) {
    }
    return split(which);
  }
  // Waits until stderr holds `text`, or `limit` passed.
  bool err_has(const std::string& text, std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    while (buf_[1].find(text) == std::string::npos && Clock::now() < deadline && pump(50)) {
    }
    return buf_[1].find(text) != std::string::npos;
  }
  void signal(int sig) {
    if (pid_ > 0 && code_ < 0) ::kill(pid_, sig);
  }
  // The exit status (128 + signal when killed by one), or -1 when it still ran after `limit`.
  int wait(std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    while (code_ < 0 && Clock::now() < deadline) {
      pump(20);
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
    }
    while (pump(0)) {  // whatever it wrote last
    }
    return code_;
  }
  const std::string& out() const { return buf_[0]; }
  const std::string& err() const { return buf_[1]; }

 private:
  // Reads what is there within `ms`; false when nothing more can come (both pipes closed) or
  // nothing came.
  bool pump(int ms) {
    pollfd fds[2] = {{fd_[0], POLLIN, 0}, {fd_[1], POLLIN, 0}};
    if (fd_[0] < 0 && fd_[1] < 0) return false;
    if (::poll(fds, 2, ms) <= 0) return ms > 0;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        ::close(fd_[i]);
        fd_[i] = -1;
      } else {
        buf_[i].append(buf, static_cast<std::size_t>(n));
      }
    }
    return true;
  }
  std::vector<std::string> split(int which) const {
    std::vector<std::string> out;
    std::size_t at = 0;
    for (std::size_t nl; (nl = buf_[which].find('\n', at)) != std::string::npos; at = nl + 1) {
      out.push_back(buf_[which].substr(at, nl - at));
    }
    return out;
  }

  pid_t pid_ = -1;
  int fd_[2] = {-1, -1};
  std::string buf_[2];
  int code_ = -1;
};

class NodusdClusterTest : public ::testing::Test {
 protected:
  // Copies cluster-configs/<name> (its .conf, cookie and .key files) to a temp dir, with node
  // ports <node_prefix>N and metrics ports <http_prefix>N rewritten to free ones, for nodes
  // n1.conf, n2.conf ... as many as there are.
  void copy_cluster(const char* name, const char* node_prefix, const char* http_prefix) {
    dir_ = fs::temp_directory_path() /
           ("nodus-tools-" + std::to_string(::getpid()) + "-" + std::to_string(++counter_));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const fs::path from = fs::path(NODUS_SOURCE_DIR) / "cluster-configs" / name;
    nodes_ = 0;
    while (fs::exists(from / node_file("n", nodes_ + 1, ".conf"))) ++nodes_;
    for (int i = 1; i <= nodes_; ++i) {
      ports_[i] = free_port();
      http_[i] = free_port();
    }
    for (const auto& e : fs::directory_iterator(from)) {
      const auto ext = e.path().extension();
      if (ext != ".conf" && ext != ".key" && e.path().filename() != "cookie") continue;
      std::string text = slurp(e.path());
      // Two passes through digit-free placeholders: a new port must not be rewritten again
      // when it happens to contain a later node's old one (7101 -> 27102 -> 2<port>).
      for (int i = 1; i <= nodes_ && ext == ".conf"; ++i) {
        text = replace_all(text, node_file(node_prefix, i, ""), placeholder("node", i));
        text = replace_all(text, node_file(http_prefix, i, ""), placeholder("http", i));
      }
      for (int i = 1; i <= nodes_ && ext == ".conf"; ++i) {
        text = replace_all(text, placeholder("node", i), std::to_string(ports_[i]));
        text = replace_all(text, placeholder("http", i), std::to_string(http_[i]));
      }
      spit(dir_ / e.path().filename(), text);
    }
    start_watchdog();
  }

  // The nodes `nodusctl up` starts are daemons, not our children: if this test binary dies
  // without its TearDown (SIGKILL by a timeout), a watchdog shell it started SIGKILLs every
  // node by pid file once this process is gone. TearDown ends the watchdog.
  void start_watchdog() {
    if (watchdog_ > 0) {
      ::kill(watchdog_, SIGKILL);
      ::waitpid(watchdog_, nullptr, 0);
    }
    const std::string parent = std::to_string(::getpid());
    const std::string dir = dir_.string();
    static const char kScript[] =
        "while kill -0 \"$1\" 2>/dev/null; do sleep 1; done; for f in \"$2\"/run/*.pid; do "
        "[ -f \"$f\" ] && kill -9 \"$(cat \"$f\")\" 2>/dev/null; done";
    const char* argv[] = {"/bin/sh",      "-c",        kScript, "nodus-test-watchdog",
                          parent.c_str(), dir.c_str(), nullptr};
    watchdog_ = ::fork();
    if (watchdog_ == 0) {
      ::execv(argv[0], const_cast<char* const*>(argv));
      std::_Exit(127);
    }
  }

  void TearDown() override {
    run({kCtl, "down", dir_.string(), "--grace", "5"});
    if (watchdog_ > 0) {
      ::kill(watchdog_, SIGKILL);
      ::waitpid(watchdog_, nullptr, 0);
      watchdog_ = -1;
    }
    // Whatever survived (a failed assertion midway): by pid file, SIGKILL.
    if (fs::exists(dir_ / "run")) {
      for (const auto& e : fs::directory_iterator(dir_ / "run")) {
        if (e.path().extension() != ".pid") continue;
        std::ifstream in(e.path());
        pid_t p = 0;
        if (in >> p && p > 1) ::kill(p, SIGKILL);
      }
    }
    if (HasFailure()) {
      for (int i = 1; i <= nodes_; ++i) {
        auto log = dir_ / "run" / node_file("n", i, ".log");
        if (fs::exists(log)) std::cerr << "--- " << log << "\n" << slurp(log);
      }
    } else {
      fs::remove_all(dir_);
    }
  }

  std::string conf(int i) const { return (dir_ / node_file("n", i, ".conf")).string(); }
  std::string endpoint(int i) const { return "tcp://127.0.0.1:" + std::to_string(ports_.at(i)); }

  // nodusctl --config nI.conf ARGS...
  Outcome ctl(int i, std::vector<std::string> args) {
    std::vector<std::string> argv = {kCtl, "--config", conf(i)};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  }
  json ctl_json(int i, std::vector<std::string> args) {
    args.push_back("--json");
    Outcome r = ctl(i, args);
    EXPECT_EQ(0, r.code) << r.err;
    return json::parse(r.out, nullptr, false);
  }

  // Starts nodusd for node i directly (not through up), with extra flags; its pid file goes to
  // run/direct-nI.pid so that TearDown kills it whatever happens.
  pid_t start_direct(int i, const std::vector<std::string>& flags) {
    fs::create_directories(dir_ / "run");
    const std::string log = (dir_ / node_file("direct-n", i, ".log")).string();
    const std::string config = conf(i);
    pid_t p = ::fork();
    if (p == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> argv = {const_cast<char*>(kNodusd.c_str()), const_cast<char*>("--config"),
                                 const_cast<char*>(config.c_str())};
      for (const auto& f : flags) argv.push_back(const_cast<char*>(f.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      std::_Exit(127);
    }
    spit(dir_ / "run" / node_file("direct-n", i, ".pid"), std::to_string(p));
    return p;
  }

  void up() {
    Outcome r = run({kCtl, "up", dir_.string()});
    ASSERT_EQ(0, r.code) << r.out << r.err;
  }

  // Polls `pred` (tests/test_support.hpp) every 50 ms: a check may run nodusctl.
  static bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
    return nodus::testing::eventually(pred, limit, 50ms);
  }

  // Sets `key = value(i)` in the [kv] section of node i's config, for every node: the line
  // replaced where the section has the key, else added at the top of the section.
  void configure(const std::string& key, const std::function<std::string(int)>& value) {
    for (int i = 1; i <= nodes_; ++i) {
      const std::string text = slurp(conf(i));
      std::vector<std::string> lines;
      std::istringstream in(text);
      for (std::string line; std::getline(in, line);) lines.push_back(line);
      const auto section = std::find_if(
          lines.begin(), lines.end(), [](const std::string& l) { return l.rfind("[kv]", 0) == 0; });
      ASSERT_NE(section, lines.end()) << conf(i) << " has no [kv] section";
      auto end = std::find_if(section + 1, lines.end(),
                              [](const std::string& l) { return l.rfind('[', 0) == 0; });
      auto at = std::find_if(section + 1, end,
                             [&](const std::string& l) { return l.rfind(key + " =", 0) == 0; });
      if (at != end) {
        *at = key + " = " + value(i);
      } else {
        lines.insert(section + 1, key + " = " + value(i));
      }
      std::string out;
      for (const auto& l : lines) out.append(l).append("\n");
      spit(conf(i), out);
    }
  }
  void configure(const std::string& key, const std::string& value) {
    configure(key, [&](int) { return value; });
  }

  // The samples of metric `name` on node i's /metrics: each one's labels (between the braces)
  // and value; empty when the page cannot be read.
  std::vector<std::pair<std::string, double>> samples(int i, const std::string& name) {
    return samples_in(http_get(http_[i], "/metrics"), name);
  }
  // The sum of the samples of metric `name` on node i whose labels contain `label` (all of them
  // when it is empty); -1 when node i's /metrics cannot be read.
  double metric(int i, const std::string& name, const std::string& label = "") {
    const std::string body = http_get(http_[i], "/metrics");
    if (body.empty()) return -1;
    double sum = 0;
    for (const auto& [labels, value] : samples_in(body, name)) {
      if (labels.find(label) != std::string::npos) sum += value;
    }
    return sum;
  }
  // The samples of metric `name` in a /metrics page `body`.
  static std::vector<std::pair<std::string, double>> samples_in(const std::string& body,
                                                                const std::string& name) {
    std::istringstream in(body);
    std::vector<std::pair<std::string, double>> out;
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(name + "{", 0) != 0) continue;
      const std::size_t close = line.rfind('}');
      if (close == std::string::npos) continue;
      out.emplace_back(line.substr(name.size() + 1, close - name.size() - 1),
                       std::stod(line.substr(close + 2)));
    }
    return out;
  }
  // The sum of metric(i, name) over every node.
  double metric_all(const std::string& name) {
    double sum = 0;
    for (int i = 1; i <= nodes_; ++i) sum += metric(i, name);
    return sum;
  }

  // The value of `key` read through node i (with R = `r` unless empty); when the read failed or
  // found something else, what it found, for the failure message.
  std::string value_on(int i, const std::string& key, const std::string& r = "") {
    std::vector<std::string> args = {"kv", "get", key, "--json"};
    if (!r.empty()) args.insert(args.end(), {"--r", r});
    Outcome o = ctl(i, args);
    if (o.code != 0) return "(exit " + std::to_string(o.code) + ": " + o.err + ")";
    json j = json::parse(o.out, nullptr, false);
    return j.contains("value") && j["value"].is_string() ? j["value"].get<std::string>()
                                                         : "(" + o.out + ")";
  }

  // Whether node `viewer` sees node `node` in `state` (up or down).
  bool sees(int viewer, int node, const char* state) {
    Outcome r = ctl(viewer, {"nodes", "--json", "--timeout", "2"});
    if (r.code != 0) return false;
    json j = json::parse(r.out, nullptr, false);
    for (const json& n : j) {
      if (n["name"] == node_file("n", node, "")) return n["state"] == state;
    }
    return false;
  }

  // The pid `nodusctl up` started for node i (0 when there is no pid file).
  pid_t pid_of(int i) {
    std::ifstream in(dir_ / "run" / node_file("n", i, ".pid"));
    pid_t p = 0;
    in >> p;
    return p;
  }
  // SIGKILL to node i, started by up; true once it is gone (a child of nodusctl up, not ours:
  // polled by kill(pid, 0)).
  bool kill9(int i) {
    const pid_t p = pid_of(i);
    if (p <= 1 || ::kill(p, SIGKILL) != 0) return false;
    return eventually([&] { return ::kill(p, 0) != 0; }, 10s);
  }

  static inline const std::string kCtl = NODUS_NODUSCTL_PATH;
  static inline const std::string kNodusd = NODUS_NODUSD_PATH;
  static inline int counter_ = 0;
  fs::path dir_;
  int nodes_ = 0;  // n1 .. nodes_
  pid_t watchdog_ = -1;
  std::map<int, int> ports_, http_;
};

}  // namespace nodus::test
