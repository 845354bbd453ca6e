// up DIR, down DIR: a whole cluster from a folder of node configs. Each *.conf in DIR runs as
// a background nodusd; its log and pid file go to DIR/run/NAME.log and DIR/run/NAME.pid.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "client.hpp"
#include "config.hpp"
#include "ctl.hpp"
#include "json_term.hpp"

namespace nodus::ctl {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Member {
  std::string conf;  // absolute
  tools::NodeConfig config;
  std::string pid_file;
  std::string log_file;
};

std::vector<Member> members(const std::string& dir_arg) {
  fs::path dir = fs::absolute(dir_arg);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw CtlError(ErrorCode::kBadArg, dir_arg +
                                           " is not a folder of node configs (*.conf); try "
                                           "cluster-configs/local-3");
  }
  std::vector<std::string> confs;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".conf") confs.push_back(e.path().string());
  }
  std::sort(confs.begin(), confs.end());
  if (confs.empty()) throw CtlError(ErrorCode::kBadArg, dir_arg + " holds no *.conf node configs");
  std::vector<Member> out;
  for (const std::string& c : confs) {
    auto cfg = tools::load_config_file(c);
    if (!cfg.ok()) throw CtlError(ErrorCode::kBadArg, cfg.error().message());
    Member m{c, *cfg, (dir / "run" / (cfg->node.name + ".pid")).string(),
             (dir / "run" / (cfg->node.name + ".log")).string()};
    out.push_back(std::move(m));
  }
  return out;
}

// The pid in a pid file if that process is a live nodusd (not a zombie, not a reused pid).
pid_t running_pid(const std::string& pid_file) {
  std::ifstream in(pid_file);
  long pid = 0;
  if (!(in >> pid) || pid <= 1) return 0;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return 0;
  auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size() || line[close + 2] == 'Z') return 0;
  std::ifstream cmd("/proc/" + std::to_string(pid) + "/cmdline");
  std::string cmdline((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
  if (cmdline.find("nodusd") == std::string::npos) return 0;
  return static_cast<pid_t>(pid);
}

std::string nodusd_path() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path beside = self.parent_path() / "nodusd";
    if (fs::exists(beside)) return beside.string();
  }
  return "nodusd";  // from PATH
}

// Starts nodusd for `m` and returns once it runs nodusd (exec done), so that its pid file
// names a nodusd from the first moment. A pipe closed on exec tells the two apart.
pid_t launch(const Member& m, const std::string& nodusd) {
  int gate[2];
  if (::pipe2(gate, O_CLOEXEC) != 0) {
    throw CtlError(ErrorCode::kInternal, std::string("pipe failed: ") + std::strerror(errno));
  }
  pid_t pid = ::fork();
  if (pid < 0)
    throw CtlError(ErrorCode::kInternal, std::string("fork failed: ") + std::strerror(errno));
  if (pid == 0) {
    ::close(gate[0]);
    ::setsid();  // its own session: it outlives nodusctl and the terminal
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(m.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in >= 0) ::dup2(in, 0);
    if (out >= 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
    }
    ::execlp(nodusd.c_str(), "nodusd", "--config", m.conf.c_str(), static_cast<char*>(nullptr));
    int err = errno;
    (void)!::write(gate[1], &err, sizeof(err));
    std::_Exit(127);
  }
  ::close(gate[1]);
  int err = 0;
  ssize_t n;
  do {
    n = ::read(gate[0], &err, sizeof(err));
  } while (n < 0 && errno == EINTR);
  ::close(gate[0]);
  if (n == static_cast<ssize_t>(sizeof(err))) {
    ::waitpid(pid, nullptr, 0);
    throw CtlError(ErrorCode::kInternal,
                   "cannot run " + nodusd + ": " + std::strerror(err) +
                       " (is nodusd built? it belongs beside nodusctl or on PATH)");
  }
  return pid;
}

std::string tail(const std::string& file, std::size_t lines) {
  std::ifstream in(file);
  std::vector<std::string> all;
  for (std::string l; std::getline(in, l);) all.push_back(l);
  std::string out;
  for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) {
    out += "    " + all[i] + "\n";
  }
  return out;
}

