// RespParser (tools/src/resp.hpp): Redis's request syntax, pipelining, frames split anywhere
// across reads, and the bounds, with Redis's error texts.
#include <gtest/gtest.h>

#include "resp.hpp"

namespace {

using nodus::tools::RespParser;
using Args = std::vector<std::string>;

// Every command `input` holds, fed in pieces of `piece` bytes; `error` gets the protocol error.
std::vector<Args> parse(const std::string& input, std::size_t piece, std::string* error = nullptr,
                        RespParser::Limits limits = {}) {
  RespParser p(limits);
  std::vector<Args> out;
  for (std::size_t at = 0; at < input.size(); at += piece) {
    p.feed(std::string_view(input).substr(at, piece));
    Args args;
    RespParser::Next r;
    while ((r = p.next(args)) == RespParser::Next::kCommand) out.push_back(args);
    if (r == RespParser::Next::kError) {
      if (error) *error = p.error();
      return out;
    }
  }
  return out;
}

TEST(RespParserTest, PipelinedMultibulkAndInlineCommandsSplitAnywhere) {
  const std::string input =
      "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\nv!\r\n"  // a value holding \r\n
      "*1\r\n$4\r\nPING\r\n"
      "GET  k\r\n"
      "\r\n"  // an empty inline line: skipped
      "ECHO \"a b\\x41\\n\" 'it\\'s'\n"
      "*2\r\n$3\r\nGET\r\n$0\r\n\r\n";
  const std::vector<Args> want = {
      {"SET", "k", "v\r\nv!"}, {"PING"}, {"GET", "k"}, {"ECHO", "a bA\n", "it's"}, {"GET", ""}};
  for (std::size_t piece : {std::size_t{1}, std::size_t{2}, std::size_t{7}, input.size()}) {
    std::string error;
    EXPECT_EQ(want, parse(input, piece, &error)) << "piece " << piece;
    EXPECT_EQ("", error);
  }
}

TEST(RespParserTest, BadInputGetsRedisErrorTextsAfterTheCommandsBeforeIt) {
  struct Case {
    std::string input, error;
  };
  const Case cases[] = {
      {"*1\r\n$2147483648\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$-5\r\n", "Protocol error: invalid bulk length"},
      {"*1\r\n$x\r\n", "Protocol error: invalid bulk length"},
      {"*x\r\n", "Protocol error: invalid multibulk length"},
      {"*99999999\r\n", "Protocol error: invalid multibulk length"},
      {"*1\r\nfoo\r\n", "Protocol error: expected '$', got 'f'"},
      {"GET \"k\r\n", "Protocol error: unbalanced quotes in request"},
      {std::string(70000, 'a'), "Protocol error: too big inline request"},
      {"*" + std::string(70000, '1'), "Protocol error: too big mbulk count string"},
  };
  for (const Case& c : cases) {
    std::string error;
    auto got = parse("PING\r\n" + c.input, 3, &error);
    EXPECT_EQ(c.error, error) << c.input.substr(0, 40);
    ASSERT_EQ(1u, got.size());
    EXPECT_EQ(Args{"PING"}, got[0]);
  }
}

TEST(RespParserTest, BoundsComeFromTheLimits) {
  RespParser::Limits limits;
  limits.max_bulk = 10;
  limits.max_args = 3;
  limits.max_command_bytes = 15;
  std::string error;
  EXPECT_EQ(1u, parse("*1\r\n$10\r\n0123456789\r\n", 4, &error, limits).size());
  parse("*1\r\n$11\r\n", 4, &error, limits);
  EXPECT_EQ("Protocol error: invalid bulk length", error);
  error.clear();
  parse("*4\r\n", 4, &error, limits);
  EXPECT_EQ("Protocol error: invalid multibulk length", error);
  error.clear();
  parse("*2\r\n$10\r\n0123456789\r\n$6\r\n", 4, &error, limits);
  EXPECT_EQ("Protocol error: command of more than 15 bytes", error);
}

TEST(RespParserTest, ABulkArrivingInPiecesIsNotBufferedTwice) {
  RespParser p;
  p.feed("*2\r\n$3\r\nSET\r\n$100000\r\n");
  Args args;
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(RespParser::Next::kNeedMore, p.next(args));
    p.feed(std::string(1000, 'x'));
  }
  EXPECT_EQ(RespParser::Next::kNeedMore, p.next(args));
  p.feed("\r\n");
  ASSERT_EQ(RespParser::Next::kCommand, p.next(args));
  EXPECT_EQ(100000u, args[1].size());
  EXPECT_EQ(0u, p.buffered());
}

}  // namespace
