// The store end to end: three real nodusd processes from a copy of cluster-configs/local-3
// (nodusd_cluster.hpp), driven and inspected only through the real nodusctl (kv put/get/del/
// keys/explain, ring, members, nodes) and /metrics, while nodes are killed with SIGKILL, paused
// with SIGSTOP and brought back. Issue 12's integration tests: acknowledged writes survive a
// kill -9, concurrent blind writes become siblings that a put with their context resolves, a
// stale replica is repaired by a read, hints reach a primary that returns, the CLI's JSON and
// exit statuses, the store's metrics, and bad input refused with nothing stored and the node
// serving on.
//
// local-3 ships N = 2 (so that a third node can stand in as a fallback); the tests that want
// every node to be a primary of every key set kv.replicas = 3 in the copy.
#include <algorithm>
#include <atomic>
#include <mutex>

#include "nodusd_cluster.hpp"

namespace {

using namespace nodus::test;
using nodus::testing::numbered;

class KvToolsTest : public NodusdClusterTest {
 protected:
  void SetUp() override { copy_cluster("local-3", "720", "920"); }

  // nodusctl --config nI.conf kv ARGS...
  Outcome kv(int i, const std::vector<std::string>& args) { return ctl(i, with_kv(args)); }
  json kv_json(int i, const std::vector<std::string>& args) { return ctl_json(i, with_kv(args)); }
  static std::vector<std::string> with_kv(const std::vector<std::string>& args) {
    std::vector<std::string> out = {"kv"};
    out.insert(out.end(), args.begin(), args.end());
    return out;
  }

  // `kv explain KEY --json` through node i (null when it failed).
  json explain(int i, const std::string& key) {
    Outcome r = kv(i, {"explain", key, "--json"});
    return r.code == 0 ? json::parse(r.out, nullptr, false) : json();
  }

  // The preflist entry of `node` in an explain reply (null when absent).
  static json replica(const json& e, const std::string& node) {
    if (!e.is_object()) return json();
    for (const json& r : e["preflist"]) {
      if (r["node"] == node) return r;
    }
    return json();
  }

  // True when every replica up in `e` holds the same object (one digest, not null) and there are
  // `n` of them.
  static bool replicas_agree(const json& e, std::size_t n) {
    if (!e.is_object()) return false;
    std::set<std::string> digests;
    std::size_t up = 0;
    for (const json& r : e["preflist"]) {
      if (r["state"] != "up") continue;
      ++up;
      digests.insert(r["digest"].is_string() ? r["digest"].get<std::string>() : "");
    }
    return up == n && digests.size() == 1 && !digests.begin()->empty();
  }

