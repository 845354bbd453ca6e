// The Elixir-style Registry (unique and duplicate keys, values, lookup, match, count,
// dispatch, update_value, unregister_match, partitions, listeners, entries gone with their
// process), via names through it and through a user-written via module, and local names.
#include "nodus/registry/registry.hpp"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "node/test_util.hpp"
#include "nodus/node/gen_server.hpp"
#include "nodus/registry/via.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::next_message;

class Echo : public GenServer {
 public:
  Action handle_call(Message& req, From) override {
    return reply(tuple("echo", req.is_term() ? req.term() : Term()));
  }
  Action handle_info(Message& msg) override {
    if (auto m = msg.match({"tell", _pid})) send(m[0].as_pid(), "told");
    return noreply();
  }
};

class RegistryTest : public ::testing::Test {
 protected:
  Node node{NodeOptions{.name = "reg", .schedulers = 2}};
  Inbox me{node};

  std::shared_ptr<Registry> make(RegistryOptions o = {}) {
    auto r = Registry::start(node, std::move(o));
    EXPECT_OK(r);
    return r.ok() ? *r : nullptr;
  }
  /// The next listener message: one kept by member(), else the next in the mailbox.
  Term next_told() {
    if (told_.empty()) return next_message().term();
    Term t = told_.front();
    told_.erase(told_.begin());
    return t;
  }
  std::vector<Term> told_;
  /// A process that registers itself under `key` with `value` in `reg`, answers {registered,
  /// Self}, then waits for "stop".
  Pid member(const std::shared_ptr<Registry>& reg, Term key, Term value) {
    const Pid parent = self();
    Pid p = spawn(node, [reg, key, value, parent] {
      Status s = reg->register_key(key, value);
      send(parent, tuple(s.ok() ? "registered" : "refused", self()));
      for (;;) {
        Message m = receive();
        if (m == "stop") return;
        if (auto u = m.match({"update", _})) {
          Term v = u[0];
          (void)reg->update_value(key, [v](const Term&) { return v; });
          send(parent, "updated");
        }
      }
    });
    // Listeners (maybe this thread) hear of the registration too; keep those for the test.
    for (;;) {
      Message m = next_message();
      if (m.match({"registered", _}) || m == "no_message") break;
      told_.push_back(m.term());
    }
    return p;
  }
};

TEST_F(RegistryTest, UniqueKeysHoldOneProcess) {
  auto reg = make();
  ASSERT_OK(reg->register_key("a", 1));
  auto again = [&] {
    Status s = reg->register_key("a", 2);
    return s;
  }();
  EXPECT_EQ(again.code(), ErrorCode::kAlreadyStarted);
  EXPECT_EQ(again.message(), me.pid().to_string());
  auto got = reg->lookup("a");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], (RegistryEntry{me.pid(), 1}));
  EXPECT_EQ(reg->count(), 1u);
  EXPECT_EQ(reg->keys(me.pid()), std::vector<Term>{Term("a")});
  EXPECT_EQ(reg->unregister("a"), 1u);
  EXPECT_TRUE(reg->lookup("a").empty());
  EXPECT_EQ(reg->count(), 0u);
}

TEST_F(RegistryTest, DuplicateKeysHoldManyAndDispatchReachesEach) {
  auto reg = make({.keys = RegistryKeys::kDuplicate, .partitions = 4});
  Pid a = member(reg, "topic", "a");
  Pid b = member(reg, "topic", "b");
  ASSERT_OK(reg->register_key("topic", "me"));
  ASSERT_OK(reg->register_key("topic", "me-again"));
  EXPECT_EQ(reg->lookup("topic").size(), 4u);
  EXPECT_EQ(reg->count(), 4u);
  std::set<Pid> reached;
  EXPECT_TRUE(reg->dispatch("topic", [&](const std::vector<RegistryEntry>& entries) {
    for (const auto& e : entries) {
      reached.insert(e.pid);
      if (e.pid != me.pid()) send(e.pid, tuple("update", "seen"));
    }
  }));
  EXPECT_EQ(reached, (std::set<Pid>{a, b, me.pid()}));
  EXPECT_EQ(next_message(), "updated");
  EXPECT_EQ(next_message(), "updated");
  EXPECT_EQ(reg->count_match("topic", "seen"), 2u);
  EXPECT_FALSE(reg->dispatch("nobody", [](const auto&) { FAIL(); }));
  EXPECT_EQ(reg->partitions().size(), 4u);
}

