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
#include "test_engines.hpp"

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
  // True when the current process's next message is a T with code `code`.
  template <class T>
  static ::testing::AssertionResult next_message_is(ErrorCode code) {
    const Message m = testing::next_message();
    const T* t = m.get<T>();
    if (!t) return ::testing::AssertionFailure() << "got " << m.to_string();
    if (t->code != static_cast<std::uint16_t>(code)) {
      return ::testing::AssertionFailure() << "code " << t->code;
    }
    return ::testing::AssertionSuccess();
  }

  // Registers a merge function for "slow:" keys that holds the vnode running it until
  // `released` reaches the number of the call (the first call waits for released >= 1 ...),
  // at most 5 s.
  struct Gate {
    std::atomic<int> entered{0};
    std::atomic<int> released{0};
  };
  void block_with_merge(Gate& g) {
    ASSERT_OK(
        register_merge(*node_, "slow:", [&g](std::string_view, const std::vector<std::string>& v) {
          const int me = ++g.entered;
          for (int i = 0; i < 5000 && g.released < me; ++i) {
            std::this_thread::sleep_for(1ms);
          }
          return v.front();
        }));
  }
  // Requests waiting for partition p's vnode, as nodus_kv counts them.
  std::uint32_t waiting(std::uint32_t p) { return stats(*node_)->vnode_queue[p]; }

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

TEST_F(StoreTest, ABlindOverwriteSupersedesWhatTheCoordinatorHolds) {
  RequestOptions overwrite;
  overwrite.overwrite = true;
  ASSERT_OK(client_->put("k", "a"));
  ASSERT_OK(client_->put("k", "b", overwrite));  // no context, no read: still no sibling
  EXPECT_EQ(value("k"), "b");
  ASSERT_OK(client_->put("k", "c"));  // a plain blind put is a sibling, as before
  EXPECT_EQ(client_->get("k")->values.size(), 2u);
  ASSERT_OK(client_->put("k", "d", overwrite));  // and an overwrite resolves siblings too
  EXPECT_EQ(value("k"), "d");
  ASSERT_OK(client_->put("fresh", "x", overwrite));  // onto a key never written
  EXPECT_EQ(value("fresh"), "x");
  ASSERT_OK(client_->del("k"));
  ASSERT_OK(client_->put("k", "e", overwrite));  // onto a tombstone
  EXPECT_EQ(value("k"), "e");
  // The context it returns is the new object's, as a put's.
  RequestOptions with_ttl = overwrite;
  with_ttl.ttl = 60s;
  auto ctx = client_->put("k", "f", with_ttl);
  ASSERT_OK(ctx);
  ASSERT_OK(client_->put("k", "g", {.context = *ctx}));
  EXPECT_EQ(value("k"), "g");
}

