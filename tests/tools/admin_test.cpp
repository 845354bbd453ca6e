// tools/src/admin.cpp's protocol parts: pid texts, failure reasons as codes, error replies.
#include "admin.hpp"

#include <gtest/gtest.h>

namespace nodus::tools {
namespace {

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

}  // namespace
}  // namespace nodus::tools