  // One line on stderr that names `what`.
  static void expect_error_line(const Outcome& r, const std::string& what) {
    EXPECT_NE(std::string::npos, r.err.find(what)) << "stderr names " << what << ": " << r.err;
    EXPECT_EQ(1, std::count(r.err.begin(), r.err.end(), '\n')) << "one line: " << r.err;
  }
};

TEST_F(KvToolsTest, EveryAcknowledgedWriteIsReadableAfterAKill9OfOneOfThreeNodes) {
  configure("replicas", "3");  // W = R = 2 as shipped
  up();
  // A writer puts 120 keys through n1, one nodusctl after the other, and keeps the acknowledged
  // ones; n3 is killed with SIGKILL once 30 writes were tried.
  constexpr int kKeys = 120;
  std::mutex mu;
  std::map<std::string, std::string> acked;  // guarded by mu
  std::atomic<int> tried{0};
  std::atomic<int> acked_after_kill{0};
  std::atomic<bool> killed{false};
  std::thread writer([&] {
    for (int i = 0; i < kKeys; ++i) {
      const std::string key = numbered("acked:", i);
      const std::string value = numbered("value-", i);
      const bool after = killed.load();
      if (kv(1, {"put", key, value}).code == 0) {
        std::lock_guard<std::mutex> lock(mu);
        acked[key] = value;
        if (after) ++acked_after_kill;
      }
      ++tried;
    }
  });
  const bool started = eventually([&] { return tried.load() >= 30; }, 60s);
  const pid_t n3 = pid_of(3);
  const bool kill_sent = n3 > 1 && ::kill(n3, SIGKILL) == 0;
  killed = true;
  writer.join();
  ASSERT_TRUE(started) << "the writer did not get going";
  ASSERT_TRUE(kill_sent) << "no n3 to kill";
  EXPECT_EQ(static_cast<std::size_t>(kKeys), acked.size())
      << "with n1 and n2 up every write meets W = 2";
  EXPECT_GT(acked_after_kill.load(), 50) << "writes go on while n3 is dead";
  ASSERT_TRUE(eventually([&] { return sees(1, 3, "down"); }, 15s));

  // Every acknowledged write, read through each survivor.
  for (int reader : {1, 2}) {
    for (const auto& [key, value] : acked) {
      EXPECT_EQ(value, value_on(reader, key)) << key << " read through n" << reader;
    }
  }
  // n3 comes back empty (the memory engine); reads through it still find every write (R = 2).
  up();
  for (const auto& [key, value] : acked) {
    EXPECT_EQ(value, value_on(3, key)) << key << " read through the restarted n3";
  }
}

TEST_F(KvToolsTest, ConcurrentBlindWritesFromTwoNodesBecomeSiblingsAndAMergedPutResolvesThem) {
  configure("replicas", "3");
  up();
  // Two puts without a context, at the same time, coordinated on n1 and on n2.
  Outcome from_n1, from_n2;
  std::thread a([&] { from_n1 = kv(1, {"put", "cart", "from-n1"}); });
  std::thread b([&] { from_n2 = kv(2, {"put", "cart", "from-n2"}); });
  a.join();
  b.join();
  ASSERT_EQ(0, from_n1.code) << from_n1.err;
  ASSERT_EQ(0, from_n2.code) << from_n2.err;

  json got = kv_json(3, {"get", "cart"});
  ASSERT_TRUE(got.contains("siblings")) << "neither write saw the other: both are kept " << got;
  EXPECT_FALSE(got.contains("value")) << got;
  std::vector<std::string> siblings = got["siblings"].get<std::vector<std::string>>();
  std::sort(siblings.begin(), siblings.end());
  EXPECT_EQ((std::vector<std::string>{"from-n1", "from-n2"}), siblings);
  EXPECT_EQ("cart", got["key"]);
  Outcome people = kv(3, {"get", "cart"});
  EXPECT_NE(std::string::npos, people.out.find("2 concurrent values")) << people.out;
  EXPECT_TRUE(eventually([&] { return metric_all("nodus_kv_siblings_max") >= 2; }, 10s));

  // A put with the context of that read supersedes both.
  Outcome merged =
      kv(2, {"put", "cart", "from-n1+from-n2", "--context", got["context"].get<std::string>()});
  ASSERT_EQ(0, merged.code) << merged.err;
  json after = kv_json(1, {"get", "cart"});
  EXPECT_EQ("from-n1+from-n2", after["value"]) << after;
  EXPECT_FALSE(after.contains("siblings")) << after;
  // ... on every replica.
  EXPECT_TRUE(eventually(
      [&] {
        json e = explain(1, "cart");
        if (!replicas_agree(e, 3)) return false;
        for (const json& r : e["preflist"]) {
          if (r["siblings"] != 1) return false;
        }
        return true;
      },
      10s))
      << explain(1, "cart");
}

TEST_F(KvToolsTest, AStaleReplicaIsRepairedByARead) {
  configure("replicas", "3");
  up();
  json put = kv_json(1, {"put", "profile", "v1"});
  ASSERT_TRUE(put["context"].is_string()) << put;
  ASSERT_TRUE(eventually([&] { return replicas_agree(explain(1, "profile"), 3); }, 10s))
      << explain(1, "profile");

  // Pause n3 until n1 and n2 count it down, write v2 (W = 2 on n1 and n2; three nodes leave no
  // fallback, so n3 is sent nothing), and let n3 run again: its copy is v1, stale.
  const pid_t n3 = pid_of(3);
  ASSERT_GT(n3, 1);
  ASSERT_EQ(0, ::kill(n3, SIGSTOP));
  struct Resume {
    pid_t pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{n3};
  ASSERT_TRUE(eventually([&] { return sees(1, 3, "down") && sees(2, 3, "down"); }, 15s));
  Outcome v2 = kv(1, {"put", "profile", "v2", "--context", put["context"].get<std::string>()});
  ASSERT_EQ(0, v2.code) << v2.err;
  ASSERT_EQ(0, ::kill(n3, SIGCONT));
  ASSERT_TRUE(eventually(
      [&] { return sees(1, 3, "up") && sees(2, 3, "up") && sees(3, 1, "up") && sees(3, 2, "up"); },
      20s));
  json before = explain(1, "profile");
  const json stale = replica(before, "n3");
  const json fresh = replica(before, "n1");
  ASSERT_EQ("up", stale["state"]) << before;
  ASSERT_TRUE(fresh["digest"].is_string() && stale["digest"].is_string()) << before;
  ASSERT_NE(fresh["digest"], stale["digest"]) << "n3 must still hold v1 here: " << before;
  const double repairs = metric_all("nodus_kv_read_repairs_total");

  // A read through n2 answers v2 and repairs n3.
  EXPECT_EQ("v2", value_on(2, "profile"));
  EXPECT_TRUE(eventually([&] { return replicas_agree(explain(1, "profile"), 3); }, 10s))
      << explain(1, "profile");
  EXPECT_GT(metric_all("nodus_kv_read_repairs_total"), repairs);
  EXPECT_EQ("v2", value_on(3, "profile"));
}

TEST_F(KvToolsTest, HintsReachAPrimaryThatReturns) {
  up();  // local-3 as shipped: N = 2, so with n1 down the third node stands in as a fallback
  const pid_t n1 = pid_of(1);
  ASSERT_GT(n1, 1);
  ASSERT_EQ(0, ::kill(n1, SIGKILL));
  ASSERT_TRUE(eventually([&] { return sees(2, 1, "down") && sees(3, 1, "down"); }, 15s));

  // Writes through n2: each meets W = 2; those whose primaries include n1 go to a fallback,
  // which keeps them as hints for n1.
  std::map<std::string, std::string> written;
  for (int i = 0; i < 16; ++i) {
    const std::string key = numbered("hinted:", i);
    Outcome r = kv(2, {"put", key, numbered("v", i)});
    ASSERT_EQ(0, r.code) << key << ": " << r.err;
    written[key] = numbered("v", i);
  }
  std::map<std::string, std::string> hinted;  // key -> the node keeping the hint
  for (const auto& [key, value] : written) {
    json e = explain(2, key);
    ASSERT_TRUE(e.is_object()) << key;
    for (const json& h : e["hints"]) {
      EXPECT_EQ("n1", h["for"]) << e;
      hinted[key] = h["node"];
      const json f = replica(e, h["node"]);
      EXPECT_EQ("fallback", f["role"]) << e;
      EXPECT_EQ("n1", f["for"]) << e;
    }
    const json down = replica(e, "n1");
    if (!down.is_null()) {
      EXPECT_EQ("down", down["state"]) << e;
      EXPECT_TRUE(hinted.count(key)) << "n1 is a primary of " << key << ": a hint is kept " << e;
    }
  }
  ASSERT_FALSE(hinted.empty()) << "n1 is a primary of none of 16 keys?";
  EXPECT_GE(metric(2, "nodus_kv_hints_pending") + metric(3, "nodus_kv_hints_pending"),
            static_cast<double>(hinted.size()));

  // n1 returns, empty; nothing reads the keys, so only hand-off can bring them to it.
  up();
  for (const auto& [key, keeper] : hinted) {
    EXPECT_TRUE(eventually(
        [&, k = key] {  // clang 14 captures no structured binding
          json e = explain(2, k);
          return e.is_object() && e["hints"].empty() && replicas_agree(e, 2) &&
                 replica(e, "n1")["role"] == "primary" && replica(e, "n1")["digest"].is_string();
        },
        15s))
        << key << " (hint kept by " << keeper << "): " << explain(2, key);
  }
  EXPECT_GE(metric(2, "nodus_kv_handoffs_total") + metric(3, "nodus_kv_handoffs_total"),
            static_cast<double>(hinted.size()));
  EXPECT_TRUE(eventually(
      [&] {
        return metric(2, "nodus_kv_hints_pending") + metric(3, "nodus_kv_hints_pending") == 0;
      },
      10s));
  for (const auto& [key, value] : written) EXPECT_EQ(value, value_on(1, key)) << key;
}

// The capstone from a config: apps.start = kv_store on n1, driven by nodusctl call; what it
// stores is the store's, read through another node with kv get.
TEST_F(KvToolsTest, AppsStartKvStoreServesTheCapstoneOverTheStore) {
  std::ofstream(conf(1), std::ios::app) << "start = kv_store local:kv\n";  // [apps] is last
  up();
  EXPECT_EQ(json("ok"), ctl_json(1, {"call", "local:kv@n1", R"(["put", "user:1", "alice"])"}));
  EXPECT_EQ(json::parse(R"(["ok", {"$bin": "alice"}])"),
            ctl_json(1, {"call", "local:kv@n1", R"(["get", "user:1"])"}))
      << "the value is a binary";
  EXPECT_EQ("alice", value_on(2, "user:1")) << "in the store, read through n2";
  EXPECT_EQ(json("ok"),
            ctl_json(1, {"call", "local:kv@n1", R"(["put", "session", "t", {"ttl": 60000}])"}));
  json keys = ctl_json(1, {"call", "local:kv@n1", "\"keys\""});  // a list: {"$list": [...]}
  ASSERT_TRUE(keys.contains("$list")) << keys;
  EXPECT_EQ(2u, keys["$list"].size()) << keys;
  json stats = ctl_json(1, {"call", "local:kv@n1", "\"stats\""});
  EXPECT_EQ(2, stats["replicas"]) << stats;
  EXPECT_EQ(3, stats["nodes"]) << stats;
  Outcome bad = ctl(1, {"call", "local:kv@n1", R"(["put", 1, 2])"});
  EXPECT_NE(std::string::npos, bad.out.find("badarg")) << bad.out << bad.err;
  EXPECT_EQ(json("nil"), ctl_json(1, {"call", "local:kv@n1", R"(["get", "nobody"])"}));
}

TEST_F(KvToolsTest, KvCommandsAnswerInTheDesignsJsonWithItsExitStatuses) {
  up();
  // put, get: {key, context}, {key, value, context}.
  json put = kv_json(1, {"put", "user:1", "alice"});
  EXPECT_EQ((std::set<std::string>{"key", "context"}), [&] {
    std::set<std::string> k;
    for (const auto& [name, v] : put.items()) k.insert(name);
    return k;
  }()) << put;
  EXPECT_EQ("user:1", put["key"]);
  ASSERT_TRUE(put["context"].is_string() && !put["context"].get<std::string>().empty()) << put;
  json got = kv_json(2, {"get", "user:1"});
  EXPECT_EQ("user:1", got["key"]);
  EXPECT_EQ("alice", got["value"]);
  EXPECT_TRUE(got["context"].is_string()) << got;
  // A missing key: exit 1, {key, found: false}, one line on stderr.
  Outcome missing = kv(3, {"get", "nobody", "--json"});
  EXPECT_EQ(1, missing.code);
  EXPECT_EQ(json::parse(R"({"key": "nobody", "found": false})"), json::parse(missing.out));
  expect_error_line(missing, "not_found");
  // Values: --term JSON comes back as that JSON; bytes that are not UTF-8 as base64.
  ASSERT_EQ(0, kv(1, {"put", "point", R"(["point", 1, 2])", "--term"}).code);
  EXPECT_EQ(json::parse(R"(["point", 1, 2])"), kv_json(2, {"get", "point"})["value"]);
  ASSERT_EQ(0, kv(1, {"put", "raw", "\xff\xfe"}).code);
  EXPECT_EQ(json::parse(R"({"$base64": "//4="})"), kv_json(3, {"get", "raw"})["value"]);
  // del: {key, context}; then the key is missing.
  json del = kv_json(2, {"del", "user:1", "--context", got["context"].get<std::string>()});
  EXPECT_EQ("user:1", del["key"]);
  EXPECT_TRUE(del["context"].is_string()) << del;
  EXPECT_EQ(1, kv(1, {"get", "user:1"}).code);

  // keys: {keys, cursor}; with --limit, pages that together list each key once, in the order of
  // the whole listing.
  std::set<std::string> pages_keys;
  for (int i = 0; i < 7; ++i) {
    ASSERT_EQ(0, kv(1 + i % 3, {"put", numbered("page:", i), "x"}).code);
    pages_keys.insert(numbered("page:", i));
  }
  json all = kv_json(2, {"keys", "page:*"});
  EXPECT_TRUE(all["cursor"].is_null()) << all;
  std::vector<std::string> listed = all["keys"].get<std::vector<std::string>>();
  EXPECT_EQ(pages_keys, std::set<std::string>(listed.begin(), listed.end()));
  std::vector<std::string> paged;
  json cursor;
  for (int page = 0; page < 10; ++page) {
    std::vector<std::string> args = {"keys", "page:*", "--limit", "3"};
    if (cursor.is_string()) {
      args.push_back("--cursor");
      args.push_back(cursor.get<std::string>());
    }
    json p = kv_json(3, args);
    ASSERT_LE(p["keys"].size(), 3u) << p;
    for (const json& k : p["keys"]) paged.push_back(k);
    cursor = p["cursor"];
    if (cursor.is_null()) break;
  }
  EXPECT_TRUE(cursor.is_null()) << "ten pages of three hold seven keys";
  EXPECT_EQ(listed, paged);
  EXPECT_EQ(0u, kv_json(1, {"keys", "nothing:*"})["keys"].size());

  // explain: {key, partition, preflist: [{node, partition, role, state, version, digest,
  // ttl_left_ms}], hints}.
  json e = kv_json(3, {"explain", "page:0"});
  EXPECT_EQ("page:0", e["key"]);
  ASSERT_TRUE(e["partition"].is_number()) << e;
  EXPECT_LT(e["partition"].get<int>(), 64);
  ASSERT_EQ(2u, e["preflist"].size()) << "N = 2 primaries, all up: " << e;
  for (const json& r : e["preflist"]) {
    for (const char* field : {"node", "partition", "role", "state", "version", "digest"}) {
      EXPECT_TRUE(r.contains(field)) << field << " in " << r;
    }
    EXPECT_TRUE(r.contains("ttl_left_ms")) << r;
    EXPECT_EQ("primary", r["role"]);
    EXPECT_EQ("up", r["state"]);
  }
  EXPECT_TRUE(replicas_agree(e, 2)) << e;
  EXPECT_TRUE(e["hints"].is_array() && e["hints"].empty()) << e;

  // ring: {partitions, replicas, epoch, owners: [{partition, node}], balance: {NODE: count}}.
  json ring = ctl_json(1, {"ring"});
  EXPECT_EQ(64, ring["partitions"]);
  EXPECT_EQ(2, ring["replicas"]);
  EXPECT_GE(ring["epoch"].get<int>(), 1);
  ASSERT_EQ(64u, ring["owners"].size());
  std::map<std::string, int> owned;
  for (std::size_t p = 0; p < 64; ++p) {
    EXPECT_EQ(static_cast<int>(p), ring["owners"][p]["partition"]);
    ++owned[ring["owners"][p]["node"].get<std::string>()];
  }
  EXPECT_EQ(3u, owned.size());
  for (const auto& [node, count] : owned) {
    EXPECT_EQ(count, ring["balance"][node]) << node;
    EXPECT_TRUE(count == 21 || count == 22) << node << " owns " << count;
  }
  EXPECT_EQ(ring, ctl_json(3, {"ring"})) << "every node holds the same ring";
  json members = ctl_json(2, {"members"});
  ASSERT_EQ(3u, members.size()) << members;
  for (const json& m : members) {
    EXPECT_EQ("valid", m["status"]);
    EXPECT_EQ("up", m["state"]);
    EXPECT_EQ(owned[m["node"].get<std::string>()], m["partitions"]) << m;
  }
  // status: partitions and keys per node.
  json s = ctl_json(1, {"status"});
  std::int64_t keys = 0;
  for (const json& n : s["nodes"]) {
    EXPECT_EQ(owned[n["name"].get<std::string>()], n["partitions"]) << n;
    keys += n["keys"].get<std::int64_t>();
  }
  EXPECT_GE(keys, 2 * 9) << "nine live keys, two copies each: " << s;

  // Exit statuses: bad usage 2, an unreachable node 2, both one line.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{}, {"frob"}, {"get"}, {"get", "a", "b"}, {"put", "k"}}) {
    Outcome r = kv(1, args);
    EXPECT_EQ(2, r.code) << "kv " << ::testing::PrintToString(args) << ": " << r.err;
    EXPECT_EQ(1, std::count(r.err.begin(), r.err.end(), '\n')) << r.err;
  }
  Outcome nowhere = run({kCtl, "--node", numbered("tcp://127.0.0.1:", free_port()), "--cookie-file",
                         (dir_ / "cookie").string(), "--timeout", "0.5", "kv", "get", "k"});
  EXPECT_EQ(2, nowhere.code);
  expect_error_line(nowhere, "no answer");
}

// kv mget / kv mput: one JSON object per key in the order given, a key that fails failing
// alone (exit 1 and one line on stderr), and bad usage exit 2.
TEST_F(KvToolsTest, MgetAndMputAnswerOncePerKeyInOrder) {
  configure("max_value_bytes", "4096");
  up();
  json put = kv_json(1, {"mput", "m:1", "one", "m:2", "two", "{t}m:3", "three"});
  ASSERT_TRUE(put.is_array() && put.size() == 3) << put;
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(put[i]["context"].is_string()) << put[i];
  }
  EXPECT_EQ("m:2", put[1]["key"]);
  Outcome got = kv(2, {"mget", "m:1", "nobody", "{t}m:3", "m:2", "--json"});
  EXPECT_EQ(1, got.code) << got.err;
  expect_error_line(got, "1 of 4 keys");
  json g = json::parse(got.out, nullptr, false);
  ASSERT_TRUE(g.is_array() && g.size() == 4) << got.out;
  EXPECT_EQ("one", g[0]["value"]);
  EXPECT_EQ(put[0]["context"], g[0]["context"]);
  EXPECT_EQ(json::parse(R"({"key": "nobody", "found": false})"), g[1]);
  EXPECT_EQ("three", g[2]["value"]);
  // --term: every VALUE is JSON as a term.
  ASSERT_EQ(0, kv(3, {"mput", "m:6", "[6]", "--term"}).code);
  EXPECT_EQ(json::parse("[6]"), kv_json(1, {"mget", "m:6"})[0]["value"]);
  EXPECT_EQ("two", g[3]["value"]);
  // All present: exit 0; for people, one line per key.
  Outcome people = kv(3, {"mget", "m:2", "m:1"});
  EXPECT_EQ(0, people.code) << people.err;
  EXPECT_NE(std::string::npos, people.out.find("two")) << people.out;
  EXPECT_LT(people.out.find("two"), people.out.find("one")) << people.out;
  // A value over kv.max_value_bytes fails alone.
  json big = json::parse(
      kv(1, {"mput", "m:4", "four", "m:5", std::string(5000, 'x'), "--json"}).out, nullptr, false);
  ASSERT_TRUE(big.is_array() && big.size() == 2) << big;
  EXPECT_TRUE(big[0]["context"].is_string()) << big[0];
  EXPECT_NE(std::string::npos, big[1]["error"].get<std::string>().find("value_too_large"))
      << big[1];
  EXPECT_EQ("four", value_on(2, "m:4"));
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"mget"}, {"mput", "k"}, {"mput", "k", "v", "k2"}}) {
    Outcome r = kv(1, args);
    EXPECT_EQ(2, r.code) << "kv " << ::testing::PrintToString(args) << ": " << r.err;
    EXPECT_EQ(1, std::count(r.err.begin(), r.err.end(), '\n')) << r.err;
  }
}

