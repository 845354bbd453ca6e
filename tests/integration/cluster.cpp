#include "cluster.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

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

#ifndef NODUS_TESTNODE_PATH
#error "NODUS_TESTNODE_PATH must name the nodus-testnode executable"
#endif

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

}  // namespace

Cluster::Cluster(std::string cookie)
    : dir_(make_temp_dir()), cookie_(std::move(cookie)), cookie_file_(dir_ + "/cookie") {
  write_file(cookie_file_, cookie_);
}

Cluster::~Cluster() {
  for (Child& c : children_) {
    if (c.os_pid > 0) ::kill(c.os_pid, SIGKILL);
  }
  for (Child& c : children_) reap(c);
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

Result<std::size_t> Cluster::start(ChildSpec spec, std::chrono::milliseconds ready_within) {
  Child c;
  c.spec = std::move(spec);
  c.log_file = dir_ + "/" + c.spec.name + ".log";
  if (c.spec.cookie.empty()) {
    c.cookie_file = cookie_file_;
  } else {
    c.cookie_file = dir_ + "/" + c.spec.name + ".cookie";
    write_file(c.cookie_file, c.spec.cookie);
  }
  children_.push_back(std::move(c));
  Status s = launch(children_.size() - 1, ready_within);
  if (!s.ok()) return s;
  return children_.size() - 1;
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
  std::vector<std::string> args = {NODUS_TESTNODE_PATH,
                                   "--name",
                                   c.spec.name,
                                   "--listen",
                                   c.spec.listen.empty() ? "tcp://127.0.0.1:*" : c.spec.listen,
                                   "--cookie-file",
                                   c.cookie_file,
                                   "--heartbeat-ms",
                                   std::to_string(c.spec.heartbeat.count()),
                                   "--down-after-ms",
                                   std::to_string(c.spec.down_after.count())};
  for (const std::string& seed : c.spec.seeds) {
    args.push_back("--seed");
    args.push_back(seed);
  }
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
    if (::dup2(out[1], STDOUT_FILENO) < 0 || ::dup2(log_fd, STDERR_FILENO) < 0) ::_exit(127);
    // Die with the test process, even when ctest kills it with SIGKILL.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (files.rlim_cur > 0 && ::setrlimit(RLIMIT_NOFILE, &files) != 0) ::_exit(126);
    ::execv(argv[0], argv.data());
    static const char kExecFailed[] = "cluster: execv of nodus-testnode failed\n";
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
  return read_ready(i, ready_within);
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

}  // namespace nodus::testing
