// nodusd's Redis protocol ([resp] listen) end to end: three real nodusd processes from a copy
// of cluster-configs/local-3, each with resp.listen on a free loopback port, driven by clients
// nobody here wrote (Debian's redis-cli, redis-benchmark and python3-redis), and by raw sockets
// for what a well-behaved client never sends: garbage, a 2 GB bulk length, and a client that
// never reads its replies. Each must cost that client its connection and nothing else.
#include "nodusd_cluster.hpp"

namespace {

using namespace nodus::test;

class RespTest : public NodusdClusterTest {
 protected:
  void SetUp() override {
    if (::access(NODUS_REDIS_CLI, X_OK) != 0 || ::access(NODUS_REDIS_BENCHMARK, X_OK) != 0) {
      GTEST_SKIP() << "redis-tools is not installed (tools/deps.sh installs it)";
    }
    copy_cluster("local-3", "720", "920");
    if (three_replicas_) configure("replicas", "3");
    for (int i = 1; i <= 3; ++i) {
      resp_[i] = free_port();
      spit(conf(i),
           slurp(conf(i)) + "\n[resp]\nlisten = 127.0.0.1:" + std::to_string(resp_[i]) + "\n");
    }
    up();
    // The ring forms once all three are connected: until then the store answers unavailable.
    ASSERT_TRUE(eventually([&] { return cli(1, {"SET", "ready", "1"}).out == "OK\n"; }, 30s));
  }

  Outcome cli(int node, std::vector<std::string> args, const std::string& stdin_file = "") {
    std::vector<std::string> argv = {NODUS_REDIS_CLI, "-p", std::to_string(resp_[node])};
    argv.insert(argv.end(), args.begin(), args.end());
    if (stdin_file.empty()) return run(argv);
    return run(
        {"/bin/sh", "-c",
         std::string(NODUS_REDIS_CLI) + " -p " + std::to_string(resp_[node]) + " < " + stdin_file});
  }

  std::map<int, int> resp_;
  bool three_replicas_ = false;  // kv.replicas = 3 (N = 3) instead of local-3's 2
};

// With N = 3 on three nodes: every node is a primary of every key, and W = 2 and R = 2 are met
// with one node down.
class RespN3Test : public RespTest {
 protected:
  void SetUp() override {
    three_replicas_ = true;
    RespTest::SetUp();
  }
};

// A socket to a RESP port with a receive timeout, for raw bytes.
int raw(int port) {
  int fd = connect_to(port);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// Reads until the peer closes (or the 10 s timeout): what arrived, and whether it closed.
std::pair<std::string, bool> read_to_close(int fd) {
  std::string got;
  char buf[4096];
  for (int i = 0; i < 10000; ++i) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n == 0) return {got, true};
    if (n < 0) return {got, false};
    got.append(buf, static_cast<std::size_t>(n));
  }
  return {got, false};
}

// Sends `req` and reads one reply of known length.
std::string ask(int fd, const std::string& req, std::size_t reply_bytes) {
  if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) return "";
  std::string got;
  char buf[4096];
  while (got.size() < reply_bytes) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