TEST_F(RegistryTest, MatchAndUnregisterMatchUsePatterns) {
  auto reg = make({.keys = RegistryKeys::kDuplicate});
  ASSERT_OK(reg->register_key("jobs", tuple("priority", 1)));
  ASSERT_OK(reg->register_key("jobs", tuple("priority", 5)));
  ASSERT_OK(reg->register_key("jobs", tuple("batch", 3)));
  EXPECT_EQ(reg->match("jobs", {"priority", _int}).size(), 2u);
  EXPECT_EQ(reg->match("jobs", {_, 3}).size(), 1u);
  EXPECT_EQ(reg->count_match("jobs", {"batch", _}), 1u);
  EXPECT_EQ(reg->unregister_match("jobs", {"priority", _}), 2u);
  auto left = reg->lookup("jobs");
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].value, tuple("batch", 3));
}

TEST_F(RegistryTest, UpdateValueChangesOnlyTheCallersEntry) {
  auto reg = make();
  ASSERT_OK(reg->register_key("counter", 1));
  auto v = reg->update_value("counter", [](const Term& old) { return Term(old.as_int() + 1); });
  ASSERT_OK(v);
  EXPECT_EQ(*v, Term(2));
  EXPECT_EQ(reg->lookup("counter")[0].value, Term(2));
  EXPECT_EQ(reg->update_value("other", [](const Term& t) { return t; }).error().code(),
            ErrorCode::kNotFound);
}

TEST_F(RegistryTest, EntriesGoWithTheirProcessAndListenersAreTold) {
  auto reg = make(
      {.keys = RegistryKeys::kUnique, .partitions = 2, .listeners = {me.pid()}, .name = "workers"});
  Pid w = member(reg, "w1", "v");
  EXPECT_EQ(next_told(), tuple("register", atom("workers"), "w1", w, "v"));
  send(w, "stop");
  EXPECT_EQ(next_told(), tuple("unregister", atom("workers"), "w1", w));
  EXPECT_TRUE(reg->lookup("w1").empty());
  EXPECT_EQ(reg->count(), 0u);
  EXPECT_TRUE(reg->keys(w).empty());
}

TEST_F(RegistryTest, ViaNamesStartSendCallAndMonitor) {
  auto reg = make();
  SpawnOptions o;
  o.name = via(reg, "echo");
  auto echo = start<Echo>(node, o);
  ASSERT_OK(echo);
  EXPECT_EQ(reg->whereis_name(node, "echo"), *echo);
  auto again = start<Echo>(node, o);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error(), tuple("already_started", *echo));
  auto r = call(via(reg, "echo"), "hi");
  ASSERT_OK(r);
  EXPECT_EQ(*r, tuple("echo", "hi"));
  send(via(reg, "echo"), tuple("tell", me.pid()));
  EXPECT_EQ(next_message(), "told");
  EXPECT_EQ(via(reg, "echo").to_string(), "via(registry, echo)");
  Ref ref = monitor(via(reg, "echo"));
  ASSERT_OK(stop(*echo));
  EXPECT_TRUE(await_down(ref, 5s).has_value());
  EXPECT_TRUE(eventually([&] { return !reg->whereis_name(node, "echo"); }));
  EXPECT_EQ(call(via(reg, "echo"), "hi").error(), "noproc");
  EXPECT_EQ(await_down(monitor(via(reg, "echo")), 5s), Reason("noproc"));
}

TEST_F(RegistryTest, ViaUnregisterName) {
  auto reg = make();
  Pid p = spawn(node, [] { (void)receive(); });
  ASSERT_OK(reg->register_name(node, "x", p));
  EXPECT_TRUE(reg->unregister_name(node, "x"));
  EXPECT_FALSE(reg->unregister_name(node, "x"));
  auto dup = make({.keys = RegistryKeys::kDuplicate});
  EXPECT_EQ(dup->register_name(node, "x", p).code(), ErrorCode::kBadArg);
  send(p, "stop");
}

// A via module written by a user: a map guarded by a mutex.
class MapNames : public NameResolver {
 public:
  Pid whereis_name(Node&, const Term& key) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = names_.find(key);
    return it == names_.end() ? Pid{} : it->second;
  }
  NameStatus register_name(Node&, const Term& key, const Pid& pid) const override {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, fresh] = names_.emplace(key, pid);
    return fresh ? NameStatus() : NameStatus::taken(it->second);
  }
  bool unregister_name(Node&, const Term& key) const override {
    std::lock_guard<std::mutex> lock(mu_);
    return names_.erase(key) > 0;
  }
  bool send(Node& node, const Term& key, Message msg) const override {
    ++sends_;
    return NameResolver::send(node, key, std::move(msg));
  }
  mutable std::atomic<int> sends_{0};

 private:
  // Guards names_: any thread may resolve.
  mutable std::mutex mu_;
  mutable std::map<Term, Pid> names_;
};

