// The coordinator's quorum logic, stepped reply by reply: W/PW/DW for puts, R for gets, no
// quorum as soon as it cannot be met, timeouts, and who read repair must fix.
#include <gtest/gtest.h>

#include "fsm.hpp"

namespace nodus::kv {
namespace {

std::vector<Target> three(bool third_primary = true) {
  return {Target{0, true, 0, Atom()}, Target{1, true, 1, Atom()},
          Target{2, third_primary, 2, Atom()}};
}

TEST(PutFsmTest, AnswersOnceWAcksArrived) {
  PutFsm f(three(), /*w=*/2, 0, 0);
  EXPECT_EQ(f.outcome(), Outcome::kPending);
  f.ack(0, true);
  EXPECT_EQ(f.outcome(), Outcome::kPending);
  f.ack(2, false);
  EXPECT_EQ(f.outcome(), Outcome::kOk);
  EXPECT_FALSE(f.all_answered());
  f.ack(2, true);  // a duplicate changes nothing
  f.fail(1);
  EXPECT_EQ(f.outcome(), Outcome::kOk);
}

TEST(PutFsmTest, NoQuorumAsSoonAsTheRestCannotMakeItUp) {
  PutFsm f(three(), 3, 0, 0);
  f.ack(0, true);
  f.fail(2);
  EXPECT_EQ(f.outcome(), Outcome::kNoQuorum);
  EXPECT_EQ(f.which(), Quorum::kW);
  EXPECT_EQ(f.needed(), 3u);
  EXPECT_EQ(f.got(), 1u);
}

TEST(PutFsmTest, FewerTargetsThanWFailsAtOnce) {
  PutFsm f({Target{0, true, 0, Atom()}}, 2, 0, 0);
  f.check();
  EXPECT_EQ(f.outcome(), Outcome::kNoQuorum);
  EXPECT_EQ(f.needed(), 2u);
  EXPECT_EQ(f.got(), 0u);
}

TEST(PutFsmTest, FallbackAcksDoNotCountForPw) {
  PutFsm f(three(/*third_primary=*/false), 2, /*pw=*/2, 0);
  f.ack(0, true);
  f.ack(2, true);  // a fallback: W met, PW not
  EXPECT_EQ(f.outcome(), Outcome::kPending);
  f.fail(1);
  EXPECT_EQ(f.outcome(), Outcome::kNoQuorum);
  EXPECT_EQ(f.which(), Quorum::kPw);
  EXPECT_STREQ(quorum_name(f.which()), "pw");
  EXPECT_EQ(f.needed(), 2u);
  EXPECT_EQ(f.got(), 1u);
}

TEST(PutFsmTest, DwCountsDurableAcksOnly) {
  PutFsm f(three(), 1, 0, /*dw=*/2);
  f.ack(0, true);
  f.ack(1, false);
  EXPECT_EQ(f.outcome(), Outcome::kPending);
  f.ack(2, true);
  EXPECT_EQ(f.outcome(), Outcome::kOk);
  PutFsm g(three(), 1, 0, 2);
  g.ack(0, false);
  g.ack(1, false);
  EXPECT_EQ(g.outcome(), Outcome::kNoQuorum) << "one out: DW = 2 cannot be met";
  EXPECT_EQ(g.which(), Quorum::kDw);
  EXPECT_EQ(g.got(), 0u);
}

TEST(PutFsmTest, TheDeadlineTimesOutAPendingPutOnly) {
  PutFsm f(three(), 2, 0, 0);
  f.ack(0, true);
  f.expire();
  EXPECT_EQ(f.outcome(), Outcome::kTimeout);
  PutFsm done(three(), 1, 0, 0);
  done.ack(1, true);
  done.expire();
  EXPECT_EQ(done.outcome(), Outcome::kOk);
}

Object write(const char* v, std::uint64_t vnode, const Object& base = {}) {
  return base.update(base.join(), Sibling{v, 1, false}, Actor{vnode, 1});
}

TEST(GetFsmTest, AnswersAfterRRepliesWithTheirMerge) {
  GetFsm f(three(), 2);
  const Object old = write("v1", 7);
  const Object fresh = write("v2", 7, old);
  f.reply(0, old);
  EXPECT_EQ(f.outcome(), Outcome::kPending);
  f.reply(1, fresh);
  EXPECT_EQ(f.outcome(), Outcome::kOk);
  ASSERT_EQ(f.merged().values().size(), 1u);
  EXPECT_EQ(f.merged().values()[0].value, "v2");
  f.reply(2, std::nullopt);
  EXPECT_TRUE(f.all_answered());
  // The replica with the old version and the one without the key need repair.
  EXPECT_EQ(f.stale(), (std::vector<std::size_t>{0, 2}));
}

TEST(GetFsmTest, NotFoundRepliesCountTowardR) {
  GetFsm f(three(), 2);
  f.reply(1, std::nullopt);
  f.reply(2, std::nullopt);
  EXPECT_EQ(f.outcome(), Outcome::kOk);
  EXPECT_TRUE(f.merged().empty());
  EXPECT_TRUE(f.stale().empty());
}

TEST(GetFsmTest, FewerTargetsThanRFailsOnceTheCoordinatorReplied) {
  GetFsm f({Target{0, true, 0, Atom()}}, 2);
  f.reply(0, std::nullopt);
  f.check();
  EXPECT_EQ(f.outcome(), Outcome::kNoQuorum);
  EXPECT_EQ(f.got(), 1u);
}

TEST(GetFsmTest, CrashedReplicasMakeNoQuorum) {
  GetFsm f(three(), 2);
  f.reply(0, write("v", 1));
  f.fail(1);
  EXPECT_EQ(f.outcome(), Outcome::kPending);
  f.fail(2);
  EXPECT_EQ(f.outcome(), Outcome::kNoQuorum);
  EXPECT_EQ(f.which(), Quorum::kR);
  EXPECT_EQ(f.needed(), 2u);
  EXPECT_EQ(f.got(), 1u);
}

TEST(GetFsmTest, PrCountsPrimariesOnly) {
  GetFsm f(three(/*third_primary=*/false), 2, /*pr=*/2);
  f.reply(0, std::nullopt);
  f.reply(2, std::nullopt);  // a fallback: R met, PR not
  EXPECT_EQ(f.outcome(), Outcome::kPending);
  f.reply(1, write("v", 1));
  EXPECT_EQ(f.outcome(), Outcome::kOk);
  GetFsm g(three(false), 1, 2);
  g.reply(2, std::nullopt);
  g.fail(0);
  EXPECT_EQ(g.outcome(), Outcome::kNoQuorum);
  EXPECT_EQ(g.which(), Quorum::kPr);
  EXPECT_EQ(g.needed(), 2u);
  EXPECT_EQ(g.got(), 0u);
}

TEST(GetFsmTest, ConcurrentRepliesMergeIntoSiblings) {
  GetFsm f(three(), 3);
  f.reply(0, write("a", 1));
  f.reply(1, write("b", 2));
  f.reply(2, write("a", 1));
  EXPECT_EQ(f.outcome(), Outcome::kOk);
  EXPECT_EQ(f.merged().value_count(), 2u);
  EXPECT_EQ(f.stale(), (std::vector<std::size_t>{0, 1, 2}));
}

}  // namespace
}  // namespace nodus::kv