TEST_F(StoreTest, OverwriteIsAnOptionOfPutsWithoutAContext) {
  ASSERT_OK(client_->put("k", "a"));
  RequestOptions overwrite;
  overwrite.overwrite = true;
  RequestOptions both = overwrite;
  both.context = client_->get("k")->context;
  EXPECT_EQ(client_->put("k", "b", both).error().code(), ErrorCode::kBadArg);
  EXPECT_EQ(client_->get("k", overwrite).error().code(), ErrorCode::kBadArg);
  EXPECT_EQ(value("k"), "a");
  // As a term option, on put and on multi_put.
  Term put = ask(tuple("put", bin("k"), bin("t"), map({{"overwrite", true}})));
  ASSERT_TRUE(put.match({"ok", _bin})) << put.to_string();
  EXPECT_EQ(value("k"), "t");
  Term bad = ask(tuple("put", bin("k"), bin("t"), map({{"overwrite", 1}})));
  EXPECT_EQ(bad, tuple("error", tuple("badarg", bin("option overwrite must be true or false"))));
  bad = ask(tuple("get", bin("k"), map({{"overwrite", true}})));
  EXPECT_EQ(bad,
            tuple("error", tuple("badarg", bin("overwrite is an option of put and delete only"))));
  ASSERT_OK(client_->put("m1", "a"));
  ASSERT_OK(client_->put("m2", "a"));
  Term mp = ask(tuple("multi_put", list(tuple(bin("m1"), bin("b")), tuple(bin("m2"), bin("b"))),
                      map({{"overwrite", true}})));
  ASSERT_TRUE(mp.match({"ok", _list})) << mp.to_string();
  ASSERT_EQ(mp[1].size(), 2u);
  for (const Term& r : mp[1].as_list()) EXPECT_TRUE(r.match({"ok", _bin})) << r.to_string();
  EXPECT_EQ(value("m1"), "b");
  EXPECT_EQ(value("m2"), "b");
  for (auto& r : client_->multi_put({{"m1", "c"}, {"m2", "c"}}, overwrite)) {
    ASSERT_OK(r);
  }
  EXPECT_EQ(value("m1"), "c");
  EXPECT_EQ(value("m2"), "c");
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
  EXPECT_EQ(error_text(tuple("get", bin("k"), map({{"pr", 2}}))), "badarg: pr = 2 is above N = 1");
  EXPECT_EQ(error_text(tuple("get", bin("k"), map({{"r", -1}}))),
            "badarg: option r must be an integer >= 1");
  EXPECT_EQ(error_text(tuple("put", bin("k"), bin("v"), map({{"context", bin("x")}}))),
            "badarg: malformed causal context");
  EXPECT_EQ(error_text(tuple("frobnicate")),
            "badarg: expected {get, Key, Opts}, {put, Key, Value, Opts}, {delete, Key, Opts}, "
            "{keys, Pattern, Opts}, {explain, Key, Opts}, ring or stats");
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
  o.read_quorum = 2;
  const Status no_secret = start(n, o);  // the default: no context_secret
  EXPECT_EQ(no_secret.code(), ErrorCode::kBadConfig);
  EXPECT_NE(no_secret.message().find("kv.context_secret"), std::string::npos)
      << no_secret.to_string();
  o.context_secret = "s";
  o.request_timeout = kMaxRequestTimeout + 1ms;
  const Status too_long = start(n, o);
  EXPECT_EQ(too_long.code(), ErrorCode::kBadConfig);
  EXPECT_NE(too_long.message().find("kv.request_timeout_ms"), std::string::npos)
      << too_long.to_string();
  Options fine;
  fine.context_secret = "s";
  EXPECT_EQ(start(*node_, fine).code(), ErrorCode::kAlreadyStarted);
}

