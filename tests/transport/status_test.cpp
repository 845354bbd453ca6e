// Status and the error tables: the main table's codes by name and number, and a layer's own
// range registered the way kv/ or an application would (NODUS_DEFINE_ERRORS).
#include "nodus/transport/status.hpp"

#include <gtest/gtest.h>

#include <string>

#include "../test_support.hpp"

// A layer of this test's own, in the applications' range.
#define NODUS_TEST_ERRORS(X)                                   \
  X(kTestFull, 9900, "test_full", "the test's bucket is full") \
  X(kTestLate, 9901, "test_late", "the test's answer came late")
namespace nodus::testlayer {
NODUS_DECLARE_ERRORS(NODUS_TEST_ERRORS)
}
NODUS_DEFINE_ERRORS(testlayer, 9900, 9949, NODUS_TEST_ERRORS);

namespace nodus {
namespace {

TEST(StatusTest, MainTableCodesHaveTheirNamesAndNumbers) {
  EXPECT_EQ(error_name(ErrorCode::kNoQuorum), "no_quorum");
  EXPECT_EQ(static_cast<int>(ErrorCode::kNoQuorum), 1008);
  EXPECT_EQ(error_from_name("unavailable"), ErrorCode::kUnavailable);
  EXPECT_EQ(error_from_number(2004), ErrorCode::kValueTooLarge);
  EXPECT_EQ(error_from_name("cross_partition"), ErrorCode::kCrossPartition);
  EXPECT_FALSE(error_from_number(1999).has_value());
  EXPECT_FALSE(error_from_number(70000).has_value());
  EXPECT_EQ(error_name(static_cast<ErrorCode>(1999)), "unknown");
  EXPECT_EQ(Status(ErrorCode::kNoProc).to_string(),
            "noproc: no such process: it is dead or was never there");
  EXPECT_EQ(Status(ErrorCode::kTimeout, "call to x").to_string(), "timeout: call to x");
}

TEST(StatusTest, ALayersOwnCodesAreKnownLikeTheMainTables) {
  EXPECT_EQ(static_cast<int>(testlayer::kTestFull), 9900);
  EXPECT_EQ(error_name(testlayer::kTestLate), "test_late");
  EXPECT_EQ(error_message(testlayer::kTestFull), "the test's bucket is full");
  EXPECT_EQ(error_from_name("test_full"), testlayer::kTestFull);
  EXPECT_EQ(error_from_number(9901), testlayer::kTestLate);
  EXPECT_FALSE(error_from_number(9902).has_value());  // in the range, but no such code
  Status s(testlayer::kTestFull, "12 of 12");
  EXPECT_EQ(s.to_string(), "test_full: 12 of 12");
  EXPECT_FALSE(s.ok());
}

TEST(StatusTest, ARangeThatCollidesIsRefusedAndChangesNothing) {
  static const ErrorInfo kOverlapping[] = {{ErrorCode{9940}, "test_other", "x"}};
  EXPECT_EQ(register_error_range(9940, 9960, kOverlapping).code(), ErrorCode::kBadArg);
  static const ErrorInfo kMainRange[] = {{ErrorCode{4500}, "test_low", "x"}};
  EXPECT_EQ(register_error_range(4500, 4599, kMainRange).code(), ErrorCode::kBadArg);
  static const ErrorInfo kTakenName[] = {{ErrorCode{9950}, "noproc", "x"}};
  EXPECT_EQ(register_error_range(9950, 9959, kTakenName).code(), ErrorCode::kBadArg);
  static const ErrorInfo kOutside[] = {{ErrorCode{9970}, "test_outside", "x"}};
  EXPECT_EQ(register_error_range(9960, 9969, kOutside).code(), ErrorCode::kBadArg);
  EXPECT_FALSE(error_from_name("test_other").has_value());
  EXPECT_FALSE(error_from_name("test_outside").has_value());
  EXPECT_EQ(error_from_name("noproc"), ErrorCode::kNoProc);
  static const ErrorInfo kFine[] = {{ErrorCode{9960}, "test_fine", "x"}};
  EXPECT_OK(register_error_range(9960, 9969, kFine));
  EXPECT_EQ(error_from_name("test_fine"), ErrorCode{9960});
}

}  // namespace
}  // namespace nodus
