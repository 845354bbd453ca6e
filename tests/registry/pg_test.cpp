// Process groups across three loopback nodes: join, leave, members and local members seen
// everywhere, scopes kept apart, monitors told of joins and leaves, members gone with their
// process and with their node.
#include "nodus/registry/pg.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "node/test_util.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::next_message;

class PgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    nodes_ = testing::start_loopback_star({"p1", "p2", "p3"}, "pg-cookie", 1000ms);
    ASSERT_EQ(nodes_.size(), 3u);
    ASSERT_TRUE(eventually(
        [&] {
          for (auto& n : nodes_) {
            if (n->nodes().size() != nodes_.size() - 1) return false;
          }
          return true;
        },
        10s));
    for (auto& n : nodes_) {
      ASSERT_OK(pg::start(*n));
      ASSERT_OK(pg::start(*n, "other"));
    }
  }
  void TearDown() override {
    for (auto& n : nodes_) n->shutdown();
  }
  Node& node(std::size_t i) { return *nodes_.at(i); }
  Pid idle(std::size_t i) {
    return spawn(node(i), [] {
      for (;;) {
        if (receive() == "stop") return;
      }
    });
  }
  static Term list_of(const std::vector<Pid>& v) {
    List l(v.begin(), v.end());
    return Term(std::move(l));
  }
  static std::vector<Pid> sorted(std::vector<Pid> v) {
    std::sort(v.begin(), v.end());
    return v;
  }
  bool everywhere(const Term& group, const std::vector<Pid>& want,
                  std::string_view scope = pg::kDefaultScope) {
    for (auto& n : nodes_) {
      if (sorted(pg::members(*n, scope, group)) != sorted(want)) return false;
    }
    return true;
  }
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(PgTest, MembersAreSeenOnEveryNode) {
  Pid a = idle(0), b = idle(1), c = idle(2);
  // A peer may still be introducing itself: joins are retried until seen everywhere.
  ASSERT_OK(pg::join(node(0), pg::kDefaultScope, "workers", a));
  ASSERT_OK(pg::join(node(1), pg::kDefaultScope, "workers", b));
  ASSERT_OK(pg::join(node(2), pg::kDefaultScope, "workers", c));
  EXPECT_TRUE(eventually([&] { return everywhere("workers", {a, b, c}); }));
  EXPECT_EQ(pg::local_members(node(1), pg::kDefaultScope, "workers"), std::vector<Pid>{b});
  EXPECT_EQ(pg::which_groups(node(2), pg::kDefaultScope), std::vector<Term>{Term("workers")});
  ASSERT_OK(pg::leave(node(1), pg::kDefaultScope, "workers", b));
  EXPECT_TRUE(eventually([&] { return everywhere("workers", {a, c}); }));
  EXPECT_EQ(pg::leave(node(1), pg::kDefaultScope, "workers", b).code(), ErrorCode::kNotFound);
}

TEST_F(PgTest, ScopesAreApart) {
  Pid a = idle(0);
  ASSERT_OK(pg::join(node(0), "other", "g", a));
  EXPECT_TRUE(eventually([&] { return everywhere("g", {a}, "other"); }));
  EXPECT_TRUE(pg::members(node(1), pg::kDefaultScope, "g").empty());
  EXPECT_EQ(pg::join(node(0), "nope", "g", a).code(), ErrorCode::kNotFound);
}

TEST_F(PgTest, MembersGoWithTheirProcessAndMonitorsAreTold) {
  Inbox me(node(2));
  auto now = pg::monitor(node(2), pg::kDefaultScope, "g");
  ASSERT_OK(now);
  EXPECT_TRUE(now->empty());
  Pid a = idle(0);
  ASSERT_OK(pg::join(node(0), pg::kDefaultScope, "g", a));
  EXPECT_EQ(next_message(), tuple("pg_join", atom("default"), "g", list(a)));
  send(a, "stop");
  EXPECT_EQ(next_message(), tuple("pg_leave", atom("default"), "g", list(a)));
  EXPECT_TRUE(eventually([&] { return everywhere("g", {}); }));
  pg::demonitor(node(2), pg::kDefaultScope, "g");
}