TEST_F(RespTest, ARedisCliScriptGetsRedisAnswers) {
  // Commands, and what redis-cli prints for each (its non-interactive output, one line per
  // reply element, "" for a nil, an error followed by an empty line).
  const std::vector<std::pair<std::string, std::string>> script = {
      {"PING", "PONG"},
      {"ECHO \"hello world\"", "hello world"},
      {"SELECT 0", "OK"},
      {"SELECT 3", "ERR DB index is out of range"},
      {"SET cli:a 1", "OK"},
      {"SET cli:a 2", "OK"},  // an overwrite, not a sibling
      {"GET cli:a", "2"},
      {"GET cli:none", ""},
      {"MSET cli:b x cli:c y", "OK"},
      {"MGET cli:a cli:none cli:b cli:c", "2\n\nx\ny"},
      {"EXISTS cli:a cli:b cli:none cli:a", "3"},
      {"DEL cli:a cli:b cli:none", "2"},
      {"EXISTS cli:a", "0"},
      {"KEYS cli:*", "cli:c"},
      // Expiry: TTL in whole seconds, rounded as Redis does (100 s leave no room to tick).
      {"SET cli:t 1 EX 100", "OK"},
      {"TTL cli:t", "100"},
      {"TTL cli:c", "-1"},
      {"TTL cli:none", "-2"},
      {"PTTL cli:none", "-2"},
      {"EXPIRE cli:none 10", "0"},
      {"EXPIRE cli:c 100", "1"},
      {"TTL cli:c", "100"},
      {"EXPIRE cli:c 50 NX", "0"},
      {"EXPIRE cli:c 50 GT", "0"},
      {"EXPIRE cli:c 50 LT", "1"},
      {"TTL cli:c", "50"},
      {"PEXPIRE cli:c 200000 XX", "1"},
      {"TTL cli:c", "200"},
      {"PERSIST cli:c", "1"},
      {"TTL cli:c", "-1"},
      {"PERSIST cli:c", "0"},
      {"GET cli:c", "y"},
      {"SET cli:t 2 XX KEEPTTL", "OK"},
      {"TTL cli:t", "100"},
      {"SET cli:t 3", "OK"},  // a SET without KEEPTTL takes the ttl away
      {"TTL cli:t", "-1"},
      {"SET cli:i 7 EX 100", "OK"},  // INCR keeps the ttl, as in Redis
      {"INCR cli:i", "8"},
      {"TTL cli:i", "100"},
      {"INCRBY cli:i 2", "10"},
      {"TTL cli:i", "100"},
      {"DEL cli:i", "1"},
      {"SET cli:n 1 NX", "OK"},
      {"SET cli:n 2 NX", ""},
      {"SET cli:x 1 XX", ""},
      {"GET cli:x", ""},
      {"SET cli:n 3 GET", "1"},
      {"GET cli:n", "3"},
      {"SET cli:n 4 NX GET", "3"},  // exists: not written, its value answered
      {"GET cli:n", "3"},
      {"SET cli:m 1 NX GET", ""},
      {"SET cli:m 2 XX GET", "1"},
      {"SET cli:none 1 XX GET", ""},
      {"SET cli:m 3 GET EX 100", "2"},
      {"SET cli:m 4 KEEPTTL", "OK"},  // one write at the first primary, keeping the ttl
      {"TTL cli:m", "100"},
      {"SET cli:m 5 KEEPTTL GET", "4"},
      {"TTL cli:m", "100"},
      {"GET cli:m", "5"},
      {"SET cli:none 1 KEEPTTL", "OK"},
      {"TTL cli:none", "-1"},
      {"DEL cli:m cli:none", "2"},
      {"EXPIRE cli:n -1", "1"},  // a time not in the future deletes, as in Redis
      {"EXISTS cli:n", "0"},
      {"DEL cli:t", "1"},
      {"SET cli:a 1 EX 0", "ERR invalid expire time in 'set' command"},
      {"SET cli:a 1 EX ten", "ERR value is not an integer or out of range"},
      {"SET cli:a 1 EX 10 PX 5", "ERR syntax error"},
      {"SET cli:a 1 NX XX", "ERR syntax error"},
      {"EXPIRE cli:c soon", "ERR value is not an integer or out of range"},
      {"EXPIRE cli:c 10 NX XX",
       "ERR NX and XX, GT or LT options at the same time are not compatible"},
      {"EXISTS cli:a", "0"},
      {"SET cli:a 1 BOGUS", "ERR syntax error"},
      {"GET", "ERR wrong number of arguments for 'get' command"},
      {"FLUSHALL now please",
       "ERR unknown command 'FLUSHALL', with args beginning with: 'now' "
       "'please' "},
      {"HELLO 3", "NOPROTO unsupported protocol version"},
      {"CLIENT SETNAME cli", "OK"},
      {"CLIENT GETNAME", "cli"},
      {"COMMAND COUNT", "39"},
  };
  std::string input, want;
  for (const auto& [cmd, answer] : script) {
    input += cmd + "\n";
    want += answer + "\n";
    if (answer.rfind("ERR ", 0) == 0 || answer.rfind("NOPROTO ", 0) == 0) want += "\n";
  }
  spit(dir_ / "script.txt", input);
  Outcome r = cli(2, {}, (dir_ / "script.txt").string());
  EXPECT_EQ(0, r.code) << r.err;
  EXPECT_EQ(want, r.out);
  // What node 2 wrote, node 3 reads.
  EXPECT_EQ("y\n", cli(3, {"GET", "cli:c"}).out);
  Outcome scan = cli(1, {"--scan", "--pattern", "cli:*"});
  EXPECT_EQ("cli:c\n", scan.out) << scan.err;
  EXPECT_NE(std::string::npos, cli(1, {"INFO"}).out.find("# Keyspace\r\ndb0:keys="));
}

