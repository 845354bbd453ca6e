// Replays the CacheServer exercise with TTLs and a cleanup interval in milliseconds.
#include "cache_server.hpp"

#include <gtest/gtest.h>

#include "../node/test_util.hpp"

namespace {

using namespace cache_server;
using namespace std::chrono_literals;

class CacheServerTest : public ::testing::Test {
 protected:
  // Adds up the cache's {cleaned_up, N} reports until they reach `expected` or 5 s pass.
  std::int64_t cleaned_up(std::int64_t expected) {
    std::int64_t total = 0;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (total < expected) {
      auto msg = receive(std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now()));
      if (!msg) break;
      if (auto m = msg->match({"cleaned_up", _int})) total += m[0].as_int();
    }
    return total;
  }

  Node node{NodeOptions{.name = "cache_server_test", .schedulers = 2}};
  Inbox me{node};
};

TEST_F(CacheServerTest, GetReturnsAValueWithinItsTtl) {
  Pid cache = CacheServer::start_link(node).value();
  EXPECT_EQ(CacheServer::put(cache, "a", 1, 60s), Term("ok"));
  EXPECT_EQ(CacheServer::get(cache, "a"), tuple("ok", 1));
}

TEST_F(CacheServerTest, UnknownKeyIsNotFound) {
  Pid cache = CacheServer::start_link(node).value();
  EXPECT_EQ(CacheServer::get(cache, "nope"), Term("not_found"));
}

TEST_F(CacheServerTest, ExpiredEntryIsNotFound) {
  Pid cache = CacheServer::start_link(node).value();  // cleanup every 10 s: only get expires
  CacheServer::put(cache, "a", 1, 20ms);
  CacheServer::put(cache, "b", 2, 60s);
  EXPECT_TRUE(
      nodus::testing::eventually([&] { return CacheServer::get(cache, "a") == "not_found"; }));
  EXPECT_EQ(CacheServer::get(cache, "b"), tuple("ok", 2));
}

TEST_F(CacheServerTest, PeriodicCleanupRemovesExpiredEntriesAndReportsHowMany) {
  Pid cache =
      CacheServer::start_link(node, CacheOptions{.cleanup_every = 10ms, .report_to = me.pid()})
          .value();
  CacheServer::put(cache, "a", 1, 30ms);
  CacheServer::put(cache, "b", 2, 30ms);
  CacheServer::put(cache, "c", 3, 60s);
  EXPECT_EQ(cleaned_up(2), 2);
  EXPECT_EQ(CacheServer::get(cache, "c"), tuple("ok", 3));
}

}  // namespace
