// Runs the KVStore capstone on a three-node cluster in this process (loopback ZeroMQ): CRUD,
// TTL, replication across nodes, a subscription, a transaction, batches and stats, printing
// each step with its result.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "kv_store.hpp"
#include "nodus/node/format.hpp"

using namespace nodus;
using namespace std::chrono_literals;
using kv_store::KVStore;

namespace {

std::string said(const Status& s) { return s.ok() ? "ok" : s.to_string(); }

std::string show(const Result<std::optional<std::string>>& r) {
  if (!r) return r.error().to_string();
  return *r ? "{ok, " + **r + "}" : "nil";
}

}  // namespace

int main() {
  std::vector<std::unique_ptr<Node>> nodes;
  const std::vector<std::string> names = {"n1", "n2", "n3"};
  for (const auto& name : names) {
    NodeOptions o;
    o.name = name;
    o.listen = "tcp://127.0.0.1:*";
    o.cookie = "kv-store-demo";
    auto n = Node::start(o);
    if (!n.ok()) {
      fmt::print(stderr, "node {} did not start: {}\n", name, n.error().to_string());
      return 1;
    }
    nodes.push_back(std::move(n.value()));
    if (nodes.size() > 1) nodes.back()->connect(nodes.front()->endpoint());
  }
  for (auto& n : nodes) {
    kv::Options o;
    o.partitions = 16;
    o.initial_members = names;
    o.context_secret = "kv-store-demo";
    if (Status s = kv::start(*n, o); !s.ok()) {
      fmt::print(stderr, "the store did not start: {}\n", s.to_string());
      return 1;
    }
  }
  for (int i = 0; i < 100; ++i) {  // the ring forms once all three are linked
    bool formed = true;
    for (auto& n : nodes) formed = formed && kv::ring(*n) && n->nodes().size() == 2;
    if (formed) break;
    std::this_thread::sleep_for(100ms);
  }
  fmt::print("three nodes, the store on each: N=3, W=2, R=2\n");

  Inbox me(*nodes[0]);  // main() acts as a process on n1
  Pid s1 = KVStore::start_link(*nodes[0]).value();
  fmt::print("started kv_store {} on n1\n", s1);
  Status subscribed = KVStore::subscribe(s1);
  fmt::print("subscribe() -> {}\n", said(subscribed));

  fmt::print("put(\"user:1\", \"alice\") -> {}\n", said(KVStore::put(s1, "user:1", "alice")));
  fmt::print("get(\"user:1\") -> {}\n", show(KVStore::get(s1, "user:1")));
  Result<std::optional<std::string>> on_n2 = std::optional<std::string>();
  {
    // Another node's server reads it: the store replicated it.
    Pid s2;
    std::thread t([&] {
      Inbox other(*nodes[1]);
      s2 = KVStore::start_link(*nodes[1]).value();
      on_n2 = KVStore::get(s2, "user:1");
      (void)stop(s2);
    });
    t.join();
  }
  fmt::print("get(\"user:1\") through n2's kv_store -> {}\n", show(on_n2));

  // (One call per statement: the order of a function's arguments is unspecified.)
  const std::string put_session = said(KVStore::put(s1, "session", "token", {.ttl = 300ms}));
  fmt::print("put(\"session\", \"token\", ttl: 300 ms) -> {}; get -> {}\n", put_session,
             show(KVStore::get(s1, "session")));
  std::this_thread::sleep_for(400ms);
  fmt::print("400 ms later, get(\"session\") -> {}\n", show(KVStore::get(s1, "session")));

  const std::string put_local = said(KVStore::put(s1, "local", "fast", {.replicate = false}));
  fmt::print("put(\"local\", \"fast\", replicate: false) (W = 1) -> {}; get -> {}\n", put_local,
             show(KVStore::get(s1, "local")));

  const std::string deleted = said(KVStore::del(s1, "local"));
  fmt::print("delete(\"local\") -> {}; get -> {}\n", deleted, show(KVStore::get(s1, "local")));

  fmt::print("multi_put alice=100 bob=50 -> {}\n",
             said(KVStore::multi_put(s1, {{"{acct}.alice", "100"}, {"{acct}.bob", "50"}})));
  auto both = KVStore::multi_get(s1, {"{acct}.alice", "{acct}.bob", "nobody"});
  fmt::print("multi_get -> [{}, {}, {}]\n", (*both)[0].value_or("nil"), (*both)[1].value_or("nil"),
             (*both)[2].value_or("nil"));

  auto moved =
      KVStore::transaction(s1, {"{acct}.alice", "{acct}.bob"},
                           [](const kv::TxnSnapshot& v) -> std::optional<kv::TxnWrites> {
                             const int alice = std::stoi(v.at("{acct}.alice").at(0));
                             const int bob = std::stoi(v.at("{acct}.bob").at(0));
                             if (alice < 30) return std::nullopt;  // abort: nothing written
                             return kv::TxnWrites{{"{acct}.alice", std::to_string(alice - 30)},
                                                  {"{acct}.bob", std::to_string(bob + 30)}};
                           });
  fmt::print("transaction: move 30 from alice to bob -> {}\n",
             moved ? (moved->committed ? "committed" : "aborted") : moved.error().to_string());
  both = KVStore::multi_get(s1, {"{acct}.alice", "{acct}.bob"});
  fmt::print("multi_get -> [{}, {}]\n", (*both)[0].value_or("nil"), (*both)[1].value_or("nil"));

  auto keys = KVStore::keys(s1);
  fmt::print("keys() -> {} keys:", keys ? keys->size() : 0);
  if (keys) {
    for (const auto& k : *keys) fmt::print(" {}", k);
  }
  fmt::print("\n");
  auto stats = KVStore::stats(s1);
  fmt::print("stats() -> {}\n", stats ? stats->to_string() : stats.error().to_string());

  int events = 0;  // what the subscription brought meanwhile
  while (auto m = receive(200ms)) {
    if (auto e = kv::watch_event(*m)) {
      ++events;
      const char* kind = e->kind == kv::WatchKind::kPut      ? "put"
                         : e->kind == kv::WatchKind::kDelete ? "delete"
                                                             : "expire";
      fmt::print("  event: {} {} {}\n", kind, e->key, e->value);
    }
  }
  fmt::print("the subscription brought {} events\n", events);
  (void)stop(s1);
  return 0;
}