TEST_F(KvToolsTest, MetricsCountRequestsPerOperationWithLatencyHistogramsAndVnodeMailboxes) {
  configure("replicas", "3");  // n1 is a primary of every key: it coordinates all it is sent
  up();
  for (const char* key : {"m1", "m2", "m3"}) ASSERT_EQ(0, kv(1, {"put", key, "v"}).code);
  EXPECT_EQ("v", value_on(1, "m1"));
  EXPECT_EQ(1, kv(1, {"get", "nothing"}).code);
  ASSERT_EQ(0, kv(1, {"del", "m3"}).code);
  EXPECT_EQ(3, metric(1, "nodus_kv_requests_total", "op=\"put\""));
  EXPECT_EQ(2, metric(1, "nodus_kv_requests_total", "op=\"get\""));
  EXPECT_EQ(1, metric(1, "nodus_kv_requests_total", "op=\"delete\""));
  EXPECT_EQ(1, metric(1, "nodus_kv_hits_total"));
  EXPECT_EQ(1, metric(1, "nodus_kv_misses_total"));
  // Per operation a histogram: cumulative buckets ending in +Inf, equal to its count.
  for (const char* op : {"op=\"put\"", "op=\"get\"", "op=\"delete\""}) {
    std::vector<double> buckets;
    std::string last;
    for (const auto& [labels, value] : samples(1, "nodus_kv_request_duration_seconds_bucket")) {
      if (labels.find(op) == std::string::npos) continue;
      if (!buckets.empty()) {
        EXPECT_LE(buckets.back(), value) << op;
      }
      buckets.push_back(value);
      last = labels;
    }
    ASSERT_GE(buckets.size(), 2u) << op;
    EXPECT_NE(std::string::npos, last.find("le=\"+Inf\"")) << last;
    EXPECT_EQ(buckets.back(), metric(1, "nodus_kv_request_duration_seconds_count", op)) << op;
    EXPECT_EQ(metric(1, "nodus_kv_requests_total", op), buckets.back()) << op;
  }
  // The gauges: one mailbox per vnode, the ring, the partitions this node owns, no hint.
  auto boxes = samples(1, "nodus_kv_vnode_mailbox_messages");
  ASSERT_EQ(64u, boxes.size());
  for (std::size_t p = 0; p < boxes.size(); ++p) {
    EXPECT_NE(std::string::npos, boxes[p].first.find(numbered("partition=\"", static_cast<int>(p))))
        << boxes[p].first;
    EXPECT_GE(boxes[p].second, 0);
  }
  EXPECT_EQ(64u, samples(1, "nodus_kv_vnode_queue").size());
  EXPECT_EQ(1, metric(1, "nodus_kv_ring_epoch"));
  const double owned = metric(1, "nodus_kv_partitions_owned");
  EXPECT_TRUE(owned == 21 || owned == 22) << owned;
  EXPECT_EQ(0, metric(1, "nodus_kv_hints_pending"));
  EXPECT_GE(metric(1, "nodus_kv_keys"), 3);
  EXPECT_EQ(1, metric(1, "nodus_kv_siblings_max"));
  EXPECT_EQ(0, metric(1, "nodus_kv_bad_messages_total"));
  EXPECT_EQ(1u, samples(1, "nodus_kv_merge_errors_total").size());
  EXPECT_EQ(1u, samples(1, "nodus_kv_watch_duplicates_total").size());
}

