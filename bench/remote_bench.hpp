// The two-process scenarios of nodus-bench.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

namespace nodus::bench {

using Clock = std::chrono::steady_clock;

/// A child process and the pipes to it. The child writes one line (its endpoint and details)
/// and then waits until the parent closes `to_child`.
struct Child {
  pid_t pid = -1;
  int from_child = -1;
  int to_child = -1;

  std::string read_line() {
    std::string line;
    char c;
    while (::read(from_child, &c, 1) == 1 && c != '\n') line += c;
    return line;
  }
  void finish() {
    if (to_child >= 0) ::close(to_child);
    to_child = -1;
    int status = 0;
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      ::usleep(1000);
    }
    if (from_child >= 0) ::close(from_child);
    from_child = -1;
  }
};

template <class F>
Child fork_child(F&& body) {
  int up[2], down[2];
  if (::pipe(up) != 0 || ::pipe(down) != 0) std::abort();
  Child c;
  c.pid = ::fork();
  if (c.pid == 0) {
    ::close(up[0]);
    ::close(down[1]);
    auto say = [fd = up[1]](const std::string& line) {
      std::string l = line + "\n";
      (void)!::write(fd, l.data(), l.size());
    };
    auto wait_for_parent = [fd = down[0]] {
      char ch;
      while (::read(fd, &ch, 1) > 0) {
      }
    };
    body(say, wait_for_parent);
    std::_Exit(0);
  }
  ::close(up[1]);
  ::close(down[0]);
  c.from_child = up[0];
  c.to_child = down[1];
  return c;
}

inline double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * v.size()))];
}

struct Args {
  std::string scenario;
  double seconds = 3;
  unsigned schedulers = 0;
  long count = 0;
  long nodes = 0;    // kv scenarios: store nodes (0: 3)
  long clients = 0;  // kv scenarios: concurrent clients (0: 50)
  long value = 0;    // kv scenarios: value bytes (0: 64)
  long keys = 0;     // kv-get, kv-mixed: keys written first (0: 10,000)
  std::string sync;  // kv-durable: kv.sync (always, interval, none; empty: always)
};

void zmq_baseline_scenario(const Args& a);
void remote_call_scenario(const Args& a);
void remote_cast_scenario(const Args& a);
void global_register_scenario(const Args& a);
void registry_scenario(const Args& a);
void kv_put_scenario(const Args& a);
void kv_get_scenario(const Args& a);
void kv_mixed_scenario(const Args& a);
void kv_durable_scenario(const Args& a);
void kv_aae_put_scenario(const Args& a);
void kv_watch_put_scenario(const Args& a);
void kv_memory_put_scenario(const Args& a);
void kv_handoff_bench_scenario(const Args& a);

}  // namespace nodus::bench
