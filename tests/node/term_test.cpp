#include "nodus/node/term.hpp"

#include <gtest/gtest.h>

#include <sstream>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "test_util.hpp"

// {fmt} as a program that prints nodus values with it would use it (header-only here: the test
// links no fmt library).
#define FMT_HEADER_ONLY
#include "nodus/node/format.hpp"

namespace nodus {
namespace {

Pid MakePid(std::string_view node, std::uint32_t creation, std::uint64_t id) {
  return Pid{Atom(node), creation, id};
}
Ref MakeRef(std::string_view node, std::uint32_t creation, std::uint64_t id) {
  return Ref{Atom(node), creation, id};
}

// -- atoms ------------------------------------------------------------------------

TEST(AtomTest, SameNameGivesSameId) {
  EXPECT_EQ(Atom("same_name").id(), Atom("same_name").id());
  EXPECT_NE(Atom("one_name").id(), Atom("other_name").id());
  EXPECT_EQ(Atom("one_name"), atom("one_name"));
}

TEST(AtomTest, DefaultIsUndefinedWithIdZero) {
  EXPECT_EQ(0u, Atom().id());
  EXPECT_EQ("undefined", Atom().name());
  EXPECT_EQ(Atom(), Atom("undefined"));
}

TEST(AtomTest, FromIdGivesBackTheAtom) {
  Atom a("from_id_test");
  EXPECT_EQ(a, Atom::from_id(a.id()));
  EXPECT_EQ("from_id_test", Atom::from_id(a.id()).name());
}

TEST(AtomTest, OrdersByNameNotByInterningOrder) {
  Atom z("zzz_interned_first");
  Atom a("aaa_interned_second");
  EXPECT_LT(a, z);
  EXPECT_GT(z, a);
  EXPECT_EQ(std::strong_ordering::equal, Atom("x") <=> Atom("x"));
}

TEST(AtomTest, KeepsEmptyAndLongestNames) {
  EXPECT_EQ("", Atom("").name());
  const std::string longest(kMaxAtomLength, 'x');
  EXPECT_EQ(longest, Atom(longest).name());
}

TEST(AtomTest, RefusesNamesOver255Bytes) {
  EXPECT_THROW(Atom(std::string(kMaxAtomLength + 1, 'x')), std::length_error);
}

TEST(AtomTest, ManyAtomsKeepTheirNamesAcrossTableSegments) {
  std::vector<Atom> atoms;
  for (int i = 0; i < 5000; ++i) atoms.emplace_back("many_" + std::to_string(i));
  for (int i = 0; i < 5000; ++i) {
    ASSERT_EQ("many_" + std::to_string(i), atoms[i].name());
    ASSERT_EQ(atoms[i], Atom::from_id(atoms[i].id()));
  }
}

TEST(AtomTest, ThreadsInterningOverlappingNamesAgreeOnIds) {
  constexpr int kThreads = 4;
  constexpr int kNames = 3000;
  std::vector<std::vector<std::uint32_t>> ids(kThreads, std::vector<std::uint32_t>(kNames));
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &ids] {
      // Each thread walks the names in its own order and reads names back while others intern.
      for (int k = 0; k < kNames; ++k) {
        const int i = (t % 2 == 0) ? k : kNames - 1 - k;
        const std::string name = "threaded_" + std::to_string(i);
        Atom a(name);
        ids[t][i] = a.id();
        if (a.name() != name) std::abort();
      }
    });
  }
  for (auto& th : threads) th.join();
  std::unordered_set<std::uint32_t> distinct;
  for (int i = 0; i < kNames; ++i) {
    for (int t = 1; t < kThreads; ++t) ASSERT_EQ(ids[0][i], ids[t][i]) << "name " << i;
    distinct.insert(ids[0][i]);
    EXPECT_EQ("threaded_" + std::to_string(i), Atom::from_id(ids[0][i]).name());
  }
  EXPECT_EQ(static_cast<std::size_t>(kNames), distinct.size());
}

// -- pids and refs --------------------------------------------------------------

