#include "nodus/testing/cluster.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "nodus/node/process.hpp"

extern char** environ;

namespace nodus::testing {

namespace {

using Clock = std::chrono::steady_clock;

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

std::string make_temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/nodus-it-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "cluster: %s\n", errno_text("mkdtemp").c_str());
    std::abort();
  }
  return pattern;
}

void write_file(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  if (!out) {
    std::fprintf(stderr, "cluster: cannot write %s\n", path.c_str());
    std::abort();
  }
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped";
}

// A free TCP port on loopback now (the kernel's pick for port 0); 0 if none could be had.
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

std::string join(const std::vector<std::string>& words) {
  std::string out;
  for (const std::string& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

}  // namespace

Cluster::Cluster(ClusterOptions options)
    : options_(std::move(options)),
      dir_(make_temp_dir()),
      cookie_(options_.cookie),
      cookie_file_(dir_ + "/cookie") {
  write_file(cookie_file_, cookie_);
}

Cluster::~Cluster() {
  for (Child& c : children_) {
    if (c.os_pid > 0) ::kill(c.os_pid, SIGKILL);
  }
  for (Child& c : children_) reap(c);
  if (controller_) controller_->shutdown(std::chrono::milliseconds(100));
  if (::testing::Test::HasFailure()) {
    for (std::size_t i = 0; i < children_.size(); ++i) {
      std::fprintf(stderr, "---- %s log (%s), last lines ----\n%s", children_[i].spec.name.c_str(),
                   children_[i].log_file.c_str(), log_tail(i).c_str());
    }
    std::fprintf(stderr, "---- the test's files are kept in %s ----\n", dir_.c_str());
  } else {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

Result<std::size_t> Cluster::start(NodeSpec spec, std::chrono::milliseconds ready_within) {
  if (spec.name.empty()) return Status(ErrorCode::kBadArg, "a node needs a name");
  if (spec.program.empty()) spec.program = options_.program;
  if (spec.program.empty()) {
    return Status(ErrorCode::kBadArg,
                  "which program? set NodeSpec::program or "
                  "ClusterOptions::program (nodusd's path, or your own)");
  }
  if (!spec.seeds) {
    spec.seeds.emplace();
    for (const Child& other : children_) {
      if (!other.endpoint.empty()) spec.seeds->push_back(other.endpoint);
    }
  }
  Child c;
  c.nodusd = options_.kind == ClusterOptions::Kind::kNodusd ||
             (options_.kind == ClusterOptions::Kind::kAuto &&
              std::filesystem::path(spec.program).filename() == "nodusd");
  c.spec = std::move(spec);
  c.log_file = dir_ + "/" + c.spec.name + ".log";
  if (c.spec.cookie.empty()) {
    c.cookie_file = cookie_file_;
  } else {
    c.cookie_file = dir_ + "/" + c.spec.name + ".cookie";
    write_file(c.cookie_file, c.spec.cookie);
  }
  children_.push_back(std::move(c));
  const std::size_t i = children_.size() - 1;
  // A port picked free may be taken before the child binds it: then it exits, and another
  // port is tried (a few times).
  const bool pick_port = children_[i].spec.listen.empty() && !children_[i].spec.ready_line;
  Status s;
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (pick_port) children_[i].spec.listen = "tcp://127.0.0.1:" + std::to_string(free_port());
    s = launch(i, ready_within);
    if (s.ok() || !pick_port || s.code() == ErrorCode::kTimeout || alive(i)) break;
    if (log_tail(i).find("listen") == std::string::npos) break;  // it failed for another reason
  }
  if (!s.ok()) {
    children_.pop_back();
    return s;
  }
  return i;
}

Status Cluster::restart(std::size_t i, std::chrono::milliseconds ready_within) {
  Child& c = children_.at(i);
  if (c.os_pid > 0) return Status(ErrorCode::kBadArg, c.spec.name + " is still running");
  const std::string before = c.endpoint;
  c.spec.listen = before;  // the same port, so that peers find it again
  Status s = launch(i, ready_within);
  if (s.ok() && c.endpoint != before) {
    return Status(ErrorCode::kInternal,
                  c.spec.name + " came back on " + c.endpoint + ", not on " + before);
  }
  return s;
}

Status Cluster::launch(std::size_t i, std::chrono::milliseconds ready_within) {
  Child& c = children_.at(i);
  // Everything the child needs is prepared before fork: between fork and exec only
  // async-signal-safe calls are allowed (the test process has threads).
  const NodeSpec& spec = c.spec;
  const std::string listen = spec.listen.empty() ? "tcp://127.0.0.1:*" : spec.listen;
  std::vector<std::string> args = {spec.program};
  if (c.nodusd) {
    args.insert(args.end(), {"--node.name=" + spec.name, "--node.listen=" + listen,
                             "--cluster.cookie_file=" + c.cookie_file,
                             "--node.heartbeat_ms=" + std::to_string(spec.heartbeat.count()),
                             "--node.down_after_ms=" + std::to_string(spec.down_after.count()),
                             "--testing.control=on"});
    for (const std::string& seed : *spec.seeds) args.push_back("--cluster.seed=" + seed);
  }
  args.insert(args.end(), spec.args.begin(), spec.args.end());
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    if (std::string_view(*e).substr(0, 11) != "NODUS_TEST_") env.emplace_back(*e);
  }
  env.insert(env.end(),
             {"NODUS_TEST_NAME=" + spec.name, "NODUS_TEST_LISTEN=" + listen,
              "NODUS_TEST_COOKIE_FILE=" + c.cookie_file, "NODUS_TEST_SEEDS=" + join(*spec.seeds),
              "NODUS_TEST_HEARTBEAT_MS=" + std::to_string(spec.heartbeat.count()),
              "NODUS_TEST_DOWN_AFTER_MS=" + std::to_string(spec.down_after.count())});
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return Status(ErrorCode::kInternal, errno_text("pipe2"));
  int log_fd = ::open(c.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) {
    ::close(out[0]);
    ::close(out[1]);
    return Status(ErrorCode::kInternal, errno_text(("open " + c.log_file).c_str()));
  }
  sigset_t none;
  sigemptyset(&none);
  const pid_t parent = ::getpid();
  const rlimit files{static_cast<rlim_t>(c.spec.max_open_files),
                     static_cast<rlim_t>(c.spec.max_open_files)};

  const pid_t pid = ::fork();
  if (pid == 0) {
    // The child. dup2 clears close-on-exec on the copies.
    if (::dup2(c.spec.ready_line ? out[1] : log_fd, STDOUT_FILENO) < 0 ||
        ::dup2(log_fd, STDERR_FILENO) < 0) {
      ::_exit(127);
    }
    // Die with the test process, even when ctest kills it with SIGKILL.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (files.rlim_cur > 0 && ::setrlimit(RLIMIT_NOFILE, &files) != 0) ::_exit(126);
    ::execve(argv[0], argv.data(), envp.data());
    static const char kExecFailed[] = "cluster: execve of the node program failed\n";
    (void)!::write(STDERR_FILENO, kExecFailed, sizeof(kExecFailed) - 1);
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(log_fd);
  if (pid < 0) {
    ::close(out[0]);
    return Status(ErrorCode::kInternal, errno_text("fork"));
  }
  c.os_pid = pid;
  c.stdout_fd = out[0];
  if (c.spec.ready_line) return read_ready(i, ready_within);
  c.endpoint = c.spec.listen;
  c.creation = 0;
  c.echo_id = 0;
  return await_control(i, ready_within);
}

Status Cluster::read_ready(std::size_t i, std::chrono::milliseconds within) {
  Child& c = children_.at(i);
  auto give_up = [&](ErrorCode code, const std::string& why) {
    int status = 0;
    if (c.os_pid > 0) ::kill(c.os_pid, SIGKILL);
    reap(c, &status);
    return Status(code, c.spec.name + " " + why + "; its log:\n" + log_tail(i));
  };
  const auto deadline = Clock::now() + within;
  std::string line;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return give_up(ErrorCode::kTimeout,
                     "printed no READY line within " + std::to_string(within.count()) + " ms");
    }
    pollfd p{c.stdout_fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno != EINTR) return give_up(ErrorCode::kInternal, errno_text("poll"));
    if (n <= 0) continue;
    char buf[512];
    ssize_t got = ::read(c.stdout_fd, buf, sizeof(buf));
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got <= 0) {  // end of file: the child exited before READY
      int status = 0;
      reap(c, &status);
      return Status(ErrorCode::kInternal, c.spec.name + " " + describe_exit(status) +
                                              " before READY; its log:\n" + log_tail(i));
    }
    line.append(buf, static_cast<std::size_t>(got));
    const auto eol = line.find('\n');
    if (eol == std::string::npos) {
      if (line.size() > 4096) return give_up(ErrorCode::kInternal, "printed a too long line");
      continue;
    }
    std::istringstream in(line.substr(0, eol));
    std::string word, name;
    in >> word >> c.endpoint >> name >> c.creation >> c.echo_id;
    if (!in || word != "READY" || name != c.spec.name) {
      return give_up(ErrorCode::kInternal, "printed '" + line.substr(0, eol) + "', not READY");
    }
    return Status::Ok();
  }
}

