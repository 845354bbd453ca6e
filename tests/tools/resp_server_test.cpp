// RespServer (tools/src/resp.hpp) in this process, in front of a one-node store, driven by raw
// RESP bytes on a loopback socket: what only an in-process test can make happen at a chosen
// moment, such as the store ending a subscriber's watch (kv_watch_lost).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>

#include "../test_support.hpp"
#include "nodus/kv/client.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/node/process.hpp"
#include "resp.hpp"

namespace nodus::tools {
namespace {

using namespace std::chrono_literals;

// RESP2's bulk of `s`, and a pub/sub push: *N and the bulks (the count of a (un)subscribe
// reply as an integer). Appended piece by piece (GCC 12's -Wrestrict misreads "$" + string).
std::string bulk(const std::string& s) {
  std::string out("$");
  out.append(std::to_string(s.size())).append("\r\n").append(s).append("\r\n");
  return out;
}
std::string push(const std::vector<std::string>& parts, long long count = -1) {
  std::string out("*");
  out.append(std::to_string(parts.size() + (count >= 0 ? 1 : 0))).append("\r\n");
  for (const auto& p : parts) out += bulk(p);
  if (count >= 0) out.append(":").append(std::to_string(count)).append("\r\n");
  return out;
}

class RespServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    NodeOptions no;
    no.name = "resp_solo";
    no.schedulers = 2;
    node_ = std::make_unique<Node>(no);
    kv::Options o;
    o.partitions = 8;
    o.replicas = 1;
    o.write_quorum = 1;
    o.read_quorum = 1;
    o.context_secret = "secret";
    ASSERT_OK(kv::start(*node_, std::move(o)));
    ASSERT_TRUE(testing::eventually([&] { return !kv::ring(*node_)->empty(); }, 10s));
    // A free loopback port: tried until one binds (another process may take one meanwhile).
    std::mt19937 rng(static_cast<unsigned>(::getpid()));
    for (int i = 0; i < 50 && !server_; ++i) {
      port_ = 20000 + static_cast<int>(rng() % 12000);
      RespOptions ro;
      ro.listen = "127.0.0.1:" + std::to_string(port_);
      auto r = RespServer::start(*node_, ro);
      if (r.ok()) server_ = std::move(r.value());
    }
    ASSERT_TRUE(server_) << "no free port";
  }
  void TearDown() override {
    if (server_) server_->close();
  }

  // A connection with a 10 s receive timeout.
  int connect() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<std::uint16_t>(port_));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      ::close(fd);
      return -1;
    }
    timeval tv{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
  }
  // Sends `req` and reads `bytes` bytes of reply (less when the peer closes or times out).
  static std::string ask(int fd, const std::string& req, std::size_t bytes) {
    if (!req.empty() && ::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
      return "";
    }
    std::string got;
    char buf[4096];
    while (got.size() < bytes) {
      const ssize_t n = ::read(fd, buf, std::min(sizeof(buf), bytes - got.size()));
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
    }
    return got;
  }
  // True when the peer closes `fd` (within the receive timeout), with nothing more to read.
  static bool closed_by_peer(int fd) {
    char c;
    return ::read(fd, &c, 1) == 0;
  }
  std::string info_stats() {
    const int fd = connect();
    std::string got = ask(fd, "INFO stats\r\n", 1);
    char buf[8192];
    const ssize_t n = ::read(fd, buf, sizeof(buf));  // one reply, small: one read mostly
    if (n > 0) got.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    return got;
  }

  std::unique_ptr<Node> node_;
  std::unique_ptr<RespServer> server_;
  int port_ = 0;
};

// When the store ends a subscriber's watch ({kv_watch_lost, Pattern}: here because the node's
// watch server restarted, as it would when the subscriber fell behind kv.watch_queue or its
// node was cut off), the subscriber reads the notifications it had, then one error, and is
// disconnected: it never misses a notification silently. Other connections, and a subscriber
// that connects again, are served as before.
TEST_F(RespServerTest, ASubscriberWhoseWatchIsLostGetsAnErrorAndIsDisconnected) {
  const int sub = connect();
  ASSERT_GE(sub, 0);
  const std::string channel = "__keyspace@0__:k";
  std::string want = push({"subscribe", channel}, 1);
  ASSERT_EQ(want, ask(sub, "SUBSCRIBE " + channel + "\r\n", want.size()));
  const kv::Client kv(*node_);
  ASSERT_OK(kv.put("k", "1"));
  want = push({"message", channel, "set"});
  ASSERT_EQ(want, ask(sub, "", want.size()));

  const Pid watch_server = node_->whereis("nodus_kv_watch");
  ASSERT_TRUE(watch_server.valid());
  exit(watch_server, reasons::kill());  // its supervisor starts it again, which ends the watches
  want =
      "-ERR keyspace notifications were lost (the store ended this connection's watch): "
      "reconnect and subscribe again\r\n";
  EXPECT_EQ(want, ask(sub, "", want.size()));
  EXPECT_TRUE(closed_by_peer(sub));
  ::close(sub);
  EXPECT_NE(std::string::npos, info_stats().find("pubsub_lost_disconnections:1\r\n"))
      << info_stats();

  // The node serves on; a subscriber that comes back hears the changes made after it did.
  const int again = connect();
  ASSERT_GE(again, 0);
  EXPECT_EQ("+PONG\r\n", ask(again, "PING\r\n", 7));
  ASSERT_TRUE(testing::eventually(
      [&] {
        const Pid p = node_->whereis("nodus_kv_watch");
        return p.valid() && p != watch_server;
      },
      10s));
  want = push({"subscribe", channel}, 1);
  ASSERT_EQ(want, ask(again, "SUBSCRIBE " + channel + "\r\n", want.size()));
  ASSERT_OK(kv.put("k", "2"));
  want = push({"message", channel, "set"});
  EXPECT_EQ(want, ask(again, "", want.size()));
  ::close(again);
}

}  // namespace
}  // namespace nodus::tools
