// The link logic without sockets or clocks (transport/src/link_table.hpp): a LinkTable driven
// by hand, time given as an input, against a peer scripted from the handshake's own state
// machines. What it opens, sends, publishes and reports is recorded and checked exactly.
#include "link_table.hpp"

#include <gtest/gtest.h>
#include <sodium.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace nodus::transport {
namespace {

using namespace std::chrono_literals;

/// Records what the table does; answers its questions from fields the test sets.
class RecordingIo final : public LinkIo {
 public:
  struct Sent {
    ConnId conn;
    Frame frame;
  };
  std::map<ConnId, std::string> open_conns;  // id -> endpoint
  std::vector<ConnId> closed;
  std::vector<Sent> sent;
  std::vector<std::pair<std::string, Frame>> replies;
  std::map<std::string, ConnId> published;
  std::vector<PeerInfo> ups;
  std::vector<std::pair<std::string, std::string>> downs;
  std::vector<std::pair<std::string, Data>> delivered;
  std::vector<std::string> logs;
  std::map<ConnId, TimePoint> last_sent;
  int nonces = 0;

  bool open(ConnId id, const std::string& endpoint, const std::string&, std::string&) override {
    open_conns[id] = endpoint;
    return true;
  }
  void close(ConnId id) override {
    open_conns.erase(id);
    closed.push_back(id);
    for (auto it = published.begin(); it != published.end();) {
      it = it->second == id ? published.erase(it) : std::next(it);
    }
  }
  void send(ConnId id, std::string_view frame) override {
    auto f = decode_frame(frame);
    ASSERT_TRUE(f.ok()) << f.error().to_string();
    sent.push_back({id, *f});
    last_sent[id] = now;
  }
  void reply(const std::string& in, std::string_view frame) override {
    auto f = decode_frame(frame);
    ASSERT_TRUE(f.ok());
    replies.emplace_back(in, *f);
  }
  void publish(const std::string& peer, ConnId id) override { published.try_emplace(peer, id); }
  void peer_up(const PeerInfo& info, ConnId id) override {
    ups.push_back(info);
    published[info.name] = id;
  }
  void peer_down(const std::string& peer, const std::string& reason, bool was_up, bool) override {
    published.erase(peer);
    if (was_up) downs.emplace_back(peer, reason);
  }
  void deliver(const std::string& peer, Data&& data) override {
    delivered.emplace_back(peer, std::move(data));
  }
  void count_data_in(const std::string&, std::uint64_t) override {}
  std::chrono::steady_clock::duration idle_for(ConnId id, TimePoint t) override {
    return t - last_sent[id];
  }
  std::string nonce() override {
    return std::string(kNonceBytes, static_cast<char>('a' + nonces++ % 26));
  }
  void log(const std::string& line) override { logs.push_back(line); }

  TimePoint now{};

