// tools/src/admin.cpp's protocol parts: pid texts, failure reasons as codes, error replies;
// and global_register, against an admin server on three loopback nodes running global names.
#include "admin.hpp"

#include <gtest/gtest.h>

#include "node/test_util.hpp"
#include "nodus/registry/global.hpp"

namespace nodus::tools {
namespace {

using namespace std::chrono_literals;
using nodus::testing::eventually;

TEST(AdminTest, APidTextIsNodeSlotAndSerial) {
  auto p = parse_pid_text("<n1.42.3>");
  ASSERT_TRUE(p.ok()) << p.error().to_string();
  EXPECT_EQ("n1", p->node);
  EXPECT_EQ(42u, p->slot);
  EXPECT_EQ(3u, p->serial);
  p = parse_pid_text("<db.eu-west.7.0>");  // a node name may hold dots
  ASSERT_TRUE(p.ok());
  EXPECT_EQ("db.eu-west", p->node);
  // What Pid::to_string writes reads back.
  const Pid pid{Atom("n2"), 9, (std::uint64_t{5} << 32) | 17};
  p = parse_pid_text(pid.to_string());
  ASSERT_TRUE(p.ok()) << pid.to_string();
  EXPECT_EQ("n2", p->node);
  EXPECT_EQ(17u, p->slot);
  EXPECT_EQ(5u, p->serial);
}

TEST(AdminTest, MalformedPidTextsAreBadArguments) {
  for (const char* text : {"garbage", "<n1.x.y>", "<n1.4>", "<.4.0>", "<n1.4.0", "n1.4.0>",
                           "<n1.-4.0>", "<n1.4.99999999999>", "<n 1.4.0>", "<n1..0>", "<>"}) {
    auto p = parse_pid_text(text);
    ASSERT_FALSE(p.ok()) << text;
    EXPECT_EQ(ErrorCode::kBadArg, p.error().code()) << text;
    EXPECT_NE(std::string::npos, p.error().message().find("is not a pid")) << text;
  }
}

TEST(AdminTest, AFailureReasonHasTheTablesCode) {
  EXPECT_EQ(ErrorCode::kNoProc, code_of(Reason("noproc")));
  EXPECT_EQ(ErrorCode::kTimeout, code_of(Reason("timeout")));
  EXPECT_EQ(ErrorCode::kNodeDown, code_of(Reason("nodedown")));
  EXPECT_EQ(ErrorCode::kAlreadyStarted, code_of(Reason(tuple("already_started", Pid{}))));
  EXPECT_EQ(ErrorCode::kNoProc, code_of(reasons::from_status(Status(ErrorCode::kNoProc, "x"))));
  // Any other reason is a process's exit.
  EXPECT_EQ(ErrorCode::kExited, code_of(Reason(tuple("badmatch", 3))));
  EXPECT_EQ(ErrorCode::kExited, code_of(Reason("killed")));
  EXPECT_EQ(ErrorCode::kExited, code_of(Reason("ok")));
}

TEST(AdminTest, AnErrorReplyCarriesItsCodeNameAndMessage) {
  const Term reply = error_reply(Status(ErrorCode::kNoProc, "no process <n1.4.0> on n1"));
  auto e = admin_error(reply);
  ASSERT_TRUE(e.has_value()) << reply.to_string();
  EXPECT_EQ(ErrorCode::kNoProc, e->code);
  EXPECT_EQ("noproc", e->name);
  EXPECT_EQ("no process <n1.4.0> on n1", e->message);
  EXPECT_EQ(1001, reply[1].as_int()) << "the table's stable number";
  // A code this build does not know keeps its number and the sender's name.
  e = admin_error(tuple("error", 6000, "too_many_siblings", bin("100 siblings")));
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(6000, static_cast<int>(e->code));
  EXPECT_EQ("too_many_siblings", e->name);
  EXPECT_FALSE(admin_error(tuple("ok", 1)).has_value());
  EXPECT_FALSE(admin_error(tuple("error", "noproc")).has_value());
}

// A hidden client cannot hold a global name: global_register starts a holder on the admin's node
// that registers itself and holds the name until it loses it.
TEST(AdminTest, GlobalRegisterStartsAHolderThatKeepsTheNameUntilItLosesIt) {
  auto nodes = testing::start_loopback_star({"a1", "a2", "a3"}, "admin-cookie", 1000ms);
  ASSERT_EQ(3u, nodes.size());
  for (auto& n : nodes) ASSERT_OK(start_global(*n));
  ASSERT_TRUE(eventually(
      [&] {
        for (auto& n : nodes) {
          if (global_nodes(*n).size() != 2) return false;
        }
        return true;
      },
      10s));
  Node& a1 = *nodes[0];
  AdminOptions options;
  options.node = &a1;
  auto admin = start<AdminServer>(a1, SpawnOptions{.name = kAdminName}, options);
  ASSERT_TRUE(admin.ok());
  Inbox me(*nodes[1]);  // the client: a process of another node, as a hidden client's call is
  auto ask = [&](const Term& request) {
    auto r = call(named(kAdminName, "a1"), request, 15s);
    EXPECT_TRUE(r.ok()) << r.error().to_string();
    return r.ok() ? *r : Term();
  };

  Term first = ask(tuple("global_register", bin("lock"), "register"));
  ASSERT_TRUE(first.match({"ok", _map})) << first.to_string();
  const Pid holder = first[1].find(Term("pid"))->as_pid();
  const std::int64_t epoch = first[1].find(Term("epoch"))->as_int();
  EXPECT_EQ(Atom("a1"), holder.node);
  EXPECT_GE(epoch, 1);
  for (auto& n : nodes) {
    EXPECT_TRUE(eventually([&] { return whereis_global(*n, "lock") == holder; }, 5s));
  }

  // Taken: refused, naming the holder.
  Term again = ask(tuple("global_register", bin("lock"), "register"));
  auto e = admin_error(again);
  ASSERT_TRUE(e.has_value()) << again.to_string();
  EXPECT_EQ(ErrorCode::kAlreadyStarted, e->code);
  EXPECT_NE(std::string::npos, e->message.find(holder.to_string())) << e->message;

  // re_register takes it: a new holder, a higher epoch, and the old holder exits.
  Term moved = ask(tuple("global_register", bin("lock"), "re_register"));
  ASSERT_TRUE(moved.match({"ok", _map})) << moved.to_string();
  const Pid next = moved[1].find(Term("pid"))->as_pid();
  EXPECT_NE(holder, next);
  EXPECT_GT(moved[1].find(Term("epoch"))->as_int(), epoch);
  EXPECT_TRUE(eventually([&] { return !a1.is_process_alive(holder); }, 5s));
  for (auto& n : nodes) {
    EXPECT_TRUE(eventually([&] { return whereis_global(*n, "lock") == next; }, 5s));
  }
  // Unregistered elsewhere: its holder exits too.
  ASSERT_OK(unregister_global(*nodes[2], "lock"));
  EXPECT_TRUE(eventually([&] { return !a1.is_process_alive(next); }, 5s));

  for (const Term& bad :
       {tuple("global_register", bin(""), "register"), tuple("global_register", "lock", "register"),
        tuple("global_register", bin("lock"), "steal")}) {
    auto b = admin_error(ask(bad));
    ASSERT_TRUE(b.has_value()) << bad.to_string();
    EXPECT_EQ(ErrorCode::kBadArg, b->code) << bad.to_string();
  }
  me.close();
  for (auto& n : nodes) n->shutdown();
}

}  // namespace
}  // namespace nodus::tools