TEST(PidTest, PrintsNodeIdAndCreation) {
  EXPECT_EQ("<n1.42.0>", MakePid("n1", 7, 42).to_string());
  EXPECT_EQ("<n1.42.3>", MakePid("n1", 7, (std::uint64_t{3} << 32) | 42).to_string());
  EXPECT_EQ("#Ref<n1.42>", MakeRef("n1", 7, 42).to_string());
}

TEST(PidTest, DefaultIsNotValid) {
  EXPECT_FALSE(Pid().valid());
  EXPECT_FALSE(static_cast<bool>(Ref()));
  EXPECT_TRUE(MakePid("n1", 1, 1).valid());
}

TEST(PidTest, OrdersByNodeNameThenCreationThenId) {
  // Node names order by name, even when interned in the opposite order.
  const Pid b = MakePid("pid_order_b", 0, 0);
  const Pid a = MakePid("pid_order_a", 9, 9);
  EXPECT_LT(a, b);
  EXPECT_LT(MakePid("n1", 1, 99), MakePid("n1", 2, 1));
  EXPECT_LT(MakePid("n1", 1, 1), MakePid("n1", 1, 2));
  EXPECT_EQ(MakePid("n1", 1, 2), MakePid("n1", 1, 2));
  EXPECT_LT(MakeRef("n1", 1, 1), MakeRef("n1", 1, 2));
  EXPECT_LT(MakeRef("n0", 5, 5), MakeRef("n1", 1, 1));
}

// -- construction and access ------------------------------------------------------

TEST(TermTest, LiteralsMakeAtomsAndStringsMakeBinaries) {
  EXPECT_TRUE(Term("ok").is_atom());
  EXPECT_TRUE(Term("ok").is_atom("ok"));
  EXPECT_FALSE(Term("ok").is_atom("error"));
  EXPECT_TRUE(Term(std::string("ok")).is_bin());
  EXPECT_TRUE(bin("ok").is_bin());
  EXPECT_FALSE(bin("ok").is_atom("ok"));
  EXPECT_NE(Term("ok"), bin("ok"));
  EXPECT_TRUE(Term(true).is_atom("true"));
  EXPECT_TRUE(Term(false).is_atom("false"));
  EXPECT_TRUE(Term().is_atom("undefined"));
}

TEST(TermTest, ReportsItsKind) {
  EXPECT_EQ(Term::Kind::kInt, Term(1).kind());
  EXPECT_EQ(Term::Kind::kFloat, Term(1.0).kind());
  EXPECT_EQ(Term::Kind::kAtom, Term("a").kind());
  EXPECT_EQ(Term::Kind::kBinary, bin("a").kind());
  EXPECT_EQ(Term::Kind::kPid, Term(MakePid("n1", 1, 1)).kind());
  EXPECT_EQ(Term::Kind::kRef, Term(MakeRef("n1", 1, 1)).kind());
  EXPECT_EQ(Term::Kind::kList, list().kind());
  EXPECT_EQ(Term::Kind::kTuple, tuple().kind());
  EXPECT_EQ(Term::Kind::kMap, map({}).kind());
}

TEST(TermTest, IntegralTypesBecomeInts) {
  EXPECT_EQ(Term(std::int64_t{-5}), Term(-5));
  EXPECT_EQ(Term(std::uint8_t{200}).as_int(), 200);
  EXPECT_EQ(Term(std::numeric_limits<std::int64_t>::min()).as_int(),
            std::numeric_limits<std::int64_t>::min());
}

TEST(TermTest, AccessorsThrowOnTheWrongKind) {
  EXPECT_THROW((void)Term("a").as_int(), std::bad_variant_access);
  EXPECT_THROW((void)Term(1).as_bin(), std::bad_variant_access);
  EXPECT_THROW((void)Term("a").as_number(), std::bad_variant_access);
  EXPECT_DOUBLE_EQ(3.0, Term(3).as_number());
  EXPECT_DOUBLE_EQ(2.5, Term(2.5).as_number());
}

