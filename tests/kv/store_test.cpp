// The store on one node: kv::Client and the term requests to `nodus_kv`, versions and
// siblings, contexts, limits and bad input. (Several nodes: cluster_test.cpp.)
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "../node/test_util.hpp"
#include "nodus/kv/client.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/kv/partition.hpp"
#include "nodus/node/gen_server.hpp"
#include "state.hpp"

namespace nodus::kv {
namespace {

using namespace std::chrono_literals;

class StoreTest : public ::testing::Test {
 protected:
  void start_store(Options o = {}) {
    NodeOptions no;
    no.name = "solo";
    no.schedulers = 2;
    node_ = std::make_unique<Node>(no);
    o.partitions = 16;
    o.replicas = 1;
    o.write_quorum = 1;
    o.read_quorum = 1;
    o.context_secret = "secret";
    if (o.vnode_queue == Options{}.vnode_queue) o.vnode_queue = 2;
    ASSERT_OK(start(*node_, std::move(o)));
    client_ = std::make_unique<Client>(*node_);
  }
  void SetUp() override { start_store(); }

  // The value of a key that must hold exactly one.
  std::string value(std::string_view key) {
    auto r = client_->get(key);
    if (!r.ok()) return "<" + r.error().to_string() + ">";
    if (r->values.size() != 1) return "<" + std::to_string(r->values.size()) + " siblings>";
    return r->values[0];
  }
  Term ask(Term request) {
    auto r = call(named("nodus_kv"), std::move(request));
    return r.ok() ? r.value() : tuple("call_failed", r.error().term());
  }

