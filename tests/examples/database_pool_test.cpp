// Replays the DatabasePool exercise: a fourth checkout waits for the next checkin.
#include "database_pool.hpp"

#include <gtest/gtest.h>

#include "../node/test_util.hpp"

namespace {

using namespace database_pool;
using namespace std::chrono_literals;

Term status(Term available, Term waiting, Term total) {
  return map({{"available", available}, {"waiting", waiting}, {"total", total}});
}

class DatabasePoolTest : public ::testing::Test {
 protected:
  Node node{NodeOptions{.name = "database_pool_test", .schedulers = 2}};
  Inbox me{node};
  Pid pool = DatabasePool::start_link(node, 3).value();
};

TEST_F(DatabasePoolTest, ChecksOutEachConnectionOnce) {
  EXPECT_EQ(DatabasePool::status(pool).value(), status(3, 0, 3));
  EXPECT_EQ(DatabasePool::checkout(pool).value(), tuple("ok", tuple("conn", 1)));
  EXPECT_EQ(DatabasePool::checkout(pool).value(), tuple("ok", tuple("conn", 2)));
  EXPECT_EQ(DatabasePool::checkout(pool).value(), tuple("ok", tuple("conn", 3)));
  EXPECT_EQ(DatabasePool::status(pool).value(), status(0, 0, 3));
}

TEST_F(DatabasePoolTest, AFourthCheckoutWaitsForTheNextCheckin) {
  Term conn1 = DatabasePool::checkout(pool).value()[1];
  DatabasePool::checkout(pool).value();
  DatabasePool::checkout(pool).value();
  // Like Task.async: another process checks out and sends us what it got.
  Pid self = me.pid();
  spawn(node, [pool = pool, self] { send(self, DatabasePool::checkout(pool).value()); });
  ASSERT_TRUE(nodus::testing::eventually(
      [&] { return DatabasePool::status(pool).value() == status(0, 1, 3); }));
  EXPECT_FALSE(receive(20ms).has_value());  // still waiting
  DatabasePool::checkin(pool, conn1);
  auto got = receive(5s);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->term(), tuple("ok", conn1));
  EXPECT_EQ(DatabasePool::status(pool).value(), status(0, 0, 3));
}

TEST_F(DatabasePoolTest, CheckinWithNobodyWaitingMakesItAvailable) {
  Term conn = DatabasePool::checkout(pool).value()[1];
  DatabasePool::checkin(pool, conn);
  EXPECT_EQ(DatabasePool::status(pool).value(), status(3, 0, 3));
  EXPECT_EQ(DatabasePool::checkout(pool).value(), tuple("ok", conn));
}

}  // namespace