TEST(TermTest, IndexesTuplesAndLists) {
  Term t = tuple("a", 2, 3.5);
  EXPECT_EQ(3u, t.size());
  EXPECT_EQ(Term("a"), t[0]);
  EXPECT_EQ(Term(3.5), t[2]);
  Term l = list(1, 2);
  EXPECT_EQ(2u, l.size());
  EXPECT_EQ(Term(2), l[1]);
  EXPECT_EQ(0u, Term("atom").size());
  EXPECT_EQ(0u, map({{"a", 1}}).size());
  EXPECT_THROW((void)t[3], std::out_of_range);
  EXPECT_THROW((void)Term(1)[0], std::out_of_range);
}

TEST(TermTest, MapSortsKeysAndKeepsTheLastDuplicate) {
  Term m = map({{"b", 1}, {"a", 2}, {"b", 3}, {1, "int"}, {"a", 4}});
  ASSERT_EQ(3u, m.as_map().size());
  EXPECT_EQ(Term(1), m.as_map()[0].first);  // numbers sort before atoms
  EXPECT_EQ(Term("a"), m.as_map()[1].first);
  EXPECT_EQ(Term(4), m.as_map()[1].second);
  EXPECT_EQ(Term("b"), m.as_map()[2].first);
  EXPECT_EQ(Term(3), m.as_map()[2].second);
  EXPECT_EQ(m, map({{"a", 4}, {"b", 3}, {1, "int"}}));
}

TEST(TermTest, FindLooksUpExactKeys) {
  Term m = map({{1, "int one"}, {1.0, "float one"}, {"k", tuple(1, 2)}, {bin("k"), "bin"}});
  ASSERT_NE(nullptr, m.find(1));
  EXPECT_EQ(Term("int one"), *m.find(1));
  EXPECT_EQ(Term("float one"), *m.find(1.0));
  EXPECT_EQ(tuple(1, 2), *m.find("k"));
  EXPECT_EQ(Term("bin"), *m.find(bin("k")));
  EXPECT_EQ(nullptr, m.find(2));
  EXPECT_EQ(nullptr, m.find("missing"));
  EXPECT_EQ(nullptr, Term(1).find(1));
}

// -- equality, order and hashing ----------------------------------------------------

TEST(TermTest, EqualityIsExact) {
  EXPECT_NE(Term(1), Term(1.0));
  EXPECT_NE(tuple(1, 2), list(1, 2));
  EXPECT_EQ(tuple(1, list("a", bin("b"))), tuple(1, list("a", bin("b"))));
  EXPECT_NE(tuple(1, list("a", bin("b"))), tuple(1, list("a", bin("c"))));
  EXPECT_NE(Term(0.0), Term(-0.0));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  EXPECT_EQ(Term(nan), Term(nan));
}

TEST(TermTest, KindsFollowErlangTermOrder) {
  // number < atom < ref < pid < tuple < map < list < binary
  const std::vector<Term> ordered = {Term(-1.5),
                                     Term(7),
                                     Term("zzz"),
                                     Term(MakeRef("n1", 1, 1)),
                                     Term(MakePid("n1", 1, 1)),
                                     tuple(),
                                     map({}),
                                     list(),
                                     bin("")};
  for (std::size_t i = 0; i + 1 < ordered.size(); ++i) {
    EXPECT_LT(ordered[i], ordered[i + 1])
        << ordered[i].to_string() << " vs " << ordered[i + 1].to_string();
  }
  std::vector<Term> shuffled(ordered.rbegin(), ordered.rend());
  std::sort(shuffled.begin(), shuffled.end());
  EXPECT_EQ(ordered, shuffled);
}

TEST(TermTest, NumbersCompareByValueWithIntsFirstWhenEqual) {
  EXPECT_LT(Term(1), Term(1.5));
  EXPECT_LT(Term(1.5), Term(2));
  EXPECT_GT(Term(2), Term(1.5));
  EXPECT_LT(Term(1), Term(1.0));  // equal value: the int first, consistent with 1 != 1.0
  EXPECT_GT(Term(1.0), Term(1));
  EXPECT_LT(Term(-2), Term(-1.5));
  EXPECT_GT(Term(-1), Term(-1.5));
  EXPECT_LT(Term(0), Term(-0.0));
  EXPECT_LT(Term(-0.0), Term(0.0));
}

