#include "nodus/node/message.hpp"

#include <gtest/gtest.h>

#include <array>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nodus/node/codec.hpp"
#include "nodus/node/wire.hpp"

#include "test_util.hpp"

namespace nodus {
namespace {

// -- message types used below -----------------------------------------------------------

struct Small {
  int x = 0;
};

struct Large {
  std::array<char, 200> bytes{};
  int x = 0;
};

struct Push {
  std::int64_t item = 0;
  std::string who;
  std::vector<int> more;
  std::map<std::string, double> weights;
  std::optional<std::string> note;
  NODUS_MESSAGE(Push, 1101, item, who, more, weights, note);
};

struct Ping {
  NODUS_MESSAGE(Ping, 1102);
};

// Every nodus type a protocol message may hold as a field.
struct Entry {
  Bytes key;
  Term value;
  NODUS_FIELDS(key, value);
};
struct Everything {
  Atom node;
  Pid pid;
  Pid none;
  Ref ref;
  Bytes key;
  Term term;
  Status status;
  std::vector<Entry> entries;
  NODUS_MESSAGE(Everything, 1103, node, pid, none, ref, key, term, status, entries);
};

// Counts constructions and destructions, to check that Message neither copies nor leaks nor
// destroys twice. Size decides whether Message stores it inline or on the heap.
struct Counters {
  int constructed = 0;  // any constructor
  int copied = 0;
  int destroyed = 0;
  int live() const { return constructed - destroyed; }
};

template <std::size_t kPadding>
struct Counted {
  static inline Counters counters;
  std::array<char, kPadding> padding{};
  int value = 0;