void Cluster::kill_9(std::size_t i) {
  Child& c = children_.at(i);
  if (c.os_pid <= 0) return;
  ::kill(c.os_pid, SIGKILL);
  reap(c);
}

Status Cluster::terminate(std::size_t i, std::chrono::milliseconds within) {
  Child& c = children_.at(i);
  if (c.os_pid <= 0) return Status::Ok();
  ::kill(c.os_pid, SIGTERM);
  const auto deadline = Clock::now() + within;
  while (Clock::now() < deadline) {
    int status = 0;
    pid_t r = ::waitpid(c.os_pid, &status, WNOHANG);
    if (r == c.os_pid) {
      c.os_pid = -1;
      ::close(c.stdout_fd);
      c.stdout_fd = -1;
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return Status::Ok();
      return Status(ErrorCode::kInternal, c.spec.name + " " + describe_exit(status) +
                                              " on SIGTERM; log:\n" + log_tail(i));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill_9(i);
  return Status(ErrorCode::kTimeout, c.spec.name + " did not exit within " +
                                         std::to_string(within.count()) + " ms of SIGTERM");
}

bool Cluster::alive(std::size_t i) {
  Child& c = children_.at(i);
  if (c.os_pid <= 0) return false;
  int status = 0;
  if (::waitpid(c.os_pid, &status, WNOHANG) == 0) return true;
  c.os_pid = -1;
  ::close(c.stdout_fd);
  c.stdout_fd = -1;
  return false;
}

std::int64_t Cluster::rss_bytes(std::size_t i) const {
  const pid_t pid = children_.at(i).os_pid;
  if (pid <= 0) return -1;
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6)) * 1024;  // "  123 kB"
  }
  return -1;
}

