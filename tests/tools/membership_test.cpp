// Membership changes end to end, on real nodusd processes driven only through nodusctl: a copy
// of cluster-configs/local-5 cut to four nodes, with kv.initial_members = n1 n2 n3, so n4 starts
// as a candidate; `cluster join`, `plan`, `commit` make it a member on every node's ring.
#include "nodusd_cluster.hpp"

namespace {

using namespace nodus::test;
using nodus::testing::numbered;

class MembershipTest : public NodusdClusterTest {
 protected:
  void SetUp() override {
    copy_cluster("local-5", "730", "930");
    fs::remove(dir_ / "n5.conf");
    nodes_ = 4;
    for (int i = 1; i <= 4; ++i) {
      spit(conf(i), set_line(slurp(conf(i)), "initial_members", " = n1 n2 n3"));
    }
  }

  // `members --json` through node i, by node name (empty when it failed).
  std::map<std::string, json> members(int i) {
    Outcome r = ctl(i, {"members", "--json"});
    std::map<std::string, json> out;
    if (r.code != 0) return out;
    for (const json& m : json::parse(r.out, nullptr, false)) out[m["node"]] = m;
    return out;
  }
  // `ring --json` through node i (null when it failed).
  json ring(int i) {
    Outcome r = ctl(i, {"ring", "--json"});
    return r.code == 0 ? json::parse(r.out, nullptr, false) : json();
  }
};

TEST_F(MembershipTest, ACandidateJoinsThroughStagedChanges) {
  up();
  ASSERT_TRUE(eventually(
      [&] {
        auto m = members(1);
        return m.size() == 4 && m["n4"]["status"] == "candidate" && m["n1"]["status"] == "valid";
      },
      20s))
      << ctl(1, {"members"}).out;
  ASSERT_TRUE(eventually(
      [&] {
        Outcome r = ctl(2, {"cluster", "plan", "--json"});
        json p = json::parse(r.out, nullptr, false);
        return r.code == 0 && p["candidates"] == json::array({"n4"});
      },
      20s))
      << "the claimant knows n4 runs the store";
  for (int k = 0; k < 30; ++k) {
    Outcome r = ctl(1 + k % 4, {"kv", "put", numbered("key", k), numbered("value", k)});
    ASSERT_EQ(0, r.code) << r.err;
  }

  // Bad usage: exit 2, one line on stderr, nothing staged.
  for (const std::vector<std::string>& args : {std::vector<std::string>{"cluster", "join"},
                                               {"cluster", "join", "n2"},
                                               {"cluster", "remove", "n2"},
                                               {"cluster", "frob"},
                                               {"cluster", "plan", "x"}}) {
    Outcome r = ctl(1, args);
    EXPECT_EQ(2, r.code) << ::testing::PrintToString(args) << ": " << r.err;
    EXPECT_EQ(1, std::count(r.err.begin(), r.err.end(), '\n')) << r.err;
  }
  Outcome empty = ctl(3, {"cluster", "commit"});
  EXPECT_EQ(2, empty.code) << "nothing staged: " << empty.err;

  // Stage through n2 (the claimant is n1), look at the plan through n3.
  Outcome join = ctl(2, {"cluster", "join", "n4"});
  ASSERT_EQ(0, join.code) << join.err;
  EXPECT_EQ("joining", members(4)["n4"]["status"]);
  json plan = ctl_json(3, {"cluster", "plan"});
  EXPECT_EQ("n1", plan["claimant"]);
  ASSERT_EQ(1u, plan["staged"].size()) << plan;
  EXPECT_EQ("join", plan["staged"][0]["action"]);
  const std::size_t moves = plan["moves"].size();
  EXPECT_EQ(16u, moves) << "64 partitions, 3 -> 4 members: n4 takes 16: " << plan;
  for (const json& m : plan["moves"]) {
    EXPECT_EQ("n4", m["to"]) << m;
    EXPECT_EQ("transfer", m["kind"]) << m;
  }
  Outcome table = ctl(1, {"cluster", "plan"});
  EXPECT_EQ(0, table.code) << table.err;
  EXPECT_NE(std::string::npos, table.out.find("join n4")) << table.out;
  EXPECT_NE(std::string::npos, table.out.find("PARTITION")) << table.out;

  json commit = ctl_json(3, {"cluster", "commit"});
  EXPECT_EQ(2, commit["epoch"]) << commit;
  EXPECT_EQ(moves, commit["moves"].size());
  ASSERT_TRUE(eventually(
      [&] {
        json r1 = ring(1);
        if (!r1.is_object() || r1["epoch"] != 2) return false;
        for (int i = 2; i <= 4; ++i) {
          if (ring(i) != r1) return false;
        }
        return true;
      },
      20s))
      << "every node converges on the committed ring";
  json r = ring(4);
  EXPECT_EQ(moves, r["transfers"].size()) << r;
  EXPECT_EQ("n1", r["claimant"]);
  EXPECT_EQ("valid", members(1)["n4"]["status"]);
  for (int k = 0; k < 30; ++k) {
    Outcome g = ctl(1 + k % 4, {"kv", "get", numbered("key", k)});
    EXPECT_EQ(0, g.code) << numbered("key", k) << ": " << g.err;
    EXPECT_NE(std::string::npos, g.out.find(numbered("value", k))) << g.out;
  }
}

}  // namespace