// Contexts are signed with the cluster's secret, so a client cannot forge one. Should the secret
// leak, a forged context still cannot brick a key (a counter at the top of the range used to
// wrap to 0 and leave an object nobody could decode) nor blow one up (100,000 actors made a
// one-value key 670 KB): counters above 2^62 and contexts of more than 1,024 actors are refused,
// and a context that claims more of this vnode's writes than its copy holds only costs the
// write a new epoch.
TEST_F(StoreTest, AForgedContextCannotBrickOrBloatAKey) {
  ASSERT_OK(client_->put("k", "v"));
  auto got = client_->get("k");
  ASSERT_OK(got);
  const ContextSigner leaked("secret");  // what start_store configured
  VersionVector vv = *leaked.decode("k", got->context);
  ASSERT_EQ(vv.size(), 1u);
  vv[0].second = ~std::uint64_t{0};
  auto wrapped = client_->put("k", "x", {.context = leaked.encode("k", vv)});
  EXPECT_EQ(wrapped.error().code(), ErrorCode::kBadArg);
  EXPECT_EQ(wrapped.error().message(), "causal context counter above 2^62");
  vv[0].second = kMaxCounter;  // the top of the range is accepted, and the key lives on
  ASSERT_OK(client_->put("k", "x", {.context = leaked.encode("k", vv)}));
  EXPECT_EQ(value("k"), "x");
  ASSERT_OK(client_->put("k", "y", {.context = client_->get("k")->context}));
  EXPECT_EQ(value("k"), "y");
  ASSERT_OK(client_->del("k"));
  EXPECT_EQ(client_->get("k").error().code(), ErrorCode::kNotFound);

  VersionVector many;
  for (std::uint64_t i = 1; i <= 100000; ++i) many.emplace_back(Actor{i, 1}, 1);
  auto bloat = client_->put("g", "v", {.context = leaked.encode("g", many)});
  EXPECT_EQ(bloat.error().code(), ErrorCode::kBadArg);
  EXPECT_EQ(bloat.error().message(), "causal context names 100000 actors, the limit is 1024");
  EXPECT_EQ(client_->get("g").error().code(), ErrorCode::kNotFound);
  many.resize(kMaxContextActors);
  ASSERT_OK(client_->put("g", "v", {.context = leaked.encode("g", many)}));
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

// A vnode's mailbox takes everything sent to it. Replica traffic that floods it while it is
// busy pushes no request out (a bounded mailbox used to refuse them silently: each stayed
// counted as waiting, and after kv.vnode_queue of them the partition answered overloaded for
// good), and every request nodus_kv accepted is answered.
TEST_F(StoreTest, AFloodedVnodeAnswersEveryRequestItAcceptedAndServesAfter) {
  ASSERT_OK(register_protocol());
  Gate g;
  block_with_merge(g);
  const std::string key = "slow:{t}k";
  const std::uint32_t p = partition_of(key, 16);
  ASSERT_OK(client_->put(key, "a"));
  Inbox me(*node_);
  const RequestId blocked = send_request(named("nodus_kv"), tuple("put", bin(key), bin("b")));
  ASSERT_TRUE(testing::eventually([&] { return g.entered == 1; }));
  for (std::uint64_t i = 0; i < 50; ++i) {
    send(named(vnode_name(p)), ReplicaGet{p, 1000 + i, 0, 0, key});
  }
  std::vector<RequestId> accepted;
  for (int i = 0; i < 2; ++i) {
    accepted.push_back(send_request(named("nodus_kv"), tuple("get", bin(key))));
  }
  ASSERT_TRUE(testing::eventually([&] { return waiting(p) == 2; }));
  // vnode_queue (2) wait already: the next is refused at once.
  auto third = wait_response(send_request(named("nodus_kv"), tuple("get", bin(key))), 5s);
  ASSERT_OK(third);
  EXPECT_EQ(*third, tuple("error", "overloaded"));
  g.released = 1;
  EXPECT_OK(wait_response(blocked, 5s));
  for (const RequestId& id : accepted) {
    auto r = wait_response(id, 5s);
    ASSERT_OK(r);
    EXPECT_EQ((*r)[0], Term("ok")) << r->to_string();
  }
  EXPECT_TRUE(testing::eventually([&] { return waiting(p) == 0; }));
  EXPECT_OK(client_->get(key));
  auto info = node_->process_info(node_->whereis(vnode_name(p)));
  ASSERT_OK(info);
  EXPECT_EQ(info->dropped, 0u);
}

// A vnode that crashes with requests waiting loses them with its mailbox; its successor starts
// the count of waiting requests again, so the partition does not answer overloaded for
// requests that are gone.
TEST_F(StoreTest, AVnodeRestartedWithRequestsWaitingServesAgain) {
  Gate g;
  block_with_merge(g);
  const std::string key = "slow:{t}k";
  const std::uint32_t p = partition_of(key, 16);
  ASSERT_OK(client_->put(key, "a"));
  Inbox me(*node_);
  const RequestId blocked = send_request(named("nodus_kv"), tuple("put", bin(key), bin("b")));
  ASSERT_TRUE(testing::eventually([&] { return g.entered == 1; }));
  for (int i = 0; i < 2; ++i) (void)send_request(named("nodus_kv"), tuple("get", bin(key)));
  ASSERT_TRUE(testing::eventually([&] { return waiting(p) == 2; }));
  const Pid old = node_->whereis(vnode_name(p));
  exit(old, reasons::kill());  // taken when the merge returns
  g.released = 1;
  EXPECT_OK(wait_response(blocked, 5s));
  ASSERT_TRUE(testing::eventually([&] {
    const Pid now = node_->whereis(vnode_name(p));
    return now.valid() && now != old;
  }));
  EXPECT_TRUE(testing::eventually([&] { return waiting(p) == 0; })) << waiting(p);
  EXPECT_EQ(value(key), "b");
}

// A request's deadline is fixed when nodus_kv (or, sent straight to it, the vnode) takes it,
// and the caller's own deadline travels with it: a put that waited in its vnode's queue until
// after its caller was told timeout is dropped unread, not stored late.
TEST_F(StoreTest, APutWhoseCallerGaveUpWhileItWaitedIsNotStored) {
  Gate g;
  block_with_merge(g);
  ASSERT_OK(client_->put("slow:{t}k", "a"));
  Inbox me(*node_);
  const RequestId blocked =
      send_request(named("nodus_kv"), tuple("put", bin("slow:{t}k"), bin("b")));
  ASSERT_TRUE(testing::eventually([&] { return g.entered == 1; }));
  RequestOptions short_timeout;
  short_timeout.timeout = 100ms;
  auto late = client_->put("{t}late", "late", short_timeout);  // waits behind the blocked put
  EXPECT_EQ(late.error().code(), ErrorCode::kTimeout) << late.error().to_string();
  g.released = 1;
  EXPECT_OK(wait_response(blocked, 5s));
  // The Client sent it straight to the vnode as a call: past the call's own deadline the
  // runtime drops it before the vnode sees it, else the vnode does (counted: which of the two
  // is a race, so the count is not asserted here; ARequestSentStraightToAVnode... counts it).
  // The get below comes after it from the same caller, so it is read once the late put was
  // dropped.
  EXPECT_EQ(client_->get("{t}late").error().code(), ErrorCode::kNotFound);
}

// A request sent straight to a vnode (as kv::Client sends one when it routes by the ring) is
// checked as nodus_kv checks it, dropped unread when its caller's deadline passed, and handed
// to nodus_kv when it is another partition's key: answered, and stored where a get finds it.
TEST_F(StoreTest, ARequestSentStraightToAVnodeIsCheckedAndRoutedOn) {
  Inbox me(*node_);
  KvState* st = state_of(*node_);
  auto direct = [&](std::uint32_t p, KvRequest req, std::uint64_t deadline_ms) {
    return call_as<KvReply>(named(vnode_name(p)), KvDirect{std::move(req), deadline_ms}, 5s);
  };
  KvRequest req;
  req.op = static_cast<std::uint8_t>(Op::kPut);
  req.key = "direct:k";
  req.value = Bin("v1");
  const std::uint32_t p = partition_of(req.key, 16);
  auto r = direct((p + 1) % 16, req, st->wall_ms() + 5000);  // another partition's vnode
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(r->code, 0) << r->message;
  EXPECT_EQ(value("direct:k"), "v1");

  KvRequest big = req;
  big.key = "direct:big";
  big.value = Bin(std::string(2 << 20, 'x'));
  auto b = direct(partition_of(big.key, 16), big, st->wall_ms() + 5000);
  ASSERT_TRUE(b.ok()) << b.error().to_string();
  EXPECT_EQ(b->code, static_cast<std::uint16_t>(ErrorCode::kValueTooLarge)) << b->message;
  EXPECT_NE(b->message.find("kv.max_value_bytes"), std::string::npos) << b->message;
  EXPECT_EQ(client_->get("direct:big").error().code(), ErrorCode::kNotFound);

  const std::uint64_t skipped = stats(*node_)->expired_skipped;
  KvRequest late = req;
  late.key = "direct:late";
  auto l = direct(partition_of(late.key, 16), late, st->wall_ms() - 1);  // its caller gave up
  ASSERT_TRUE(l.ok()) << l.error().to_string();
  EXPECT_EQ(l->code, static_cast<std::uint16_t>(ErrorCode::kTimeout));
  EXPECT_EQ(stats(*node_)->expired_skipped, skipped + 1);
  EXPECT_EQ(client_->get("direct:late").error().code(), ErrorCode::kNotFound);
}

// The deadline travels with a request handed to another member: one that arrives past it is
// dropped, not coordinated.
TEST_F(StoreTest, AForwardedRequestPastItsDeadlineIsDropped) {
  ASSERT_OK(register_protocol());
  const std::uint64_t skipped = stats(*node_)->expired_skipped;
  {
    Inbox me(*node_);
    KvRequest put{static_cast<std::uint8_t>(Op::kPut), "{t}fwd", "v", {}, 0, 0, 0, 0, 0, 0};
    send(named("nodus_kv"), KvForward{put, WireId::of(self()), WireId::of(node_->make_ref()), false,
                                      HybridClock::system_ms() - 1000});
    ASSERT_TRUE(testing::eventually([&] { return stats(*node_)->expired_skipped == skipped + 1; }));
  }
  EXPECT_EQ(client_->get("{t}fwd").error().code(), ErrorCode::kNotFound);
}

TEST_F(StoreTest, AReplicaSkipsWorkWhoseCallerGaveUp) {
  // A replica write whose deadline passed (its coordinator answered timeout already) is
  // dropped unread; one within its deadline is stored.
  ASSERT_OK(register_protocol());
  Inbox me(*node_);  // replica traffic is taken from vnodes of ring members: a sender on "solo"
  Object o = Object().update({}, Sibling{"late", 1, false}, Actor{42, 1});
  const std::uint32_t p = partition_of("late", 16);
  const std::uint64_t past = HybridClock::system_ms() - 1000;
  send(named(vnode_name(p)), ReplicaPut{p, 1, 0, past, "", false, "late", encode_object(o)});
  send(named(vnode_name(p)),
       ReplicaPut{p, 2, 0, past + 60000, "", false, "ontime", encode_object(o)});
  ASSERT_TRUE(testing::eventually([&] { return stats(*node_)->replica_writes == 1; }));
  EXPECT_EQ(stats(*node_)->expired_skipped, 1u);
  EXPECT_EQ(client_->get("late").error().code(), ErrorCode::kNotFound);
}

// A replica refuses a merge that would make an object larger than kv.max_object_bytes (from a
// coordinator with other limits, or siblings written through several coordinators).
TEST_F(StoreTest, AReplicaRefusesAnObjectOverTheLimit) {
  ASSERT_OK(register_protocol());
  Inbox me(*node_);
  Object o = Object().update({}, Sibling{std::string(100, 'v'), 1, false}, Actor{42, 1});
  for (int i = 0; i < 9; ++i) {
    const auto a = Actor{43 + static_cast<std::uint64_t>(i), 1};
    o = Object::sync(o, Object().update({}, Sibling{std::string(1 << 20, 'w'), 1, false}, a));
  }
  const std::uint32_t p = partition_of("{t}huge", 16);
  send(named(vnode_name(p)), ReplicaPut{p, 1, 0, 0, "", true, "{t}huge", encode_object(o)});
  const Message ack = testing::next_message();
  ASSERT_TRUE(ack.is<ReplicaPutAck>()) << ack.to_string();
  EXPECT_EQ(ack.get<ReplicaPutAck>()->code, static_cast<std::uint16_t>(ErrorCode::kValueTooLarge));
  send(named(vnode_name(p)),
       ReplicaPut{p, 2, 0, 0, "", false, "{t}small",
                  encode_object(Object().update({}, Sibling{"s", 1, false}, Actor{42, 1}))});
  ASSERT_TRUE(testing::eventually([&] { return client_->get("{t}small").ok(); }));
  EXPECT_EQ(client_->get("{t}huge").error().code(), ErrorCode::kNotFound);
}

// Peer messages are input from the network: none may crash a vnode or nodus_kv (an atom made
// from a 300-byte name used to throw in their handlers), make the node intern a name it does
// not know, or be taken from a node outside the ring or for another partition. Each is refused,
// counted, and the store keeps serving with the same processes.
TEST_F(StoreTest, MalformedPeerMessagesAreRefusedAndCountedAndNothingCrashes) {
  ASSERT_OK(register_protocol());
  ASSERT_OK(client_->put("{t}k", "v"));
  const std::uint32_t p = partition_of("{t}k", 16);
  const Pid vnode = node_->whereis(vnode_name(p));
  const Pid server = node_->whereis("nodus_kv");
  const std::string obj = encode_object(Object().update({}, Sibling{"x", 1, false}, Actor{9, 1}));
  const std::string long_name(300, 'n');
  const std::uint64_t bad_before = stats(*node_)->bad_messages;
  {
    Inbox me(*node_);
    const Dest to = named(vnode_name(p));
    send(to, ReplicaPut{p, 1, 0, 0, long_name, true, "{t}k", obj});  // hint: no member
    ASSERT_TRUE(next_message_is<ReplicaPutAck>(ErrorCode::kBadArg));
    send(to, ReplicaPut{p, 2, 0, 0, "", true, "{t}k", "garbage"});  // undecodable object
    ASSERT_TRUE(next_message_is<ReplicaPutAck>(ErrorCode::kProtocol));
    send(to, ReplicaPut{p + 1, 3, 0, 0, "", true, "{t}k", obj});  // another partition
    send(to, ReplicaGet{p, 4, 0, 0, std::string(kMaxKeyBytes + 1, 'k')});
    send(to, HandoffPut{p, "{t}k", "garbage"});
    send(to, ReapTombstone{p + 1, "{t}k", obj});
    send(to, ReplicaPutAck{p, 99, 7, 0, true});  // an ack for nothing: ignored, not counted
    send(to, Term("tick"));                      // timers are local types no peer can send
    send(named("nodus_kv"), Term("gossip"));
    cast(to, Term("hello"));  // casts and calls: the defaults would stop the process
    cast(named("nodus_kv"), Term("hello"));
    auto answer = call(to, Term("hello"), 2s);
    ASSERT_TRUE(answer.ok()) << answer.error().to_string();
    EXPECT_EQ(*answer, tuple("error", tuple("badarg", bin("a vnode takes no calls"))));
    send(named("nodus_kv"),
         KvForward{KvRequest{1, "{t}k", {}, {}, 0, 0, 0, 0, 0, 0}, WireId{long_name, 1, 1},
                   WireId{"solo", 1, 1}, false, HybridClock::system_ms() + 5000});
    send(named("nodus_kv"),
         RingGossip{99, 16, 1, {long_name}, std::vector<std::uint16_t>(16, 0), {}, {}});
  }
  send(named(vnode_name(p)), ReplicaPut{p, 5, 0, 0, "", false, "{t}k", obj});  // no sender
  ASSERT_TRUE(testing::eventually([&] { return stats(*node_)->bad_messages == bad_before + 14; }))
      << stats(*node_)->bad_messages - bad_before;
  EXPECT_EQ(node_->whereis(vnode_name(p)), vnode) << "the vnode was restarted";
  EXPECT_EQ(node_->whereis("nodus_kv"), server) << "nodus_kv was restarted";
  EXPECT_FALSE(Atom::existing(long_name).has_value()) << "a peer's name was interned";
  EXPECT_EQ(ring(*node_)->epoch(), 1u);
  EXPECT_EQ(value("{t}k"), "v") << "nothing refused was stored";
}

// The vnodes and nodus_kv run under a supervisor: one that dies is restarted, keeps what its
// partition holds (and nodus_kv its ring), and the store serves again.
TEST_F(StoreTest, ACrashedVnodeOrNodusKvIsRestartedAndTheStoreServesAgain) {
  ASSERT_OK(client_->put("{t}k", "v"));
  const std::uint32_t p = partition_of("{t}k", 16);
  const Pid vnode = node_->whereis(vnode_name(p));
  exit(vnode, reasons::kill());
  ASSERT_TRUE(testing::eventually([&] {
    const Pid now = node_->whereis(vnode_name(p));
    return now.valid() && now != vnode;
  })) << "the vnode was not restarted";
  ASSERT_TRUE(testing::eventually([&] { return client_->get("{t}k").ok(); }));
  EXPECT_EQ(value("{t}k"), "v");
  ASSERT_OK(client_->put("{t}k", "w", {.context = client_->get("{t}k")->context}));
  EXPECT_EQ(value("{t}k"), "w");
  const Pid server = node_->whereis("nodus_kv");
  exit(server, reasons::kill());
  ASSERT_TRUE(testing::eventually([&] {
    const Pid now = node_->whereis("nodus_kv");
    return now.valid() && now != server;
  })) << "nodus_kv was not restarted";
  EXPECT_EQ(ring(*node_)->epoch(), 1u);
  EXPECT_EQ(value("{t}k"), "w");
  EXPECT_TRUE(node_->whereis("nodus_kv_sup").valid());
}

// A merge function that throws does not take its partition down: the siblings stay, a get
// returns them all, and the error is counted.
TEST_F(StoreTest, AMergeFunctionThatThrowsKeepsTheSiblings) {
  ASSERT_OK(register_merge(
      *node_, "bad:", [](std::string_view, const std::vector<std::string>&) -> std::string {
        throw std::runtime_error("no");
      }));
  const Pid vnode = node_->whereis(vnode_name(partition_of("bad:x", 16)));
  ASSERT_OK(client_->put("bad:x", "a"));
  ASSERT_OK(client_->put("bad:x", "b"));  // a sibling: the merge runs, and throws
  auto got = client_->get("bad:x");       // and again
  ASSERT_OK(got);
  EXPECT_EQ(got->values.size(), 2u);
  EXPECT_EQ(stats(*node_)->merge_errors, 2u);
  EXPECT_EQ(node_->whereis(vnode_name(partition_of("bad:x", 16))), vnode);
}

// DW counts durable replicas only: on a memory engine a put asking DW = 1 of one replica
// cannot be met, and is refused before anything is stored; on a durable engine it is met.
TEST_F(StoreTest, ADurableWriteQuorumIsRefusedUpFrontWhenNoReplicaCanMeetIt) {
  RequestOptions dw1;
  dw1.dw = 1;
  auto r = client_->put("k", "v", dw1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kNoQuorum);
  EXPECT_EQ(r.error().message(), "dw: needed 1, got 0");
  EXPECT_EQ(client_->get("k").error().code(), ErrorCode::kNotFound);
  node_.reset();
  Options o;
  o.engine = durable_memory_engine;
  start_store(o);
  EXPECT_OK(client_->put("k", "v", dw1));
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

// A replica keeps what a merge of replicas' writes holds even beyond max_siblings (each
// coordinator checked its own write; refusing the merge would lose acknowledged writes, as it
// would in Riak), bounded by kv.max_object_bytes; the next blind write is then refused and one
// with the merged context resolves them. (Review suspicion B6, dismissed for sibling counts.)
TEST_F(SiblingLimitTest, AReplicaKeepsAMergeBeyondTheSiblingLimit) {
  ASSERT_OK(register_protocol());
  Object o;
  for (std::uint64_t a = 1; a <= 5; ++a) {
    o = Object::sync(o, Object().update({}, Sibling{std::to_string(a), a, false}, Actor{a, 1}));
  }
  const std::uint32_t p = partition_of("k", 16);
  {
    Inbox me(*node_);
    send(named(vnode_name(p)), ReplicaPut{p, 1, 0, 0, "", true, "k", encode_object(o)});
    ASSERT_TRUE(next_message_is<ReplicaPutAck>(ErrorCode::kOk));
  }
  auto got = client_->get("k");
  ASSERT_OK(got);
  EXPECT_EQ(got->values.size(), 5u);
  EXPECT_EQ(client_->put("k", "blind").error().code(), kv::kTooManySiblings);
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
