// Supervisors: start order and reverse stop order, the three strategies, the three restart
// types, restart intensity, shutdown timeouts and brutal kill, failed starts, node shutdown,
// nested supervisors, the child API, and DynamicSupervisor.
#include "nodus/node/supervisor.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "nodus/transport/detail/mutex.hpp"
#include "test_util.hpp"

namespace nodus {

// Readable reasons in failure output (found by GoogleTest through argument-dependent lookup).
inline void PrintTo(const Reason& r, std::ostream* os) { *os << r.to_string(); }

namespace {

using namespace std::chrono_literals;
using testing::eventually;
using Events = std::vector<std::string>;

// What the children did, in order: "start:a" when a's init ran, "stop:a" when its terminate
// ran (with the reason kept apart).
class Journal {
 public:
  void add(std::string event) {
    detail::MutexLock lock(mu_);
    events_.push_back(std::move(event));
  }
  void stopped(const std::string& name, const Reason& reason) {
    detail::MutexLock lock(mu_);
    events_.push_back("stop:" + name);
    reasons_[name] = reason.term();
  }
  Events events() const {
    detail::MutexLock lock(mu_);
    return events_;
  }
  Term reason(const std::string& name) const {
    detail::MutexLock lock(mu_);
    auto it = reasons_.find(name);
    return it == reasons_.end() ? Term(atom("none")) : it->second;
  }
  bool contains(const std::string& event) const {
    detail::MutexLock lock(mu_);
    return std::find(events_.begin(), events_.end(), event) != events_.end();
  }

 private:
  // Children on several scheduler threads write; the test thread reads.
  mutable detail::Mutex mu_;
  Events events_ NODUS_GUARDED_BY(mu_);
  std::map<std::string, Term> reasons_ NODUS_GUARDED_BY(mu_);
};

// A well-behaved child: traps exits, so a supervisor's shutdown runs its terminate.
class Worker : public GenServer {
 public:
  Action init(std::shared_ptr<Journal> journal, std::string name) {
    journal_ = std::move(journal);
    name_ = std::move(name);
    trap_exit(true);
    journal_->add("start:" + name_);
    return ok();
  }
  Action handle_call(Message& request, From from) override {
    if (request == "ping") return reply("pong");
    return GenServer::handle_call(request, from);
  }
  Action handle_cast(Message& request) override {
    if (request == "crash") throw std::runtime_error("crash");
    if (request == "exit_normal") return stop(reasons::normal());
    if (request == "exit_shutdown") return stop(tuple("shutdown", "done"));
    return noreply();
  }
  void terminate(const Reason& reason) override { journal_->stopped(name_, reason); }

 private:
  std::shared_ptr<Journal> journal_;
  std::string name_;
};

// Ignores shutdown: its terminate waits 10 s (in a receive, so that a kill can end it).
class Stubborn : public GenServer {
 public:
  Action init(std::shared_ptr<Journal> journal, std::string name) {
    journal_ = std::move(journal);
    name_ = std::move(name);
    trap_exit(true);
    return ok();
  }
  void terminate(const Reason& reason) override {
    journal_->add("terminating:" + name_);
    (void)receive(10s);
    journal_->stopped(name_, reason);
  }

 private:
  std::shared_ptr<Journal> journal_;
  std::string name_;
};

// Starts while `fail` is false; afterwards its init fails with `boom`.
class Flaky : public GenServer {
 public:
  Action init(std::shared_ptr<std::atomic<bool>> fail) {
    if (fail->load()) return stop("boom");
    return ok();
  }
  Action handle_cast(Message&) override { throw std::runtime_error("crash"); }
};

class FailingInit : public GenServer {
 public:
  Action init() { return stop("boom"); }
};

class Ignoring : public GenServer {
 public:
  Action init() { return ignore(); }
};

class SupervisorTest : public ::testing::Test {
 protected:
  Node node{NodeOptions{.name = "s1", .schedulers = 2}};
  Inbox me{node};
  std::shared_ptr<Journal> journal = std::make_shared<Journal>();

