// The majority arithmetic of a global name's lock round (registry/src/lock_round.hpp), without
// nodes or messages: with how many grants a round wins, when refusals lose it, and how a peer
// that goes away or never answers counts.
#include "lock_round.hpp"

#include <gtest/gtest.h>

namespace nodus::global_protocol {
namespace {

using Outcome = LockRound::Outcome;

const Atom a("a"), b("b"), c("c"), d("d");

TEST(LockRoundTest, ANodeAloneWinsWithItsOwnLock) {
  EXPECT_EQ(LockRound({}, true).outcome(), Outcome::kWon);
  EXPECT_EQ(LockRound({}, false).outcome(), Outcome::kLost);
}

TEST(LockRoundTest, OfThreeNodesTheFirstGrantWins) {
  LockRound r({a, b}, true);
  EXPECT_EQ(r.voters(), 3u);
  EXPECT_EQ(r.outcome(), Outcome::kOpen);
  EXPECT_TRUE(r.answer(a, true));
  EXPECT_EQ(r.outcome(), Outcome::kWon);
  EXPECT_EQ(r.waiting(), std::set<Atom>{b});  // b's answer may still come: it is released
}

TEST(LockRoundTest, OneRefusalOfThreeLeavesItOpenAndASecondLosesIt) {
  LockRound r({a, b}, true);
  r.answer(a, false);
  EXPECT_EQ(r.outcome(), Outcome::kOpen);  // b may still grant it: 2 of 3
  r.answer(b, true);
  EXPECT_EQ(r.outcome(), Outcome::kWon);
  LockRound lost({a, b}, true);
  lost.answer(a, false);
  lost.answer(b, false);
  EXPECT_EQ(lost.outcome(), Outcome::kLost);
}

TEST(LockRoundTest, OfFourNodesTwoGrantsAreNoMajority) {
  LockRound r({a, b, c}, true);
  r.answer(a, true);
  EXPECT_EQ(r.outcome(), Outcome::kOpen);  // 2 of 4
  r.answer(b, false);
  EXPECT_EQ(r.outcome(), Outcome::kOpen);  // c may still make it 3 of 4
  r.answer(c, false);
  EXPECT_EQ(r.outcome(), Outcome::kLost);
  LockRound won({a, b, c}, true);
  won.answer(c, true);
  won.answer(b, true);
  EXPECT_EQ(won.outcome(), Outcome::kWon);
}

TEST(LockRoundTest, ItsOwnLockTakenLosesWhateverThePeersSay) {
  LockRound r({a, b}, false);
  EXPECT_EQ(r.outcome(), Outcome::kLost);
  r.answer(a, true);
  r.answer(b, true);
  EXPECT_EQ(r.outcome(), Outcome::kLost);
}

TEST(LockRoundTest, APeerThatGoesStopsVotingAndTheMajorityIsCountedAnew) {
  LockRound r({a, b, c}, true);  // 4 voters: needs 3
  r.answer(a, true);
  EXPECT_EQ(r.outcome(), Outcome::kOpen);
  EXPECT_TRUE(r.drop(b));  // 3 voters: 2 is a majority
  EXPECT_EQ(r.outcome(), Outcome::kWon);
  LockRound refused({a, b}, true);
  refused.answer(a, false);
  EXPECT_TRUE(refused.drop(a));  // its refusal goes with it: 2 voters, b may still grant
  EXPECT_EQ(refused.outcome(), Outcome::kOpen);
  EXPECT_FALSE(refused.drop(d));  // never asked
  refused.drop(b);
  EXPECT_EQ(refused.outcome(), Outcome::kWon);  // alone now
}

TEST(LockRoundTest, AnswersNotWaitedForAreIgnored) {
  LockRound r({a, b}, true);
  EXPECT_FALSE(r.answer(c, true));  // not asked
  EXPECT_TRUE(r.answer(a, false));
  EXPECT_FALSE(r.answer(a, true));  // answered already
  EXPECT_EQ(r.outcome(), Outcome::kOpen);
}

TEST(LockRoundTest, ARoundThatOutlastsItsTimeIsLostUnlessWon) {
  LockRound r({a, b}, true);
  r.expire();
  EXPECT_EQ(r.outcome(), Outcome::kLost);
  LockRound won({a, b}, true);
  won.answer(a, true);
  won.expire();
  EXPECT_EQ(won.outcome(), Outcome::kWon);
}

}  // namespace
}  // namespace nodus::global_protocol
