// nodus::testing::Cluster on real nodusd processes, as a user's test would drive it: start three
// nodes running the store, wait for the mesh and the ring, write and read through nodus_kv, cut
// one node off and heal, pause one past the failure detector and resume it, kill -9 and restart
// one, and find every child gone once the Cluster is.
#include "nodus/testing/cluster.hpp"

#include <gtest/gtest.h>
#include <signal.h>

#include <set>
#include <string>

#include "../test_support.hpp"
#include "nodus/node/term.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using ::nodus::testing::eventually;

std::set<std::string> sees(testing::Cluster& c, std::size_t i) {
  std::set<std::string> out;
  auto r = c.call(i, testing::kControlName, Term("nodes"), 1s);
  if (!r.ok() || !r->is_list()) return {"?"};
  for (const Term& t : r->as_list()) out.insert(std::string(t.as_atom().name()));
  return out;
}

Result<Term> kv(testing::Cluster& c, std::size_t i, Term request) {
  return c.call(i, "nodus_kv", std::move(request), 6s);
}

TEST(HarnessTest, StartsMeshesBreaksAndHealsRealNodusd) {
  std::vector<pid_t> pids;
  {
    testing::Cluster cluster({.program = NODUS_NODUSD_PATH});
    for (const char* n : {"n1", "n2", "n3"}) {
      auto i = cluster.start(
          {.name = n,
           .args = {"--kv.initial_members=n1 n2 n3", "--kv.partitions=16", "--kv.replicas=3"}});
      ASSERT_OK(i);
    }
    ASSERT_OK(cluster.wait_meshed());
    ASSERT_OK(cluster.wait_ring());
    for (std::size_t i = 0; i < cluster.size(); ++i) pids.push_back(cluster.os_pid(i));

    auto put = kv(cluster, 0, tuple("put", bin("k"), bin("v1"), map({})));
    ASSERT_OK(put);
    ASSERT_TRUE(put->match({"ok", _})) << put->to_string();
    auto got = kv(cluster, 2, tuple("get", bin("k"), map({})));
    ASSERT_OK(got);
    ASSERT_TRUE(got->match({"ok", _, _})) << got->to_string();
    EXPECT_EQ(Term(List{bin("v1")}), (*got)[1]);

    // n1 alone: it sees neither of the others, they still see each other.
    ASSERT_OK(cluster.partition({0}, {1, 2}));
    ASSERT_TRUE(eventually([&] { return sees(cluster, 0).empty(); }, 10s))
        << "n1 still sees " << sees(cluster, 0).size();
    ASSERT_TRUE(eventually([&] { return sees(cluster, 1) == std::set<std::string>{"n3"}; }, 10s))
        << "n2 sees " << sees(cluster, 1).size();
    EXPECT_FALSE(cluster.wait_meshed(300ms).ok());
    ASSERT_OK(cluster.heal());
    ASSERT_OK(cluster.wait_meshed());

    // Paused past down_after (1 s): the others declare it down; resumed, it is back.
    cluster.pause(1);
    ASSERT_TRUE(eventually([&] { return !sees(cluster, 0).count("n2"); }, 10s));
    cluster.resume(1);
    ASSERT_OK(cluster.wait_meshed());

    // kill -9 and a restart on the same endpoint: the data is the others' to give back (N=3).
    cluster.kill_9(2);
    EXPECT_FALSE(cluster.alive(2));
    ASSERT_TRUE(eventually([&] { return !sees(cluster, 0).count("n3"); }, 10s));
    ASSERT_OK(cluster.restart(2));
    pids.push_back(cluster.os_pid(2));
    ASSERT_OK(cluster.wait_meshed());
    got = kv(cluster, 1, tuple("get", bin("k"), map({})));
    ASSERT_OK(got);
    EXPECT_TRUE(got->match({"ok", _, _})) << got->to_string();
    EXPECT_NE(std::string::npos, cluster.log_tail(2, 200).find("n3"))
        << "nodusd's log names its node: " << cluster.log_tail(2);
  }
  // Gone with the Cluster (reaped, so kill(pid, 0) finds no such process).
  for (pid_t p : pids) EXPECT_NE(0, ::kill(p, 0)) << "pid " << p << " outlived the cluster";
}

TEST(HarnessTest, AProgramThatIsNoNodeFailsToStartWithItsLog) {
  testing::Cluster cluster({.program = "/bin/sh"});
  auto i = cluster.start({.name = "x", .args = {"-c", "echo this is not a node >&2; exit 3"}}, 5s);
  ASSERT_FALSE(i.ok());
  EXPECT_EQ(ErrorCode::kInternal, i.error().code());
  EXPECT_NE(std::string::npos, i.error().message().find("this is not a node"))
      << i.error().message();
}

}  // namespace
}  // namespace nodus
