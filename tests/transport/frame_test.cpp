#include "nodus/transport/frame.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "nodus/transport/curve.hpp"
#include "test_util.hpp"

namespace nodus::transport {

// Found by GoogleTest through argument-dependent lookup (std::variant's arguments live here):
// a frame prints as the hex of its encoding.
void PrintTo(const Frame& f, std::ostream* os) {
  for (unsigned char c : encode_frame(f)) {
    char buf[4];
    std::snprintf(buf, sizeof(buf), "%02x ", c);
    *os << buf;
  }
}

namespace {

namespace mp = nodus::testing::mp;
using mp::Bytes;

// -- helpers ------------------------------------------------------------------------

constexpr std::uint64_t kU32Max = std::numeric_limits<std::uint32_t>::max();
constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();

std::string Nonce() {
  std::string s;
  for (int i = 0; i < 32; ++i) s += static_cast<char>(i * 7);
  return s;
}
std::string Mac() { return std::string(kMacBytes, '\xa5'); }

Hello SampleHello() {
  Hello h;
  h.name = "alpha";
  h.creation = 3;
  h.listen = "tcp://127.0.0.1:4369";
  h.capabilities = {"compress", "trace"};
  h.nonce = Nonce();
  return h;
}

Challenge SampleChallenge() {
  Challenge c;
  c.name = "beta";
  c.creation = kU32Max;
  c.nonce = Nonce();
  c.mac = Mac();
  return c;
}

// A Data frame with every optional field absent and `to` a name.
Data BareData() {
  Data d;
  d.to = std::string("log");
  d.payload = "\x2a";
  return d;
}

// A Data frame with every field set and `to` a pid.
Data FullData() {
  Data d;
  d.kind = 2;
  d.from = WireId{"alpha", 3, 42};
  d.to = WireId{"beta", kU32Max, kU64Max};
  d.ref = WireId{"alpha", 3, 1u << 20};
  d.budget_us = 5'000'000;
  d.tag = 1001;
  d.payload = std::string(300, 'p');
  return d;
}

// One or more frames of every kind, with and without optional fields, at the edges of ranges.
std::vector<Frame> SampleFrames() {
  Hello bare_hello;
  bare_hello.nonce = Nonce();
  Data name_to_with_ids = FullData();
  name_to_with_ids.to = std::string(kMaxNameBytes, 'n');
  Data pid_to_bare = BareData();
  pid_to_bare.to = WireId{"", 0, 0};
  pid_to_bare.payload.clear();
  Data max_numbers = FullData();
  max_numbers.kind = 255;
  max_numbers.budget_us = kU64Max;
  max_numbers.tag = static_cast<std::uint32_t>(kU32Max);
  return {SampleHello(),
          bare_hello,
          SampleChallenge(),
          Proof{Mac()},
          Welcome{},
          Refuse{"bad cookie"},
          Refuse{""},
          BareData(),
          FullData(),
          name_to_with_ids,
          pid_to_bare,
          max_numbers,
          Heartbeat{0},
          Heartbeat{kU64Max},
          Bye{"shutdown"},
          Peers{},
          Peers{{{"n1", "tcp://127.0.0.1:7101", ""}, {std::string(kMaxNameBytes, 'p'), "", ""}}},
          Peers{{{"n1", "tcp://127.0.0.1:7101", std::string(kCurveKeyChars, 'k')},
                 {"n2", "tcp://127.0.0.1:7102", ""}}}};
}

Frame RoundTrip(const Frame& f) {
  Result<Frame> r = decode_frame(encode_frame(f));
  EXPECT_OK(r);
  return r.ok() ? r.value() : Frame(Bye{"decode failed"});
}

// The error message of a decode expected to fail, or "decoded" when it did not.
std::string DecodeError(std::string_view bytes, const FrameLimits& limits = {}) {
  Result<Frame> r = decode_frame(bytes, limits);
  if (r.ok()) return "decoded";
  EXPECT_EQ(ErrorCode::kProtocol, r.error().code());
  EXPECT_FALSE(r.error().message().empty());
  return r.error().message();
}

// A frame built field by field with the test's own MessagePack writer, so that one field at a
// time can be replaced by something invalid. fields[0] is the kind.
struct RawFrame {
  std::vector<std::string> fields;