  ChildSpec worker(const std::string& id) { return child<Worker>(node, id, journal, id); }
  ChildSpec stubborn(const std::string& id) { return child<Stubborn>(node, id, journal, id); }

  Pid start_sup(SupervisorFlags flags, std::vector<ChildSpec> children) {
    auto r = start_supervisor(node, flags, std::move(children));
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().to_string());
    return r.ok() ? *r : Pid{};
  }

  // Child `id`'s pid now: invalid when it is not running or unknown.
  Pid pid_of(const Pid& sup, const std::string& id) {
    auto children = which_children(sup, 5s);
    if (!children) return Pid{};
    for (const ChildInfo& c : *children) {
      if (c.id == id) return c.pid;
    }
    return Pid{};
  }
  // Waits until child `id` runs under a pid other than `old`.
  Pid restarted(const Pid& sup, const std::string& id, const Pid& old) {
    Pid now;
    EXPECT_TRUE(eventually([&] {
      now = pid_of(sup, id);
      return now.valid() && now != old;
    })) << id
        << " was not restarted";
    return now;
  }
  // Waits until child `id` has stopped (the supervisor has handled its exit).
  void wait_stopped(const Pid& sup, const std::string& id) {
    EXPECT_TRUE(eventually([&] { return !pid_of(sup, id).valid(); })) << id << " still runs";
  }
  // True when `pid` is gone (its Down comes at once); false if it is alive.
  bool gone(const Pid& pid) {
    Ref ref = monitor(pid);
    if (await_down(ref, 0ms)) return true;
    (void)demonitor(ref);
    return false;
  }
  Reason down_reason(const Ref& ref) {
    auto r = await_down(ref, 5s);
    EXPECT_TRUE(r.has_value()) << "no Down within 5 s";
    return r ? *r : Reason("no_down");
  }
  ChildCounts counts(const Pid& sup) {
    auto r = count_children(sup, 5s);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : ChildCounts{};
  }
};

// -- order -------------------------------------------------------------------------

TEST_F(SupervisorTest, StartsChildrenInOrderAndStopsThemInReverse) {
  Pid sup = start_sup({}, {worker("a"), worker("b"), worker("c")});
  EXPECT_EQ(journal->events(), (Events{"start:a", "start:b", "start:c"}));
  ASSERT_OK(stop(sup, reasons::shutdown()));
  EXPECT_EQ(journal->events(),
            (Events{"start:a", "start:b", "start:c", "stop:c", "stop:b", "stop:a"}));
  EXPECT_EQ(journal->reason("a"), Term("shutdown"));
}

// -- strategies ----------------------------------------------------------------------

TEST_F(SupervisorTest, OneForOneRestartsOnlyTheCrashedChild) {
  Pid sup = start_sup({.strategy = Strategy::kOneForOne}, {worker("a"), worker("b"), worker("c")});
  Pid a = pid_of(sup, "a"), b = pid_of(sup, "b"), c = pid_of(sup, "c");
  cast(b, "crash");
  restarted(sup, "b", b);
  EXPECT_EQ(pid_of(sup, "a"), a);
  EXPECT_EQ(pid_of(sup, "c"), c);
  EXPECT_EQ(journal->events(), (Events{"start:a", "start:b", "start:c", "stop:b", "start:b"}));
}

TEST_F(SupervisorTest, OneForAllRestartsEveryChild) {
  Pid sup = start_sup({.strategy = Strategy::kOneForAll}, {worker("a"), worker("b"), worker("c")});
  Pid a = pid_of(sup, "a"), b = pid_of(sup, "b"), c = pid_of(sup, "c");
  cast(b, "crash");
  restarted(sup, "b", b);
  EXPECT_NE(pid_of(sup, "a"), a);
  EXPECT_NE(pid_of(sup, "c"), c);
  EXPECT_TRUE(gone(a));
  EXPECT_TRUE(gone(c));
  // The others stop in reverse order, then all start in order.
  EXPECT_EQ(journal->events(), (Events{"start:a", "start:b", "start:c", "stop:b", "stop:c",
                                       "stop:a", "start:a", "start:b", "start:c"}));
}

TEST_F(SupervisorTest, RestForOneRestartsTheCrashedChildAndThoseStartedAfterIt) {
  Pid sup = start_sup({.strategy = Strategy::kRestForOne}, {worker("a"), worker("b"), worker("c")});
  Pid a = pid_of(sup, "a"), b = pid_of(sup, "b"), c = pid_of(sup, "c");
  cast(b, "crash");
  restarted(sup, "b", b);
  EXPECT_EQ(pid_of(sup, "a"), a);
  EXPECT_NE(pid_of(sup, "c"), c);
  EXPECT_EQ(journal->events(),
            (Events{"start:a", "start:b", "start:c", "stop:b", "stop:c", "start:b", "start:c"}));
}

// -- restart types ---------------------------------------------------------------------

TEST_F(SupervisorTest, PermanentChildIsRestartedEvenAfterANormalExit) {
  Pid sup = start_sup({}, {worker("p")});
  Pid p = pid_of(sup, "p");
  cast(p, "exit_normal");
  Pid p2 = restarted(sup, "p", p);
  EXPECT_EQ(call(p2, "ping").value(), Term("pong"));
}

TEST_F(SupervisorTest, TransientChildIsRestartedOnlyAfterAnAbnormalExit) {
  Pid sup = start_sup({}, {worker("t").with_restart(Restart::kTransient),
                           worker("u").with_restart(Restart::kTransient)});
  Pid t = pid_of(sup, "t");
  cast(t, "crash");
  Pid t2 = restarted(sup, "t", t);
  cast(t2, "exit_normal");
  wait_stopped(sup, "t");
  cast(pid_of(sup, "u"), "exit_shutdown");  // {shutdown, done} is clean too
  wait_stopped(sup, "u");
  ChildCounts n = counts(sup);
  EXPECT_EQ(n.specs, 2u);  // the specs are kept
  EXPECT_EQ(n.active, 0u);
}

TEST_F(SupervisorTest, TemporaryChildIsNeverRestartedAndIsRemoved) {
  Pid sup = start_sup({}, {worker("keep"), worker("tmp").with_restart(Restart::kTemporary)});
  cast(pid_of(sup, "tmp"), "crash");
  ASSERT_TRUE(eventually([&] { return counts(sup).specs == 1; }));
  auto children = which_children(sup);
  ASSERT_TRUE(children.ok());
  ASSERT_EQ(children->size(), 1u);
  EXPECT_EQ((*children)[0].id, "keep");
  Events e = journal->events();
  EXPECT_EQ(std::count(e.begin(), e.end(), "start:tmp"), 1);
}

// -- intensity ---------------------------------------------------------------------------

TEST_F(SupervisorTest, ExceedingRestartIntensityShutsTheSupervisorDown) {
  Pid sup = start_sup({.intensity = 2, .period = 5s}, {worker("a"), worker("b")});
  Ref sup_ref = monitor(sup);
  Pid a = pid_of(sup, "a");
  Pid b = pid_of(sup, "b");
  for (int i = 0; i < 2; ++i) {  // two restarts are allowed
    cast(a, "crash");
    a = restarted(sup, "a", a);
  }
  cast(a, "crash");  // the third is one too many
  EXPECT_EQ(down_reason(sup_ref), "shutdown");
  EXPECT_TRUE(gone(a));
  EXPECT_TRUE(gone(b));
  EXPECT_EQ(journal->events().back(), "stop:b");  // the survivors were stopped first
}

TEST_F(SupervisorTest, RestartsOlderThanThePeriodAreForgotten) {
  Pid sup = start_sup({.intensity = 1, .period = 100ms}, {worker("a")});
  Pid a = pid_of(sup, "a");
  cast(a, "crash");
  a = restarted(sup, "a", a);
  // Not waiting for an event: letting the first restart fall out of the 100 ms window.
  std::this_thread::sleep_for(150ms);
  cast(a, "crash");
  restarted(sup, "a", a);
  EXPECT_FALSE(gone(sup));
}

TEST_F(SupervisorTest, AChildThatCannotRestartExhaustsTheIntensity) {
  auto fail = std::make_shared<std::atomic<bool>>(false);
  Pid sup = start_sup({.intensity = 3, .period = 5s}, {child<Flaky>(node, "f", fail)});
  Ref sup_ref = monitor(sup);
  fail->store(true);
  cast(pid_of(sup, "f"), "crash");  // the restart fails and is retried until intensity runs out
  EXPECT_EQ(down_reason(sup_ref), "shutdown");
}

// -- stopping children --------------------------------------------------------------------

TEST_F(SupervisorTest, ShutdownTimeoutKillsAChildThatIgnoresShutdown) {
  Pid sup = start_sup({}, {stubborn("s").with_shutdown(100ms)});
  Pid s = pid_of(sup, "s");
  Ref ref = monitor(s);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(terminate_child(sup, "s").value(), Term("ok"));
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 3s);
  EXPECT_EQ(down_reason(ref), "killed");
  EXPECT_TRUE(journal->contains("terminating:s"));
  EXPECT_FALSE(journal->contains("stop:s"));  // its terminate never finished
}