// A key set with PX or given a ttl by EXPIRE is gone from every node once it passed (no node
// answers it, KEYS and DBSIZE leave it out), and INFO counts what the sweep removed.
TEST_F(RespTest, KeysWithATtlExpireOnEveryNode) {
  ASSERT_EQ("OK\n", cli(1, {"SET", "exp:px", "v", "PX", "200"}).out);
  ASSERT_EQ("OK\n", cli(2, {"SET", "exp:later", "v"}).out);
  ASSERT_EQ("1\n", cli(3, {"PEXPIRE", "exp:later", "200"}).out);
  EXPECT_TRUE(eventually(
      [&] {
        for (int i = 1; i <= 3; ++i) {
          for (const char* k : {"exp:px", "exp:later"}) {
            if (cli(i, {"GET", k}).out != "\n" || cli(i, {"TTL", k}).out != "-2\n") return false;
          }
        }
        return true;
      },
      10s));
  EXPECT_EQ("\n", cli(1, {"KEYS", "exp:*"}).out);  // an empty array
  auto expired = [&] {
    long long n = 0;
    for (int i = 1; i <= 3; ++i) {
      const std::string info = cli(i, {"INFO", "stats"}).out;
      const auto at = info.find("expired_keys:");
      if (at != std::string::npos) n += std::atoll(info.c_str() + at + 13);
    }
    return n;
  };
  // Two keys, N = 2 replicas each, swept every second (kv.ttl_sweep_interval_ms' default).
  EXPECT_TRUE(eventually([&] { return expired() == 4; }, 10s)) << expired();
}

// INCR and its kin as compare-and-set loops, MULTI/EXEC over keys of one hash tag, CROSSSLOT
// for keys of two partitions (cli:x and cli:y differ in the top bit of their XXH3-64, so in
// partition for any ring size), EXECABORT after a command that cannot be queued, and WATCH.
TEST_F(RespTest, ARedisCliScriptRunsCountersAndTransactions) {
  const std::string script =
      "SET {c}n 10\nINCR {c}n\nINCRBY {c}n 5\nDECR {c}n\nDECRBY {c}n 20\nINCR cli:fresh\n"
      "SET {c}s abc\nINCR {c}s\nINCRBY {c}n x\n"
      "MULTI\nSET {c}a 1\nINCR {c}a\nGET {c}a\nGET {c}n\nEXEC\n"
      "MULTI\nSET cli:x 1\nSET cli:y 1\nEXEC\nGET cli:x\n"
      "MULTI\nSET {c}a 1 EX 5\nEXEC\nGET {c}a\n"
      "EXEC\nDISCARD\nWATCH {c}a\nMULTI\nWATCH {c}b\nINCR {c}a\nEXEC\n";
  const std::string want =
      "OK\n11\n16\n15\n-5\n1\n"
      "OK\nERR value is not an integer or out of range\n\n"
      "ERR value is not an integer or out of range\n\n"
      "OK\nQUEUED\nQUEUED\nQUEUED\nQUEUED\nOK\n2\n2\n-5\n"
      "OK\nQUEUED\nQUEUED\n"
      "CROSSSLOT Keys in request don't hash to the same slot (give them one {hash tag})\n\n"
      "\n"
      "OK\nERR 'set with options' is not supported inside MULTI here: GET SET DEL EXISTS MGET "
      "MSET INCR DECR INCRBY DECRBY are\n\n"
      "EXECABORT Transaction discarded because of previous errors.\n\n2\n"
      "ERR EXEC without MULTI\n\nERR DISCARD without MULTI\n\nOK\nOK\n"
      "ERR WATCH inside MULTI is not allowed\n\nQUEUED\n3\n";
  spit(dir_ / "txn.txt", script);
  Outcome r = cli(1, {}, (dir_ / "txn.txt").string());
  EXPECT_EQ(0, r.code) << r.err;
  EXPECT_EQ(want, r.out);
  EXPECT_EQ("3\n", cli(3, {"GET", "{c}a"}).out);
}