// kv put --ttl SECONDS: the value reads with the time it has left (kv get, kv explain), expires
// on every node, and each replica's sweep (kv.ttl_sweep_interval_ms) counts it in
// nodus_kv_expired_total; a bad --ttl is bad usage and stores nothing.
TEST_F(KvToolsTest, KvPutWithTtlExpiresEverywhereAndTheSweepCountsIt) {
  configure("ttl_sweep_interval_ms", "100");
  up();
  ASSERT_EQ(0, kv(1, {"put", "lasting", "v", "--ttl", "3600"}).code);
  json got = kv_json(2, {"get", "lasting"});
  EXPECT_EQ("v", got["value"]);
  ASSERT_TRUE(got["ttl_ms"].is_number()) << got;
  EXPECT_GT(got["ttl_ms"].get<std::int64_t>(), 3000 * 1000);
  EXPECT_LE(got["ttl_ms"].get<std::int64_t>(), 3600 * 1000);
  EXPECT_NE(std::string::npos, kv(3, {"get", "lasting"}).out.find("expires"));
  for (const json& r : kv_json(3, {"explain", "lasting"})["preflist"]) {
    ASSERT_TRUE(r["ttl_left_ms"].is_number()) << r;
    EXPECT_GT(r["ttl_left_ms"].get<std::int64_t>(), 3000 * 1000) << r;
  }
  ASSERT_EQ(0, kv(1, {"put", "forever", "v"}).code);
  EXPECT_TRUE(kv_json(1, {"get", "forever"})["ttl_ms"].is_null());

  ASSERT_EQ(0, kv(1, {"put", "brief", "v", "--ttl", "0.2"}).code);
  EXPECT_TRUE(eventually(
      [&] {
        for (int i = 1; i <= 3; ++i) {
          if (kv(i, {"get", "brief"}).code != 1) return false;
        }
        return true;
      },
      10s))
      << "brief never expired";
  EXPECT_TRUE(eventually([&] { return metric_all("nodus_kv_expired_total") == 2; }, 10s))
      << "N = 2 replicas sweep it: " << metric_all("nodus_kv_expired_total");
  EXPECT_EQ(0u, kv_json(2, {"keys", "brief"})["keys"].size());

  for (const char* bad : {"0", "-5", "soon", "1e30", ""}) {
    Outcome r = kv(1, {"put", "never", "v", "--ttl", bad});
    EXPECT_EQ(2, r.code) << "--ttl " << bad << ": " << r.err;
    expect_error_line(r, "--ttl");
  }
  EXPECT_EQ(1, kv(2, {"get", "never"}).code) << "nothing stored";
}