TEST_F(SupervisorTest, BrutalKillStopsAChildWithoutRunningTerminate) {
  Pid sup = start_sup({}, {stubborn("s").with_shutdown(brutal_kill)});
  Pid s = pid_of(sup, "s");
  Ref ref = monitor(s);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(terminate_child(sup, "s").value(), Term("ok"));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_EQ(down_reason(ref), "killed");
  EXPECT_FALSE(journal->contains("terminating:s"));
}

TEST_F(SupervisorTest, FailedChildStartStopsTheChildrenStartedBeforeIt) {
  auto r = start_supervisor(node, {}, {worker("a"), child<FailingInit>(node, "b"), worker("c")});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), tuple("shutdown", tuple("failed_to_start_child", "b", "boom")));
  EXPECT_EQ(journal->events(), (Events{"start:a", "stop:a"}));
  EXPECT_TRUE(eventually([&] { return node.process_count() == 1; }));  // only the Inbox
}

TEST_F(SupervisorTest, NodeShutdownStopsChildrenInReverseOrder) {
  Node other(NodeOptions{.name = "s2", .schedulers = 2});
  {
    Inbox main_thread(other);  // like main(): the top supervisor's parent is an Inbox
    auto sup = start_supervisor(other, {},
                                {child<Worker>(other, "a", journal, std::string("a")),
                                 child<Worker>(other, "b", journal, std::string("b")),
                                 child<Worker>(other, "c", journal, std::string("c"))});
    ASSERT_TRUE(sup.ok());
    auto t0 = std::chrono::steady_clock::now();
    other.shutdown();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);  // no grace period was waited out
  }
  EXPECT_EQ(journal->events(),
            (Events{"start:a", "start:b", "start:c", "stop:c", "stop:b", "stop:a"}));
  EXPECT_EQ(journal->reason("a"), Term("shutdown"));
  EXPECT_EQ(journal->reason("c"), Term("shutdown"));
}

