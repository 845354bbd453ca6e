// The store's queries on real nodes in one test process, linked over loopback ZeroMQ:
// {keys, Pattern, Opts} (glob, paging by cursor, every partition asked once, a stable order,
// deleted keys left out) and {explain, Key} (the replicas of a key, fallbacks and their hints).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "loopback_kv.hpp"
#include "query.hpp"

namespace nodus::kv {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::numbered;

TEST(GlobTest, MatchesAsRedisKeysDoes) {
  EXPECT_TRUE(glob_match("*", ""));
  EXPECT_TRUE(glob_match("*", "anything"));
  EXPECT_TRUE(glob_match("user:*", "user:1"));
  EXPECT_FALSE(glob_match("user:*", "users:1"));
  EXPECT_TRUE(glob_match("h?llo", "hello"));
  EXPECT_FALSE(glob_match("h?llo", "hllo"));
  EXPECT_TRUE(glob_match("h[ae]llo", "hallo"));
  EXPECT_FALSE(glob_match("h[ae]llo", "hillo"));
  EXPECT_TRUE(glob_match("h[^e]llo", "hallo"));
  EXPECT_FALSE(glob_match("h[^e]llo", "hello"));
  EXPECT_TRUE(glob_match("h[a-c]llo", "hbllo"));
  EXPECT_FALSE(glob_match("h[a-c]llo", "hdllo"));
  EXPECT_TRUE(glob_match("a\\*b", "a*b"));
  EXPECT_FALSE(glob_match("a\\*b", "axb"));
  EXPECT_TRUE(glob_match("*a*b*c*", "xxaxxbxxcxx"));
  EXPECT_FALSE(glob_match("*a*b*c*", "xxaxxcxxbxx"));
  EXPECT_TRUE(glob_match("[abc", "[abc"));  // unclosed: itself
  EXPECT_TRUE(glob_match("*.jpg", "x.y.jpg"));
  // Backtracking stays linear enough for a long key.
  EXPECT_FALSE(glob_match("*a*a*a*a*a*b", std::string(5000, 'a')));
}

TEST(CursorTest, RoundTripsAndRefusesGarbage) {
  KeysCursor c{64, 17, std::string("k\0ey", 4)};
  auto back = decode_cursor(encode_cursor(c));
  ASSERT_OK(back);
  EXPECT_EQ(back->partitions, 64u);
  EXPECT_EQ(back->partition, 17u);
  EXPECT_EQ(back->after, c.after);
  EXPECT_EQ(decode_cursor("").value().partition, 0u);  // the first page
  for (std::string bad : {std::string("x"), std::string("\x02\0\0\0\x40\0\0\0\x01", 9),
                          std::string("\x01\0\0\0\x40\0\0\0\x40", 9),  // partition 64 of 64
                          std::string("\x01\0\0\0\x03\0\0\0\x01", 9)}) {
    auto r = decode_cursor(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), ErrorCode::kBadArg);
  }
}

class QueryTest : public LoopbackKvTest {
 protected:
  // Every page of `pattern` through node i, `limit` keys at a time.
  std::vector<std::string> all_keys(int i, const std::string& pattern, std::uint32_t limit,
                                    int* pages = nullptr) {
    std::vector<std::string> out;
    KeysOptions o;
    o.limit = limit;
    for (int n = 0; n < 10000; ++n) {
      auto page = client(i).keys(pattern, o);
      EXPECT_OK(page);
      if (!page) break;
      EXPECT_LE(page->keys.size(), limit);
      out.insert(out.end(), page->keys.begin(), page->keys.end());
      if (pages) *pages = n + 1;
      if (page->cursor.empty()) break;
      o.cursor = page->cursor;
    }
    return out;
  }
  // The preflist entry of `node` in an explain reply, or nullptr.
  static const Term* entry(const Term& explain, const std::string& name) {
    for (const Term& e : explain.find(Term("preflist"))->as_list()) {
      if (*e.find(Term("node")) == bin(name)) return &e;
    }
    return nullptr;
  }
};

