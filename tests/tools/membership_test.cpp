// Membership changes end to end, on real nodusd processes driven only through nodusctl: a copy
// of cluster-configs/local-5 cut to four nodes, with kv.initial_members = n1 n2 n3, so n4 starts
// as a candidate; `cluster join`, `plan`, `commit` make it a member on every node's ring.
#include <atomic>
#include <mutex>

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

  // True once `cluster plan` through n1 lists n4, and only n4, as a candidate (within 20 s).
  bool n4_is_a_candidate() {
    return eventually(
        [&] {
          Outcome r = ctl(1, {"cluster", "plan", "--json"});
          json p = json::parse(r.out, nullptr, false);
          return r.code == 0 && p["candidates"] == json::array({"n4"});
        },
        20s);
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
        if (!r1.is_object() || r1["epoch"] < 2) return false;
        for (int i = 2; i <= 4; ++i) {
          if (ring(i) != r1) return false;
        }
        return true;
      },
      20s))
      << "every node converges on the committed ring";
  json r = ring(4);
  EXPECT_LE(r["transfers"].size(), moves) << "moving, or already handed off: " << r;
  EXPECT_EQ("n1", r["claimant"]);
  EXPECT_EQ("valid", members(1)["n4"]["status"]);
  for (int k = 0; k < 30; ++k) {
    Outcome g = ctl(1 + k % 4, {"kv", "get", numbered("key", k)});
    EXPECT_EQ(0, g.code) << numbered("key", k) << ": " << g.err;
    EXPECT_NE(std::string::npos, g.out.find(numbered("value", k))) << g.out;
  }
}

// Slice B end to end: n4 joins a cluster holding keys, then n2 leaves, while a writer puts
// through nodusctl all along; every acknowledged key is read back afterwards.
TEST_F(MembershipTest, AFourthNodeJoinsThenOneLeavesWhileWritesRun) {
  up();
  ASSERT_TRUE(n4_is_a_candidate());
  std::map<std::string, std::string> acked;  // key -> value
  std::mutex mu;
  for (int k = 0; k < 60; ++k) {
    Outcome r = ctl(1 + k % 3, {"kv", "put", numbered("pre", k), numbered("v", k)});
    ASSERT_EQ(0, r.code) << r.err;
    acked[numbered("pre", k)] = numbered("v", k);
  }
  std::atomic<bool> stop{false};
  std::atomic<int> failed{0};
  std::thread writer([&] {
    static const int kVia[] = {1, 3, 4};
    for (int k = 0; k < 100000 && !stop; ++k) {
      Outcome r = ctl(kVia[k % 3], {"kv", "put", numbered("w", k), numbered("v", k)});
      if (r.code == 0) {
        std::lock_guard<std::mutex> lock(mu);
        acked[numbered("w", k)] = numbered("v", k);
      } else {
        ++failed;
      }
    }
  });
  auto settled = [&](const std::function<bool(const json&)>& also) {
    json r = ring(1);
    if (!r.is_object() || !r["transfers"].empty() || !also(r)) return false;
    for (int i = 3; i <= 4; ++i) {
      if (ring(i) != r) return false;
    }
    return true;
  };

  ASSERT_EQ(0, ctl(3, {"cluster", "join", "n4"}).code);
  ASSERT_EQ(0, ctl(3, {"cluster", "commit"}).code);
  json t = ctl_json(4, {"transfers"});
  EXPECT_TRUE(t.is_array()) << t;
  for (const json& x : t) {
    EXPECT_EQ("n4", x["to"]) << x;
    EXPECT_LE(x["keys_sent"].get<int>(), x["keys_total"].get<int>()) << x;
  }
  EXPECT_TRUE(eventually(
      [&] { return settled([](const json& r) { return r["balance"]["n4"] == 16; }); }, 120s))
      << ctl(1, {"transfers"}).out << ctl(1, {"ring"}).out;

  ASSERT_EQ(0, ctl(1, {"cluster", "leave", "n2"}).code);
  EXPECT_EQ("leaving", members(1)["n2"]["status"]);
  ASSERT_EQ(0, ctl(1, {"cluster", "commit"}).code);
  EXPECT_TRUE(eventually(
      [&] {
        return settled([](const json& r) {
          for (const json& m : r["members"]) {
            if (m["node"] == "n2") return false;
          }
          return true;
        });
      },
      120s))
      << ctl(1, {"transfers"}).out << ctl(1, {"ring"}).out;
  EXPECT_EQ("candidate", members(1)["n2"]["status"]) << "n2 left the ring; it still runs";
  stop = true;
  writer.join();
  EXPECT_GT(acked.size(), 60u + 20u) << "the writer kept writing";
  EXPECT_LE(failed.load(), 3) << "writes went on through the changes";
  std::vector<std::string> lost;
  static const int kVia[] = {1, 3, 4};
  int k = 0;
  for (const auto& [key, value] : acked) {
    Outcome g = ctl(kVia[k++ % 3], {"kv", "get", key});
    if (g.code != 0 || g.out.find(value) == std::string::npos) lost.push_back(key + ": " + g.err);
  }
  EXPECT_EQ(lost, std::vector<std::string>{});
}