TEST_F(SupervisorTest, SupervisorStopsItsChildrenWhenItsParentExits) {
  Pid sink = me.pid();
  auto spec = worker("a");
  Pid parent = spawn(node, [&node = node, sink, spec] {
    send(sink, start_supervisor(node, {}, {spec}).value());
    (void)receive();  // until told to go
  });
  auto m = receive(5s);
  ASSERT_TRUE(m.has_value());
  Pid sup = m->term().as_pid();
  Ref ref = monitor(sup);
  send(parent, "go");
  EXPECT_EQ(down_reason(ref), "normal");
  EXPECT_EQ(journal->events(), (Events{"start:a", "stop:a"}));
}

// -- nesting ------------------------------------------------------------------------------

TEST_F(SupervisorTest, NestedSupervisorRestartsItsChildrenAndIsRestartedByItsParent) {
  Pid top = start_sup({}, {supervisor_child(node, "sub", {}, {worker("w")}), worker("x")});
  Pid sub = pid_of(top, "sub");
  Pid w = pid_of(sub, "w");
  ASSERT_TRUE(w.valid());

  cast(w, "crash");  // the inner supervisor handles it
  restarted(sub, "w", w);
  EXPECT_EQ(pid_of(top, "sub"), sub);

  exit(sub, reasons::kill());  // the outer one restarts the inner, which starts a new w
  Pid sub2 = restarted(top, "sub", sub);
  EXPECT_TRUE(pid_of(sub2, "w").valid());

  auto children = which_children(top);
  ASSERT_TRUE(children.ok());
  EXPECT_EQ((*children)[0].type, ChildType::kSupervisor);
  EXPECT_EQ((*children)[1].type, ChildType::kWorker);

  ASSERT_OK(stop(top, reasons::shutdown()));
  Events e = journal->events();
  ASSERT_GE(e.size(), 2u);
  EXPECT_EQ(e[e.size() - 2], "stop:x");  // reverse order: x, then sub (which stops w)
  EXPECT_EQ(e.back(), "stop:w");
}