TEST_F(RegistryTest, UserViaModuleWorksWhereverANameIsAccepted) {
  auto names = std::make_shared<MapNames>();
  SpawnOptions o;
  o.name = via(names, tuple("svc", 1));
  auto echo = start<Echo>(node, o);
  ASSERT_OK(echo);
  EXPECT_EQ(call(via(names, tuple("svc", 1)), "x").value(), tuple("echo", "x"));
  send(via(names, tuple("svc", 1)), tuple("tell", me.pid()));
  EXPECT_EQ(next_message(), "told");
  EXPECT_EQ(names->sends_.load(), 1);  // a plain send goes through the module's send
  cast(via(names, tuple("svc", 1)), "ignored");
  EXPECT_EQ(names->sends_.load(), 1);
  EXPECT_EQ(start<Echo>(node, o).error(), tuple("already_started", *echo));
}

TEST_F(RegistryTest, LocalNamesStayInTheRuntime) {
  SpawnOptions o;
  o.name = "local_echo";
  auto echo = start<Echo>(node, o);
  ASSERT_OK(echo);
  EXPECT_EQ(node.whereis("local_echo"), *echo);
  EXPECT_EQ(start<Echo>(node, o).error(), tuple("already_started", *echo));
  EXPECT_EQ(call(named("local_echo"), "x").value(), tuple("echo", "x"));
  ASSERT_OK(stop(*echo));
  EXPECT_FALSE(node.whereis("local_echo"));
}

// start answers {already_started, Holder} with the holder the naming service reported, without
// asking the service again (here it would say nobody: the name is held elsewhere, unseen).
class TakenElsewhere : public NameResolver {
 public:
  explicit TakenElsewhere(Pid holder) : holder_(holder) {}
  Pid whereis_name(Node&, const Term&) const override { return Pid{}; }
  NameStatus register_name(Node&, const Term&, const Pid&) const override {
    return NameStatus::taken(holder_);
  }
  bool unregister_name(Node&, const Term&) const override { return false; }

 private:
  Pid holder_;
};

TEST(ViaTest, StartNamesTheHolderTheNamingServiceReported) {
  Node node(NodeOptions{.name = "via-holder", .schedulers = 1});
  const Pid elsewhere{Atom("other"), 1, 77};
  SpawnOptions o;
  o.name = via(std::make_shared<TakenElsewhere>(elsewhere), "x");
  auto started = start<Echo>(node, o);
  ASSERT_FALSE(started.ok());
  EXPECT_EQ(started.error(), tuple("already_started", elsewhere));
}

// Elixir's Registry checks liveness: a unique key whose holder has exited is free, and no read
// names the dead holder, even before the partition has handled the exit. Manual scheduling
// keeps the partition's watcher from running meanwhile.
TEST(RegistryLivenessTest, AKeyOfAnExitedHolderIsFreeBeforeTheRegistryHearsOfTheExit) {
  Node node(NodeOptions{.name = "live", .manual_scheduling = true});
  auto reg = Registry::start(node, {.keys = RegistryKeys::kUnique});
  ASSERT_OK(reg);
  {
    Inbox holder(node);
    ASSERT_OK((*reg)->register_key("k", 1));
  }  // the holder exits; the watcher has not run
  EXPECT_TRUE((*reg)->lookup("k").empty());
  EXPECT_FALSE((*reg)->whereis_name(node, "k").valid());
  EXPECT_FALSE((*reg)->dispatch("k", [](const std::vector<RegistryEntry>&) {}));
  Inbox next(node);
  EXPECT_OK((*reg)->register_key("k", 2));
  EXPECT_EQ((*reg)->lookup("k"), (std::vector<RegistryEntry>{{next.pid(), Term(2)}}));
  EXPECT_EQ((*reg)->whereis_name(node, "k"), next.pid());
  node.run_until_idle();  // the watcher hears of the old holder's exit: the new one stays
  EXPECT_EQ((*reg)->whereis_name(node, "k"), next.pid());
  EXPECT_EQ((*reg)->count(), 1u);
}

}  // namespace
}  // namespace nodus