  explicit Counted(int v) : value(v) { ++counters.constructed; }
  Counted(const Counted& o) : padding(o.padding), value(o.value) {
    ++counters.constructed;
    ++counters.copied;
  }
  Counted(Counted&& o) noexcept : padding(o.padding), value(o.value) {
    ++counters.constructed;
    o.value = -1;
  }
  Counted& operator=(const Counted&) = delete;
  Counted& operator=(Counted&&) = delete;
  ~Counted() { ++counters.destroyed; }
};
using InlineCounted = Counted<8>;
using HeapCounted = Counted<256>;
static_assert(detail::kInlineMessage<InlineCounted>);
static_assert(!detail::kInlineMessage<HeapCounted>);
static_assert(!detail::kInlineMessage<Large>);

// -- what a message holds -------------------------------------------------------------------

TEST(MessageTest, HoldsATermFromALiteral) {
  Message m = "pop";
  EXPECT_TRUE(m.is_term());
  EXPECT_TRUE(m == "pop");
  EXPECT_FALSE(m == "push");
  EXPECT_TRUE(m == Term("pop"));
  EXPECT_STREQ("Term", m.type_name());
  EXPECT_EQ(0u, m.wire_tag());
  EXPECT_EQ("pop", m.to_string());
  EXPECT_EQ(nullptr, m.get<Small>());
}

TEST(MessageTest, DefaultHoldsUndefined) {
  Message m;
  EXPECT_TRUE(m.is_term());
  EXPECT_TRUE(m == "undefined");
}

TEST(MessageTest, HoldsTermsOfAnyKindAndMatchesThem) {
  Message m = tuple("push", 42);
  ASSERT_TRUE(m.is_term());
  auto match = m.match({"push", _int});
  ASSERT_TRUE(match);
  EXPECT_EQ(42, match[0].as_int());
  EXPECT_FALSE(m.match({"pop"}));
  Message n = 7;
  EXPECT_TRUE(n == Term(7));
  m.term() = Term("changed");
  EXPECT_TRUE(m == "changed");
}

TEST(MessageTest, HoldsASmallTypedValueInline) {
  Message m = Small{5};
  EXPECT_FALSE(m.is_term());
  EXPECT_TRUE(m.is<Small>());
  EXPECT_FALSE(m.is<Large>());
  ASSERT_NE(nullptr, m.get<Small>());
  EXPECT_EQ(5, m.get<Small>()->x);
  const void* inside = &m;
  const void* end = reinterpret_cast<const char*>(&m) + sizeof(Message);
  EXPECT_GE(static_cast<const void*>(m.get<Small>()), inside);
  EXPECT_LT(static_cast<const void*>(m.get<Small>()), end);
  EXPECT_FALSE(m.match({"x"}));
  EXPECT_FALSE(m == "x");
}

TEST(MessageTest, HoldsALargeTypedValueOnTheHeapAndMovesItWithoutCopying) {
  Large big;
  big.bytes[199] = 'z';
  big.x = 9;
  Message a = std::move(big);
  ASSERT_TRUE(a.is<Large>());
  const Large* where = a.get<Large>();
  EXPECT_EQ('z', where->bytes[199]);
  Message b = std::move(a);
  EXPECT_EQ(where, b.get<Large>());  // the pointer moved, not the value
  EXPECT_EQ(9, b.get<Large>()->x);
  EXPECT_FALSE(a.is<Large>());  // NOLINT(bugprone-use-after-move): moved-from is empty
}

TEST(MessageTest, TypedMessagesThatAreNotWireTypesDoNotEncode) {
  Message m = Small{1};
  std::string out;
  EXPECT_FALSE(m.encode(out));
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(0u, m.wire_tag());
}

// -- move semantics ---------------------------------------------------------------------------

template <class T>
void ExpectMovesWithoutCopiesOrDoubleDestroys() {
  T::counters = {};
  {
    Message a = T(1);
    EXPECT_EQ(1, T::counters.live());
    Message b = std::move(a);
    EXPECT_EQ(1, T::counters.live());
    EXPECT_EQ(1, b.get<T>()->value);
    Message c = "other";
    c = std::move(b);  // c's term is destroyed, the T moves over
    EXPECT_EQ(1, T::counters.live());
    EXPECT_EQ(1, c.get<T>()->value);
    c = Message(T(2));  // the first T is destroyed
    EXPECT_EQ(1, T::counters.live());
    EXPECT_EQ(2, c.get<T>()->value);
    Message& self = c;
    c = std::move(self);  // self-move keeps the value
    EXPECT_EQ(2, c.get<T>()->value);
  }
  EXPECT_EQ(0, T::counters.live());
  EXPECT_EQ(0, T::counters.copied);
}

TEST(MessageTest, InlineValueMovesWithoutCopiesOrDoubleDestroys) {
  ExpectMovesWithoutCopiesOrDoubleDestroys<InlineCounted>();
}

TEST(MessageTest, HeapValueMovesWithoutCopiesOrDoubleDestroys) {
  ExpectMovesWithoutCopiesOrDoubleDestroys<HeapCounted>();
  // On the heap, the value itself never moves once inside a Message.
  HeapCounted::counters = {};
  {
    Message a = HeapCounted(3);
    const int constructed = HeapCounted::counters.constructed;
    Message b = std::move(a);
    Message c = std::move(b);
    EXPECT_EQ(constructed, HeapCounted::counters.constructed);
  }
  EXPECT_EQ(0, HeapCounted::counters.live());
}

TEST(MessageTest, MovedFromMessageCanBeMovedAgainAndReassigned) {
  InlineCounted::counters = {};
  {
    Message a = InlineCounted(1);
    Message b = std::move(a);
    Message c = std::move(a);  // NOLINT(bugprone-use-after-move): moving an empty message
    EXPECT_STREQ("moved-from", c.type_name());
    EXPECT_FALSE(c.is_term());
    std::string out;
    EXPECT_FALSE(c.encode(out));
    a = std::move(b);
    EXPECT_EQ(1, a.get<InlineCounted>()->value);
    b = "fresh";
    EXPECT_TRUE(b == "fresh");
  }
  EXPECT_EQ(0, InlineCounted::counters.live());
}

// -- visit ------------------------------------------------------------------------------------

TEST(MessageTest, VisitCallsTheHandlerForTheHeldType) {
  Message m = Small{4};
  int r = m.visit([](const Large&) { return 1; }, [](const Small& s) { return 10 + s.x; },
                  [](const Term&) { return 3; });
  EXPECT_EQ(14, r);
}

TEST(MessageTest, VisitFallsBackToATermHandlerForAnyTerm) {
  Message m = tuple("push", 1);
  std::string seen = m.visit([](const Small&) { return std::string("small"); },
                             [](const Term& t) { return t.to_string(); });
  EXPECT_EQ("{push,1}", seen);
}

TEST(MessageTest, VisitTakesTheFirstHandlerThatAccepts) {
  Message m = Small{1};
  int r = m.visit([](const Message&) { return 1; }, [](const Small&) { return 2; });
  EXPECT_EQ(1, r);
}

TEST(MessageTest, VisitFallsBackToAMessageHandlerForAnything) {
  Message m = Large{};
  std::string name;
  m.visit([](const Small&) {}, [&](Message& any) { name = any.type_name(); });
  EXPECT_FALSE(name.empty());
  EXPECT_NE("Term", name);
}

TEST(MessageTest, VisitCanChangeTheValueInPlace) {
  Message m = Small{1};
  m.visit([](Small& s) { s.x = 99; });
  EXPECT_EQ(99, m.get<Small>()->x);
}

TEST(MessageTest, VisitThrowsBadMessageWhenNothingMatches) {
  Message m = Small{1};
  EXPECT_THROW(m.visit([](const Large&) {}, [](const Term&) {}), BadMessage);
  Message t = "ping";
  try {
    t.visit([](const Small&) { return 0; });
    FAIL() << "no BadMessage";
  } catch (const BadMessage& e) {
    EXPECT_NE(std::string::npos, std::string(e.what()).find("ping"));
  }
}

// -- wire messages ------------------------------------------------------------------------

TEST(MessageTest, WireMessageEncodesAndDecodesBack) {
  Push p;
  p.item = -5;
  p.who = "client";
  p.more = {1, 2, 3};
  p.weights = {{"a", 0.5}};
  p.note = "hi";
  Message m = p;
  EXPECT_EQ(1101u, m.wire_tag());
  EXPECT_STREQ("Push", m.type_name());
  EXPECT_EQ("#Push{}", m.to_string());
  std::string bytes;
  ASSERT_TRUE(m.encode(bytes));
  Result<Push> back = decode_message<Push>(bytes);
  ASSERT_OK(back);
  EXPECT_EQ(-5, back->item);
  EXPECT_EQ("client", back->who);
  EXPECT_EQ((std::vector<int>{1, 2, 3}), back->more);
  EXPECT_EQ(0.5, back->weights.at("a"));
  EXPECT_EQ(std::optional<std::string>("hi"), back->note);
}

TEST(MessageTest, WireMessageIsAMessagePackArrayOfItsFields) {
  Push p;
  p.item = 7;
  std::string bytes;
  Message(p).encode(bytes);
  ASSERT_FALSE(bytes.empty());
  EXPECT_EQ(static_cast<char>(0x95), bytes[0]);  // fixarray of 5 fields
  EXPECT_EQ(static_cast<char>(0x07), bytes[1]);
}

TEST(MessageTest, ZeroFieldWireMessageWorks) {
  Message m = Ping{};
  EXPECT_EQ(1102u, m.wire_tag());
  EXPECT_STREQ("Ping", m.type_name());
  std::string bytes;
  ASSERT_TRUE(m.encode(bytes));
  EXPECT_EQ(std::string(1, static_cast<char>(0x90)), bytes);
  EXPECT_OK(decode_message<Ping>(bytes));
}

TEST(MessageTest, DecodeMessageRefusesBytesOfAnotherShape) {
  Result<Push> r = decode_message<Push>(encode_term(tuple(bin("not an int"))));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ErrorCode::kBadArg, r.error().code());
  EXPECT_NE(std::string::npos, r.error().message().find("Push"));
  EXPECT_FALSE(decode_message<Push>(encode_term(42)).ok());  // not an array
  EXPECT_FALSE(decode_message<Push>("").ok());
  EXPECT_FALSE(decode_message<Push>(std::string(1, static_cast<char>(0x95))).ok());  // truncated
  EXPECT_FALSE(decode_message<Ping>(std::string(1, static_cast<char>(0xc1))).ok());
}

TEST(MessageTest, NodusFieldTypesEncodeAsInATermAndDecodeBack) {
  Everything e;
  e.node = Atom("n1");
  e.pid = Pid{Atom("n2"), 7, 42};
  e.ref = Ref{Atom("n3"), 8, 43};
  e.key = Bytes(std::string("k\0\xff", 3));
  e.term = tuple("ok", list(1, bin("x")), map({{"a", 1.5}}));
  e.status = Status(ErrorCode::kAlreadyStarted, "<n2.42.0>");
  e.entries = {Entry{"a", Term(1)}, Entry{"b", Term(Pid{Atom("n1"), 1, 2})}};
  std::string bytes;
  ASSERT_TRUE(Message(e).encode(bytes));
  // Each field is what the term codec writes for the same value (docs/protocol.md section 4).
  Result<Term> as_term = decode_term(bytes);
  ASSERT_OK(as_term);
  EXPECT_EQ(*as_term, tuple("n1", e.pid, Term(), e.ref, bin(e.key), e.term,
                            tuple(static_cast<int>(ErrorCode::kAlreadyStarted), "<n2.42.0>"),
                            tuple(tuple(bin("a"), 1), tuple(bin("b"), Pid{Atom("n1"), 1, 2}))));
  Result<Everything> back = decode_message<Everything>(bytes);
  ASSERT_OK(back);
  EXPECT_EQ(back->node, Atom("n1"));
  EXPECT_EQ(back->pid, e.pid);
  EXPECT_FALSE(back->none.valid());
  EXPECT_EQ(back->ref, e.ref);
  EXPECT_EQ(back->key, e.key);
  EXPECT_EQ(back->term, e.term);
  EXPECT_EQ(back->status.code(), ErrorCode::kAlreadyStarted);
  EXPECT_EQ(back->status.message(), "<n2.42.0>");
  ASSERT_EQ(back->entries.size(), 2u);
  EXPECT_EQ(back->entries[1].value, Term(Pid{Atom("n1"), 1, 2}));
}

TEST(MessageTest, NodusFieldTypesRefuseWhatDoesNotFit) {
  auto decode = [](const Term& fields) { return decode_message<Everything>(encode_term(fields)); };
  const Term status = tuple(0, bin(""));
  // A pid field that holds a ref, an atom longer than 255 bytes, a status that is no array.
  EXPECT_FALSE(
      decode(tuple("n1", Ref{Atom("n"), 1, 1}, Term(), Term(), bin(""), 1, status, tuple())).ok());
  EXPECT_FALSE(
      decode(tuple(bin(std::string(256, 'a')), Term(), Term(), Term(), bin(""), 1, status, tuple()))
          .ok());
  EXPECT_FALSE(decode(tuple("n1", Term(), Term(), Term(), bin(""), 1, 0, tuple())).ok());
  // A code no table knows reads as protocol_error naming it.
  auto unknown =
      decode(tuple("n1", Term(), Term(), Term(), bin(""), 1, tuple(4999, bin("x")), tuple()));
  ASSERT_OK(unknown);
  EXPECT_EQ(unknown->status.code(), ErrorCode::kProtocol);
  EXPECT_NE(unknown->status.message().find("4999"), std::string::npos);
}

TEST(MessageTest, TermMessageEncodesAsTheTermCodec) {
  Term t = tuple("call", Pid{Atom("n1"), 1, 2}, list(1, bin("x")));
  Message m = t;
  std::string bytes;
  ASSERT_TRUE(m.encode(bytes));
  EXPECT_EQ(encode_term(t), bytes);
  Result<Term> back = decode_term(bytes);
  ASSERT_OK(back);
  EXPECT_EQ(t, back.value());
}

}  // namespace
}  // namespace nodus