// cluster-configs/local-5 as shipped: five nodes form one ring (N = 3) with no manual step, and
// a key written through one is read through each of the others.
TEST_F(KvToolsTest, LocalFiveRunsTheStoreAsShipped) {
  fs::remove_all(dir_);  // SetUp's copy of local-3
  copy_cluster("local-5", "730", "930");
  ASSERT_EQ(5, nodes_);
  up();
  json ring = ctl_json(5, {"ring"});
  EXPECT_EQ(1, ring["epoch"]);
  EXPECT_EQ(3, ring["replicas"]);
  ASSERT_EQ(5u, ring["balance"].size()) << ring;
  for (const auto& [node, count] : ring["balance"].items()) {
    EXPECT_TRUE(count == 12 || count == 13) << node << " owns " << count;
  }
  for (int i = 1; i <= 5; ++i) EXPECT_EQ(ring, ctl_json(i, {"ring"})) << "n" << i;
  ASSERT_EQ(0, kv(1, {"put", "five", "ok"}).code);
  for (int i = 2; i <= 5; ++i) EXPECT_EQ("ok", value_on(i, "five")) << "read through n" << i;
}

// kv.primary_read_quorum and kv.primary_write_quorum from the config hold for every request
// that names none; --pr and --pw override them per request. local-3 ships N = 2: with n1 down,
// a key n1 is a primary of has one primary up and a fallback standing in.
TEST_F(KvToolsTest, PrimaryQuorumsComeFromTheConfigAndFlagsOverrideThem) {
  configure("primary_read_quorum", "2");
  configure("primary_write_quorum", "2");
  up();
  // With every primary up both are met.
  ASSERT_EQ(0, kv(2, {"put", "before", "v"}).code);
  EXPECT_EQ("v", value_on(3, "before"));
  // Keys of which n1 is a primary, and one of which it is not.
  std::vector<std::string> of_n1;
  std::string not_n1;
  for (int i = 0; i < 40 && (of_n1.size() < 3 || not_n1.empty()); ++i) {
    const std::string key = numbered("pq:", i);
    json e = explain(2, key);
    ASSERT_TRUE(e.is_object()) << key;
    if (replica(e, "n1")["role"] == "primary") {
      if (of_n1.size() < 3) of_n1.push_back(key);
    } else if (not_n1.empty()) {
      not_n1 = key;
    }
  }
  ASSERT_EQ(3u, of_n1.size());
  ASSERT_FALSE(not_n1.empty());

  const pid_t n1 = pid_of(1);
  ASSERT_GT(n1, 1);
  ASSERT_EQ(0, ::kill(n1, SIGKILL));
  ASSERT_TRUE(eventually([&] { return sees(2, 1, "down") && sees(3, 1, "down"); }, 15s));
  for (const auto& key : of_n1) {
    // The config's PW = 2: one primary is up, so the put is refused (exit 1), names PW and
    // stores nothing.
    Outcome r = kv(2, {"put", key, "v2"});
    EXPECT_EQ(1, r.code) << key << ": " << r.err;
    expect_error_line(r, "no_quorum: pw: needed 2 replicas, got 1");
    // --pw 1 asks less of this request: the fallback's ack counts toward W.
    r = kv(3, {"put", key, "v2", "--pw", "1"});
    EXPECT_EQ(0, r.code) << key << ": " << r.err;
    // The config's PR = 2: a read is refused the same way; --pr 1 reads the one value.
    r = kv(2, {"get", key});
    EXPECT_EQ(1, r.code) << key << ": " << r.err;
    expect_error_line(r, "no_quorum: pr: needed 2 replicas, got 1");
    EXPECT_EQ("v2", kv_json(3, {"get", key, "--pr", "1"})["value"]) << key;
  }
  // A key whose primaries are both up needs no override.
  EXPECT_EQ(0, kv(2, {"put", not_n1, "v2"}).code);
  EXPECT_EQ("v2", value_on(3, not_n1));
  // Above N, or not a count: bad usage.
  Outcome r = kv(2, {"get", not_n1, "--pr", "3"});
  EXPECT_EQ(2, r.code) << r.err;
  expect_error_line(r, "above N");
  r = kv(2, {"get", not_n1, "--pr", "0"});
  EXPECT_EQ(2, r.code) << r.err;
  expect_error_line(r, "--pr takes a whole number from 1");
}

