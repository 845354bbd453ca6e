// The atom table's limit (nodus/node/term.hpp, atom_table_stats): a new atom beyond it fails
// loudly and is counted, and what other nodes send can fill only its share of the table, never
// in silence. The limit is the OS process's, so these tests have a binary of their own, and each
// sets the limit it needs above the atoms made so far.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "nodus/node/codec.hpp"
#include "nodus/node/process.hpp"
#include "nodus/node/term.hpp"
#include "nodus/transport/sim.hpp"
#include "sim/sim_cluster.hpp"
#include "test_support.hpp"
#include "transport/test_util.hpp"

namespace nodus {
namespace {

using namespace std::chrono_literals;
namespace mp = testing::mp;

std::string fresh_name(const char* prefix) {
  static int next = 0;
  return std::string(prefix) + "-" + std::to_string(next++);
}

TEST(AtomTableTest, ANewAtomBeyondTheLimitThrowsAndIsCounted) {
  (void)atom("ok");  // made before the table fills
  const AtomTableStats before = atom_table_stats();
  EXPECT_EQ(before.limit, kDefaultAtomLimit);
  set_atom_limit(before.count + 100);
  for (int i = 0; i < 100; ++i) Atom(fresh_name("local"));  // local code may fill it all
  EXPECT_EQ(atom_table_stats().count, before.count + 100);
  EXPECT_THROW(Atom(fresh_name("local")), std::length_error);
  const AtomTableStats after = atom_table_stats();
  EXPECT_EQ(after.refused, before.refused + 1);
  EXPECT_EQ(after.count, before.count + 100);
  // Atoms made already are not affected.
  EXPECT_EQ(Atom("ok").name(), "ok");
  EXPECT_EQ(Term("ok"), Term(atom("ok")));
  // A limit below what exists is taken as what exists.
  set_atom_limit(1);
  EXPECT_EQ(atom_table_stats().limit, after.count);
}

TEST(AtomTableTest, AtomsFromOtherNodesStopAtTheirShareAndLocalCodeKeepsTheRest) {
  (void)atom("ok");
  const AtomTableStats before = atom_table_stats();
  set_atom_limit(before.count + 1600);  // the wire may fill up to 15/16 of it
  const AtomTableStats limits = atom_table_stats();
  ASSERT_LT(limits.wire_limit, limits.limit);
  std::size_t decoded = 0;
  Result<Term> last = Term();
  for (int i = 0; i < 3000 && last.ok(); ++i) {
    last = decode_term(mp::Str(fresh_name("wire")));
    if (last.ok()) ++decoded;
  }
  ASSERT_FALSE(last.ok());
  EXPECT_NE(last.error().message().find("atom table"), std::string::npos) << last.error();
  EXPECT_EQ(atom_table_stats().count, limits.wire_limit);
  EXPECT_EQ(atom_table_stats().refused, before.refused + 1);
  // Atoms the table holds still decode; a pid of a new node is refused too.
  EXPECT_TRUE(decode_term(mp::Str("ok")).ok());
  EXPECT_FALSE(decode_term(mp::Ext(2, mp::IdPayload(fresh_name("node"), 1, 1))).ok());
  // Local code has the rest.
  for (std::size_t i = limits.wire_limit; i < limits.limit; ++i) Atom(fresh_name("local"));
  EXPECT_THROW(Atom(fresh_name("local")), std::length_error);
  set_atom_limit(kDefaultAtomLimit);
}

// Issue 10: 2 M casts each carrying a new atom grew a node by ~130 B an atom, for ever. Here a
// peer written by hand (it makes no atom of its own: one OS process shares one table) casts new
// atoms to a node until the node's table holds its share: the rest are refused and counted, the
// node says so in its log, a call gets badarg, and the node goes on serving.
TEST(AtomTableTest, ANodeRefusesMessagesWhoseAtomsWouldExhaustTheTable) {
  testing::SimCluster sim(3);
  Node& b = sim.add("b");
  std::size_t received = 0;
  const Pid sink = sim.spawn("b", [&] {
    for (;;) {
      (void)receive();
      ++received;
    }
  });
  ASSERT_OK(b.register_name("sink", sink));
  transport::TransportOptions o;
  o.name = "x";
  o.creation = 1;
  o.listen = "sim://x";
  o.cookie = "sim";
  o.log = [](const std::string&) {};
  std::vector<transport::Data> replies;
  transport::TransportCallbacks cb;
  cb.on_data = [&](const std::string&, transport::Data&& d) { replies.push_back(std::move(d)); };
  auto x = sim.net().start(std::move(o), std::move(cb));
  ASSERT_OK(x);
  (*x)->connect("sim://b");
  ASSERT_TRUE(sim.run_until([&] { return (*x)->is_up("b"); }, 5s));

  (void)atom("ok");
  const AtomTableStats before = atom_table_stats();
  set_atom_limit(before.count + 1600);
  const AtomTableStats limits = atom_table_stats();
  const std::uint64_t rejected = b.network_stats().messages_rejected;
  const int kCasts = 3000;
  for (int i = 0; i < kCasts; ++i) {
    transport::Data d;
    d.kind = 0;  // a plain send of one new atom
    d.to = std::string("sink");
    d.payload = mp::Str(fresh_name("sent"));
    ASSERT_OK((*x)->send("b", std::move(d)));
    if (i % 100 == 99) sim.run_for(10ms);
  }
  ASSERT_TRUE(sim.run_until(
      [&] { return received + (b.network_stats().messages_rejected - rejected) >= kCasts; }, 10s));
  EXPECT_LE(atom_table_stats().count, limits.wire_limit);
  EXPECT_GT(received, 0u);
  EXPECT_LT(received, static_cast<std::size_t>(kCasts));
  EXPECT_GT(atom_table_stats().refused, before.refused);
  std::size_t lines = 0;
  for (const std::string& l : sim.logs()) {
    lines += l.find("refused a message from x") != std::string::npos &&
             l.find("atom") != std::string::npos;
  }
  EXPECT_GE(lines, 1u);
  EXPECT_LE(lines, 2u);  // rate-limited

  // A call with a new atom is answered badarg.
  transport::Data call;
  call.kind = 2;
  call.from = transport::WireId{"x", 1, 7};
  call.ref = transport::WireId{"x", 1, 9};
  call.to = std::string("sink");
  call.payload = mp::Str(fresh_name("call"));
  ASSERT_OK((*x)->send("b", std::move(call)));
  ASSERT_TRUE(sim.run_until([&] { return !replies.empty(); }, 5s));
  EXPECT_EQ(replies[0].kind, 4);  // an error reply
  auto reason = decode_term(replies[0].payload);
  ASSERT_OK(reason);
  EXPECT_NE(reason->to_string().find("badarg"), std::string::npos) << reason->to_string();

  // The node goes on serving: known atoms pass, and its own code can still make atoms.
  const std::size_t before_ok = received;
  transport::Data ok;
  ok.kind = 0;
  ok.to = std::string("sink");
  ok.payload = mp::Str("ok");
  ASSERT_OK((*x)->send("b", std::move(ok)));
  ASSERT_TRUE(sim.run_until([&] { return received == before_ok + 1; }, 5s));
  EXPECT_NO_THROW(Atom(fresh_name("local")));
  x->reset();
  set_atom_limit(kDefaultAtomLimit);
}

}  // namespace
}  // namespace nodus