TEST_F(RespTest, PythonRedisSuite) {
  const std::string ports =
      std::to_string(resp_[1]) + "," + std::to_string(resp_[2]) + "," + std::to_string(resp_[3]);
  Outcome r = run(
      {NODUS_PYTHON3, std::string(NODUS_SOURCE_DIR) + "/tests/tools/resp_redis_py_test.py", "-v"},
      {{"NODUS_RESP_PORTS", ports}}, 120s);
  EXPECT_EQ(0, r.code) << r.out << r.err;
  EXPECT_NE(std::string::npos, r.err.find("OK")) << r.err;
}

// MSET, MGET, EXISTS and DEL of many keys: keys of most partitions, each key's request sent
// straight to its vnode on the node the client talks to (a primary of it), answered per key
// (missing keys nil and not counted), and still so with one node of the three killed (N = 3:
// W = 2 and R = 2 are met by the two left).
TEST_F(RespN3Test, MultiKeyCommandsSpanPartitionsAndServeWithANodeDown) {
  std::vector<std::string> mset = {"MSET"}, mset2 = {"MSET"}, mget = {"MGET"};
  std::string want, want2, nils;
  for (int i = 0; i < 60; ++i) {
    const std::string k = nodus::testing::numbered("mk:", i), v = nodus::testing::numbered("v", i);
    mset.insert(mset.end(), {k, v});
    mset2.insert(mset2.end(), {k, v + "'"});
    mget.push_back(k);
    want += v + "\n";
    want2 += v + "'\n";
    nils += "\n";
    if (i % 20 == 0) {
      mget.push_back(nodus::testing::numbered("mk:none", i));
      want += "\n";
      want2 += "\n";
      nils += "\n";
    }
  }
  auto with = [&](const char* cmd) {
    std::vector<std::string> v = mget;
    v[0] = cmd;
    return v;
  };
  ASSERT_EQ("OK\n", cli(1, mset).out);
  EXPECT_EQ(want, cli(2, mget).out);
  EXPECT_EQ("60\n", cli(3, with("EXISTS")).out);
  ASSERT_TRUE(kill9(3));
  for (int i : {1, 2}) EXPECT_EQ(want, cli(i, mget).out) << "through n" << i;
  ASSERT_EQ("OK\n", cli(2, mset2).out);
  EXPECT_EQ(want2, cli(1, mget).out);
  EXPECT_EQ("60\n", cli(1, with("EXISTS")).out);
  EXPECT_EQ("60\n", cli(2, with("DEL")).out);
  EXPECT_EQ(nils, cli(1, mget).out);
  EXPECT_EQ("0\n", cli(1, with("EXISTS")).out);
  EXPECT_EQ("0\n", cli(2, with("DEL")).out);
}