// kv.max_object_bytes from the config bounds an object's siblings together.
TEST_F(KvToolsTest, MaxObjectBytesFromTheConfigBoundsAKeysSiblings) {
  configure("max_value_bytes", "4096");
  configure("max_object_bytes", "10240");
  up();
  const std::string value(4000, 'v');
  ASSERT_EQ(0, kv(1, {"put", "heap", value}).code);
  ASSERT_EQ(0, kv(2, {"put", "heap", value}).code);
  Outcome r = kv(3, {"put", "heap", value});
  EXPECT_EQ(1, r.code) << r.err;
  expect_error_line(r, "kv.max_object_bytes");
  json got = kv_json(1, {"get", "heap"});
  EXPECT_EQ(2u, got["siblings"].size()) << "the refused third write left nothing";
  // The context of a read resolves them, into one value well under the bound.
  EXPECT_EQ(0, kv(3, {"put", "heap", "one", "--context", got["context"].get<std::string>()}).code);
  EXPECT_EQ("one", value_on(2, "heap"));
}

TEST_F(KvToolsTest, BadInputIsRefusedNothingIsStoredAndTheNodeKeepsServing) {
  configure("replicas", "3");
  configure("max_value_bytes", "4096");
  configure("max_siblings", "2");
  up();
  const std::vector<pid_t> pids = {pid_of(1), pid_of(2), pid_of(3)};
  auto absent = [&](const std::string& key) { return kv(2, {"get", key}).code == 1; };

  // Keys up to 64 KiB and values up to kv.max_value_bytes are stored; one byte more is refused.
  const std::string key_limit(65536, 'k');
  const std::string key_over(65537, 'k');
  EXPECT_EQ(0, kv(1, {"put", key_limit, "at the limit"}).code);
  EXPECT_EQ("at the limit", value_on(3, key_limit));
  Outcome r = kv(1, {"put", key_over, "v"});
  EXPECT_EQ(2, r.code);
  expect_error_line(r, "value_too_large");
  EXPECT_LT(r.err.size(), 400u) << "the key is cut short in the message";
  json k_keys = kv_json(2, {"keys", "k*"});
  ASSERT_EQ(1u, k_keys["keys"].size()) << "only the key at the limit is stored";
  EXPECT_EQ(65536u, k_keys["keys"][0].get<std::string>().size());
  r = kv(2, {"get", key_over});
  EXPECT_EQ(2, r.code) << "no key that long can be asked for either";
  expect_error_line(r, "value_too_large");
  EXPECT_EQ(0, kv(1, {"put", "big", std::string(4096, 'v')}).code);
  r = kv(1, {"put", "bigger", std::string(4097, 'v')});
  EXPECT_EQ(2, r.code);
  expect_error_line(r, "value_too_large");
  EXPECT_TRUE(absent("bigger"));

  // Contexts: malformed (refused by nodusctl, or by the store), of another key, altered.
  r = kv(1, {"put", "fresh", "v", "--context", "!!"});
  EXPECT_EQ(2, r.code);
  expect_error_line(r, "--context");
  r = kv(1, {"put", "fresh", "v", "--context", "AAAA"});
  EXPECT_EQ(2, r.code);
  expect_error_line(r, "badarg");
  EXPECT_TRUE(absent("fresh"));
  json a = kv_json(1, {"put", "a", "1"});
  const std::string context = a["context"];
  r = kv(2, {"put", "b", "2", "--context", context});
  EXPECT_EQ(2, r.code) << "a context of another key";
  expect_error_line(r, "badarg");
  EXPECT_TRUE(absent("b"));
  std::string altered = context;
  altered[altered.size() / 2] = altered[altered.size() / 2] == 'A' ? 'B' : 'A';
  r = kv(3, {"put", "a", "3", "--context", altered});
  EXPECT_EQ(2, r.code) << "an altered context";
  expect_error_line(r, "badarg");
  json still = kv_json(2, {"get", "a"});
  EXPECT_EQ("1", still["value"]) << "the refused write left nothing: " << still;

  // Quorums above N = 3.
  r = kv(1, {"get", "a", "--r", "4"});
  EXPECT_EQ(2, r.code);
  expect_error_line(r, "above N");
  for (const char* flag : {"--w", "--pw", "--dw"}) {
    r = kv(1, {"put", "quorum", "v", flag, "4"});
    EXPECT_EQ(2, r.code) << flag;
    expect_error_line(r, "badarg");
  }
  EXPECT_TRUE(absent("quorum"));

  // Blind writes beyond kv.max_siblings: refused (the operation failed: exit 1); a write with
  // the context of a read resolves them.
  ASSERT_EQ(0, kv(1, {"put", "crowd", "x1"}).code);
  ASSERT_EQ(0, kv(2, {"put", "crowd", "x2"}).code);
  r = kv(3, {"put", "crowd", "x3"});
  EXPECT_EQ(1, r.code);
  expect_error_line(r, "too_many_siblings");
  json crowd = kv_json(1, {"get", "crowd"});
  EXPECT_EQ(2u, crowd["siblings"].size()) << crowd;
  EXPECT_EQ(0, kv(3, {"put", "crowd", "x", "--context", crowd["context"].get<std::string>()}).code);
  EXPECT_EQ("x", value_on(2, "crowd"));

  // Unknown options: nodusctl's own, and the store's for a term request sent as it is.
  r = kv(1, {"get", "a", "--q", "1"});
  EXPECT_EQ(2, r.code);
  expect_error_line(r, "unknown option --q");
  json reply = ctl_json(
      1, {"call", "local:nodus_kv@n1", R"(["put", {"$bin": "opt"}, {"$bin": "v"}, {"bogus": 1}])"});
  EXPECT_EQ("error", reply[0]) << reply;
  EXPECT_EQ("badarg", reply[1][0]) << reply;
  EXPECT_NE(std::string::npos, reply.dump().find("unknown option bogus")) << reply;
  EXPECT_TRUE(absent("opt"));
  // Malformed requests.
  for (const char* request :
       {R"(["put", "an_atom_not_a_binary", {"$bin": "v"}, {}])", R"(["get"])", R"("frobnicate")",
        R"(["put", {"$bin": "opt"}, {"$bin": "v"}, {"r": -1}])"}) {
    reply = ctl_json(2, {"call", "local:nodus_kv@n2", request});
    EXPECT_EQ("error", reply[0]) << request << " -> " << reply;
  }
  EXPECT_TRUE(absent("opt"));

  // Every node still runs and serves.
  for (pid_t p : pids) EXPECT_TRUE(alive(p)) << "pid " << p;
  for (int i = 1; i <= 3; ++i) {
    const std::string key = numbered("after:", i);
    EXPECT_EQ(0, kv(i, {"put", key, "ok"}).code) << "n" << i;
    EXPECT_EQ("ok", value_on(1 + i % 3, key));
  }
  json s = ctl_json(1, {"status"});
  for (const json& n : s["nodes"]) EXPECT_EQ("up", n["state"]) << n;
}