TEST_F(QueryTest, KeysListsEveryLiveKeyOnceInAStableOrderPageByPage) {
  start_cluster(3, 3);
  std::set<std::string> live;
  for (int i = 0; i < 120; ++i) {
    const std::string k = numbered(i % 3 == 0 ? "user:" : "item:", i);
    ASSERT_OK(client(1 + i % 3).put(k, "v"));
    live.insert(k);
  }
  for (int i = 0; i < 120; i += 9) {  // deleted keys are not keys
    const std::string k = numbered(i % 3 == 0 ? "user:" : "item:", i);
    ASSERT_OK(client(2).del(k));
    live.erase(k);
  }
  int pages = 0;
  const std::vector<std::string> got = all_keys(2, "*", 7, &pages);
  EXPECT_EQ(std::set<std::string>(got.begin(), got.end()), live);
  EXPECT_EQ(got.size(), live.size()) << "a key listed twice";
  EXPECT_GE(pages, static_cast<int>(live.size() / 7));
  // The order: by partition, then by key bytes; the same from any node and any page size.
  std::vector<std::string> sorted = got;
  std::stable_sort(sorted.begin(), sorted.end(), [](const std::string& a, const std::string& b) {
    const auto pa = partition_of(a, kPartitions), pb = partition_of(b, kPartitions);
    return pa != pb ? pa < pb : a < b;
  });
  EXPECT_EQ(got, sorted);
  EXPECT_EQ(all_keys(3, "*", 1000), got);
  EXPECT_EQ(all_keys(1, "*", 1), got);
  // A glob.
  for (const std::string& k : all_keys(1, "user:*", 5)) EXPECT_EQ(k.rfind("user:", 0), 0u) << k;
  std::size_t users = 0;
  for (const std::string& k : live) users += k.rfind("user:", 0) == 0;
  EXPECT_EQ(all_keys(1, "user:*", 5).size(), users);
  EXPECT_TRUE(all_keys(1, "nobody*", 10).empty());
}

TEST_F(QueryTest, KeysRefusesBadOptionsAndCursorsClearly) {
  start_cluster(1, 1);
  auto ask = [&](Term req) { return call(named("nodus_kv", "n1"), std::move(req), 5s).value(); };
  auto error_of = [](const Term& t) {
    auto m = t.match({"error", {_atom, _bin}});
    return m ? std::string(m[0].as_atom().name()) + ": " + m[1].as_bin() : t.to_string();
  };
  EXPECT_EQ(error_of(ask(tuple("keys", bin("*"), map({{"limit", 0}})))),
            "badarg: option limit must be an integer from 1 to 10000");
  EXPECT_EQ(error_of(ask(tuple("keys", bin("*"), map({{"frob", 1}})))),
            "badarg: unknown option frob");
  EXPECT_EQ(error_of(ask(tuple("keys", bin("*"), map({{"cursor", bin("garbage")}})))),
            "badarg: malformed cursor: pass back the one a keys reply gave");
  KeysCursor other{32, 1, ""};
  EXPECT_EQ(error_of(ask(tuple("keys", bin("*"), map({{"cursor", Term(encode_cursor(other))}})))),
            "badarg: the cursor is of a ring of 32 partitions, this one has 16");
  EXPECT_EQ(error_of(ask(tuple("keys", "star"))),
            "badarg: the pattern must be a binary (\"*\" for all)");
  EXPECT_EQ(error_of(ask(tuple("explain", bin(std::string(kMaxKeyBytes + 1, 'k'))))),
            "value_too_large: key is 65537 bytes, the limit is 65536");
  // Still serving.
  ASSERT_OK(client(1).put("k", "v"));
  EXPECT_EQ(client(1).keys("*")->keys, std::vector<std::string>{"k"});
}