// -- the child API --------------------------------------------------------------------------

TEST_F(SupervisorTest, WhichChildrenAndCountChildrenDescribeTheChildren) {
  ChildSpec by_hand{.id = "t",
                    .start = [this]() -> Result<Pid, Reason> {
                      return start_link<Worker>(node, journal, std::string("t"));
                    },
                    .restart = Restart::kTransient,
                    .shutdown = 1s};
  Pid sup = start_sup({}, {worker("a"), supervisor_child(node, "sub", {}, {}), by_hand,
                           child<Ignoring>(node, "i")});
  auto children = which_children(sup);
  ASSERT_TRUE(children.ok());
  ASSERT_EQ(children->size(), 4u);
  const auto& c = *children;
  EXPECT_EQ(c[0].id, "a");
  EXPECT_EQ(c[1].id, "sub");
  EXPECT_EQ(c[1].type, ChildType::kSupervisor);
  EXPECT_EQ(c[2].restart, Restart::kTransient);
  EXPECT_EQ(c[3].id, "i");
  EXPECT_FALSE(c[3].pid.valid());  // its init returned ignore: kept, not running
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(c[i].pid.valid()) << c[i].id;

  ChildCounts n = counts(sup);
  EXPECT_EQ(n.specs, 4u);
  EXPECT_EQ(n.active, 3u);
  EXPECT_EQ(n.supervisors, 1u);
  EXPECT_EQ(n.workers, 3u);
}

TEST_F(SupervisorTest, TerminateRestartAndDeleteChildManageStaticChildren) {
  Pid sup = start_sup({}, {worker("a"), worker("b")});
  Pid a = pid_of(sup, "a");
  EXPECT_EQ(terminate_child(sup, "a").value(), Term("ok"));
  EXPECT_TRUE(gone(a));
  EXPECT_FALSE(pid_of(sup, "a").valid());  // not restarted, spec kept
  EXPECT_EQ(counts(sup).specs, 2u);

  EXPECT_EQ(delete_child(sup, "b").error(), "running");
  EXPECT_EQ(restart_child(sup, "b").error(), "running");
  auto a2 = restart_child(sup, "a");
  ASSERT_TRUE(a2.ok());
  EXPECT_EQ(pid_of(sup, "a"), *a2);

  ASSERT_TRUE(terminate_child(sup, "a").ok());
  EXPECT_EQ(delete_child(sup, "a").value(), Term("ok"));
  EXPECT_EQ(counts(sup).specs, 1u);
  EXPECT_EQ(terminate_child(sup, "a").error(), "not_found");
  EXPECT_EQ(restart_child(sup, "a").error(), "not_found");
  EXPECT_EQ(delete_child(sup, "zzz").error(), "not_found");
}