// With kv.data_dir, the claimant (n1) killed by SIGKILL after `cluster join` and before
// `cluster commit` comes back with the change staged: the plan through another member shows
// it as before, the commit makes the ring, and every node converges on it with n4 owning its
// share and every key written before still read.
TEST_F(MembershipTest, AClaimantKilledBeforeTheCommitKeepsTheStagedChanges) {
  configure("data_dir", [](int i) { return node_file("data/n", i, ""); });
  up();
  ASSERT_TRUE(n4_is_a_candidate());
  for (int k = 0; k < 30; ++k) {
    Outcome r = ctl(1 + k % 3, {"kv", "put", numbered("key", k), numbered("value", k)});
    ASSERT_EQ(0, r.code) << r.err;
  }
  ASSERT_EQ(0, ctl(2, {"cluster", "join", "n4"}).code);
  json before = ctl_json(3, {"cluster", "plan"});
  ASSERT_EQ("n1", before["claimant"]) << before;
  ASSERT_EQ(1u, before["staged"].size()) << before;

  ASSERT_TRUE(kill9(1));
  up();  // n1 again, on its data
  json plan;
  EXPECT_TRUE(eventually(
      [&] {
        Outcome r = ctl(3, {"cluster", "plan", "--json"});
        plan = json::parse(r.out, nullptr, false);
        return r.code == 0 && plan.is_object() && plan["claimant"] == "n1" &&
               plan["epoch"] == before["epoch"];
      },
      30s))
      << plan;
  EXPECT_EQ(before["staged"], plan["staged"]) << plan;
  EXPECT_EQ(before["moves"], plan["moves"]) << plan;

  json commit = ctl_json(2, {"cluster", "commit"});
  EXPECT_EQ(before["next_epoch"], commit["epoch"]) << commit;
  EXPECT_TRUE(eventually(
      [&] {
        json r1 = ring(1);
        if (!r1.is_object() || !r1["transfers"].empty() || r1["balance"]["n4"] != 16) return false;
        for (int i = 2; i <= 4; ++i) {
          if (ring(i) != r1) return false;
        }
        return true;
      },
      120s))
      << ctl(1, {"transfers"}).out << ctl(1, {"ring"}).out;
  EXPECT_TRUE(ctl_json(4, {"cluster", "plan"})["staged"].empty());
  for (int k = 0; k < 30; ++k) {
    Outcome g = ctl(1 + k % 4, {"kv", "get", numbered("key", k)});
    EXPECT_EQ(0, g.code) << numbered("key", k) << ": " << g.err;
    EXPECT_NE(std::string::npos, g.out.find(numbered("value", k))) << g.out;
  }
}

}  // namespace