  RawFrame With(std::size_t i, std::string bytes) const {
    RawFrame r = *this;
    r.fields.at(i) = std::move(bytes);
    return r;
  }
  RawFrame Plus(std::string bytes) const {
    RawFrame r = *this;
    r.fields.push_back(std::move(bytes));
    return r;
  }
  RawFrame Minus() const {
    RawFrame r = *this;
    r.fields.pop_back();
    return r;
  }
  std::string bytes() const {
    std::string s = mp::Array(static_cast<std::uint32_t>(fields.size()));
    for (const std::string& f : fields) s += f;
    return s;
  }
};

RawFrame RawHello() {
  return {{mp::Uint(1), mp::Uint(1), mp::Str("alpha"), mp::Uint(3), mp::Str("tcp://h:1"),
           mp::Array(1) + mp::Str("compress"), mp::Bin(Nonce())}};
}
RawFrame RawChallenge() {
  return {
      {mp::Uint(2), mp::Uint(1), mp::Str("beta"), mp::Uint(4), mp::Bin(Nonce()), mp::Bin(Mac())}};
}
RawFrame RawProof() { return {{mp::Uint(3), mp::Bin(Mac())}}; }
RawFrame RawWelcome() { return {{mp::Uint(4)}}; }
RawFrame RawRefuse() { return {{mp::Uint(5), mp::Str("no")}}; }
RawFrame RawData() {
  return {{mp::Uint(16), mp::Uint(0), mp::Ext(2, mp::IdPayload("n1", 7, 42)), mp::Str("log"),
           mp::Nil(), mp::Uint(0), mp::Uint(0), mp::Bin("\x2a")}};
}
RawFrame RawHeartbeat() { return {{mp::Uint(17), mp::Uint(9)}}; }
RawFrame RawBye() { return {{mp::Uint(18), mp::Str("bye")}}; }

std::vector<RawFrame> RawFrames() {
  return {RawHello(),  RawChallenge(), RawProof(),     RawWelcome(),
          RawRefuse(), RawData(),      RawHeartbeat(), RawBye()};
}

class FrameTest : public ::testing::Test {
 protected:
  // Expects `bytes` to be refused with a message containing `what`.
  void ExpectRejected(std::string_view bytes, std::string_view what,
                      const FrameLimits& limits = {}) {
    const std::string error = DecodeError(bytes, limits);
    EXPECT_NE(std::string::npos, error.find(what)) << "error: " << error << "\nexpected: " << what;
  }
};

// -- round trips ----------------------------------------------------------------------

TEST_F(FrameTest, RoundTripsEveryFrameKind) {
  std::vector<bool> seen(20);
  for (const Frame& f : SampleFrames()) {
    EXPECT_EQ(f, RoundTrip(f));
    const std::string bytes = encode_frame(f);
    seen.at(static_cast<unsigned char>(bytes.at(1))) = true;
  }
  for (int kind : {1, 2, 3, 4, 5, 16, 17, 18, 19}) EXPECT_TRUE(seen[kind]) << kind;
}

TEST_F(FrameTest, RoundTripsDataWithoutOptionalFields) {
  const Data d = BareData();
  EXPECT_EQ(Frame(d), RoundTrip(d));
  const Data back = std::get<Data>(RoundTrip(d));
  EXPECT_FALSE(back.from.has_value());
  EXPECT_FALSE(back.ref.has_value());
}

TEST_F(FrameTest, RoundTripsDataWithEveryField) {
  const Data d = FullData();
  EXPECT_EQ(Frame(d), RoundTrip(d));
}

TEST_F(FrameTest, KeepsANameAndAPidApartInTo) {
  Data to_name = BareData();
  to_name.to = std::string("alpha");
  Data to_pid = BareData();
  to_pid.to = WireId{"alpha", 0, 0};
  const Data name_back = std::get<Data>(RoundTrip(to_name));
  const Data pid_back = std::get<Data>(RoundTrip(to_pid));
  ASSERT_TRUE(std::holds_alternative<std::string>(name_back.to));
  EXPECT_EQ("alpha", std::get<std::string>(name_back.to));
  ASSERT_TRUE(std::holds_alternative<WireId>(pid_back.to));
  EXPECT_EQ((WireId{"alpha", 0, 0}), std::get<WireId>(pid_back.to));
}

TEST_F(FrameTest, AppendsAndParsesAWireId) {
  std::string out = "x";
  append_wire_id(WireId{"n1", 0x01020304, 0x0a0b0c0d0e0f1011}, out);
  EXPECT_EQ(Bytes({'x', 2, 'n', '1', 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11}),
            out);
  Result<WireId> id = parse_wire_id(std::string_view(out).substr(1));
  ASSERT_OK(id);
  EXPECT_EQ((WireId{"n1", 0x01020304, 0x0a0b0c0d0e0f1011}), *id);

  const WireId longest{std::string(kMaxNameBytes, 'z'), kU32Max, kU64Max};
  std::string bytes;
  append_wire_id(longest, bytes);
  EXPECT_EQ(13 + kMaxNameBytes, bytes.size());
  ASSERT_OK(parse_wire_id(bytes));
  EXPECT_EQ(longest, *parse_wire_id(bytes));
}

TEST_F(FrameTest, RefusesAWireIdOfTheWrongSize) {
  const std::string good = mp::IdPayload("n1", 7, 42);
  for (std::size_t n = 0; n < good.size(); ++n) {
    Result<WireId> r = parse_wire_id(std::string_view(good).substr(0, n));
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(ErrorCode::kProtocol, r.error().code());
  }
  Result<WireId> longer = parse_wire_id(good + "x");
  ASSERT_FALSE(longer.ok());
  EXPECT_NE(std::string::npos, longer.error().message().find("expected 15"));
}

// -- the wire format ------------------------------------------------------------------

TEST_F(FrameTest, WritesTheDocumentedBytesForADataFrame) {
  Data d;
  d.kind = 2;  // call
  d.from = WireId{"n1", 7, 42};
  d.to = std::string("log");
  d.ref = WireId{"n1", 7, 9};
  d.budget_us = 5000;
  d.tag = 0;
  d.payload = "\x2a";  // the term 42
  const std::string expected = Bytes({
      0x98,                                            // array of 8
      0x10,                                            // DATA
      0x02,                                            // kind: call
      0xc7, 0x0f, 0x02,                                // from: ext 2 of 15 bytes
      0x02, 'n',  '1',  0x00, 0x00, 0x00, 0x07,        //   "n1", creation 7
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a,  //   id 42
      0xa3, 'l',  'o',  'g',                           // to: "log"
      0xc7, 0x0f, 0x03,                                // ref: ext 3 of 15 bytes
      0x02, 'n',  '1',  0x00, 0x00, 0x00, 0x07,        //   "n1", creation 7
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09,  //   id 9
      0xcd, 0x13, 0x88,                                // budget: 5000
      0x00,                                            // tag: 0
      0xc4, 0x01, 0x2a,                                // payload: bin of 1 byte
  });
  EXPECT_EQ(expected, encode_frame(d));
  Result<Frame> back = decode_frame(expected);
  ASSERT_OK(back);
  EXPECT_EQ(Frame(d), *back);
}

TEST_F(FrameTest, AcceptsIntegersOfAnyWidth) {
  // 5 as uint 64 and as int 8: both are the number 5.
  const std::string wide = "\xcf" + mp::BigEndian(5, 8);
  const std::string signed_small = "\xd0\x05";
  for (const std::string& five : {wide, signed_small}) {
    Result<Frame> r = decode_frame(RawHeartbeat().With(1, five).bytes());
    ASSERT_OK(r);
    EXPECT_EQ(Frame(Heartbeat{5}), *r);
    ASSERT_OK(decode_frame(RawHello().With(1, five).bytes()));
  }
}

TEST_F(FrameTest, DecodesEveryHandBuiltFrame) {
  for (const RawFrame& raw : RawFrames()) EXPECT_OK(decode_frame(raw.bytes()));
}

// -- rejections -------------------------------------------------------------------------

TEST_F(FrameTest, RefusesAFrameOverMaxFrame) {
  FrameLimits limits;
  const std::string bytes = encode_frame(FullData());
  limits.max_frame = bytes.size();
  EXPECT_OK(decode_frame(bytes, limits));
  limits.max_frame = bytes.size() - 1;
  ExpectRejected(bytes, "exceeds max_frame", limits);
}

TEST_F(FrameTest, RefusesAPayloadOverMaxPayload) {
  FrameLimits limits;
  limits.max_payload = 299;
  ExpectRejected(encode_frame(FullData()), "max_payload", limits);
  limits.max_payload = 300;
  EXPECT_OK(decode_frame(encode_frame(FullData()), limits));
}

TEST_F(FrameTest, RefusesTrailingBytes) {
  ExpectRejected(encode_frame(Welcome{}) + std::string(1, '\0'), "1 trailing bytes");
  ExpectRejected(encode_frame(FullData()) + encode_frame(Welcome{}), "trailing bytes");
}

TEST_F(FrameTest, DecodesFramesBackToBackInOneMessage) {
  std::string batch;
  for (const Frame& f : SampleFrames()) encode_frame(f, batch);
  std::string_view rest = batch;
  for (const Frame& f : SampleFrames()) {
    ASSERT_FALSE(rest.empty());
    auto back = decode_next_frame(rest);
    ASSERT_OK(back);
    EXPECT_EQ(f, *back);
  }
  EXPECT_TRUE(rest.empty());
}

TEST_F(FrameTest, TheDataFastPathAgreesWithTheGeneralDecoder) {
  // decode_next_frame reads common DATA shapes itself; decode_frame always goes through
  // msgpack-c. On one whole frame they must accept, return and refuse exactly the same.
  std::vector<std::string> inputs;
  for (const Frame& f : SampleFrames()) inputs.push_back(encode_frame(f));
  for (const RawFrame& raw : RawFrames()) inputs.push_back(raw.bytes());
  for (std::size_t name : {0u, 1u, 3u, 242u, 243u, 255u}) {  // fixext 16, ext 8, ext 16 pids
    Data d = FullData();
    d.from = WireId{std::string(name, 'a'), 1, 2};
    d.to = std::string(name, 't');
    inputs.push_back(encode_frame(Frame(d)));
  }
  for (std::size_t n : {0u, 255u, 256u, 65535u, 65536u}) {  // bin 8, 16, 32 payloads
    Data d = BareData();
    d.payload.assign(n, 'x');
    inputs.push_back(encode_frame(Frame(d)));
  }
  const std::string full = encode_frame(FullData());
  for (std::size_t i = 0; i < full.size(); ++i) {
    inputs.push_back(full.substr(0, i));  // every truncation
    for (unsigned char c : {0x00, 0x7f, 0xc0, 0xc1, 0xcc, 0xd0, 0xff}) {
      std::string mutated = full;
      mutated[i] = static_cast<char>(c);
      inputs.push_back(mutated);
    }
  }
  FrameLimits small;
  small.max_payload = 299;
  small.max_frame = full.size() - 1;
  for (const FrameLimits& limits : {FrameLimits{}, small}) {
    for (const std::string& bytes : inputs) {
      std::string_view rest = bytes;
      Result<Frame> fast = decode_next_frame(rest, limits);
      Result<Frame> general = decode_frame(bytes, limits);
      if (general.ok()) {
        ASSERT_OK(fast);
        EXPECT_EQ(*general, *fast);
        EXPECT_TRUE(rest.empty());
      } else if (fast.ok()) {
        EXPECT_FALSE(rest.empty()) << "only trailing bytes may tell them apart";
      }
    }
  }
}

TEST_F(FrameTest, StopsABatchAtTheFirstFrameThatDoesNotDecode) {
  const std::string good = encode_frame(FullData());
  const std::string batch = good + "\xc1" + good;  // 0xc1: never valid MessagePack
  std::string_view rest = batch;
  ASSERT_OK(decode_next_frame(rest));
  const std::size_t before = rest.size();
  EXPECT_EQ(1 + good.size(), before);
  auto bad = decode_next_frame(rest);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string::npos, bad.error().message().find("malformed")) << bad.error().message();
  EXPECT_EQ(before, rest.size()) << "an error leaves the input where it was";
}

TEST_F(FrameTest, MaxFrameBoundsTheWholeBatch) {
  std::string batch;
  for (int i = 0; i < 10; ++i) encode_frame(FullData(), batch);
  FrameLimits limits;
  limits.max_frame = batch.size() - 1;
  std::string_view rest = batch;
  auto r = decode_next_frame(rest, limits);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string::npos, r.error().message().find("exceeds max_frame"));
}