TEST_F(SupervisorTest, StartChildAddsAChildToAStaticSupervisor) {
  Pid sup = start_sup({}, {worker("a")});
  auto b = start_child(sup, worker("b"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(pid_of(sup, "b"), *b);
  EXPECT_EQ(start_child(sup, worker("b")).error(), tuple("already_started", *b));
  ASSERT_TRUE(terminate_child(sup, "b").ok());
  EXPECT_EQ(start_child(sup, worker("b")).error(), "already_present");
  EXPECT_EQ(start_child(sup, child<FailingInit>(node, "f")).error(), "boom");
  EXPECT_EQ(counts(sup).specs, 2u);  // a failed start keeps no spec

  ASSERT_OK(stop(sup, reasons::shutdown()));  // the added child stops first
  EXPECT_EQ(journal->events(), (Events{"start:a", "start:b", "stop:b", "stop:a"}));
}

TEST_F(SupervisorTest, FormatStatusShowsStrategyChildrenAndRestarts) {
  Pid sup = start_sup({.strategy = Strategy::kRestForOne}, {worker("a"), worker("b")});
  Pid a = pid_of(sup, "a");
  cast(a, "crash");
  restarted(sup, "a", a);
  auto info = node.process_info(sup);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->behaviour, "supervisor");
  EXPECT_EQ(info->type, "nodus::Supervisor");
  EXPECT_TRUE(info->trap_exit);
  ASSERT_TRUE(info->status.has_value());
  const Term& s = *info->status;
  ASSERT_TRUE(s.is_map()) << s.to_string();
  EXPECT_EQ(*s.find(atom("strategy")), Term("rest_for_one"));
  EXPECT_EQ(*s.find(atom("specs")), Term(2));
  EXPECT_EQ(*s.find(atom("active")), Term(2));
  EXPECT_EQ(*s.find(atom("restarts")), Term(1));
}

// -- DynamicSupervisor --------------------------------------------------------------------

TEST_F(SupervisorTest, DynamicSupervisorStartsAndTerminatesChildren) {
  Pid dyn = start_dynamic_supervisor(node).value();
  EXPECT_EQ(counts(dyn).specs, 0u);
  Pid a = start_child(dyn, worker("a")).value();
  Pid b = start_child(dyn, worker("b")).value();
  Pid c = start_child(dyn, worker("c")).value();
  auto children = which_children(dyn);
  ASSERT_TRUE(children.ok());
  ASSERT_EQ(children->size(), 3u);
  EXPECT_EQ((*children)[0].pid, a);
  EXPECT_EQ((*children)[2].pid, c);

  EXPECT_EQ(terminate_child(dyn, b).value(), Term("ok"));
  EXPECT_TRUE(gone(b));
  EXPECT_EQ(counts(dyn).specs, 2u);  // forgotten
  EXPECT_EQ(terminate_child(dyn, b).error(), "not_found");
  EXPECT_EQ(terminate_child(dyn, "a").error(), "not_supported");

  auto info = node.process_info(dyn);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->behaviour, "supervisor");
  EXPECT_EQ(info->type, "nodus::DynamicSupervisor");

  ASSERT_OK(stop(dyn, reasons::shutdown()));  // reverse start order
  EXPECT_EQ(journal->events(),
            (Events{"start:a", "start:b", "start:c", "stop:b", "stop:c", "stop:a"}));
}

TEST_F(SupervisorTest, DynamicSupervisorRefusesChildrenBeyondMaxChildren) {
  Pid dyn = start_dynamic_supervisor(node, {.max_children = 2}).value();
  Pid a = start_child(dyn, worker("a")).value();
  ASSERT_TRUE(start_child(dyn, worker("b")).ok());
  EXPECT_EQ(start_child(dyn, worker("c")).error(), "max_children");
  ASSERT_TRUE(terminate_child(dyn, a).ok());
  EXPECT_TRUE(start_child(dyn, worker("c")).ok());
  EXPECT_EQ(counts(dyn).active, 2u);
}

