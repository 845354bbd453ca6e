#include "nodus/node/codec.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace nodus {
namespace {

// -- helpers ------------------------------------------------------------------------

std::string Bytes(std::initializer_list<int> bytes) {
  std::string s;
  for (int b : bytes) s += static_cast<char>(b);
  return s;
}

Term RoundTrip(const Term& t) {
  Result<Term> r = decode_term(encode_term(t));
  EXPECT_TRUE(r.ok()) << t.to_string() << ": " << r.error().to_string();
  return r.ok() ? r.value() : Term("decode_failed");
}

// The error message of a decode expected to fail, or "decoded" when it did not.
std::string DecodeError(std::string_view bytes, const DecodeLimits& limits = {}) {
  Result<Term> r = decode_term(bytes, limits);
  if (r.ok()) return "decoded " + r.value().to_string();
  EXPECT_EQ(ErrorCode::kProtocol, r.error().code());
  return r.error().message();
}

Term Nested(int depth, bool as_list) {
  Term t = 1;
  for (int i = 0; i < depth; ++i) t = as_list ? list(t) : tuple(t);
  return t;
}

class CodecTest : public ::testing::Test {
 protected:
  void ExpectRoundTrip(const Term& t) { EXPECT_EQ(t, RoundTrip(t)) << t.to_string(); }
};

// -- round trips ----------------------------------------------------------------------

TEST_F(CodecTest, RoundTripsIntegersOfEveryWidth) {
  const std::int64_t max = std::numeric_limits<std::int64_t>::max();
  const std::int64_t min = std::numeric_limits<std::int64_t>::min();
  for (std::int64_t i :
       {std::int64_t{0}, std::int64_t{1}, std::int64_t{-1}, std::int64_t{127}, std::int64_t{128},
        std::int64_t{-32}, std::int64_t{-33}, std::int64_t{255}, std::int64_t{256},
        std::int64_t{-129}, std::int64_t{65536}, std::int64_t{-32769}, std::int64_t{1} << 32,
        -(std::int64_t{1} << 32), max, min, max - 1, min + 1}) {
    ExpectRoundTrip(Term(i));
  }
}

TEST_F(CodecTest, RoundTripsFloatsBitForBit) {
  const double inf = std::numeric_limits<double>::infinity();
  for (double d :
       {0.0, -0.0, 1.0, 1.5, -2.25, 0.1, 1e300, -1e-300, inf, -inf,
        std::numeric_limits<double>::denorm_min(), std::numeric_limits<double>::quiet_NaN()}) {
    ExpectRoundTrip(Term(d));
  }
  EXPECT_TRUE(RoundTrip(Term(1.0)).is_float());  // not turned into an int
}

TEST_F(CodecTest, RoundTripsAtomsIncludingBooleansAndUndefined) {
  for (const char* name : {"ok", "undefined", "true", "false", "", "Hello World", "node@host"}) {
    ExpectRoundTrip(Term(name));
  }
  ExpectRoundTrip(Term(Atom(std::string(kMaxAtomLength, 'a'))));
}

TEST_F(CodecTest, RoundTripsBinaries) {
  ExpectRoundTrip(bin(""));
  ExpectRoundTrip(bin(std::string_view("a\0b\xff", 4)));
  ExpectRoundTrip(bin(std::string(100000, 'x')));
  EXPECT_TRUE(RoundTrip(bin("ok")).is_bin());  // not confused with the atom
}

TEST_F(CodecTest, SmallIntegersAndBinariesOfEveryLengthRoundTrip) {
  // The common scalars have a decoding path of their own; it must agree with the general one.
  for (std::int64_t i = -40; i <= 140; ++i) ExpectRoundTrip(Term(i));
  for (std::size_t n : {0u, 1u, 31u, 32u, 255u, 256u, 65535u, 65536u}) {
    ExpectRoundTrip(bin(std::string(n, 'b')));
  }
  EXPECT_NE(std::string::npos, DecodeError(Bytes({0xc4, 0x02, 0x61})).find("truncated"));
  EXPECT_NE(std::string::npos, DecodeError(Bytes({0xc4, 0x01, 0x61, 0x62})).find("trailing"));
}

TEST_F(CodecTest, RoundTripsEmptyContainers) {
  ExpectRoundTrip(tuple());
  ExpectRoundTrip(list());
  ExpectRoundTrip(map({}));
  ExpectRoundTrip(tuple(list(), map({}), tuple()));
}

TEST_F(CodecTest, RoundTripsNestedContainers) {
  ExpectRoundTrip(tuple("reply", list(1, 2.5, bin("x"), list(list(), tuple("a"))),
                        map({{"k", list(1)}, {tuple(1, 2), map({{bin("b"), -1}})}})));
  ExpectRoundTrip(Nested(60, true));
  ExpectRoundTrip(Nested(60, false));
}

TEST_F(CodecTest, RoundTripsLongLists) {
  // Past 65535 bytes of payload, so the list's ext header is the 32-bit form.
  List items;
  for (int i = 0; i < 70000; ++i) items.emplace_back(i);
  ExpectRoundTrip(Term(std::move(items)));
  List small;
  for (int i = 0; i < 300; ++i) small.emplace_back(i);  // ext 16
  ExpectRoundTrip(Term(std::move(small)));
}

TEST_F(CodecTest, RoundTripsPidsAndRefs) {
  ExpectRoundTrip(Term(Pid{Atom("n1"), 7, 42}));
  ExpectRoundTrip(Term(Ref{Atom("n1"), 7, 42}));
  ExpectRoundTrip(Term(Pid{}));
  ExpectRoundTrip(
      Term(Pid{Atom(std::string(kMaxAtomLength, 'n')), std::numeric_limits<std::uint32_t>::max(),
               std::numeric_limits<std::uint64_t>::max()}));
  ExpectRoundTrip(Term(Ref{Atom(""), 1, 0x0102030405060708ULL}));
  EXPECT_TRUE(RoundTrip(Term(Ref{Atom("n1"), 1, 1})).is_ref());  // ext 3, not a pid
}

// -- the wire format, byte for byte -----------------------------------------------------

TEST_F(CodecTest, EncodesScalarsAsPlainMessagePack) {
  EXPECT_EQ(Bytes({0x01}), encode_term(1));
  EXPECT_EQ(Bytes({0xff}), encode_term(-1));
  EXPECT_EQ(Bytes({0xcc, 0xc8}), encode_term(200));
  EXPECT_EQ(Bytes({0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0}), encode_term(1.5));
  EXPECT_EQ(Bytes({0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0}), encode_term(1.0));  // stays a float
  EXPECT_EQ(Bytes({0xa2, 'o', 'k'}), encode_term("ok"));
  EXPECT_EQ(Bytes({0xc4, 0x02, 'o', 'k'}), encode_term(bin("ok")));
  EXPECT_EQ(Bytes({0xc3}), encode_term(true));
  EXPECT_EQ(Bytes({0xc2}), encode_term(false));
  EXPECT_EQ(Bytes({0xc0}), encode_term(Term()));
}

TEST_F(CodecTest, EncodesContainers) {
  EXPECT_EQ(Bytes({0x92, 0xa2, 'o', 'k', 0x03}), encode_term(tuple("ok", 3)));
  EXPECT_EQ(Bytes({0x82, 0x01, 0xa1, 'z', 0xa1, 'a', 0x02}),
            encode_term(map({{"a", 2}, {1, "z"}})));  // keys in term order
  EXPECT_EQ(Bytes({0xc7, 0x03, 0x01, 0x92, 0x01, 0x02}), encode_term(list(1, 2)));
  EXPECT_EQ(Bytes({0xd4, 0x01, 0x90}), encode_term(list()));  // fixext 1
}

TEST_F(CodecTest, EncodesPidsAsLengthNameCreationId) {
  EXPECT_EQ(Bytes({0xc7, 15, 0x02, 2, 'n', '1', 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 42}),
            encode_term(Pid{Atom("n1"), 7, 42}));
  EXPECT_EQ(Bytes({0xc7, 13, 0x03, 0, 0x01, 0x02, 0x03, 0x04, 1, 2, 3, 4, 5, 6, 7, 8}),
            encode_term(Ref{Atom(""), 0x01020304, 0x0102030405060708ULL}));
}

TEST_F(CodecTest, EncodeAppendsToTheBuffer) {
  std::string out = "head";
  encode_term(tuple(1), out);
  EXPECT_EQ(std::string("head") + Bytes({0x91, 0x01}), out);
  encode_term(list(1), out);  // the list header is inserted after what is already there
  EXPECT_EQ(std::string("head") + Bytes({0x91, 0x01, 0xd5, 0x01, 0x91, 0x01}), out);
}

TEST_F(CodecTest, DecodesWhatOtherEncodersMayWrite) {
  EXPECT_EQ(Term(), decode_term(Bytes({0xc0})).value());
  EXPECT_EQ(Term(1.5), decode_term(Bytes({0xca, 0x3f, 0xc0, 0, 0})).value());      // float 32
  EXPECT_EQ(Term(5), decode_term(Bytes({0xd3, 0, 0, 0, 0, 0, 0, 0, 5})).value());  // int 64
  EXPECT_EQ(Term("ok"), decode_term(Bytes({0xd9, 0x02, 'o', 'k'})).value());       // str 8
  // A map with a duplicate key keeps the last value.
  EXPECT_EQ(map({{1, 3}}), decode_term(Bytes({0x82, 0x01, 0x02, 0x01, 0x03})).value());
  // A list ext in the 32-bit form.
  EXPECT_EQ(list(7), decode_term(Bytes({0xc9, 0, 0, 0, 2, 0x01, 0x91, 0x07})).value());
}

// -- decoding errors ------------------------------------------------------------------

TEST_F(CodecTest, RefusesEmptyInput) {
  EXPECT_NE(std::string::npos, DecodeError("").find("truncated"));
}

TEST_F(CodecTest, RefusesEveryTruncation) {
  const std::string full = encode_term(
      tuple("reply", list(1, 2.5, bin("bytes")), map({{"k", Pid{Atom("n1"), 1, 2}}}), -300));
  ASSERT_OK(decode_term(full));
  for (std::size_t n = 0; n < full.size(); ++n) {
    Result<Term> r = decode_term(std::string_view(full).substr(0, n));
    ASSERT_FALSE(r.ok()) << "prefix of " << n << " bytes decoded to " << r.value().to_string();
    EXPECT_EQ(ErrorCode::kProtocol, r.error().code());
  }
}

TEST_F(CodecTest, RefusesTrailingBytes) {
  EXPECT_EQ("1 trailing bytes after the term", DecodeError(Bytes({0x01, 0x02})));
  EXPECT_NE(std::string::npos, DecodeError(encode_term("ok") + "xyz").find("3 trailing"));
  // Inside a list's payload too.
  EXPECT_NE(std::string::npos,
            DecodeError(Bytes({0xc7, 0x03, 0x01, 0x91, 0x01, 0x01})).find("trailing"));
}

TEST_F(CodecTest, RefusesArraysOverTheLimit) {
  DecodeLimits limits;
  limits.max_array = 2;
  EXPECT_OK(decode_term(encode_term(tuple(1, 2)), limits));
  EXPECT_NE(std::string::npos, DecodeError(encode_term(tuple(1, 2, 3)), limits).find("max_array"));
  EXPECT_NE(std::string::npos, DecodeError(encode_term(list(1, 2, 3)), limits).find("max_array"));
}

TEST_F(CodecTest, RefusesMapsOverTheLimit) {
  DecodeLimits limits;
  limits.max_map = 1;
  EXPECT_OK(decode_term(encode_term(map({{1, 2}})), limits));
  EXPECT_NE(std::string::npos,
            DecodeError(encode_term(map({{1, 2}, {3, 4}})), limits).find("max_map"));
}

TEST_F(CodecTest, RefusesBinariesOverTheLimit) {
  DecodeLimits limits;
  limits.max_bin = 4;
  EXPECT_OK(decode_term(encode_term(bin("1234")), limits));
  EXPECT_NE(std::string::npos, DecodeError(encode_term(bin("12345")), limits).find("max_bin"));
}

TEST_F(CodecTest, RefusesStrsOverTheLimit) {
  DecodeLimits limits;
  limits.max_str = 3;
  EXPECT_OK(decode_term(encode_term("abc"), limits));
  EXPECT_NE(std::string::npos, DecodeError(encode_term("abcd"), limits).find("max_str"));
}

TEST_F(CodecTest, RefusesExtPayloadsOverTheLimit) {
  DecodeLimits limits;
  limits.max_ext = 14;
  EXPECT_NE(std::string::npos,
            DecodeError(encode_term(Pid{Atom("n1"), 1, 1}), limits).find("max_ext"));  // 15 bytes
  limits.max_ext = 15;
  EXPECT_OK(decode_term(encode_term(Pid{Atom("n1"), 1, 1}), limits));
}

TEST_F(CodecTest, RefusesAtomNamesOver255Bytes) {
  std::string bytes = Bytes({0xd9, 0xff}) + std::string(255, 'a');
  EXPECT_OK(decode_term(bytes));
  bytes = Bytes({0xda, 0x01, 0x00}) + std::string(256, 'a');
  EXPECT_NE(std::string::npos, DecodeError(bytes).find("atoms are at most 255"));
}

TEST_F(CodecTest, RefusesNestingDeeperThanTheLimit) {
  DecodeLimits limits;
  limits.max_depth = 5;
  for (bool as_list : {false, true}) {
    EXPECT_OK(decode_term(encode_term(Nested(5, as_list)), limits)) << as_list;
    EXPECT_NE(std::string::npos,
              DecodeError(encode_term(Nested(6, as_list)), limits).find("max_depth"))
        << as_list;
  }
  // Lists inside tuples inside lists: each level counts once, ext or not.
  const Term mixed5 = list(tuple(list(tuple(list(1)))));
  EXPECT_OK(decode_term(encode_term(mixed5), limits));
  EXPECT_NE(std::string::npos, DecodeError(encode_term(tuple(mixed5)), limits).find("max_depth"));
  // Empty containers count too; maps count like tuples.
  Term empty_inside = tuple();
  for (int i = 0; i < 5; ++i) empty_inside = tuple(empty_inside);  // 6 deep
  EXPECT_NE(std::string::npos, DecodeError(encode_term(empty_inside), limits).find("max_depth"));
  Term maps = map({});
  for (int i = 0; i < 4; ++i) maps = map({{1, maps}});  // 5 deep
  EXPECT_OK(decode_term(encode_term(maps), limits));
  maps = map({{1, maps}});
  EXPECT_NE(std::string::npos, DecodeError(encode_term(maps), limits).find("max_depth"));
  limits.max_depth = 0;
  EXPECT_OK(decode_term(encode_term(7), limits));
  EXPECT_FALSE(decode_term(encode_term(tuple()), limits).ok());
}

TEST_F(CodecTest, RefusesUnknownExtTypes) {
  EXPECT_EQ("unknown ext type 9", DecodeError(Bytes({0xd4, 0x09, 0x00})));
  EXPECT_EQ("unknown ext type -1", DecodeError(Bytes({0xd6, 0xff, 0, 0, 0, 0})));  // timestamp
}

TEST_F(CodecTest, RefusesMalformedPidsAndRefs) {
  std::string good = encode_term(Pid{Atom("n1"), 7, 42});
  ASSERT_OK(decode_term(good));
  // One byte short: payload 14, name length 2.
  EXPECT_NE(std::string::npos,
            DecodeError(Bytes({0xc7, 14, 0x02, 2, 'n', '1', 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0}))
                .find("malformed pid ext"));
  // One byte extra.
  EXPECT_NE(
      std::string::npos,
      DecodeError(Bytes({0xc7, 16, 0x02, 2, 'n', '1', 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 42, 0}))
          .find("malformed pid ext"));
  // A name length past the payload.
  EXPECT_NE(std::string::npos,
            DecodeError(Bytes({0xc7, 15, 0x02, 200, 'n', '1', 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 42}))
                .find("malformed pid ext"));
  EXPECT_NE(std::string::npos, DecodeError(Bytes({0xd4, 0x02, 0x00})).find("malformed pid ext"));
  EXPECT_NE(std::string::npos, DecodeError(Bytes({0xc7, 0x00, 0x03})).find("malformed ref ext"));
}

TEST_F(CodecTest, RefusesListPayloadsThatAreNotOneArray) {
  EXPECT_NE(std::string::npos, DecodeError(Bytes({0xd4, 0x01, 0x05})).find("malformed list ext"));
  EXPECT_NE(std::string::npos, DecodeError(Bytes({0xc7, 0x00, 0x01})).find("list ext"));
  EXPECT_NE(std::string::npos,
            DecodeError(Bytes({0xd5, 0x01, 0x92, 0x01})).find("truncated"));  // array of 2, 1 given
}

TEST_F(CodecTest, RefusesIntegersAboveInt64Max) {
  EXPECT_OK(decode_term(Bytes({0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})));
  EXPECT_NE(std::string::npos,
            DecodeError(Bytes({0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0})).find("does not fit an int64"));
}

TEST_F(CodecTest, RefusesTheReservedByte) {
  EXPECT_NE(std::string::npos, DecodeError(Bytes({0xc1})).find("0xc1"));
  EXPECT_NE(std::string::npos, DecodeError(Bytes({0x92, 0x01, 0xc1})).find("0xc1"));
}

TEST_F(CodecTest, RefusesHugeHeadersOnTinyInputsWithoutAllocatingForThem) {
  // array 32 / map 32 / bin 32 claiming ~4 billion entries or bytes, with nothing behind.
  EXPECT_NE(std::string::npos,
            DecodeError(Bytes({0xdd, 0xff, 0xff, 0xff, 0xff})).find("truncated"));
  EXPECT_NE(std::string::npos,
            DecodeError(Bytes({0xdf, 0xff, 0xff, 0xff, 0xff})).find("truncated"));
  EXPECT_NE(std::string::npos,
            DecodeError(Bytes({0xc6, 0xff, 0xff, 0xff, 0xff, 0x00})).find("truncated"));
}

TEST_F(CodecTest, SurvivesRandomGarbage) {
  std::mt19937 rng(20240611);
  const std::string seed =
      encode_term(tuple("reply", list(1, -2, 2.5, bin("bytes"), list(Ref{Atom("n2"), 3, 4})),
                        map({{"k", Pid{Atom("n1"), 1, 2}}, {7, tuple()}}), "ok", true, Term()));
  int decoded = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string buf;
    if (i % 2 == 0) {
      // Random bytes, biased to interesting type bytes.
      buf.resize(rng() % 48);
      for (char& c : buf) c = static_cast<char>(rng() % 4 == 0 ? 0xc0 + rng() % 0x20 : rng());
    } else {
      // A valid encoding with a few bytes changed, cut or duplicated.
      buf = seed;
      for (int k = 1 + static_cast<int>(rng() % 4); k > 0; --k) {
        buf[rng() % buf.size()] = static_cast<char>(rng());
      }
      if (rng() % 4 == 0) buf.resize(rng() % buf.size());
    }
    Result<Term> r = decode_term(buf);
    if (r.ok()) {
      ++decoded;
      // Whatever decodes re-encodes to the same term.
      ASSERT_EQ(r.value(), RoundTrip(r.value())) << r.value().to_string();
    } else {
      ASSERT_EQ(ErrorCode::kProtocol, r.error().code());
      ASSERT_FALSE(r.error().message().empty());
    }
  }
  EXPECT_GT(decoded, 0);
}

}  // namespace
}  // namespace nodus