TEST_F(FrameTest, RefusesUnknownKinds) {
  for (std::uint64_t kind : {0ull, 6ull, 15ull, 20ull, 255ull, 1ull << 40}) {
    ExpectRejected(RawWelcome().With(0, mp::Uint(kind)).bytes(),
                   "unknown frame kind " + std::to_string(kind));
  }
  ExpectRejected(RawWelcome().With(0, mp::Negative(-1)).bytes(), "frame kind must be a uint");
  ExpectRejected(RawWelcome().With(0, mp::Str("\x04")).bytes(), "frame kind must be a uint");
}

TEST_F(FrameTest, RefusesSomethingOtherThanAnArray) {
  ExpectRejected(mp::Uint(4), "a frame is an array, got uint");
  ExpectRejected(mp::Str("hello"), "got str");
  ExpectRejected(mp::Map(0), "got map");
  ExpectRejected(mp::Map(1) + mp::Uint(1) + mp::Uint(2), "no maps");
  ExpectRejected(mp::Array(0), "no frame kind");
}

TEST_F(FrameTest, RefusesWrongFieldCounts) {
  for (const RawFrame& raw : RawFrames()) {
    ExpectRejected(raw.Plus(mp::Nil()).bytes(), "fields, expected");
    if (raw.fields.size() > 1) ExpectRejected(raw.Minus().bytes(), "fields, expected");
  }
  ExpectRejected(RawData().Minus().bytes(), "DATA: 6 fields, expected 7");
}

