// tools/src/json_term.cpp: the JSON <-> term mapping of nodusctl call/cast and its views.
#include "json_term.hpp"

#include <gtest/gtest.h>

#include <string>

namespace nodus::tools {
namespace {

using nlohmann::json;

Term read(const std::string& text) {
  auto t = json_text_to_term(text);
  EXPECT_TRUE(t.ok()) << text << ": " << t.error().to_string();
  return t.ok() ? t.value() : Term();
}

// Why `text` is refused (kBadArg); "" when it was not.
std::string refusal(const std::string& text) {
  auto t = json_text_to_term(text);
  if (t.ok()) return "";
  EXPECT_EQ(ErrorCode::kBadArg, t.error().code());
  return t.error().message();
}

TEST(JsonTermTest, StringsAreAtomsArraysTuplesObjectsMaps) {
  EXPECT_EQ(Term("increment"), read(R"("increment")"));
  EXPECT_EQ(tuple("push", 1), read(R"(["push", 1])"));
  EXPECT_EQ(Term(Map{{{Term("a"), Term(1)}}}), read(R"({"a": 1})"));
  EXPECT_EQ(Term(true), read("true"));
  EXPECT_EQ(Term(), read("null"));
  EXPECT_EQ(Term(1.5), read("1.5"));
  EXPECT_EQ(Term(bin("x")), read(R"({"$bin": "x"})"));
  EXPECT_EQ(Term(List{Term(1), Term(2)}), read(R"({"$list": [1, 2]})"));
}

TEST(JsonTermTest, TheExactFormReadsBackAsTheSameTerm) {
  const Term terms[] = {
      tuple("ok", bin("text"), List{Term(1), Term("a")}, 2.5, -7),
      Term(Map{{{Term(1), Term("one")}, {Term(bin("k")), Term(List{})}}}),
      Term(Map{{{Term("a"), tuple()}}}),
      tuple(Term(true), Term(false), Term()),
  };
  for (const Term& t : terms) {
    const json j = term_to_json(t);
    auto back = json_to_term(j);
    ASSERT_TRUE(back.ok()) << j.dump() << ": " << back.error().to_string();
    EXPECT_EQ(t, back.value()) << j.dump();
  }
  EXPECT_EQ(json::parse(R"({"$map": [[1, "one"]]})"),
            term_to_json(Term(Map{{{Term(1), Term("one")}}})));
}

TEST(JsonTermTest, ThePlainFormIsForPeople) {
  const Term t = tuple(bin("text"), List{Term(1)}, Term(Map{{{Term(1), Term("one")}}}));
  EXPECT_EQ(json::parse(R"(["text", [1], {"1": "one"}])"), term_to_json(t, JsonStyle::kPlain));
  const Pid p{Atom("n1"), 7, (std::uint64_t{2} << 32) | 4};
  EXPECT_EQ(json("<n1.4.2>"), term_to_json(Term(p), JsonStyle::kPlain));
  EXPECT_EQ(json::parse(R"({"$pid": "<n1.4.2>"})"), term_to_json(Term(p)));
}

TEST(JsonTermTest, IntegersAreSigned64Bit) {
  EXPECT_EQ(Term(std::int64_t{INT64_MAX}), read("9223372036854775807"));
  EXPECT_EQ(Term(std::int64_t{INT64_MIN}), read("-9223372036854775808"));
  for (const char* big :
       {"9223372036854775808", "18446744073709551615", "-9223372036854775809",
        R"(["push", 12345678901234567890123])", R"({"a": [-99999999999999999999]})"}) {
    const std::string why = refusal(big);
    EXPECT_NE(std::string::npos, why.find("does not fit in 64 signed bits")) << big << ": " << why;
    EXPECT_EQ(std::string::npos, why.find('\n')) << "one line: " << why;
  }
  // Digits inside strings and written as floats are no integers.
  EXPECT_EQ(Term("12345678901234567890123"), read(R"("12345678901234567890123")"));
  EXPECT_EQ(Term(bin("\"99999999999999999999\"")), read(R"({"$bin": "\"99999999999999999999\""})"));
  EXPECT_EQ(Term(1.2345678901234567e22), read("1.2345678901234567e22"));
}

TEST(JsonTermTest, MalformedRequestsSayWhatIsWrong) {
  EXPECT_NE(std::string::npos, refusal("{not json").find("not JSON"));
  EXPECT_NE(std::string::npos, refusal(R"({"$bin": 1})").find("\"$bin\" takes a string"));
  EXPECT_NE(std::string::npos, refusal(R"({"$pid": "<n1.1.0>"})").find("cannot be written"));
  EXPECT_NE(std::string::npos, refusal(R"({"$map": [[1]]})").find("[key, value] pairs"));
  std::string long_atom(302, 'a');  // (not "\"" + string: GCC 12 warns falsely on that)
  long_atom.front() = long_atom.back() = '"';
  EXPECT_NE(std::string::npos, refusal(long_atom).find("longer than an atom"));
  EXPECT_NE(std::string::npos,
            refusal(std::string(100, '[') + std::string(100, ']')).find("nested"));
}

}  // namespace
}  // namespace nodus::tools