// -- kv watch ---------------------------------------------------------------------------------

// nodusctl kv watch PATTERN --count N through n1, while keys change through n2 and n3.
class KvWatchTest : public KvToolsTest {
 protected:
  void SetUp() override {
    KvToolsTest::SetUp();
    configure("replicas", "3");
  }
  // Up, with the ring formed (a put goes through).
  void up_and_ready() {
    up();
    ASSERT_TRUE(eventually([&] { return kv(1, {"put", "ready", "1"}).code == 0; }, 30s));
  }
  // nodusctl --config n1.conf [--json] kv watch ARGS..., running.
  std::unique_ptr<Streaming> watch(const std::vector<std::string>& args, bool as_json) {
    std::vector<std::string> argv = {kCtl, "--config", conf(1)};
    if (as_json) argv.push_back("--json");
    argv.push_back("kv");
    argv.push_back("watch");
    argv.insert(argv.end(), args.begin(), args.end());
    return std::make_unique<Streaming>(argv);
  }
};

TEST_F(KvWatchTest, PrintsAJsonLinePerChangeMadeThroughOtherNodesAndStopsAfterCount) {
  up_and_ready();
  auto w = watch({"w:*", "--count", "3"}, true);
  // The line on stderr comes once the cluster knows the pattern: changes after it are seen.
  ASSERT_TRUE(w->err_has("watching", 20s)) << w->err();
  json put_a = kv_json(2, {"put", "w:a", "1"});
  ASSERT_EQ(0, kv(3, {"put", "other", "not watched"}).code);
  json put_b = kv_json(3, {"put", "w:b", "two"});
  json del_a = kv_json(2, {"del", "w:a"});
  ASSERT_EQ(0, w->wait(20s)) << w->err();
  const auto lines = w->lines(0, 3, 1s);
  ASSERT_EQ(3u, lines.size()) << w->out();
  std::vector<json> events;
  for (const auto& l : lines) {
    events.push_back(json::parse(l, nullptr, false));
    ASSERT_TRUE(events.back().is_object()) << "one JSON document per line: " << l;
  }
  // Per key in the order made (events of different keys may come the other way round).
  std::vector<json> of_a, of_b;
  for (const json& e : events) (e["key"] == "w:a" ? of_a : of_b).push_back(e);
  ASSERT_EQ(2u, of_a.size()) << w->out();
  ASSERT_EQ(1u, of_b.size()) << w->out();
  EXPECT_EQ((json{{"event", "put"}, {"key", "w:a"}, {"value", "1"}, {"context", put_a["context"]}}),
            of_a[0]);
  EXPECT_EQ(
      (json{
          {"event", "delete"}, {"key", "w:a"}, {"value", nullptr}, {"context", del_a["context"]}}),
      of_a[1]);
  EXPECT_EQ(
      (json{{"event", "put"}, {"key", "w:b"}, {"value", "two"}, {"context", put_b["context"]}}),
      of_b[0]);
  // The watch ended with nodusctl: the node holds no watcher for it any more.
  EXPECT_TRUE(eventually([&] { return metric(1, "nodus_kv_watchers") == 0; }, 10s))
      << metric(1, "nodus_kv_watchers");
}

