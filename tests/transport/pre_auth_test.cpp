// The connections that have not authenticated yet (transport/src/pre_auth.hpp), without sockets:
// which the transport closes, and when.
#include "pre_auth.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>

namespace nodus::transport {
namespace {

using namespace std::chrono_literals;
using TimePoint = PreAuthTracker::TimePoint;

class PreAuthTest : public ::testing::Test {
 protected:
  // Accepts `fd` now; true if it was one too many.
  bool accept(int fd) { return tracker_.accepted(fd, now_, "id" + std::to_string(fd), "addr"); }
  // The descriptors to close after `d` more.
  std::set<int> expire_after(std::chrono::milliseconds d) {
    now_ += d;
    std::set<int> out;
    for (const auto& v : tracker_.expired(
             now_, [&](const std::string& rid) { return authenticated_.count(rid) > 0; })) {
      out.insert(v.fd);
      EXPECT_EQ(v.identity, "id" + std::to_string(v.fd));
    }
    return out;
  }

  PreAuthTracker tracker_{PreAuthTracker::Config{1000ms, 4}};
  TimePoint now_{std::chrono::hours(1)};
  std::set<std::string> authenticated_;
};

TEST_F(PreAuthTest, AConnectionThatNeverAuthenticatesIsClosedAfterTheTimeout) {
  EXPECT_FALSE(accept(7));
  EXPECT_TRUE(expire_after(900ms).empty());
  EXPECT_EQ(expire_after(200ms), std::set<int>{7});
  EXPECT_TRUE(tracker_.empty());  // and forgotten
}

TEST_F(PreAuthTest, AConnectionThatAuthenticatesIsForgotten) {
  accept(7);
  tracker_.message(7, "r7", false);  // its HELLO
  tracker_.message(7, "r7", true);   // its PROOF, taken
  EXPECT_TRUE(tracker_.empty());
  EXPECT_TRUE(expire_after(5s).empty());
}

TEST_F(PreAuthTest, OneMoreThanTheLimitIsClosedAtOnce) {
  for (int fd = 10; fd < 14; ++fd) EXPECT_FALSE(accept(fd));
  EXPECT_TRUE(accept(14));
  EXPECT_EQ(tracker_.pending(), 4u);
  tracker_.closed(10);  // one goes: room for one more
  EXPECT_FALSE(accept(15));
}

TEST_F(PreAuthTest, AnEndedConnectionIsForgotten) {
  accept(7);
  tracker_.closed(7);
  EXPECT_TRUE(tracker_.empty());
  EXPECT_TRUE(expire_after(5s).empty());
}

// The monitor's word comes late: an authenticated connection's messages may be read before its
// ACCEPTED, and the entry then made learns of its routing id only from a later message.
TEST_F(PreAuthTest, AConnectionAuthenticatedBeforeItsAcceptWasReadIsNotClosed) {
  tracker_.message(7, "r7", true);  // not tracked yet: nothing happens
  accept(7);
  tracker_.message(7, "r7", true);  // its next message (a heartbeat) settles it
  EXPECT_TRUE(tracker_.empty());
  // And if no message came after, the last look at expiry does.
  accept(8);
  tracker_.message(8, "r8", false);
  authenticated_.insert("r8");
  EXPECT_TRUE(expire_after(2s).empty());
}

// A descriptor reused by a new connection before the old one's end was read: a message of the
// new one does not settle (nor take over) the old one's entry.
TEST_F(PreAuthTest, AReusedDescriptorsMessagesDoNotSettleTheOldEntry) {
  accept(7);
  tracker_.message(7, "old", false);
  tracker_.message(7, "new", true);
  EXPECT_EQ(tracker_.pending(), 1u);
  tracker_.closed(7);  // the old one's end
  EXPECT_FALSE(accept(7));
  tracker_.message(7, "new", true);
  EXPECT_TRUE(tracker_.empty());
}

}  // namespace
}  // namespace nodus::transport