TEST_F(FrameTest, RefusesFieldsOfTheWrongType) {
  struct Case {
    RawFrame raw;
    const char* what;
  };
  const std::vector<Case> cases = {
      {RawHello().With(1, mp::Str("1")), "HELLO: field version: expected uint, got str"},
      {RawHello().With(2, mp::Bin("alpha")), "field name: expected str, got bin"},
      {RawHello().With(3, mp::Nil()), "field creation: expected uint, got nil"},
      {RawHello().With(4, mp::Uint(1)), "field listen: expected str"},
      {RawHello().With(5, mp::Str("compress")), "field capabilities: expected array"},
      {RawHello().With(5, mp::Array(1) + mp::Uint(1)), "field capabilities: expected str"},
      {RawHello().With(6, mp::Str(Nonce())), "field nonce: expected bin, got str"},
      {RawChallenge().With(4, mp::Nil()), "CHALLENGE: field nonce: expected bin"},
      {RawChallenge().With(5, mp::True()), "field mac: expected bin, got bool"},
      {RawProof().With(1, mp::Str(Mac())), "PROOF: field mac: expected bin"},
      {RawRefuse().With(1, mp::Bin("no")), "REFUSE: field reason: expected str"},
      {RawBye().With(1, mp::Nil()), "BYE: field reason: expected str"},
      {RawData().With(1, mp::Str("call")), "DATA: field kind: expected uint"},
      {RawData().With(2, mp::Str("n1")), "field from: expected a pid"},
      {RawData().With(2, mp::Ext(3, mp::IdPayload("n1", 7, 42))), "from: expected a pid (ext 2)"},
      {RawData().With(3, mp::Nil()), "field to: expected a pid (ext 2) or a name (str), got nil"},
      {RawData().With(3, mp::Ext(3, mp::IdPayload("n1", 7, 42))), "to: expected a pid"},
      {RawData().With(3, mp::Ext(1, mp::Array(0))), "to: expected a pid (ext 2), got ext 1"},
      {RawData().With(4, mp::Ext(2, mp::IdPayload("n1", 7, 42))), "ref: expected a ref (ext 3)"},
      {RawData().With(4, mp::Uint(9)), "field ref: expected a ref (ext 3), got uint"},
      {RawData().With(5, mp::FloatOne()), "field budget: expected uint, got float"},
      {RawData().With(6, mp::Nil()), "field tag: expected uint, got nil"},
      {RawData().With(7, mp::Str("*")), "field payload: expected bin, got str"},
      {RawData().With(7, mp::Array(0)), "field payload: expected bin, got array"},
  };
  for (const Case& c : cases) ExpectRejected(c.raw.bytes(), c.what);
}