TEST_F(QueryTest, ExplainShowsEveryReplicaAndTheHintsAFallbackKeeps) {
  start_cluster(3, 2);
  // A key whose primaries are n1 and n2, so that n3 is its fallback when n1 is away.
  std::string key;
  for (int i = 0; i < 1000 && key.empty(); ++i) {
    const std::string k = numbered("e", i);
    if (primaries(k) == std::vector<int>{1, 2}) key = k;
  }
  ASSERT_FALSE(key.empty());
  ASSERT_OK(client(2).put(key, "one"));
  Term e = client(2).explain(key).value();
  EXPECT_EQ(*e.find(Term("partition")),
            Term(static_cast<std::int64_t>(partition_of(key, kPartitions))));
  ASSERT_EQ(e.find(Term("preflist"))->size(), 2u) << e.to_string();
  for (const char* n : {"n1", "n2"}) {
    const Term* r = entry(e, n);
    ASSERT_TRUE(r) << n;
    EXPECT_EQ(*r->find(Term("role")), Term("primary"));
    EXPECT_EQ(*r->find(Term("state")), Term("up"));
    EXPECT_EQ(*r->find(Term("siblings")), Term(1));
  }
  EXPECT_EQ(*entry(e, "n1")->find(Term("digest")), *entry(e, "n2")->find(Term("digest")));
  EXPECT_TRUE(e.find(Term("hints"))->as_list().empty());

  cut(1, 2);
  cut(1, 3);
  ASSERT_TRUE(eventually([&] { return sees(2, 1, false) && sees(3, 1, false); }));
  ASSERT_OK(client(2).put(key, "two", {.context = client(2).get(key)->context}));
  e = client(2).explain(key).value();
  EXPECT_EQ(*entry(e, "n1")->find(Term("state")), Term("down"));
  EXPECT_TRUE(entry(e, "n1")->find(Term("version"))->is_atom("undefined"));
  const Term* fb = entry(e, "n3");
  ASSERT_TRUE(fb) << e.to_string();
  EXPECT_EQ(*fb->find(Term("role")), Term("fallback"));
  EXPECT_EQ(*fb->find(Term("for")), bin("n1"));
  EXPECT_EQ(*fb->find(Term("digest")), *entry(e, "n2")->find(Term("digest")));
  EXPECT_EQ(e.find(Term("hints"))->as_list(), List{map({{"node", bin("n3")}, {"for", bin("n1")}})});

  cut(1, 2, false);
  cut(1, 3, false);
  // Handed back: n1 holds what n2 holds, and nobody keeps a hint or a fallback copy.
  ASSERT_TRUE(eventually(
      [&] {
        auto x = client(3).explain(key);
        if (!x) return false;
        e = *x;
        const Term* n1 = entry(e, "n1");
        return n1 && *n1->find(Term("state")) == Term("up") &&
               *n1->find(Term("digest")) == *entry(e, "n2")->find(Term("digest")) &&
               e.find(Term("hints"))->as_list().empty() && !entry(e, "n3");
      },
      15s))
      << e.to_string();
}

// A hidden node (nodusctl, a client in another language) is linked to the one member it was
// pointed at: requests that member forwards to a primary elsewhere must still be answered.
TEST_F(QueryTest, AHiddenClientLinkedToOneMemberIsAnsweredForEveryKey) {
  start_cluster(3, 1);
  NodeOptions o = testing::loopback_options("hidden", "kv-cookie", 1000ms, 1);
  o.hidden = true;
  o.seeds = {node(1).endpoint()};
  auto hidden = Node::start(o);
  ASSERT_OK(hidden);
  ASSERT_TRUE(
      eventually([&] { return (*hidden)->peers().size() == 1 && (*hidden)->peers()[0].up; }));
  Client via1(**hidden, "n1");
  int elsewhere = 0;
  Inbox me(**hidden);  // this thread's calls leave from the hidden node
  for (int i = 0; i < 30; ++i) {
    const std::string k = numbered("h", i);
    elsewhere += primaries(k) != std::vector<int>{1};
    auto ctx = via1.put(k, "v");
    ASSERT_OK(ctx) << k;
    auto got = via1.get(k);
    ASSERT_OK(got) << k;
    EXPECT_EQ(got->values, std::vector<std::string>{"v"});
    // The term requests of other languages take the same way.
    auto t = call(named("nodus_kv", "n1"), tuple("get", bin(k)), 5s);
    ASSERT_OK(t);
    EXPECT_TRUE(t->match({"ok", _list, _bin})) << t->to_string();
  }
  EXPECT_GT(elsewhere, 10) << "too few keys had their primary on another node to show anything";
  EXPECT_GT(stats(node(1))->forwarded, 0u);
  me.close();
  (*hidden)->shutdown(200ms);
}

}  // namespace
}  // namespace nodus::kv