TEST_F(SupervisorTest, DynamicSupervisorRestartsACrashedChild) {
  Pid dyn = start_dynamic_supervisor(node).value();
  Pid p = start_child(dyn, worker("p")).value();
  Pid t = start_child(dyn, worker("t").with_restart(Restart::kTemporary)).value();
  Pid n = start_child(dyn, worker("n").with_restart(Restart::kTransient)).value();

  cast(p, "crash");
  Pid p2;
  ASSERT_TRUE(eventually([&] {
    auto c = which_children(dyn).value();
    p2 = c.empty() ? Pid{} : c[0].pid;
    return p2.valid() && p2 != p;
  }));
  EXPECT_EQ(call(p2, "ping").value(), Term("pong"));

  cast(t, "crash");        // temporary: forgotten
  cast(n, "exit_normal");  // transient, clean exit: forgotten
  ASSERT_TRUE(eventually([&] { return counts(dyn).specs == 1; }));
  EXPECT_EQ(which_children(dyn).value()[0].pid, p2);
}

// Elixir's DynamicSupervisor after a child's crash: a restart whose start returns ignore drops
// the child (its max_children slot is free again); one that fails keeps it and tries again;
// failures in a loop exhaust the intensity and stop the supervisor.
class DynamicRestartTest : public SupervisorTest {
 protected:
  // A worker whose first start succeeds, whose next `times` starts give `later` (an error, or
  // ignore), and whose starts after those succeed again.
  ChildSpec scripted(const std::string& id, Reason later, int times = 1000000) {
    ChildSpec spec = worker(id);
    auto starts = std::make_shared<std::atomic<int>>(0);
    spec.start = [start = spec.start, starts, later, times]() -> Result<Pid, Reason> {
      const int n = starts->fetch_add(1);
      if (n == 0 || n > times) return start();
      return later;
    };
    return spec;
  }
};

TEST_F(DynamicRestartTest, ARestartThatIgnoresDropsTheChildAndFreesItsSlot) {
  Pid dyn = start_dynamic_supervisor(node, {.max_children = 1}).value();
  Pid a = start_child(dyn, scripted("a", reasons::of(ErrorCode::kIgnored))).value();
  cast(a, "crash");
  ASSERT_TRUE(eventually([&] { return counts(dyn).specs == 0; }));
  EXPECT_TRUE(which_children(dyn).value().empty());
  EXPECT_OK(start_child(dyn, worker("b")));  // not max_children
}

TEST_F(DynamicRestartTest, ARestartThatFailsKeepsTheChildAndTriesAgain) {
  Pid dyn = start_dynamic_supervisor(node, {.intensity = 10, .max_children = 1}).value();
  Pid a = start_child(dyn, scripted("a", Reason("boom"), /*times=*/2)).value();
  cast(a, "crash");
  Pid again;
  ASSERT_TRUE(eventually([&] {
    auto c = which_children(dyn).value();
    again = c.size() == 1 ? c[0].pid : Pid{};
    return again.valid() && again != a;
  }));
  EXPECT_EQ(call(again, "ping").value(), Term("pong"));
  EXPECT_EQ(counts(dyn).specs, 1u);
  EXPECT_EQ(start_child(dyn, worker("b")).error(), "max_children");
}

TEST_F(DynamicRestartTest, RestartsThatKeepFailingStopTheSupervisor) {
  Pid dyn = start_dynamic_supervisor(node, {.intensity = 3, .period = 5s}).value();
  Ref watch = monitor(dyn);
  Pid a = start_child(dyn, scripted("a", Reason("boom"))).value();
  cast(a, "crash");
  EXPECT_EQ(down_reason(watch), "shutdown");
}

}  // namespace
}  // namespace nodus
