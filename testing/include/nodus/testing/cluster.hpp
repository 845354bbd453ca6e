// nodus::testing::Cluster: real node processes for multi-process tests, yours and ours.
//
// A GoogleTest (or any) test starts N node programs — `nodusd`, or a node program of your own
// — on free loopback ports, waits until they are meshed (and the store's ring has formed),
// calls into them, and breaks them: kill -9, restart, SIGSTOP/SIGCONT, a partition between two
// groups and its heal. Every child is killed and reaped when the Cluster goes, also after a
// failed assertion, and dies with the test process if that is killed (PR_SET_PDEATHSIG).
//
//     nodus::testing::Cluster cluster({.program = "build/bin/nodusd"});
//     for (auto n : {"n1", "n2", "n3"})
//       ASSERT_TRUE(cluster.start({.name = n, .args = {"--kv.initial_members=n1 n2 n3"}}).ok());
//     ASSERT_TRUE(cluster.wait_meshed().ok());
//     ASSERT_TRUE(cluster.wait_ring().ok());
//     auto r = cluster.call(0, "nodus_kv", nodus::tuple("get", nodus::bin("k"), nodus::map({})));
//     cluster.partition({0}, {1, 2});   // n1 alone on one side
//     cluster.heal();
//     cluster.kill_9(2);
//     ASSERT_TRUE(cluster.restart(2).ok());
//
// What a child gets. Its settings, as flags for `nodusd` (--node.name=... --node.listen=...
// --cluster.cookie_file=... --cluster.seed=... --node.heartbeat_ms=... --node.down_after_ms=...
// --testing.control=on, then NodeSpec::args) and as environment variables for every program:
// NODUS_TEST_NAME, NODUS_TEST_LISTEN, NODUS_TEST_COOKIE_FILE, NODUS_TEST_SEEDS (space
// separated), NODUS_TEST_HEARTBEAT_MS, NODUS_TEST_DOWN_AFTER_MS. A program of your own reads
// them with node_options_from_env() and calls serve_control(node) once its node runs (see
// below); then everything here works on it as on nodusd. Its stdout and stderr go to
// <dir>/<name>.log (log_tail, log_path).
//
// Readiness: a child is up when the cluster's own hidden node ("nodus_test_<pid>", the
// controller) has linked to it and its control server answers. Partitions are made by each
// node's control server (Node::block_peer both ways), so they need no root and no network
// namespace; the controller's own links are never cut.
//
// Not thread-safe: use a Cluster from the test's own thread. Times are milliseconds.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "nodus/node/node.hpp"
#include "nodus/node/term.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::testing {

/// The local name of the control server that serve_control() starts on a node.
inline constexpr const char* kControlName = "nodus_test_control";

/// How to start one node (Cluster::start).
struct NodeSpec {
  /// The node's name. REQUIRES: not empty. (Two nodes under one name are refused by each
  /// other, which a test may want to see.)
  std::string name;
  /// The executable; empty: ClusterOptions::program.
  std::string program{};
  /// Extra arguments after the harness's own (for nodusd, e.g. "--kv.initial_members=n1 n2").
  std::vector<std::string> args{};
  /// Endpoints it links to at start; unset: the endpoints of every node started before it.
  std::optional<std::vector<std::string>> seeds{};
  /// Its cookie; empty: the cluster's (a different one makes a node the others refuse).
  std::string cookie{};
  std::chrono::milliseconds heartbeat{100};
  std::chrono::milliseconds down_after{1000};
  /// Where it listens; empty: a free loopback port, picked by the harness.
  std::string listen{};
  /// Its descriptor limit (RLIMIT_NOFILE, as `ulimit -n`); 0: the test process's.
  int max_open_files = 0;
  /// The program prints "READY <endpoint> <name> <creation> <pid-id>" on stdout when its node
  /// runs (nodus-testnode does): then readiness is that line, and echo() is that pid. Default:
  /// readiness is the controller's link and the control server's answer.
  bool ready_line = false;
};
/// The name the project's own tests used before the harness was public.
using ChildSpec = NodeSpec;

struct ClusterOptions {
  /// The node program for specs that name none: `nodusd`'s path, or your own program's.
  std::string program{};
  /// The cluster's cookie (written to <dir>/cookie).
  std::string cookie = "nodus-test-cookie";
  /// Whether `program` is nodusd (its settings then also go as --section.key flags).
  /// Default: decided by the file name ("nodusd").
  enum class Kind { kAuto, kNodusd, kOther } kind = Kind::kAuto;
};

class Cluster {
 public:
  /// Makes a temp dir ($TMPDIR or /tmp, "nodus-it-XXXXXX") holding the cookie file. Aborts the
  /// process when the dir or file cannot be made (a test cannot go on without them).
  explicit Cluster(ClusterOptions options = {});
  /// Kills (SIGKILL) and reaps every child still running; when the test failed, prints the
  /// tail of each child's log and keeps the temp dir, else removes it.
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  /// Starts a node and waits (at most `ready_within`) until it is ready (see the top): its
  /// index, 0 for the first. A free port that another process took meanwhile is retried with
  /// another. Errors: kInternal when the program could not be started or exited (the message
  /// holds its log's tail), kTimeout when it was not ready in time (it is then killed).
  Result<std::size_t> start(NodeSpec spec,
                            std::chrono::milliseconds ready_within = std::chrono::seconds(10));