  /// The frames sent on `id` so far, of type F.
  template <class F>
  std::vector<F> sent_on(ConnId id) const {
    std::vector<F> out;
    for (const Sent& s : sent) {
      if (s.conn == id) {
        if (const F* f = std::get_if<F>(&s.frame)) out.push_back(*f);
      }
    }
    return out;
  }
};

/// The other node, played with the handshake's state machines.
struct ScriptedPeer {
  explicit ScriptedPeer(HandshakeIdentity id) : me(std::move(id)) {}
  HandshakeIdentity me;
  ConnectorState out;  // its connection to us
  AcceptorState in;    // our connection to it
};

class LinkTableTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_GE(sodium_init(), 0); }

  LinkConfig config(const std::string& name = "a") {
    LinkConfig c;
    std::string listen = "sim://";
    listen += name;
    c.me = HandshakeIdentity{name, 1, listen, "secret", false};
    c.listen = c.me.listen;
    c.heartbeat_interval = 300ms;
    c.down_after = 2000ms;
    return c;
  }

  void advance(std::chrono::milliseconds d) {
    io_.now += d;
    table_.tick(io_.now);
  }

  // Answers the HELLO our table sent on `conn` as `peer`, and lets the table prove itself.
  // Returns once the table's direction is up (WELCOME delivered).
  void accept_our_link(ScriptedPeer& peer, ConnId conn) {
    auto hellos = io_.sent_on<Hello>(conn);
    ASSERT_FALSE(hellos.empty());
    Frame hello(hellos.back());
    std::function<std::string()> nonce = [] { return std::string(kNonceBytes, 'p'); };
    AcceptorStep c = acceptor_on_frame(peer.me, peer.in, hello, nonce);
    ASSERT_EQ(c.event, AcceptorStep::Event::kChallenged);
    table_.on_outgoing(conn, encode_frame(*c.reply), io_.now);
    auto proofs = io_.sent_on<Proof>(conn);
    ASSERT_EQ(proofs.size(), 1u);
    Frame proof(proofs.back());
    AcceptorStep w = acceptor_on_frame(peer.me, peer.in, proof, nonce);
    ASSERT_EQ(w.event, AcceptorStep::Event::kAuthenticated);
    table_.on_outgoing(conn, encode_frame(*w.reply), io_.now);
  }

  // `peer` opens its own direction to us on incoming connection `in_id`.
  void link_to_us(ScriptedPeer& peer, const std::string& in_id) {
    table_.on_incoming(
        in_id,
        encode_frame(Frame(connector_hello(peer.me, peer.out, std::string(kNonceBytes, 'q')))), {},
        io_.now);
    ASSERT_FALSE(io_.replies.empty());
    ConnectorStep p = connector_on_frame(peer.me, peer.out, io_.replies.back().second);
    ASSERT_EQ(p.event, ConnectorStep::Event::kAuthenticated);
    table_.on_incoming(in_id, encode_frame(*p.reply), {}, io_.now);
    ASSERT_TRUE(std::holds_alternative<Welcome>(io_.replies.back().second));
  }

  // A full link between the table and `peer`; returns our connection's id.
  ConnId link_with(ScriptedPeer& peer) {
    table_.connect(peer.me.listen, "", io_.now);
    const ConnId conn = io_.open_conns.rbegin()->first;
    accept_our_link(peer, conn);
    std::string in_id = "in-";
    in_id += peer.me.name;  // (not "in-" + name: GCC 12 warns falsely, -Wrestrict)
    link_to_us(peer, in_id);
    return conn;
  }

  RecordingIo io_;
  LinkTable table_{config(), io_};
  ScriptedPeer b_{HandshakeIdentity{"b", 5, "sim://b", "secret", false}};
};

TEST_F(LinkTableTest, ConnectOpensAConnectionAndSendsHello) {
  table_.connect("sim://b", "", io_.now);
  ASSERT_EQ(io_.open_conns.size(), 1u);
  EXPECT_EQ(io_.open_conns.begin()->second, "sim://b");
  auto hellos = io_.sent_on<Hello>(io_.open_conns.begin()->first);
  ASSERT_EQ(hellos.size(), 1u);
  EXPECT_EQ(hellos[0].name, "a");
  EXPECT_EQ(hellos[0].listen, "sim://a");
  EXPECT_TRUE(io_.ups.empty());
}

TEST_F(LinkTableTest, APeerIsUpOnlyOnceBothDirectionsAreAuthenticated) {
  table_.connect("sim://b", "", io_.now);
  const ConnId conn = io_.open_conns.begin()->first;
  accept_our_link(b_, conn);
  // Our direction is usable (published at the proof) but the peer is not up yet.
  EXPECT_EQ(io_.published.at("b"), conn);
  EXPECT_TRUE(io_.ups.empty());
  link_to_us(b_, "in-b");
  ASSERT_EQ(io_.ups.size(), 1u);
  EXPECT_EQ(io_.ups[0].name, "b");
  EXPECT_EQ(io_.ups[0].creation, 5u);
  EXPECT_EQ(io_.ups[0].endpoint, "sim://b");
  EXPECT_EQ(table_.up_peers(), std::vector<std::string>{"b"});
}

TEST_F(LinkTableTest, AcceptingALinkOpensOurOwnDirection) {
  link_to_us(b_, "in-b");
  ASSERT_EQ(io_.open_conns.size(), 1u);
  EXPECT_EQ(io_.open_conns.begin()->second, "sim://b");  // its HELLO's listen endpoint
  accept_our_link(b_, io_.open_conns.begin()->first);
  EXPECT_EQ(io_.ups.size(), 1u);
}

TEST_F(LinkTableTest, DataOnAnAuthenticatedConnectionIsDelivered) {
  link_with(b_);
  Data d;
  d.to = std::string("sink");
  d.payload = std::string(1, 'x');  // (= "x" trips a false -Wrestrict of GCC 12 under TSan)
  std::string batch;
  encode_frame(Frame(d), batch);
  encode_frame(Frame(d), batch);
  table_.on_incoming("in-b", batch, {}, io_.now);
  ASSERT_EQ(io_.delivered.size(), 2u);
  EXPECT_EQ(io_.delivered[0].first, "b");
}