TEST(TermTest, LargeIntsCompareExactlyWithFloats) {
  const std::int64_t two53 = std::int64_t{1} << 53;
  EXPECT_GT(Term(two53 + 1), Term(static_cast<double>(two53)));  // the double rounds to 2^53
  EXPECT_LT(Term(two53 + 1), Term(static_cast<double>(two53 + 2)));
  const std::int64_t max = std::numeric_limits<std::int64_t>::max();
  const std::int64_t min = std::numeric_limits<std::int64_t>::min();
  EXPECT_LT(Term(max), Term(9223372036854775808.0));
  EXPECT_LT(Term(min), Term(-9223372036854775808.0));  // equal value: the int first
  EXPECT_GT(Term(min), Term(-9223372036854777856.0));
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_LT(Term(max), Term(inf));
  EXPECT_GT(Term(min), Term(-inf));
}

TEST(TermTest, NaNsSortAtTheEndsOfTheNumbers) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_GT(Term(nan), Term(inf));
  EXPECT_GT(Term(nan), Term(std::numeric_limits<std::int64_t>::max()));
  EXPECT_LT(Term(-nan), Term(-inf));
  EXPECT_LT(Term(-nan), Term(std::numeric_limits<std::int64_t>::min()));
  EXPECT_LT(Term(nan), Term("atom"));
  std::vector<Term> v = {Term(nan), Term(1), Term(-nan), Term(0.5), Term(nan), Term(-inf)};
  std::sort(v.begin(), v.end());
  EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
  EXPECT_EQ(Term(-nan), v[0]);
  EXPECT_EQ(Term(nan), v[5]);
}

TEST(TermTest, TuplesCompareBySizeThenElements) {
  EXPECT_LT(tuple("z"), tuple("a", "a"));
  EXPECT_LT(tuple(1, "a"), tuple(1, "b"));
  EXPECT_LT(tuple(), tuple(0));
}

TEST(TermTest, MapsCompareBySizeThenKeysThenValues) {
  EXPECT_LT(map({{"z", 9}}), map({{"a", 1}, {"b", 1}}));
  EXPECT_LT(map({{"a", 9}, {"b", 9}}), map({{"a", 1}, {"c", 1}}));  // keys decide first
  EXPECT_LT(map({{"a", 1}, {"b", 2}}), map({{"a", 1}, {"b", 3}}));
}

TEST(TermTest, ListsCompareLexicographically) {
  EXPECT_LT(list(), list(1));
  EXPECT_LT(list(1), list(1, 2));
  EXPECT_LT(list(1, 2), list(2));
  EXPECT_LT(list(1, "a"), list(1, "b"));
}

TEST(TermTest, BinariesCompareBytewiseUnsigned) {
  EXPECT_LT(bin("abc"), bin("abd"));
  EXPECT_LT(bin("ab"), bin("abc"));
  EXPECT_LT(bin("\x7f"), bin("\x80"));
  EXPECT_LT(bin(std::string_view("\0", 1)), bin("\x01"));
}

TEST(TermTest, AtomsCompareByName) {
  EXPECT_LT(Term("apple"), Term("banana"));
  EXPECT_LT(Term("Z"), Term("a"));
}

TEST(TermTest, EqualTermsHashEqualAndWorkAsHashKeys) {
  EXPECT_EQ(tuple("a", list(1, 2.5), map({{"k", bin("v")}})).hash(),
            tuple("a", list(1, 2.5), map({{"k", bin("v")}})).hash());
  std::unordered_set<Term> set = {Term(1), Term(1.0), Term("a"), bin("a"), tuple(1), list(1)};
  EXPECT_EQ(6u, set.size());
  set.insert(tuple(1));
  set.insert(Term("a"));
  EXPECT_EQ(6u, set.size());
  EXPECT_TRUE(set.contains(list(1)));
  EXPECT_FALSE(set.contains(list(2)));
}