TEST_F(FrameTest, RefusesMalformedWireIds) {
  ExpectRejected(RawData().With(2, mp::Ext(2, "")).bytes(), "from: empty id payload");
  ExpectRejected(RawData().With(2, mp::Ext(2, mp::IdPayload("n1", 7, 42) + "x")).bytes(),
                 "from: id payload of 16 bytes, expected 15");
  ExpectRejected(RawData().With(3, mp::Ext(2, mp::IdPayload("n1", 7, 42).substr(0, 14))).bytes(),
                 "to: id payload of 14 bytes");
  ExpectRejected(RawData().With(4, mp::Ext(3, "\x05")).bytes(), "ref: id payload of 1 bytes");
}

TEST_F(FrameTest, RefusesNamesOver255Bytes) {
  const std::string longest(kMaxNameBytes, 'a');
  const std::string too_long(kMaxNameBytes + 1, 'a');
  EXPECT_OK(decode_frame(RawHello().With(2, mp::Str(longest)).bytes()));
  ExpectRejected(RawHello().With(2, mp::Str(too_long)).bytes(),
                 "HELLO: field name: str of 256 bytes, at most 255");
  EXPECT_OK(decode_frame(RawChallenge().With(2, mp::Str(longest)).bytes()));
  ExpectRejected(RawChallenge().With(2, mp::Str(too_long)).bytes(), "field name: str of 256");
  EXPECT_OK(decode_frame(RawData().With(3, mp::Str(longest)).bytes()));
  ExpectRejected(RawData().With(3, mp::Str(too_long)).bytes(), "field to: str of 256");
}