// Waits until every member is up and linked to every other, and every one that runs the store
// holds its ring; throws on a deadline or a death.
json await_mesh(const std::vector<Member>& ms, const GlobalOptions& o, Clock::time_point deadline) {
  GlobalOptions conn = o;
  conn.config = ms.front().conf;
  conn.node.clear();
  conn.timeout = std::chrono::milliseconds(1000);
  std::unique_ptr<Client> client;
  std::string last = "no node answered yet";
  while (Clock::now() < deadline) {
    for (const Member& m : ms) {
      if (!running_pid(m.pid_file)) {
        throw CtlError(ErrorCode::kExited, "node " + m.config.node.name +
                                               " exited while starting; the "
                                               "end of " +
                                               m.log_file + ":\n" + tail(m.log_file, 5));
      }
    }
    try {
      if (!client) client = Client::connect(conn);
      json s = tools::term_to_json(client->ask("status"), tools::JsonStyle::kPlain);
      std::size_t meshed = 0;
      for (const Member& m : ms) {
        for (const auto& n : s["nodes"]) {
          if (n["name"] == m.config.node.name && n["state"] == "up" && n["peers"].is_number() &&
              n["peers"].get<std::size_t>() + 1 >= ms.size()) {
            ++meshed;
          }
        }
      }
      // Nodes that run the store wait for its ring too, so kv commands work once up returns.
      std::size_t ringless = 0;
      for (const Member& m : ms) {
        if (!m.config.run_store()) continue;
        for (const auto& n : s["nodes"]) {
          if (n["name"] == m.config.node.name &&
              !(n["ring_epoch"].is_number() && n["ring_epoch"].get<std::int64_t>() > 0)) {
            ++ringless;
          }
        }
      }
      if (meshed == ms.size() && ringless == 0) return s;
      last = std::to_string(meshed) + " of " + std::to_string(ms.size()) + " nodes meshed";
      if (ringless) last += ", " + std::to_string(ringless) + " without the store's ring yet";
    } catch (const CtlError& e) {
      last = e.what();
      client.reset();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  throw CtlError(ErrorCode::kTimeout, "the cluster did not mesh in time (" + last +
                                          "); see the logs in " +
                                          fs::path(ms.front().log_file).parent_path().string());
}

int run_up(Context& ctx, const std::vector<std::string>& args) {
  expect_args(args, 1, 1, "up DIR");
  auto ms = members(args[0]);
  fs::create_directories(fs::path(ms.front().pid_file).parent_path());
  const std::string nodusd = nodusd_path();
  for (const Member& m : ms) {
    if (pid_t p = running_pid(m.pid_file)) {
      if (!ctx.json()) {
        std::cout << m.config.node.name << ": already running (pid " << p << ")\n";
      }
      continue;
    }
    pid_t p = launch(m, nodusd);
    std::ofstream(m.pid_file) << p << "\n";
    if (!ctx.json()) {
      std::cout << m.config.node.name << ": started (pid " << p << ", log " << m.log_file << ")\n";
    }
  }
  // Reap our own children that exit early (a bad port ...), so they do not linger as zombies.
  for (const Member& m : ms) {
    std::ifstream in(m.pid_file);
    pid_t p = 0;
    if (in >> p) ::waitpid(p, nullptr, WNOHANG);
  }
  json s = await_mesh(ms, ctx.options(), Clock::now() + std::chrono::seconds(30));
  if (ctx.json()) {
    print_json(json{{"cluster", s["cluster"]}, {"nodes", s["nodes"]}, {"ring", s["ring"]}});
    return kExitOk;
  }
  std::cout << "\n" << colour("cluster up", "32") << ": " << ms.size() << " nodes meshed\n";
  Table t({"NODE", "ENDPOINT", "STATE", "PROCESSES", "PEERS"});
  for (const auto& n : s["nodes"]) {
    t.add({n["name"].get<std::string>(), n["endpoint"].get<std::string>(),
           state_text(n["state"].get<std::string>()),
           n["processes"].is_number() ? std::to_string(n["processes"].get<int>()) : "-",
           n["peers"].is_number() ? std::to_string(n["peers"].get<int>()) : "-"});
  }
  t.print({3, 4});
  return kExitOk;
}

int run_down(Context& ctx, const std::vector<std::string>& args) {
  std::vector<std::string> rest = args;
  std::chrono::milliseconds grace(10000);
  if (rest.size() == 3 && rest[1] == "--grace") {
    grace = std::chrono::milliseconds(std::atoi(rest[2].c_str()) * 1000);
    rest.resize(1);
  }
  expect_args(rest, 1, 1, "down DIR [--grace SECONDS]");
  auto ms = members(rest[0]);
  std::vector<std::pair<const Member*, pid_t>> stopping;
  for (const Member& m : ms) {
    if (pid_t p = running_pid(m.pid_file)) {
      ::kill(p, SIGTERM);
      stopping.emplace_back(&m, p);
    } else {
      std::error_code ec;
      fs::remove(m.pid_file, ec);
    }
  }
  json out = json::array();
  const auto deadline = Clock::now() + grace;
  for (auto& [m, p] : stopping) {
    bool killed = false;
    while (running_pid(m->pid_file) == p) {
      ::waitpid(p, nullptr, WNOHANG);  // our own child when up ran in this process's tree
      if (Clock::now() >= deadline) {
        ::kill(p, SIGKILL);
        killed = true;
        for (int i = 0; i < 200 && running_pid(m->pid_file) == p; ++i) {
          ::waitpid(p, nullptr, WNOHANG);
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::error_code ec;
    fs::remove(m->pid_file, ec);
    out.push_back(json{
        {"name", m->config.node.name}, {"pid", p}, {"stopped", killed ? "killed" : "gracefully"}});
    if (!ctx.json()) {
      std::cout << m->config.node.name << ": "
                << (killed ? colour("killed", "31") + " (did not stop within the grace period)"
                           : std::string("stopped"))
                << " (pid " << p << ")\n";
    }
  }
  if (ctx.json()) {
    print_json(out);
  } else if (stopping.empty()) {
    std::cout << "nothing running in " << rest[0] << "\n";
  }
  return kExitOk;
}

const Registrar kUpCommand({"up", "up DIR",
                            "starts every DIR/*.conf as a background nodusd (logs in DIR/run/), "
                            "waits until meshed, shows the cluster",
                            run_up});
const Registrar kDownCommand(
    {"down", "down DIR [--grace SECONDS]",
     "stops the nodes of DIR: SIGTERM, then SIGKILL after the grace period "
     "(10 s)",
     run_down});

}  // namespace

}  // namespace nodus::ctl