// -- printing -------------------------------------------------------------------------

TEST(TermTest, PrintsAtomsBareOrQuoted) {
  EXPECT_EQ("ok", Term("ok").to_string());
  EXPECT_EQ("node@host_1", Term("node@host_1").to_string());
  EXPECT_EQ("'Hello'", Term("Hello").to_string());
  EXPECT_EQ("'with space'", Term("with space").to_string());
  EXPECT_EQ("'it\\'s'", Term("it's").to_string());
  EXPECT_EQ("''", Term("").to_string());
  EXPECT_EQ("'1st'", Term("1st").to_string());
  EXPECT_EQ("'and'", Term("and").to_string());
  EXPECT_EQ("undefined", Term().to_string());
  EXPECT_EQ("true", Term(true).to_string());
}

TEST(TermTest, PrintsNumbers) {
  EXPECT_EQ("42", Term(42).to_string());
  EXPECT_EQ("-7", Term(-7).to_string());
  EXPECT_EQ("-9223372036854775808", Term(std::numeric_limits<std::int64_t>::min()).to_string());
  EXPECT_EQ("1.0", Term(1.0).to_string());
  EXPECT_EQ("1.5", Term(1.5).to_string());
  EXPECT_EQ("-0.25", Term(-0.25).to_string());
  EXPECT_EQ("0.1", Term(0.1).to_string());
  EXPECT_EQ("1.0e20", Term(1e20).to_string());
  EXPECT_EQ("1.5e-7", Term(1.5e-7).to_string());
}

TEST(TermTest, PrintsFloatsThatReadBackExactly) {
  for (double d : {0.1, 1.0 / 3.0, 2.0 / 3.0 * 1e-300, 6.02214076e23, 123456789.123456789,
                   std::numeric_limits<double>::max(), std::numeric_limits<double>::denorm_min()}) {
    const std::string text = Term(d).to_string();
    EXPECT_EQ(d, std::strtod(text.c_str(), nullptr)) << text;
  }
}

TEST(TermTest, PrintsBinariesWithEscapes) {
  EXPECT_EQ("\"hello\"", bin("hello").to_string());
  EXPECT_EQ("\"\"", bin("").to_string());
  EXPECT_EQ("\"say \\\"hi\\\"\\n\"", bin("say \"hi\"\n").to_string());
  EXPECT_EQ("\"a\\\\b\\t\\x00\\xFF\"", bin(std::string_view("a\\b\t\0\xff", 6)).to_string());
}

TEST(TermTest, PrintsContainersLikeErlang) {
  EXPECT_EQ("[1,2]", list(1, 2).to_string());
  EXPECT_EQ("[]", list().to_string());
  EXPECT_EQ("{ok,3}", tuple("ok", 3).to_string());
  EXPECT_EQ("{}", tuple().to_string());
  EXPECT_EQ("#{a => 1}", map({{"a", 1}}).to_string());
  EXPECT_EQ("#{1 => [],b => {x,\"y\"}}",
            map({{"b", tuple("x", bin("y"))}, {1, list()}}).to_string());
  EXPECT_EQ("#{}", map({}).to_string());
  EXPECT_EQ("{reply,<n1.4.0>,#Ref<n2.9>}",
            tuple("reply", MakePid("n1", 1, 4), MakeRef("n2", 3, 9)).to_string());
}

// -- pattern matching ---------------------------------------------------------------

TEST(TermTest, TupleMatchCapturesHolesInOrder) {
  Term req = tuple("add", 2, 40);
  auto m = req.match({"add", _int, _int});
  ASSERT_TRUE(m);
  ASSERT_EQ(2u, m.size());
  EXPECT_EQ(42, m[0].as_int() + m[1].as_int());
  EXPECT_EQ(Term(2), m[0]);
  EXPECT_EQ(Term(40), m[1]);
  EXPECT_EQ(&req[1], &m[0]);  // refers into the matched term
}

