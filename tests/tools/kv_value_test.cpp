// tools/src/kv_value.cpp: how nodusctl writes the store's values, keys and contexts.
#include "kv_value.hpp"

#include <gtest/gtest.h>

#include <string>

#include "nodus/node/codec.hpp"

namespace nodus::tools {
namespace {

using nlohmann::json;
using namespace std::string_literals;

TEST(KvValueTest, Utf8IsCheckedAsTheStandardSays) {
  EXPECT_TRUE(valid_utf8(""));
  EXPECT_TRUE(valid_utf8("plain ascii"));
  EXPECT_TRUE(valid_utf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));  // é € 😀
  EXPECT_FALSE(valid_utf8("\xc3"));                                      // cut short
  EXPECT_FALSE(valid_utf8("\xc0\xaf"));                                  // overlong '/'
  EXPECT_FALSE(valid_utf8("\xed\xa0\x80"));                              // a surrogate
  EXPECT_FALSE(valid_utf8("\xf4\x90\x80\x80"));                          // above U+10FFFF
  EXPECT_FALSE(valid_utf8("\x83\x01"));                                  // a term's tag
  EXPECT_FALSE(valid_utf8("a\xffz"));
}

TEST(KvValueTest, TextIsStoredAsItsBytesAndShownAsAString) {
  auto v = value_bytes("hello", false);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ("hello", *v);
  EXPECT_EQ(json("hello"), value_json(*v));
  EXPECT_EQ("hello", value_text(*v));
  // Without --term, JSON-looking text is text too.
  EXPECT_EQ(R"({"a": 1})", *value_bytes(R"({"a": 1})", false));
}

TEST(KvValueTest, ATermIsStoredTaggedAndShownAsItsJson) {
  auto v = value_bytes(R"(["point", 1, 2])", true);
  ASSERT_TRUE(v.ok());
  ASSERT_FALSE(v->empty());
  EXPECT_EQ(kTermValueTag, v->front());
  auto t = decode_term(std::string_view(*v).substr(1));
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(tuple("point", 1, 2), *t);
  EXPECT_EQ(json::parse(R"(["point", 1, 2])"), value_json(*v));
  // A binary term is stored as its bytes: {"$bin": "x"} and "x" without --term are the same.
  EXPECT_EQ("x", *value_bytes(R"({"$bin": "x"})", true));
  // Bad JSON names what is wrong.
  auto bad = value_bytes("[1,", true);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(ErrorCode::kBadArg, bad.error().code());
  EXPECT_NE(std::string::npos, bad.error().message().find("VALUE (--term)"))
      << bad.error().message();
}

TEST(KvValueTest, OtherBytesAreShownAsBase64) {
  const std::string bytes = "\x00\xff\x10"s;
  EXPECT_EQ(json({{"$base64", "AP8Q"}}), value_json(bytes));
  EXPECT_EQ(R"({"$base64":"AP8Q"})", value_text(bytes));
  // The tag byte followed by something that is no term: bytes, not an error.
  EXPECT_TRUE(value_json("\x83\xc1"s).contains("$base64"));
}

TEST(KvValueTest, OpaqueBytesRoundTripThroughBase64Url) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (const std::string& bytes : {""s, "a"s, "ab"s, "abc"s, all}) {
    const std::string text = to_base64url(bytes);
    EXPECT_EQ(std::string::npos, text.find_first_of("+/=")) << text;
    auto back = from_base64url(text);
    ASSERT_TRUE(back.ok()) << text;
    EXPECT_EQ(bytes, *back);
  }
  for (const char* bad : {"a", "ab=", "a+b/", "has space", "AP8Q!"}) {
    auto r = from_base64url(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(ErrorCode::kBadArg, r.error().code());
  }
}

}  // namespace
}  // namespace nodus::tools