TEST_F(LinkTableTest, HeartbeatsGoOnlyOnIdleLinks) {
  const ConnId conn = link_with(b_);
  const auto before = io_.sent_on<Heartbeat>(conn).size();
  advance(100ms);
  EXPECT_EQ(io_.sent_on<Heartbeat>(conn).size(), before);
  advance(250ms);  // 350 ms without a send
  EXPECT_EQ(io_.sent_on<Heartbeat>(conn).size(), before + 1);
  advance(100ms);  // the heartbeat itself counts as traffic
  EXPECT_EQ(io_.sent_on<Heartbeat>(conn).size(), before + 1);
}

TEST_F(LinkTableTest, ASilentPeerIsDownAfterDownAfterAndRedialledWithBackoff) {
  const ConnId conn = link_with(b_);
  advance(1900ms);
  EXPECT_TRUE(io_.downs.empty());
  advance(200ms);
  ASSERT_EQ(io_.downs.size(), 1u);
  EXPECT_EQ(io_.downs[0], std::make_pair(std::string("b"), std::string("timeout")));
  EXPECT_EQ(io_.open_conns.count(conn), 0u);
  EXPECT_TRUE(io_.published.empty());
  // The first backoff is 50 ms.
  advance(40ms);
  EXPECT_TRUE(io_.open_conns.empty());
  advance(20ms);
  ASSERT_EQ(io_.open_conns.size(), 1u);
  EXPECT_EQ(io_.sent_on<Hello>(io_.open_conns.begin()->first).size(), 1u);
}

TEST_F(LinkTableTest, AnUnansweredHandshakeIsRetriedWithABackoffThatDoublesToTheCap) {
  table_.connect("sim://nobody", "", io_.now);
  std::vector<TimePoint> attempts{io_.now};
  ConnId last = io_.open_conns.begin()->first;
  for (int i = 0; i < 500 && attempts.size() < 10; ++i) {
    advance(100ms);
    if (!io_.open_conns.empty() && io_.open_conns.begin()->first != last) {
      last = io_.open_conns.begin()->first;
      attempts.push_back(io_.now);
    }
  }
  ASSERT_EQ(attempts.size(), 10u);
  // Each attempt waits down_after for an answer, then 50, 100, 200 ... 5000 ms.
  std::chrono::milliseconds backoff = LinkTable::kFirstBackoff;
  for (std::size_t i = 1; i < attempts.size(); ++i) {
    const auto gap =
        std::chrono::duration_cast<std::chrono::milliseconds>(attempts[i] - attempts[i - 1]);
    EXPECT_GE(gap, 2000ms + backoff) << i;
    EXPECT_LE(gap, 2000ms + backoff + 200ms) << i;
    backoff = std::min(backoff * 2, LinkTable::kMaxBackoff);
  }
}

TEST_F(LinkTableTest, ByeTakesThePeerDownAtOnce) {
  link_with(b_);
  table_.on_incoming("in-b", encode_frame(Frame(Bye{"leaving"})), {}, io_.now);
  ASSERT_EQ(io_.downs.size(), 1u);
  EXPECT_EQ(io_.downs[0].second, "bye");
}

TEST_F(LinkTableTest, ANewIncarnationTakesTheOldOneDownFirst) {
  link_with(b_);
  ScriptedPeer b2{HandshakeIdentity{"b", 6, "sim://b", "secret", false}};
  link_to_us(b2, "in-b2");
  ASSERT_EQ(io_.downs.size(), 1u);
  EXPECT_EQ(io_.downs[0].second, "restarted");
  // Our new direction goes to the new incarnation.
  ASSERT_EQ(io_.open_conns.size(), 1u);
  accept_our_link(b2, io_.open_conns.begin()->first);
  ASSERT_EQ(io_.ups.size(), 2u);
  EXPECT_EQ(io_.ups[1].creation, 6u);
}

// The peer's connector dropped its connection and made a new one (it heard REFUSE, or timed us
// out): what it sent may have been lost, so the peer is down here too -- and up again at once,
// since our own direction stands (resetting it would make the peer see a reconnect in turn).
TEST_F(LinkTableTest, APeerThatReconnectsIsDownAndUpAgainAndOurDirectionStays) {
  const ConnId conn = link_with(b_);
  b_.out = ConnectorState{};
  link_to_us(b_, "in-b-again");
  ASSERT_EQ(io_.downs.size(), 1u);
  EXPECT_EQ(io_.downs[0], std::make_pair(std::string("b"), std::string("reconnected")));
  ASSERT_EQ(io_.ups.size(), 2u);
  EXPECT_EQ(io_.open_conns.count(conn), 1u);  // not reset
  EXPECT_EQ(io_.published.at("b"), conn);
  // The old connection is forgotten: a frame on it is refused, so its sender would learn.
  io_.replies.clear();
  table_.on_incoming("in-b", encode_frame(Frame(Heartbeat{9})), {}, io_.now);
  ASSERT_EQ(io_.replies.size(), 1u);
  EXPECT_EQ(std::get<Refuse>(io_.replies[0].second).reason, "not authenticated");
}