  /// Sends SIGKILL to node i and reaps it. No-op if it is not running.
  void kill_9(std::size_t i);
  /// Sends SIGTERM to node i and waits (at most `within`) for it to exit. Errors: kTimeout
  /// (it is then killed), kInternal when it exited with a status other than 0.
  Status terminate(std::size_t i, std::chrono::milliseconds within = std::chrono::seconds(10));
  /// Starts node i again with the same name, options and endpoint as before, so peers
  /// reconnect to it; it gets a new creation. REQUIRES: it is not running (kill_9 or terminate
  /// first). Errors: as for start.
  Status restart(std::size_t i, std::chrono::milliseconds ready_within = std::chrono::seconds(10));
  /// SIGSTOP / SIGCONT: a node that stops answering without its connections closing, as a
  /// long GC pause or an overloaded host looks (its peers declare it down after down_after).
  /// No-op if it is not running.
  void pause(std::size_t i);
  void resume(std::size_t i);

  /// Cuts traffic between every node of `a` and every node of `b`, both ways (each node's
  /// control server blocks the other's name), until heal(). Nodes inside one group, and the
  /// controller's links, are untouched. Errors: the first control call that failed (a node
  /// not running, or without serve_control).
  Status partition(const std::vector<std::size_t>& a, const std::vector<std::size_t>& b);
  /// Restores every link cut by partition(); links come back with the next reconnect (within
  /// about a heartbeat and a backoff). Errors: as for partition; it still tries every node.
  Status heal();

  /// Waits until every running node sees every other running node up (its control server's
  /// `nodes`), and none of them is partitioned from another. Errors: kTimeout naming a node
  /// and who it misses.
  Status wait_meshed(std::chrono::milliseconds within = std::chrono::seconds(15));
  /// Waits until the store's ring has formed on every running node (`nodus_kv` answers
  /// `ring` with {ok, ...}, docs/protocol.md section 12). Errors: kTimeout with the last answer.
  Status wait_ring(std::chrono::milliseconds within = std::chrono::seconds(30));

  /// Calls the process registered locally as `name` on node i (OTP's gen_server:call to
  /// {Name, Node}), from the controller, with `timeout`: its reply. Errors: as nodus::call
  /// (kTimeout, kNoProc, kNodeDown ...).
  Result<Term> call(std::size_t i, std::string_view name, Term request,
                    std::chrono::milliseconds timeout = std::chrono::seconds(5));
  /// The controller: a hidden node linked to every node started, for calls of your own
  /// (pids, monitors). Started with the first node.
  Node& controller();

  /// True while node i's OS process has not exited (reaps it if it has).
  bool alive(std::size_t i);
  /// Node i's OS process id (-1 when it is not running).
  pid_t os_pid(std::size_t i) const { return children_.at(i).os_pid; }
  /// What /proc says of node i: its resident memory in bytes, and its open descriptors (-1
  /// when it is not running).
  std::int64_t rss_bytes(std::size_t i) const;
  std::int64_t open_files(std::size_t i) const;

  std::size_t size() const { return children_.size(); }
  /// Node i's listen endpoint ("tcp://127.0.0.1:PORT").
  const std::string& endpoint(std::size_t i) const { return children_.at(i).endpoint; }
  Atom name(std::size_t i) const { return Atom(children_.at(i).spec.name); }
  /// The index of the first node called `name`; size() when there is none.
  std::size_t index_of(std::string_view name) const;
  /// With ready_line: the creation and Echo pid it printed (0 and a null pid otherwise).
  std::uint32_t creation(std::size_t i) const { return children_.at(i).creation; }
  Pid echo(std::size_t i) const { return Pid{name(i), creation(i), children_.at(i).echo_id}; }
  /// The cluster's cookie.
  const std::string& cookie() const { return cookie_; }
  /// A node of the test process's own, "tester": visible (a cluster member to the others), on
  /// a free loopback port, with the cluster's cookie. Owned by the caller. Errors: Node::start's.
  Result<std::unique_ptr<Node>> start_tester(std::chrono::milliseconds heartbeat,
                                             std::chrono::milliseconds down_after) const;
  /// The temp dir, and node i's log file in it (stdout and stderr of every incarnation).
  const std::string& dir() const { return dir_; }
  std::string log_path(std::size_t i) const { return children_.at(i).log_file; }
  /// The last `lines` lines of node i's log.
  std::string log_tail(std::size_t i, std::size_t lines = 20) const;

 private:
  struct Child {
    NodeSpec spec;
    bool nodusd = false;
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
  Status await_control(std::size_t i, std::chrono::milliseconds within);
  Status ensure_controller();
  Status control(std::size_t i, Term request);
  void reap(Child& c, int* status = nullptr);

  ClusterOptions options_;
  std::string dir_;
  std::string cookie_;
  std::string cookie_file_;
  std::vector<Child> children_;
  std::unique_ptr<Node> controller_;
  std::set<std::pair<std::size_t, std::size_t>> cut_;  // (i, j), i < j: blocked both ways
};

/// In a node program started by a Cluster: NodeOptions from the NODUS_TEST_* variables (name,
/// listen, cookie read from its file, seeds, heartbeat, down_after); other fields default.
/// Errors: kBadConfig naming the variable that is missing or wrong (not started by a Cluster).
Result<NodeOptions> node_options_from_env();

/// Starts the control server on `node`, registered locally as kControlName, which the Cluster
/// calls: `ping` -> pong; `nodes` -> [Atom...] (Node::nodes()); {block, Node} / {unblock, Node}
/// -> ok (Node::block_peer / unblock_peer). Tests only: any peer holding the cookie may cut
/// this node's links through it. Errors: those of starting a process or registering the name.
Status serve_control(Node& node);

}  // namespace nodus::testing