TEST_F(KvWatchTest, PrintsLinesForPeopleWithAPrefixAndEndsCleanlyOnCtrlC) {
  up_and_ready();
  auto w = watch({"--prefix", "p:"}, false);
  ASSERT_TRUE(w->err_has("watching", 20s)) << w->err();
  ASSERT_EQ(0, kv(2, {"put", "q:x", "other prefix"}).code);
  ASSERT_EQ(0, kv(3, {"put", "p:x", "hello world", "--ttl", "0.3"}).code);
  ASSERT_EQ(0, kv(2, {"put", "p:line", "a\nb"}).code);
  // The expiry comes from the sweep (every second by default).
  const auto lines = w->lines(0, 3, 20s);
  ASSERT_EQ(3u, lines.size()) << w->out() << w->err();
  std::set<std::string> got(lines.begin(), lines.end());
  EXPECT_EQ((std::set<std::string>{"put    p:x = hello world", "put    p:line = \"a\\nb\"",
                                   "expire p:x (was hello world)"}),
            got);
  auto at = [&](const std::string& l) { return std::find(lines.begin(), lines.end(), l); };
  EXPECT_LT(at("put    p:x = hello world"), at("expire p:x (was hello world)")) << w->out();
  w->signal(SIGINT);
  EXPECT_EQ(0, w->wait(10s)) << w->err();
  EXPECT_EQ(3u, w->lines(0, 3, 0s).size()) << w->out();
}

TEST_F(KvWatchTest, AWatcherThatFallsBehindIsToldAndExits1) {
  configure("watch_queue", "1");  // a second event not yet acknowledged ends the watch
  up_and_ready();
  auto w = watch({"burst:*"}, true);
  ASSERT_TRUE(w->err_has("watching", 20s)) << w->err();
  std::vector<std::string> args = {"mput"};
  for (int i = 0; i < 200; ++i) {
    args.push_back(numbered("burst:", i));
    args.push_back("v");
  }
  ASSERT_EQ(0, kv(2, args).code);
  EXPECT_EQ(1, w->wait(20s)) << w->out() << w->err();
  EXPECT_NE(std::string::npos, w->err().find("the watch was lost")) << w->err();
  EXPECT_NE(std::string::npos, w->err().find("watch again")) << w->err();
  EXPECT_LT(w->lines(0, 0, 0s).size(), 200u) << "it ended before the burst was through";
}

TEST_F(KvWatchTest, BadPatternsAndArgumentsAreRefusedWithExit2) {
  up_and_ready();
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"watch", ""}, "the pattern is empty"},
      {{"watch", "a", "b"}, "usage: nodusctl kv watch"},
      {{"watch", "a", "--count", "0"}, "--count takes a whole number"},
      {{"watch", "a", "--count", "many"}, "--count takes a whole number"},
      {{"watch", "--prefix"}, "--prefix needs a PATTERN"},
      {{"watch", "a", "--prefix", "--key"}, "exclude each other"},
      {{"watch", "a", "--since", "1"}, "unknown option --since"},
      {{"watch", std::string(65537, 'x')}, "more than 65536"},
  };
  for (const auto& [args, what] : bad) {
    Outcome r = kv(1, args);
    EXPECT_EQ(2, r.code) << what << ": " << r.err;
    expect_error_line(r, what);
    EXPECT_EQ("", r.out);
  }
  EXPECT_EQ(0, kv(1, {"put", "still", "serving"}).code);
}

}  // namespace