TEST_F(FrameTest, RefusesOtherStringsOverTheStrLimit) {
  const std::string longest(kMaxStrBytes, 'r');
  EXPECT_OK(decode_frame(RawRefuse().With(1, mp::Str(longest)).bytes()));
  ExpectRejected(RawRefuse().With(1, mp::Str(longest + "r")).bytes(), "str longer than 4096");
  ExpectRejected(RawHello().With(4, mp::Str(longest + "r")).bytes(), "str longer than 4096");
}

TEST_F(FrameTest, RefusesNoncesAndMacsNotOf32Bytes) {
  for (std::size_t n : {0, 1, 31, 33, 64}) {
    const std::string bin = mp::Bin(std::string(n, 'x'));
    ExpectRejected(RawHello().With(6, bin).bytes(),
                   "HELLO: field nonce: " + std::to_string(n) + " bytes, expected 32");
    ExpectRejected(RawChallenge().With(4, bin).bytes(), "CHALLENGE: field nonce: ");
    ExpectRejected(RawChallenge().With(5, bin).bytes(), "CHALLENGE: field mac: ");
    ExpectRejected(RawProof().With(1, bin).bytes(), "PROOF: field mac: ");
  }
}

TEST_F(FrameTest, RefusesAVersionOrCreationThatIsNotAUint32) {
  ExpectRejected(RawHello().With(1, mp::Uint(kU32Max + 1)).bytes(),
                 "field version: 4294967296 exceeds 4294967295");
  ExpectRejected(RawHello().With(1, mp::Negative(-1)).bytes(),
                 "field version: expected uint, got negative int");
  ExpectRejected(RawChallenge().With(1, mp::Uint(kU32Max + 1)).bytes(), "field version");
  ExpectRejected(RawHello().With(3, mp::Uint(kU32Max + 1)).bytes(), "field creation: 4294967296");
  ExpectRejected(RawChallenge().With(3, mp::Negative(-5)).bytes(), "field creation");
  EXPECT_OK(decode_frame(RawHello().With(1, mp::Uint(kU32Max)).bytes()));
}

TEST_F(FrameTest, RefusesASeqOrBudgetThatIsNotAUint) {
  ExpectRejected(RawHeartbeat().With(1, mp::Negative(-1)).bytes(),
                 "HEARTBEAT: field seq: expected uint, got negative int");
  ExpectRejected(RawHeartbeat().With(1, mp::FloatOne()).bytes(), "field seq: expected uint");
  ExpectRejected(RawData().With(5, mp::Negative(-1000)).bytes(), "field budget: expected uint");
  EXPECT_OK(decode_frame(RawHeartbeat().With(1, mp::Uint(kU64Max)).bytes()));
}