TEST(TermTest, MatchFailsOnAnotherLiteral) {
  EXPECT_FALSE(tuple("sub", 2, 40).match({"add", _int, _int}));
  EXPECT_FALSE(Term("pop").match("push"));
  EXPECT_TRUE(Term("pop").match("pop"));
  EXPECT_FALSE(Term(1).match(1.0));  // literals match by ==
}

TEST(TermTest, MatchFailsOnAnotherArityOrKind) {
  EXPECT_FALSE(tuple("add", 1).match({"add", _, _}));
  EXPECT_FALSE(tuple("add", 1, 2, 3).match({"add", _, _}));
  EXPECT_FALSE(list("add", 1, 2).match({"add", _, _}));
  EXPECT_FALSE(Term("add").match({"add"}));
  EXPECT_TRUE(tuple("add").match({"add"}));
}

TEST(TermTest, AnyHoleMatchesAndCapturesTheWholeTerm) {
  Term t = map({{"a", list(1)}});
  auto m = t.match(_);
  ASSERT_TRUE(m);
  ASSERT_EQ(1u, m.size());
  EXPECT_EQ(t, m[0]);
  EXPECT_TRUE(Term("x").match(_));
}

TEST(TermTest, TypedHoleMatchesOnlyItsKind) {
  const std::vector<std::pair<Hole, Term>> cases = {
      {_int, Term(1)},  {_float, Term(1.0)},        {_atom, Term("a")},
      {_bin, bin("b")}, {_pid, MakePid("n", 1, 1)}, {_ref, MakeRef("n", 1, 1)},
      {_list, list(1)}, {_tuple, tuple(1)},         {_map, map({{1, 2}})},
  };
  for (std::size_t i = 0; i < cases.size(); ++i) {
    for (std::size_t j = 0; j < cases.size(); ++j) {
      const bool matched = cases[j].second.match(cases[i].first).operator bool();
      EXPECT_EQ(i == j, matched) << "hole " << i << " on " << cases[j].second.to_string();
    }
  }
}

TEST(TermTest, NestedTuplePatternsMatchNestedTuples) {
  Term msg = tuple("call", tuple(MakePid("n1", 1, 5), MakeRef("n1", 1, 8)), tuple("get", "k"));
  auto m = msg.match({"call", {_pid, _ref}, {"get", _atom}});
  ASSERT_TRUE(m);
  ASSERT_EQ(3u, m.size());
  EXPECT_EQ(MakePid("n1", 1, 5), m[0].as_pid());
  EXPECT_EQ(MakeRef("n1", 1, 8), m[1].as_ref());
  EXPECT_EQ(Term("k"), m[2]);
  EXPECT_FALSE(msg.match({"call", {_pid, _pid}, {"get", _atom}}));
  EXPECT_FALSE(msg.match({"call", {_pid, _ref}, {"put", _atom}}));
  EXPECT_FALSE(msg.match({"call", _tuple, {"get", _bin}}));
}

TEST(TermTest, LiteralContainersInPatternsMatchByEquality) {
  Term t = tuple("set", list(1, 2), map({{"a", 1}}));
  EXPECT_TRUE(t.match({"set", list(1, 2), map({{"a", 1}})}));
  EXPECT_FALSE(t.match({"set", list(1, 3), _map}));
}

TEST(TermTest, TermsPrintOnStreamsAndWithFmtAsTheirText) {
  const Pid p{Atom("n1"), 1, 4};
  const Term t = tuple("ok", p, list(1, bin("x")));
  std::ostringstream os;
  os << t << " " << Atom("a") << " " << p << " " << Reason("noproc") << " "
     << Status(ErrorCode::kTimeout, "5 s") << " " << Message(tuple("push", 1));
  EXPECT_EQ(os.str(), t.to_string() + " a " + p.to_string() + " noproc timeout: 5 s {push,1}");
  EXPECT_EQ(fmt::format("{} / {}", t, Reason(tuple("exit", 1))), t.to_string() + " / {exit,1}");
}

}  // namespace
}  // namespace nodus