std::int64_t Cluster::open_files(std::size_t i) const {
  const pid_t pid = children_.at(i).os_pid;
  if (pid <= 0) return -1;
  std::error_code ec;
  std::int64_t n = 0;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec), end;
       !ec && it != end; it.increment(ec)) {
    ++n;
  }
  return ec ? -1 : n;
}

void Cluster::reap(Child& c, int* status) {
  if (c.os_pid > 0) {
    int s = 0;
    while (::waitpid(c.os_pid, &s, 0) < 0 && errno == EINTR) {
    }
    if (status) *status = s;
  }
  c.os_pid = -1;
  if (c.stdout_fd >= 0) ::close(c.stdout_fd);
  c.stdout_fd = -1;
}

std::string Cluster::log_tail(std::size_t i, std::size_t lines) const {
  std::ifstream in(children_.at(i).log_file);
  std::deque<std::string> tail;
  for (std::string l; std::getline(in, l);) {
    tail.push_back(std::move(l));
    if (tail.size() > lines) tail.pop_front();
  }
  std::string out;
  for (const std::string& l : tail) out += "  " + l + "\n";
  return out;
}

Result<std::unique_ptr<Node>> Cluster::start_tester(std::chrono::milliseconds heartbeat,
                                                    std::chrono::milliseconds down_after) const {
  NodeOptions o;
  o.name = "tester";
  o.listen = "tcp://127.0.0.1:*";
  o.cookie = cookie_;
  o.heartbeat_interval = heartbeat;
  o.down_after = down_after;
  return Node::start(std::move(o));
}