TEST_F(FrameTest, RefusesATagOverUint32) {
  EXPECT_OK(decode_frame(RawData().With(6, mp::Uint(kU32Max)).bytes()));
  ExpectRejected(RawData().With(6, mp::Uint(kU32Max + 1)).bytes(), "field tag: 4294967296");
}

TEST_F(FrameTest, RefusesAnEnvelopeKindOver255) {
  EXPECT_OK(decode_frame(RawData().With(1, mp::Uint(255)).bytes()));
  ExpectRejected(RawData().With(1, mp::Uint(256)).bytes(), "field kind: 256 exceeds 255");
}

TEST_F(FrameTest, RefusesMoreCapabilitiesThanTheLimit) {
  FrameLimits limits;
  limits.max_capabilities = 2;
  const std::string two = mp::Array(2) + mp::Str("a") + mp::Str("b");
  const std::string three = mp::Array(3) + mp::Str("a") + mp::Str("b") + mp::Str("c");
  EXPECT_OK(decode_frame(RawHello().With(5, two).bytes(), limits));
  ExpectRejected(RawHello().With(5, three).bytes(), "capabilities: 3 entries, at most 2", limits);
  // An array far over the limit is refused by the parser before it allocates.
  limits.max_capabilities = 0;
  limits.max_peers = 0;
  std::string many = mp::Array(100);
  for (int i = 0; i < 100; ++i) many += mp::Str("c");
  ExpectRejected(RawHello().With(5, many).bytes(), "array longer than 64", limits);
}

TEST_F(FrameTest, RefusesMorePeersThanTheLimitAndMalformedEntries) {
  FrameLimits limits;
  limits.max_peers = 1;
  const std::string entry = mp::Array(2) + mp::Str("n1") + mp::Str("tcp://127.0.0.1:1");
  const std::string head = mp::Array(2) + mp::Uint(19);
  EXPECT_OK(decode_frame(head + mp::Array(1) + entry, limits));
  ExpectRejected(head + mp::Array(2) + entry + entry, "nodes: 2 entries, at most 1", limits);
  ExpectRejected(head + mp::Array(1) + mp::Array(1) + mp::Str("n1"), "[name, endpoint]");
  ExpectRejected(head + mp::Str("n1"), "field nodes: expected array");
}

TEST_F(FrameTest, PeersEntriesCarryAPublicKeyOnlyUnderCurve) {
  const std::string head = mp::Array(2) + mp::Uint(19) + mp::Array(1);
  const std::string name_ep = mp::Str("n1") + mp::Str("tcp://127.0.0.1:1");
  const std::string key(kCurveKeyChars, 'k');
  // A keyless entry stays [name, endpoint], the version 1 form, byte for byte.
  EXPECT_EQ(encode_frame(Frame(Peers{{{"n1", "tcp://127.0.0.1:1", ""}}})),
            head + mp::Array(2) + name_ep);
  EXPECT_EQ(encode_frame(Frame(Peers{{{"n1", "tcp://127.0.0.1:1", key}}})),
            head + mp::Array(3) + name_ep + mp::Str(key));
  Result<Frame> with_key = decode_frame(head + mp::Array(3) + name_ep + mp::Str(key));
  ASSERT_OK(with_key);
  EXPECT_EQ(std::get<Peers>(*with_key).nodes.at(0).public_key, key);
  EXPECT_OK(decode_frame(head + mp::Array(3) + name_ep + mp::Str("")));
  ExpectRejected(head + mp::Array(3) + name_ep + mp::Str("short"),
                 "a public key of 5 characters, expected 40");
  ExpectRejected(head + mp::Array(3) + name_ep + mp::Str(key + "k"), "at most 40");
  ExpectRejected(head + mp::Array(3) + name_ep + mp::Uint(1), "expected str");
  ExpectRejected(head + mp::Array(4) + name_ep + mp::Str(key) + mp::Str(key),
                 "[name, endpoint, key]");
}

TEST_F(FrameTest, RefusesHeadersThatClaimMoreThanTheInputHolds) {
  ExpectRejected(Bytes({0xdd, 0xff, 0xff, 0xff, 0xff}), "truncated");
  ExpectRejected(RawData().With(7, Bytes({0xc6, 0x7f, 0xff, 0xff, 0xff})).bytes(), "truncated");
  ExpectRejected(RawRefuse().With(1, Bytes({0xdb, 0x00, 0x00, 0x0f, 0xff, 'a'})).bytes(),
                 "truncated");
}