// A node reached under two endpoints: the second connection leaves before it proves anything,
// so the peer never takes it for a reconnect.
TEST_F(LinkTableTest, ASecondLinkToAnUpPeerLeavesBeforeItsProof) {
  const ConnId first = link_with(b_);
  table_.connect("sim://b-alias", "", io_.now);
  const ConnId second = io_.open_conns.rbegin()->first;
  ASSERT_NE(second, first);
  ScriptedPeer alias(b_.me);  // the same node behind the other endpoint
  auto hellos = io_.sent_on<Hello>(second);
  ASSERT_EQ(hellos.size(), 1u);
  Frame hello(hellos[0]);
  std::function<std::string()> nonce = [] { return std::string(kNonceBytes, 'p'); };
  AcceptorStep c = acceptor_on_frame(alias.me, alias.in, hello, nonce);
  table_.on_outgoing(second, encode_frame(*c.reply), io_.now);
  EXPECT_TRUE(io_.sent_on<Proof>(second).empty());
  EXPECT_EQ(io_.open_conns.count(second), 0u);
  EXPECT_EQ(io_.open_conns.count(first), 1u);
  EXPECT_TRUE(io_.downs.empty());
}

TEST_F(LinkTableTest, UpPeersLearnOfEachOther) {
  const ConnId to_b = link_with(b_);
  ScriptedPeer c{HandshakeIdentity{"c", 3, "sim://c", "secret", false}};
  const ConnId to_c = link_with(c);
  auto to_c_peers = io_.sent_on<Peers>(to_c);
  ASSERT_EQ(to_c_peers.size(), 1u);
  EXPECT_EQ(to_c_peers[0].nodes[0].name, "b");
  auto to_b_peers = io_.sent_on<Peers>(to_b);
  ASSERT_EQ(to_b_peers.size(), 1u);
  EXPECT_EQ(to_b_peers[0].nodes[0].name, "c");
}

TEST_F(LinkTableTest, AHiddenPeerIsToldOfNoOneAndNoOneOfIt) {
  link_with(b_);
  ScriptedPeer ctl{HandshakeIdentity{"ctl", 3, "sim://ctl", "secret", true}};
  const ConnId to_ctl = link_with(ctl);
  ASSERT_EQ(io_.ups.size(), 2u);
  EXPECT_TRUE(io_.ups[1].hidden);
  EXPECT_TRUE(io_.sent_on<Peers>(to_ctl).empty());
  for (const auto& s : io_.sent) {
    if (const auto* p = std::get_if<Peers>(&s.frame)) {
      for (const auto& e : p->nodes) EXPECT_NE(e.name, "ctl");
    }
  }
}

TEST_F(LinkTableTest, APeersFrameMakesUsLinkToTheNodesItNames) {
  link_with(b_);
  const std::size_t before = io_.open_conns.size();
  table_.on_incoming("in-b",
                     encode_frame(Frame(Peers{{{"c", "sim://c", ""}, {"a", "sim://a", ""}}})), {},
                     io_.now);
  ASSERT_EQ(io_.open_conns.size(), before + 1);  // c, not ourselves
  EXPECT_EQ(io_.open_conns.rbegin()->second, "sim://c");
}

TEST_F(LinkTableTest, ABlockedPeerGetsNothingThroughNotEvenLiveness) {
  link_with(b_);
  table_.block("b", true);
  table_.on_incoming("in-b", encode_frame(Frame(Heartbeat{1})), {}, io_.now);
  advance(2100ms);
  ASSERT_EQ(io_.downs.size(), 1u);
  EXPECT_EQ(io_.downs[0].second, "timeout");
  table_.block("b", false);
  EXPECT_FALSE(table_.blocked("b"));
}

TEST_F(LinkTableTest, GarbageIsCountedAndForgotten) {
  table_.on_incoming("junk", std::string("\x93\x01\x02", 3), {}, io_.now);
  EXPECT_EQ(table_.frames_rejected(), 1u);
  EXPECT_EQ(table_.incoming_count(), 0u);
  table_.on_incoming("early", encode_frame(Frame(Heartbeat{1})), {}, io_.now);
  EXPECT_EQ(table_.frames_rejected(), 2u);
  EXPECT_EQ(table_.incoming_count(), 0u);
}

}  // namespace
}  // namespace nodus::transport