std::size_t Cluster::index_of(std::string_view name) const {
  for (std::size_t i = 0; i < children_.size(); ++i) {
    if (children_[i].spec.name == name) return i;
  }
  return children_.size();
}

void Cluster::pause(std::size_t i) {
  if (children_.at(i).os_pid > 0) ::kill(children_[i].os_pid, SIGSTOP);
}

void Cluster::resume(std::size_t i) {
  if (children_.at(i).os_pid > 0) ::kill(children_[i].os_pid, SIGCONT);
}

Status Cluster::ensure_controller() {
  if (controller_) return Status::Ok();
  NodeOptions o;
  o.name = "nodus_test_" + std::to_string(::getpid());
  o.listen = "tcp://127.0.0.1:*";
  o.cookie = cookie_;
  o.hidden = true;  // no cluster member: it never bridges a partition, nor counts in a mesh
  o.schedulers = 1;
  o.heartbeat_interval = std::chrono::milliseconds(100);
  o.down_after = std::chrono::milliseconds(1000);
  o.log = [](const std::string&) {};  // the children's refusals are theirs to log
  auto started = Node::start(std::move(o));
  if (!started.ok()) return started.error();
  controller_ = std::move(started.value());
  return Status::Ok();
}

Node& Cluster::controller() {
  if (Status s = ensure_controller(); !s.ok()) {
    std::fprintf(stderr, "cluster: the controller node did not start: %s\n", s.to_string().c_str());
    std::abort();
  }
  return *controller_;
}

Result<Term> Cluster::call(std::size_t i, std::string_view name, Term request,
                           std::chrono::milliseconds timeout) {
  if (Status s = ensure_controller(); !s.ok()) return s;
  const Child& c = children_.at(i);
  if (c.os_pid <= 0) return Status(ErrorCode::kNodeDown, c.spec.name + " is not running");
  // The controller links to a node when first asked (and again after it restarted).
  const Atom node(c.spec.name);
  const auto peers = controller_->nodes();
  if (std::find(peers.begin(), peers.end(), node) == peers.end()) {
    if (Status s = controller_->connect(c.endpoint, timeout); !s.ok()) return s;
  }
  // From a thread of its own with a mailbox on the controller: the test's thread may have one
  // on a node of its own (start_tester), and a call goes through the caller's node.
  Result<Term> out = Status(ErrorCode::kInternal, "no answer");
  std::thread([&] {
    Inbox inbox(*controller_);
    auto r = nodus::call(named(name, c.spec.name), std::move(request), timeout);
    if (r.ok()) {
      out = std::move(r.value());
    } else {
      out = reasons::to_status(r.error());
    }
  }).join();
  return out;
}

Status Cluster::control(std::size_t i, Term request) {
  auto r = call(i, kControlName, std::move(request), std::chrono::seconds(2));
  if (!r.ok()) {
    return Status(r.error().code(),
                  children_.at(i).spec.name + "'s control server: " + r.error().message());
  }
  if (*r == Term("ok") || *r == Term("pong")) return Status::Ok();
  return Status(ErrorCode::kProtocol,
                children_[i].spec.name + "'s control server answered " + r->to_string());
}