TEST_F(FrameTest, RefusesMalformedMessagePack) {
  ExpectRejected(RawRefuse().With(1, Bytes({0xc1})).bytes(), "malformed");
  ExpectRejected("", "truncated: no bytes");
}

TEST_F(FrameTest, RefusesDeepNesting) {
  std::string deep;
  for (int i = 0; i < 10; ++i) deep += mp::Array(1);
  deep += mp::Str("c");
  ExpectRejected(RawHello().With(5, deep).bytes(), "nested deeper than");
}

// -- robustness -----------------------------------------------------------------------

TEST_F(FrameTest, FailsCleanlyOnEveryTruncation) {
  for (const Frame& f : SampleFrames()) {
    const std::string bytes = encode_frame(f);
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      Result<Frame> r = decode_frame(std::string_view(bytes).substr(0, n));
      ASSERT_FALSE(r.ok()) << "prefix of " << n << " of " << bytes.size() << " bytes decoded";
      ASSERT_EQ(ErrorCode::kProtocol, r.error().code());
      ASSERT_FALSE(r.error().message().empty());
    }
  }
}

// Random buffers and mutations of valid frames never crash the decoder, and whatever decodes
// re-encodes to a frame that decodes to the same value.
TEST_F(FrameTest, SurvivesRandomAndMutatedInput) {
  std::mt19937 rng(20240607);
  std::vector<std::string> seeds;
  for (const Frame& f : SampleFrames()) seeds.push_back(encode_frame(f));
  for (const RawFrame& raw : RawFrames()) seeds.push_back(raw.bytes());
  auto below = [&rng](std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
  };
  const unsigned char interesting[] = {0x00, 0x01, 0x7f, 0x80, 0x90, 0x98, 0xa0, 0xbf, 0xc0,
                                       0xc1, 0xc3, 0xc4, 0xc7, 0xcc, 0xce, 0xcf, 0xd0, 0xd3,
                                       0xd4, 0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xe0, 0xff};
  auto random_byte = [&]() {
    return below(2) ? static_cast<char>(below(256))
                    : static_cast<char>(interesting[below(sizeof(interesting))]);
  };

  constexpr int kIterations = 20'000;
  int decoded = 0;
  for (int i = 0; i < kIterations; ++i) {
    std::string buf;
    if (i % 4 == 0) {
      // Random bytes, usually behind an array header so the decoder gets past the first byte.
      const std::size_t n = below(48);
      if (below(4) != 0) buf += static_cast<char>(0x90 + below(9));
      for (std::size_t k = 0; k < n; ++k) buf += random_byte();
    } else {
      buf = seeds[below(seeds.size())];
      const std::size_t mutations = 1 + below(4);
      for (std::size_t m = 0; m < mutations && !buf.empty(); ++m) {
        switch (below(5)) {
          case 0:
            buf[below(buf.size())] = random_byte();
            break;
          case 1:
            buf.insert(buf.begin() + static_cast<std::ptrdiff_t>(below(buf.size() + 1)),
                       random_byte());
            break;
          case 2:
            buf.erase(below(buf.size()), 1 + below(4));
            break;
          case 3:
            buf.resize(below(buf.size() + 1));
            break;
          case 4: {
            const std::string& other = seeds[below(seeds.size())];
            const std::size_t from = below(other.size());
            buf.insert(below(buf.size() + 1), other.substr(from, 1 + below(16)));
            break;
          }
        }
      }
    }
    Result<Frame> r = decode_frame(buf);
    if (!r.ok()) {
      ASSERT_EQ(ErrorCode::kProtocol, r.error().code()) << i;
      ASSERT_FALSE(r.error().message().empty()) << i;
      continue;
    }
    ++decoded;
    Result<Frame> again = decode_frame(encode_frame(*r));
    ASSERT_OK(again) << "iteration " << i;
    ASSERT_EQ(*r, *again) << "iteration " << i;
  }
  // The mutations keep some frames valid, so the re-encode check above actually ran.
  EXPECT_GT(decoded, 100);
}

}  // namespace
}  // namespace nodus::transport