  std::unique_ptr<Node> node_;
  std::unique_ptr<Client> client_;
};

TEST_F(StoreTest, PutThenGetThenDelete) {
  EXPECT_EQ(client_->get("k").error().code(), ErrorCode::kNotFound);
  ASSERT_OK(client_->put("k", "v1"));
  EXPECT_EQ(value("k"), "v1");
  auto got = client_->get("k");
  ASSERT_OK(client_->put("k", "v2", {.context = got->context}));
  EXPECT_EQ(value("k"), "v2");
  got = client_->get("k");
  ASSERT_OK(client_->del("k", {.context = got->context}));
  EXPECT_EQ(client_->get("k").error().code(), ErrorCode::kNotFound);
  ASSERT_OK(client_->put("k", "again"));
  EXPECT_EQ(value("k"), "again");
}

TEST_F(StoreTest, BlindWritesBecomeSiblingsAndAMergedContextResolvesThem) {
  ASSERT_OK(client_->put("k", "a"));
  ASSERT_OK(client_->put("k", "b"));  // no context: concurrent with a
  auto got = client_->get("k");
  ASSERT_OK(got);
  std::vector<std::string> values = got->values;
  std::sort(values.begin(), values.end());
  EXPECT_EQ(values, (std::vector<std::string>{"a", "b"}));
  ASSERT_OK(client_->put("k", "c", {.context = got->context}));
  EXPECT_EQ(value("k"), "c");
  EXPECT_GE(stats(*node_)->siblings_max, 2u);
}

TEST_F(StoreTest, AStaleContextKeepsTheNewerWriteAsASibling) {
  ASSERT_OK(client_->put("k", "a"));
  const std::string old = client_->get("k")->context;
  ASSERT_OK(client_->put("k", "b", {.context = old}));
  ASSERT_OK(client_->put("k", "c", {.context = old}));
  EXPECT_EQ(client_->get("k")->values.size(), 2u);
}

TEST_F(StoreTest, ADeleteWithoutContextRemovesWhatTheCoordinatorSaw) {
  ASSERT_OK(client_->put("k", "a"));
  ASSERT_OK(client_->put("k", "b"));
  ASSERT_OK(client_->del("k"));
  EXPECT_EQ(client_->get("k").error().code(), ErrorCode::kNotFound);
}

TEST_F(StoreTest, ForgedOrMalformedContextsAreRefusedAndNothingIsStored) {
  ASSERT_OK(client_->put("k", "a"));
  std::string ctx = client_->get("k")->context;
  auto other = client_->put("other", "x", {.context = ctx});  // another key's context
  EXPECT_EQ(other.error().code(), ErrorCode::kBadArg);
  EXPECT_EQ(client_->get("other").error().code(), ErrorCode::kNotFound);
  ctx[ctx.size() / 2] ^= 0x20;
  auto forged = client_->put("k", "b", {.context = ctx});
  EXPECT_EQ(forged.error().code(), ErrorCode::kBadArg);
  EXPECT_NE(forged.error().message().find("forged"), std::string::npos);
  EXPECT_EQ(client_->put("k", "b", {.context = "garbage"}).error().message(),
            "malformed causal context");
  EXPECT_EQ(value("k"), "a");
}

TEST_F(StoreTest, OversizedKeysAndValuesAreRefused) {
  auto big_key = client_->put(std::string(64 * 1024 + 1, 'k'), "v");
  EXPECT_EQ(big_key.error().code(), ErrorCode::kValueTooLarge);
  EXPECT_NE(big_key.error().message().find("65537"), std::string::npos);
  auto big_value = client_->put("k", std::string((1 << 20) + 1, 'v'));
  EXPECT_EQ(big_value.error().code(), ErrorCode::kValueTooLarge);
  EXPECT_EQ(client_->get("k").error().code(), ErrorCode::kNotFound);
  ASSERT_OK(client_->put(std::string(64 * 1024, 'k'), std::string(1 << 20, 'v')));
  EXPECT_EQ(client_->put("", "v").error().code(), ErrorCode::kBadArg);
}

TEST_F(StoreTest, QuorumsAboveNAreRefused) {
  RequestOptions r2;
  r2.r = 2;
  auto r = client_->get("k", r2);
  EXPECT_EQ(r.error().code(), ErrorCode::kBadArg);
  EXPECT_EQ(r.error().message(), "r = 2 is above N = 1");
  RequestOptions w4;
  w4.w = 4;
  EXPECT_EQ(client_->put("k", "v", w4).error().code(), ErrorCode::kBadArg);
}

TEST_F(StoreTest, TermRequestsWorkAsDocumented) {
  Term put = ask(tuple("put", bin("t"), bin("v1"), map({{"w", 1}})));
  ASSERT_TRUE(put.match({"ok", _bin})) << put.to_string();
  Term get = ask(tuple("get", bin("t"), Term(List{})));
  ASSERT_TRUE(get.match({"ok", _list, _bin})) << get.to_string();
  EXPECT_EQ(get[1], list(bin("v1")));
  Term put2 = ask(tuple("put", bin("t"), bin("v2"), map({{"context", get[2]}})));
  ASSERT_TRUE(put2.match({"ok", _bin})) << put2.to_string();
  EXPECT_EQ(ask(tuple("get", bin("t")))[1], list(bin("v2")));
  Term del = ask(tuple("delete", bin("t"), map({{"context", put2[1]}})));
  ASSERT_TRUE(del.match({"ok", _bin})) << del.to_string();
  EXPECT_EQ(ask(tuple("get", bin("t"), map({}))), tuple("error", "not_found"));
  Term ring = ask("ring");
  ASSERT_TRUE(ring.match({"ok", _map})) << ring.to_string();
  EXPECT_EQ(*ring[1].find(Term("partitions")), Term(16));
  ASSERT_TRUE(ask("stats").match({"ok", _map}));
}

TEST_F(StoreTest, BadTermRequestsGetClearErrorsAndTheNodeKeepsServing) {
  auto error_text = [&](Term req) {
    Term r = ask(std::move(req));
    return r.match({"error", {_atom, _bin}}) ? r[1][0].to_string() + ": " + r[1][1].as_bin()
                                             : r.to_string();
  };
  EXPECT_EQ(error_text(tuple("get", bin("k"), map({{"bogus", 1}}))),
            "badarg: unknown option bogus");
  EXPECT_EQ(error_text(tuple("get", "k")), "badarg: the key must be a binary");
  EXPECT_EQ(error_text(tuple("put", bin("k"), 42)), "badarg: the value must be a binary");
  EXPECT_EQ(error_text(tuple("get", bin("k"), map({{"r", 5}}))), "badarg: r = 5 is above N = 1");
  EXPECT_EQ(error_text(tuple("get", bin("k"), map({{"r", -1}}))),
            "badarg: option r must be an integer >= 1");
  EXPECT_EQ(error_text(tuple("put", bin("k"), bin("v"), map({{"context", bin("x")}}))),
            "badarg: malformed causal context");
  EXPECT_EQ(error_text(tuple("frobnicate")),
            "badarg: expected {get, Key, Opts}, {put, Key, Value, Opts} or {delete, Key, Opts}");
  EXPECT_EQ(error_text(tuple("put", bin("k"), bin(std::string((1 << 20) + 1, 'v')))),
            "value_too_large: value is 1048577 bytes, the limit (kv.max_value_bytes) is 1048576");
  ASSERT_OK(client_->put("k", "still"));
  EXPECT_EQ(value("k"), "still");
}

TEST_F(StoreTest, OptionsAreChecked) {
  Node n;
  Options o;
  o.partitions = 48;
  EXPECT_EQ(start(n, o).code(), ErrorCode::kBadConfig);
  o.partitions = 8;
  o.read_quorum = 4;
  EXPECT_EQ(start(n, o).code(), ErrorCode::kBadConfig);
  EXPECT_EQ(start(*node_, Options{}).code(), ErrorCode::kAlreadyStarted);
}

TEST_F(StoreTest, ABusyVnodeAnswersOverloadedBeyondItsQueue) {
  // A merge function that blocks holds the vnode of "slow:" keys in one request while more
  // arrive for it: vnode_queue (2 here) wait, the rest are refused at once.
  std::atomic<bool> release{false};
  std::atomic<bool> entered{false};
  ASSERT_OK(
      register_merge(*node_, "slow:", [&](std::string_view, const std::vector<std::string>& v) {
        entered = true;
        for (int i = 0; i < 500 && !release; ++i) std::this_thread::sleep_for(10ms);
        return v.front();
      }));
  ASSERT_OK(client_->put("slow:k", "a"));
  Inbox me(*node_);
  std::vector<RequestId> ids;
  ids.push_back(send_request(named("nodus_kv"), tuple("put", bin("slow:k"), bin("b"))));
  ASSERT_TRUE(testing::eventually([&] { return entered.load(); }));
  for (int i = 0; i < 6; ++i) {
    ids.push_back(send_request(named("nodus_kv"), tuple("get", bin("slow:k"))));
  }
  std::vector<Term> replies;
  std::vector<RequestId> waiting{ids[0]};
  for (std::size_t i = 1; i < ids.size(); ++i) {
    auto r = wait_response(ids[i], 50ms);
    if (r.ok()) {
      replies.push_back(*r);
    } else {
      waiting.push_back(ids[i]);
    }
  }
  release = true;
  int overloaded = 0;
  for (const Term& t : replies) {
    if (t == tuple("error", "overloaded")) ++overloaded;
  }
  EXPECT_EQ(overloaded, 4) << "2 of 6 queue, 4 are refused";
  EXPECT_EQ(stats(*node_)->overloaded, 4u);
  for (const RequestId& id : waiting) EXPECT_OK(wait_response(id, 5s));
  EXPECT_OK(client_->get("slow:k"));
}

TEST_F(StoreTest, AReplicaSkipsWorkWhoseCallerGaveUp) {
  // A replica write whose deadline passed (its coordinator answered timeout already) is
  // dropped unread; one within its deadline is stored.
  ASSERT_OK(register_protocol());
  Object o = Object().update({}, Sibling{"late", 1, false}, 42);
  const std::uint32_t p = partition_of("late", 16);
  const std::uint64_t past = HybridClock::system_ms() - 1000;
  send(named(vnode_name(p)),
       ReplicaPut{p, 1, 0, "solo", past, "", false, "late", encode_object(o)});
  send(named(vnode_name(p)),
       ReplicaPut{p, 2, 0, "solo", past + 60000, "", false, "ontime", encode_object(o)});
  ASSERT_TRUE(testing::eventually([&] { return stats(*node_)->replica_writes == 1; }));
  EXPECT_EQ(stats(*node_)->expired_skipped, 1u);
  EXPECT_EQ(client_->get("late").error().code(), ErrorCode::kNotFound);
}

class SiblingLimitTest : public StoreTest {
 protected:
  void SetUp() override {
    Options o;
    o.max_siblings = 3;
    start_store(o);
  }
};

TEST_F(SiblingLimitTest, TooManySiblingsRefuseBlindWritesButNotResolvingOnes) {
  for (int i = 0; i < 3; ++i) ASSERT_OK(client_->put("k", std::to_string(i)));
  auto refused = client_->put("k", "one too many");
  EXPECT_EQ(refused.error().code(), kv::kTooManySiblings);
  auto got = client_->get("k");
  ASSERT_EQ(got->values.size(), 3u);
  ASSERT_OK(client_->put("k", "resolved", {.context = got->context}));
  EXPECT_EQ(value("k"), "resolved");
}

class LwwTest : public StoreTest {
 protected:
  void SetUp() override {
    Options o;
    o.conflicts = Conflicts::kLww;
    start_store(o);
  }
};

TEST_F(LwwTest, TheLastWriteWinsAndConcurrentOnesAreLost) {
  ASSERT_OK(client_->put("k", "first"));
  ASSERT_OK(client_->put("k", "second"));  // blind: would be a sibling with `siblings`
  EXPECT_EQ(value("k"), "second");
}

TEST_F(StoreTest, AMergeFunctionResolvesSiblingsOfItsPrefix) {
  ASSERT_OK(register_merge(*node_, "set:", [](std::string_view, const std::vector<std::string>& v) {
    std::vector<std::string> s = v;
    std::sort(s.begin(), s.end());
    std::string out;
    for (const auto& x : s) out += x;
    return out;
  }));
  ASSERT_OK(client_->put("set:x", "b"));
  ASSERT_OK(client_->put("set:x", "a"));
  EXPECT_EQ(value("set:x"), "ab");
  ASSERT_OK(client_->put("other", "b"));
  ASSERT_OK(client_->put("other", "a"));
  EXPECT_EQ(client_->get("other")->values.size(), 2u);
}

}  // namespace
}  // namespace nodus::kv