Status Cluster::await_control(std::size_t i, std::chrono::milliseconds within) {
  const auto deadline = Clock::now() + within;
  Status last = Status(ErrorCode::kTimeout, "not asked");
  while (Clock::now() < deadline) {
    if (!alive(i)) {
      return Status(
          ErrorCode::kInternal,
          children_[i].spec.name + " exited before it was ready; its log:\n" + log_tail(i));
    }
    last = control(i, Term("ping"));
    if (last.ok()) return last;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Child& c = children_[i];
  if (c.os_pid > 0) ::kill(c.os_pid, SIGKILL);
  reap(c);
  return Status(ErrorCode::kTimeout, c.spec.name + " was not ready within " +
                                         std::to_string(within.count()) + " ms (" +
                                         last.to_string() + "); its log:\n" + log_tail(i));
}

Status Cluster::partition(const std::vector<std::size_t>& a, const std::vector<std::size_t>& b) {
  for (std::size_t x : a) {
    for (std::size_t y : b) {
      if (x == y) return Status(ErrorCode::kBadArg, "a node on both sides of a partition");
      if (Status s = control(x, tuple("block", Atom(children_.at(y).spec.name))); !s.ok()) {
        return s;
      }
      if (Status s = control(y, tuple("block", Atom(children_.at(x).spec.name))); !s.ok()) {
        return s;
      }
      cut_.insert({std::min(x, y), std::max(x, y)});
    }
  }
  return Status::Ok();
}

Status Cluster::heal() {
  Status first = Status::Ok();
  for (auto it = cut_.begin(); it != cut_.end();) {
    const auto [x, y] = *it;
    Status s1 =
        alive(x) ? control(x, tuple("unblock", Atom(children_[y].spec.name))) : Status::Ok();
    Status s2 =
        alive(y) ? control(y, tuple("unblock", Atom(children_[x].spec.name))) : Status::Ok();
    if (first.ok() && !s1.ok()) first = s1;
    if (first.ok() && !s2.ok()) first = s2;
    it = cut_.erase(it);
  }
  return first;
}

Status Cluster::wait_meshed(std::chrono::milliseconds within) {
  const auto deadline = Clock::now() + within;
  std::string missing = "not asked";
  while (Clock::now() < deadline) {
    missing.clear();
    for (std::size_t i = 0; i < children_.size() && missing.empty(); ++i) {
      if (!alive(i)) continue;
      auto r = call(i, kControlName, Term("nodes"), std::chrono::seconds(1));
      if (!r.ok() || !r->is_list()) {
        missing = children_[i].spec.name + " did not say whom it sees (" +
                  (r.ok() ? r->to_string() : r.error().to_string()) + ")";
        break;
      }
      std::set<std::string> sees;
      for (const Term& t : r->as_list()) {
        if (t.is_atom()) sees.insert(std::string(t.as_atom().name()));
      }
      for (std::size_t j = 0; j < children_.size(); ++j) {
        if (j == i || !alive(j)) continue;
        if (!sees.count(children_[j].spec.name)) {
          missing = children_[i].spec.name + " does not see " + children_[j].spec.name;
          break;
        }
      }
    }
    if (missing.empty()) {
      if (!cut_.empty()) return Status(ErrorCode::kBadArg, "meshed, but a partition stands");
      return Status::Ok();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status(ErrorCode::kTimeout,
                "not meshed within " + std::to_string(within.count()) + " ms: " + missing);
}

Status Cluster::wait_ring(std::chrono::milliseconds within) {
  const auto deadline = Clock::now() + within;
  std::string last = "not asked";
  while (Clock::now() < deadline) {
    bool formed = true;
    for (std::size_t i = 0; i < children_.size() && formed; ++i) {
      if (!alive(i)) continue;
      auto r = call(i, "nodus_kv", Term("ring"), std::chrono::seconds(1));
      formed = r.ok() && r->match({"ok", _});
      if (!formed) {
        last = children_[i].spec.name + ": " + (r.ok() ? r->to_string() : r.error().to_string());
      }
    }
    if (formed) return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return Status(ErrorCode::kTimeout,
                "the ring did not form within " + std::to_string(within.count()) + " ms: " + last);
}

}  // namespace nodus::testing