TEST_F(RespTest, GarbageAndAHugeBulkLengthDisconnectOnlyThatClient) {
  int good = raw(resp_[1]);
  ASSERT_GE(good, 0);
  EXPECT_EQ("+OK\r\n", ask(good, "*3\r\n$3\r\nSET\r\n$1\r\ng\r\n$2\r\nok\r\n", 5));

  const std::pair<std::string, std::string> bad[] = {
      {"*1\r\n$2147483648\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
      {"*1\r\n\x01\x02\x03garbage", "-ERR Protocol error: expected '$', got '?'\r\n"},
      {"*-x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
      {std::string(70000, 'z'), "-ERR Protocol error: too big inline request\r\n"},
  };
  for (const auto& [input, reply] : bad) {
    int fd = raw(resp_[1]);
    ASSERT_GE(fd, 0);
    // A command before the garbage is answered first.
    const std::string all = "PING\r\n" + input;
    ASSERT_EQ(static_cast<ssize_t>(all.size()), ::write(fd, all.data(), all.size()));
    auto [got, closed] = read_to_close(fd);
    EXPECT_EQ("+PONG\r\n" + reply, got);
    EXPECT_TRUE(closed) << "the connection stays open after " << input.substr(0, 20);
    ::close(fd);
    EXPECT_EQ("$2\r\nok\r\n", ask(good, "GET g\r\n", 8));
  }
  // QUIT: answered, then closed.
  ASSERT_EQ(6, ::write(good, "QUIT\r\n", 6));
  auto [got, closed] = read_to_close(good);
  EXPECT_EQ("+OK\r\n", got);
  EXPECT_TRUE(closed);
  ::close(good);
  EXPECT_NE(std::string::npos, cli(1, {"INFO", "stats"}).out.find("client_protocol_errors:4"));
}

TEST_F(RespTest, AClientThatDoesNotReadIsDisconnectedAndStallsNobody) {
  // A value near kv.max_value_bytes (1 MiB), asked for 200 times without reading the replies:
  // 200 MB of replies, far over the 64 MiB output bound.
  const std::string big(1000 * 1000, 'v');
  int setter = raw(resp_[1]);
  ASSERT_EQ("+OK\r\n", ask(setter,
                           "*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$" + std::to_string(big.size()) +
                               "\r\n" + big + "\r\n",
                           5));
  ::close(setter);
  int slow = raw(resp_[1]);
  ASSERT_GE(slow, 0);
  int rcvbuf = 4096;
  ::setsockopt(slow, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  std::string gets;
  for (int i = 0; i < 200; ++i) gets += "GET big\r\n";
  ASSERT_EQ(static_cast<ssize_t>(gets.size()), ::write(slow, gets.data(), gets.size()));
  // Meanwhile others are served.
  int other = raw(resp_[1]);
  for (int i = 0; i < 20; ++i) EXPECT_EQ("+PONG\r\n", ask(other, "PING\r\n", 7));
  ::close(other);
  EXPECT_TRUE(eventually(
      [&] {
        return cli(1, {"INFO", "stats"}).out.find("client_output_buffer_limit_disconnections:1") !=
               std::string::npos;
      },
      60s));
  ::close(slow);
  EXPECT_EQ("PONG\n", cli(1, {"PING"}).out);
}

TEST_F(RespTest, RedisBenchmarkCompletesWithoutErrors) {
  Outcome r = run({NODUS_REDIS_BENCHMARK, "-p", std::to_string(resp_[2]), "-t", "set,get", "-n",
                   "20000", "-c", "50", "-q"},
                  {}, 120s);
  EXPECT_EQ(0, r.code) << r.out << r.err;
  EXPECT_NE(std::string::npos, r.out.find("SET: ")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("GET: ")) << r.out;
  EXPECT_EQ(std::string::npos, r.out.find("ERR")) << r.out;
  EXPECT_EQ(std::string::npos, r.err.find("ERR")) << r.err;
  // redis-benchmark's key holds its last value, readable from another node.
  EXPECT_EQ(4u, cli(3, {"GET", "key:__rand_int__"}).out.size());  // 3 bytes and a newline
}

// RESP2's bulk of `s`.
std::string bulk(const std::string& s) {
  return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n";
}
// A push of pub/sub: *N and the bulks (the count of a (un)subscribe reply as an integer).
std::string push(const std::vector<std::string>& parts, long long count = -1) {
  std::string out = "*" + std::to_string(parts.size() + (count >= 0 ? 1 : 0)) + "\r\n";
  for (const auto& p : parts) out += bulk(p);
  if (count >= 0) out += ":" + std::to_string(count) + "\r\n";
  return out;
}

// A subscribed connection, byte for byte as Redis 7 answers in RESP2: the (un)subscribe
// replies with their counts, messages for a change made through another node, only the
// pub/sub commands, PING's subscribed form, and back to normal after the last unsubscribe.
TEST_F(RespTest, ASubscribedConnectionAnswersAsRedisDoes) {
  int fd = raw(resp_[1]);
  ASSERT_GE(fd, 0);
  const std::string channel = "__keyspace@0__:raw:k";
  std::string want = push({"subscribe", channel}, 1);
  EXPECT_EQ(want, ask(fd, "SUBSCRIBE " + channel + "\r\n", want.size()));
  want = push({"psubscribe", "__keyevent@0__:*"}, 2);
  EXPECT_EQ(want, ask(fd, "PSUBSCRIBE __keyevent@0__:*\r\n", want.size()));
  want =
      "-ERR Can't execute 'get': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT / RESET are "
      "allowed in this context\r\n";
  EXPECT_EQ(want, ask(fd, "GET raw:k\r\n", want.size()));
  want = push({"pong", ""});
  EXPECT_EQ(want, ask(fd, "PING\r\n", want.size()));
  // A SET through node 2: the keyspace message, then the keyevent pmessage.
  ASSERT_EQ("OK\n", cli(2, {"SET", "raw:k", "v"}).out);
  want = push({"message", channel, "set"}) +
         push({"pmessage", "__keyevent@0__:*", "__keyevent@0__:set", "raw:k"});
  EXPECT_EQ(want, ask(fd, "", want.size()));
  want = push({"unsubscribe", channel}, 1);
  EXPECT_EQ(want, ask(fd, "UNSUBSCRIBE\r\n", want.size()));
  want = push({"punsubscribe", "__keyevent@0__:*"}, 0) + "*3\r\n" + bulk("punsubscribe") +
         "$-1\r\n:0\r\n";
  EXPECT_EQ(want, ask(fd, "PUNSUBSCRIBE\r\nPUNSUBSCRIBE\r\n", want.size()));
  // Unsubscribed: every command again, and no more messages.
  ASSERT_EQ("1\n", cli(3, {"DEL", "raw:k"}).out);
  EXPECT_EQ("$-1\r\n+PONG\r\n", ask(fd, "GET raw:k\r\nPING\r\n", 12));
  // RESET leaves subscribed mode too.
  want = push({"psubscribe", "*"}, 1) + "+RESET\r\n+PONG\r\n";
  EXPECT_EQ(want, ask(fd, "PSUBSCRIBE *\r\nRESET\r\nPING\r\n", want.size()));
  ::close(fd);
}

// redis-cli's own subscribe mode prints each notification as it comes.
TEST_F(RespTest, RedisCliPsubscribePrintsKeyspaceEvents) {
  Streaming sub(
      {NODUS_REDIS_CLI, "-p", std::to_string(resp_[1]), "PSUBSCRIBE", "__keyspace@0__:cli:*"});
  // "psubscribe", the pattern, the count: the watch is in place.
  ASSERT_EQ(3u, sub.lines(0, 3, 20s).size()) << sub.out() << sub.err();
  ASSERT_EQ("OK\n", cli(2, {"SET", "cli:w", "1"}).out);
  ASSERT_EQ("1\n", cli(3, {"DEL", "cli:w"}).out);
  const auto lines = sub.lines(0, 11, 20s);
  ASSERT_EQ(11u, lines.size()) << sub.out() << sub.err();
  EXPECT_EQ(
      (std::vector<std::string>{"psubscribe", "__keyspace@0__:cli:*", "1", "pmessage",
                                "__keyspace@0__:cli:*", "__keyspace@0__:cli:w", "set", "pmessage",
                                "__keyspace@0__:cli:*", "__keyspace@0__:cli:w", "del"}),
      lines);
}

// A subscriber that reads nothing while notifications pile up past Redis's pubsub output
// limit (32 MiB) is disconnected; others are served meanwhile.
TEST_F(RespTest, ASubscriberThatDoesNotReadIsDisconnectedPastTheBound) {
  int slow = raw(resp_[1]);
  ASSERT_GE(slow, 0);
  int rcvbuf = 4096;
  ::setsockopt(slow, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  const std::string sub = push({"psubscribe", "*"}, 1);
  ASSERT_EQ(sub, ask(slow, "PSUBSCRIBE *\r\n", sub.size()));
  // Each SET of a 60 KB key makes two notifications of 60 KB (keyspace channel, keyevent
  // message): 400 of them are 48 MB.
  const std::string key(60000, 'k');
  std::string sets;
  for (int i = 0; i < 400; ++i) sets += "*3\r\n$3\r\nSET\r\n" + bulk(key) + "$1\r\nv\r\n";
  int setter = raw(resp_[2]);
  ASSERT_GE(setter, 0);
  std::string oks;
  for (int i = 0; i < 400; ++i) oks += "+OK\r\n";
  EXPECT_EQ(oks, ask(setter, sets, oks.size()));
  ::close(setter);
  int other = raw(resp_[1]);
  for (int i = 0; i < 5; ++i) EXPECT_EQ("+PONG\r\n", ask(other, "PING\r\n", 7));
  ::close(other);
  EXPECT_TRUE(eventually(
      [&] {
        return cli(1, {"INFO", "stats"}).out.find("client_output_buffer_limit_disconnections:1") !=
               std::string::npos;
      },
      60s))
      << cli(1, {"INFO", "stats"}).out;
  // Let go of by the server (reading what the tiny window holds would take minutes): the
  // INFO client is the one connection left.
  EXPECT_TRUE(eventually(
      [&] {
        return cli(1, {"INFO", "clients"}).out.find("connected_clients:1\r\n") != std::string::npos;
      },
      30s))
      << cli(1, {"INFO", "clients"}).out;
  ::close(slow);
  EXPECT_EQ("PONG\n", cli(1, {"PING"}).out);
}

// resp.max_clients: the connection over the bound gets Redis's error and is closed, the others
// are served, and a slot freed is taken again.
TEST_F(RespTest, ConnectionsOverMaxClientsAreRefusedWithRedisError) {
  ASSERT_EQ(0, run({kCtl, "down", dir_.string(), "--grace", "5"}).code);
  for (int i = 1; i <= 3; ++i) spit(conf(i), slurp(conf(i)) + "max_clients = 3\n");  // in [resp]
  up();
  ASSERT_TRUE(eventually([&] { return cli(1, {"SET", "ready", "1"}).out == "OK\n"; }, 30s));
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(raw(resp_[1]));
    ASSERT_EQ("+PONG\r\n", ask(held.back(), "PING\r\n", 7)) << "connection " << i;
  }
  int over = raw(resp_[1]);
  ASSERT_GE(over, 0);
  auto [got, closed] = read_to_close(over);
  EXPECT_EQ("-ERR max number of clients reached\r\n", got);
  EXPECT_TRUE(closed);
  ::close(over);
  EXPECT_EQ("+PONG\r\n", ask(held[0], "PING\r\n", 7)) << "the others are served";
  const std::string info = ask(held[1], "INFO stats\r\n", 200);
  EXPECT_NE(std::string::npos, info.find("rejected_connections:1")) << info;
  ::close(held[2]);
  held.pop_back();
  // The loop lets go of the closed one; then a new connection is taken.
  EXPECT_TRUE(eventually(
      [&] {
        int fd = raw(resp_[1]);
        const bool ok = fd >= 0 && ask(fd, "PING\r\n", 7) == "+PONG\r\n";
        if (fd >= 0) ::close(fd);
        return ok;
      },
      10s));
  for (int fd : held) ::close(fd);
}

// A pipeline of 3 MB of SETs, more than the 1 MiB of parsed commands a connection may have
// waiting: reading pauses (INFO client_input_pauses) and resumes, and every command is answered
// in order.
TEST_F(RespTest, AHugePipelinePausesReadingAndResumesWithEveryReplyInOrder) {
  int fd = raw(resp_[1]);
  ASSERT_GE(fd, 0);
  const std::string value(1000, 'p');
  std::string cmds, want;
  for (int i = 0; i < 3000; ++i) {
    cmds += "*3\r\n$3\r\nSET\r\n" + bulk("pipe:" + std::to_string(i % 50)) + bulk(value);
    want += "+OK\r\n";
  }
  cmds += "GET pipe:49\r\n";
  want += bulk(value);
  // Written from a thread: the server stops reading, so a blocking write of all of it would
  // wait for replies this thread is not reading yet.
  std::thread writer([&] {
    std::size_t at = 0;
    while (at < cmds.size()) {
      const ssize_t n = ::write(fd, cmds.data() + at, cmds.size() - at);
      if (n <= 0) break;
      at += static_cast<std::size_t>(n);
    }
  });
  std::string got;
  char buf[65536];
  while (got.size() < want.size()) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  writer.join();
  EXPECT_EQ(want.size(), got.size());
  EXPECT_TRUE(got == want) << "the replies differ from the commands' answers in order";
  ::close(fd);
  const std::string info = cli(1, {"INFO", "stats"}).out;
  const auto at = info.find("client_input_pauses:");
  ASSERT_NE(std::string::npos, at) << info;
  EXPECT_GE(std::atoll(info.c_str() + at + 20), 1) << info;
}

}  // namespace
