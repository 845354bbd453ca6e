// Cluster: real node processes (nodus-testnode) for the multi-process tests.
//
//     Cluster cluster;                                   // a temp dir and a cookie file
//     auto first = cluster.start({.name = "n1"});        // waits for the child's READY line
//     ASSERT_OK(first);
//     call(cluster.echo(*first), "hi");                  // its Echo server, from a test Node
//     cluster.kill_9(*first);                            // SIGKILL, reaped at once
//     ASSERT_OK(cluster.restart(*first));                // same name and endpoint, new creation
//
// Each child listens on a free loopback port (read back from its READY line), writes its
// stderr to <dir>/<name>.log and dies with the test process (PR_SET_PDEATHSIG), so that a
// test killed by ctest's timeout leaves nothing behind. The destructor kills and reaps every
// child still running, even after a failed assertion; when the test failed it prints the tail
// of every child's log and keeps the temp dir.
//
// Not thread-safe: use it from the test's own thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "nodus/node/node.hpp"
#include "nodus/node/term.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::testing {

/// How to start one child node.
struct ChildSpec {
  std::string name;
  /// Endpoints the child links to at start (--seed).
  std::vector<std::string> seeds{};
  /// The child's cookie; empty: the cluster's.
  std::string cookie{};
  std::chrono::milliseconds heartbeat{100};
  std::chrono::milliseconds down_after{1000};
  /// Where it listens; empty: a free loopback port.
  std::string listen{};
  /// Its descriptor limit (RLIMIT_NOFILE, as `ulimit -n`); 0: the test process's.
  int max_open_files = 0;
};

class Cluster {
 public:
  /// Makes a temp dir holding a file with `cookie`.
  explicit Cluster(std::string cookie = "integration-cookie");
  /// Kills (SIGKILL) and reaps every child still running.
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  /// Starts a child and waits (at most `ready_within`) for its READY line: the child's index.
  /// Errors: kInternal when it could not be started, exited or printed something else (the
  /// message holds its log's tail), kTimeout when READY did not come in time.
  Result<std::size_t> start(ChildSpec spec,
                            std::chrono::milliseconds ready_within = std::chrono::seconds(10));

  /// Sends SIGKILL to child i and reaps it. No-op if it is not running.
  void kill_9(std::size_t i);
  /// Sends SIGTERM to child i and waits (at most `within`) for it to exit. Errors: kTimeout
  /// (it is then killed), kInternal when it exited with a status other than 0.
  Status terminate(std::size_t i, std::chrono::milliseconds within = std::chrono::seconds(10));
  /// Starts child i again with the same name, options and listen endpoint as before, so
  /// peers reconnect to it; it gets a new creation and a new echo pid. REQUIRES: it is not
  /// running (kill_9 or terminate first). Errors: as for start.
  Status restart(std::size_t i, std::chrono::milliseconds ready_within = std::chrono::seconds(10));
  /// True while child i's OS process has not exited (reaps it if it has).
  bool alive(std::size_t i);
  /// Child i's OS process id (-1 when it is not running).
  pid_t os_pid(std::size_t i) const { return children_.at(i).os_pid; }
  /// What /proc says of child i: its resident memory in bytes, and its open descriptors (-1
  /// when it is not running).
  std::int64_t rss_bytes(std::size_t i) const;
  std::int64_t open_files(std::size_t i) const;

  std::size_t size() const { return children_.size(); }
  const std::string& endpoint(std::size_t i) const { return children_.at(i).endpoint; }
  Atom name(std::size_t i) const { return Atom(children_.at(i).spec.name); }
  std::uint32_t creation(std::size_t i) const { return children_.at(i).creation; }
  /// The pid of child i's Echo server (of its current incarnation).
  Pid echo(std::size_t i) const { return Pid{name(i), creation(i), children_.at(i).echo_id}; }
  /// The cookie file the children share, and the temp dir.
  const std::string& cookie() const { return cookie_; }
  /// The test process's own node, "tester": on a free loopback port, with the children's
  /// cookie. Errors: Node::start's.
  Result<std::unique_ptr<Node>> start_tester(std::chrono::milliseconds heartbeat,
                                             std::chrono::milliseconds down_after) const;
  const std::string& dir() const { return dir_; }
  /// The last `lines` lines of child i's log (its stderr, over every incarnation).
  std::string log_tail(std::size_t i, std::size_t lines = 20) const;

 private:
  struct Child {
    ChildSpec spec;
    std::string cookie_file;
    std::string log_file;
    pid_t os_pid = -1;  // -1: not running
    int stdout_fd = -1;
    std::string endpoint;
    std::uint32_t creation = 0;
    std::uint64_t echo_id = 0;
  };

  Status launch(std::size_t i, std::chrono::milliseconds ready_within);
  Status read_ready(std::size_t i, std::chrono::milliseconds within);
  void reap(Child& c, int* status = nullptr);

  std::string dir_;
  std::string cookie_;
  std::string cookie_file_;
  std::vector<Child> children_;
};

}  // namespace nodus::testing