TEST_F(PgTest, MembersGoWithTheirNode) {
  Pid a = idle(0), c = idle(2);
  ASSERT_OK(pg::join(node(0), pg::kDefaultScope, "g", a));
  ASSERT_OK(pg::join(node(2), pg::kDefaultScope, "g", c));
  ASSERT_TRUE(eventually([&] { return everywhere("g", {a, c}); }));
  nodes_[2]->shutdown();
  EXPECT_TRUE(eventually([&] {
    return pg::members(node(0), pg::kDefaultScope, "g") == std::vector<Pid>{a} &&
           pg::members(node(1), pg::kDefaultScope, "g") == std::vector<Pid>{a};
  })) << list_of(pg::members(node(0), pg::kDefaultScope, "g")).to_string()
      << " " << list_of(pg::members(node(1), pg::kDefaultScope, "g")).to_string();
}

TEST_F(PgTest, MembersGoWhenTheirNodesScopeServerExitsAndComeBackWithANewOne) {
  Pid b = idle(1);
  ASSERT_OK(pg::join(node(1), pg::kDefaultScope, "workers", b));
  ASSERT_TRUE(eventually([&] { return everywhere("workers", {b}); }));
  // p2's scope server dies, p2 stays up: nobody would tell the others of b's leaving any more.
  Pid server = node(1).whereis("nodus_pg_" + std::string(pg::kDefaultScope));
  ASSERT_TRUE(server);
  exit(server, "kill");
  EXPECT_TRUE(eventually([&] {
    return pg::members(node(0), pg::kDefaultScope, "workers").empty() &&
           pg::members(node(2), pg::kDefaultScope, "workers").empty();
  }));
  // A new server for the scope on p2 introduces itself; b joins again and is seen everywhere.
  ASSERT_TRUE(eventually([&] { return pg::start(node(1)).ok(); }));
  ASSERT_OK(pg::join(node(1), pg::kDefaultScope, "workers", b));
  EXPECT_TRUE(eventually([&] { return everywhere("workers", {b}); }));
}

TEST_F(PgTest, JoinNeedsALocalProcess) {
  EXPECT_EQ(pg::join(node(0), pg::kDefaultScope, "g", idle(1)).code(), ErrorCode::kBadArg);
}

// OTP's pg_SUITE: b has a member in g, a monitors g, then a and b link. a hears of the member
// once: b's state arrives twice (its own Discover and its answer to a's), and the second, which
// changes nothing, must not read as a leave and a join (members() briefly empty).
TEST(PgDiscoverTest, AMonitoringNodeThatLinksSeesEachJoinOnce) {
  auto a = testing::start_loopback_node("da");
  auto b = testing::start_loopback_node("db");
  ASSERT_TRUE(a && b);
  ASSERT_OK(pg::start(*a));
  ASSERT_OK(pg::start(*b));
  Pid member = spawn(*b, [] { (void)receive(); });
  ASSERT_OK(pg::join(*b, pg::kDefaultScope, "g", member));
  Inbox watcher(*a);
  ASSERT_OK(pg::monitor(*a, pg::kDefaultScope, "g"));
  ASSERT_OK(a->connect(b->endpoint(), 10s));
  // Both of b's Discovers have been handled (and their notices sent) once counted.
  ASSERT_TRUE(eventually([&] { return pg::stats(*a, pg::kDefaultScope).discovers >= 2; }));
  EXPECT_EQ(pg::members(*a, pg::kDefaultScope, "g"), std::vector<Pid>{member});
  int joins = 0, leaves = 0;
  while (auto m = receive(0ms)) {
    if (m->match({"pg_join", _, "g", _})) ++joins;
    if (m->match({"pg_leave", _, "g", _})) ++leaves;
  }
  EXPECT_EQ(joins, 1);
  EXPECT_EQ(leaves, 0);
  a->shutdown();
  b->shutdown();
}

// A hidden node is no member: its scope server's Discover (and joins) change nothing here.
TEST(PgHiddenTest, AHiddenNodesDiscoverIsIgnoredAndCounted) {
  auto member = testing::start_loopback_node("pm");
  NodeOptions o = testing::loopback_options("ph");
  o.hidden = true;
  auto hidden = Node::start(o);
  ASSERT_TRUE(member && hidden.ok());
  ASSERT_OK(pg::start(*member));
  ASSERT_OK(pg::start(**hidden));
  Pid p = spawn(**hidden, [] { (void)receive(); });
  ASSERT_OK(pg::join(**hidden, pg::kDefaultScope, "g", p));
  ASSERT_OK((*hidden)->connect(member->endpoint(), 10s));
  ASSERT_TRUE(eventually([&] { return pg::stats(*member, pg::kDefaultScope).ignored >= 1; }));
  EXPECT_TRUE(pg::members(*member, pg::kDefaultScope, "g").empty());
  (*hidden)->shutdown();
  member->shutdown();
}

}  // namespace
}  // namespace nodus
