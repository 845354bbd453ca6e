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

  // `peer` opens its own direction to us on incoming connection `in_id` and proves itself;
  // returns what we answered its PROOF with (WELCOME, or a REFUSE).
  Frame try_link_to_us(ScriptedPeer& peer, const std::string& in_id) {
    table_.on_incoming(
        in_id,
        encode_frame(Frame(connector_hello(peer.me, peer.out, std::string(kNonceBytes, 'q')))), {},
        io_.now);
    EXPECT_FALSE(io_.replies.empty());
    if (io_.replies.empty()) return Frame(Refuse{"no CHALLENGE"});
    ConnectorStep p = connector_on_frame(peer.me, peer.out, io_.replies.back().second);
    EXPECT_EQ(p.event, ConnectorStep::Event::kAuthenticated);
    if (!p.reply) return Frame(Refuse{"no PROOF"});
    table_.on_incoming(in_id, encode_frame(*p.reply), {}, io_.now);
    return io_.replies.back().second;
  }

  // Log lines that contain `text`.
  std::size_t logged(const std::string& text) const {
    std::size_t n = 0;
    for (const std::string& l : io_.logs) n += l.find(text) != std::string::npos;
    return n;
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

// -- hidden nodes are not members (docs/protocol.md section 11) -------------------------------

TEST_F(LinkTableTest, APeersFrameFromAHiddenPeerIsIgnoredAndCounted) {
  link_with(b_);
  ScriptedPeer ctl{HandshakeIdentity{"ctl", 3, "sim://ctl", "secret", true}};
  link_with(ctl);
  const std::size_t conns = io_.open_conns.size();
  const auto rejected = table_.frames_rejected();
  std::string in_id = "in-";
  in_id += "ctl";
  table_.on_incoming(in_id,
                     encode_frame(Frame(Peers{
                         {{"x", "sim://unreachable-1", ""}, {"y", "sim://unreachable-2", ""}}})),
                     {}, io_.now);
  EXPECT_EQ(io_.open_conns.size(), conns);  // nothing dialled, now ...
  EXPECT_EQ(table_.frames_rejected(), rejected + 1);
  EXPECT_EQ(logged("ignored PEERS from hidden node ctl"), 1u);
  for (int i = 0; i < 100; ++i) advance(100ms);  // ... or later
  for (const auto& [id, endpoint] : io_.open_conns) {
    EXPECT_EQ(endpoint.find("unreachable"), std::string::npos) << endpoint;
  }
  EXPECT_EQ(table_.outgoing_count(), 2u);  // b and ctl
}

TEST_F(LinkTableTest, AHiddenPeerThatSaidByeIsForgottenNotRedialled) {
  link_with(b_);
  for (int run = 0; run < 50; ++run) {  // nodusctl run after run, each under a fresh name
    const std::string name = "ctl-" + std::to_string(run);
    ScriptedPeer ctl{HandshakeIdentity{name, 3, "sim://" + name, "secret", true}};
    link_to_us(ctl, "in-" + name);  // it links to us; we link back
    accept_our_link(ctl, io_.open_conns.rbegin()->first);
    ASSERT_EQ(io_.ups.back().name, name);
    table_.on_incoming("in-" + name, encode_frame(Frame(Bye{"leaving"})), {}, io_.now);
  }
  EXPECT_EQ(table_.outgoing_count(), 1u);  // b's link alone
  const std::size_t before = io_.open_conns.size();
  for (int i = 0; i < 200; ++i) {  // 20 s: every backoff many times over
    table_.on_incoming("in-b", encode_frame(Frame(Heartbeat{1})), {}, io_.now);
    advance(100ms);
  }
  EXPECT_EQ(io_.open_conns.size(), before);
  for (const auto& [id, endpoint] : io_.open_conns) EXPECT_EQ(endpoint, "sim://b");
  EXPECT_EQ(table_.up_peers(), std::vector<std::string>{"b"});
}

TEST_F(LinkTableTest, AHiddenPeerThatFellSilentIsForgottenToo) {
  ScriptedPeer ctl{HandshakeIdentity{"ctl", 3, "sim://ctl", "secret", true}};
  // It links to us, and dies before our own direction is authenticated (killed -9).
  link_to_us(ctl, "in-ctl");
  ASSERT_EQ(io_.open_conns.size(), 1u);
  for (int i = 0; i < 30; ++i) advance(100ms);  // past down_after: declared down
  EXPECT_EQ(table_.outgoing_count(), 0u);
  EXPECT_TRUE(io_.open_conns.empty());
  const std::size_t attempts = io_.sent.size();
  for (int i = 0; i < 100; ++i) advance(100ms);
  EXPECT_EQ(io_.sent.size(), attempts);  // not one HELLO more
}

// -- names are unique in a cluster --------------------------------------------------------------

// A careless copy of b's config with another port: the copy is refused, b is not disturbed
// (no down, no reconnect, our link to it untouched), and each side says why, once.
TEST_F(LinkTableTest, ASecondNodeUnderATakenNameIsRefusedAndTheFirstStaysUp) {
  const ConnId to_b = link_with(b_);
  ScriptedPeer copy{HandshakeIdentity{"b", 9, "sim://b-copy", "secret", false}};
  for (int attempt = 0; attempt < 5; ++attempt) {
    copy.out = ConnectorState{};
    const Frame answer = try_link_to_us(copy, "in-b-copy-" + std::to_string(attempt));
    ASSERT_TRUE(std::holds_alternative<Refuse>(answer)) << attempt;
    EXPECT_EQ(std::get<Refuse>(answer).reason.rfind("name in use: b is the node at sim://b", 0), 0u)
        << std::get<Refuse>(answer).reason;
    table_.on_incoming("in-b", encode_frame(Frame(Heartbeat{1})), {}, io_.now);  // b lives on
    advance(1s);
  }
  EXPECT_TRUE(io_.downs.empty());
  EXPECT_EQ(io_.ups.size(), 1u);
  EXPECT_EQ(table_.up_peers(), std::vector<std::string>{"b"});
  EXPECT_EQ(io_.published.at("b"), to_b);
  for (const auto& [id, endpoint] : io_.open_conns) EXPECT_NE(endpoint, "sim://b-copy");
  EXPECT_EQ(logged("refused node b at sim://b-copy: the name b is in use"), 1u);  // per 10 s
  // b itself still talks to us on its own connection.
  Data d;
  d.to = std::string("sink");
  table_.on_incoming("in-b", encode_frame(Frame(d)), {}, io_.now);
  EXPECT_EQ(io_.delivered.size(), 1u);
  // Once b is gone for good, the name is free again.
  for (int i = 0; i < 25; ++i) advance(100ms);
  ASSERT_EQ(io_.downs.size(), 1u);
  copy.out = ConnectorState{};
  EXPECT_TRUE(std::holds_alternative<Welcome>(try_link_to_us(copy, "in-b-copy-late")));
}

TEST_F(LinkTableTest, ANodeUnderThisNodesNameIsRefused) {
  ScriptedPeer copy{HandshakeIdentity{"a", 9, "sim://a-copy", "secret", false}};
  const Frame answer = try_link_to_us(copy, "in-a-copy");
  ASSERT_TRUE(std::holds_alternative<Refuse>(answer));
  EXPECT_EQ(std::get<Refuse>(answer).reason.rfind("name in use", 0), 0u);
  EXPECT_TRUE(io_.open_conns.empty());
  EXPECT_TRUE(io_.ups.empty());
  EXPECT_EQ(logged("refused node a at sim://a-copy: the name a is in use"), 1u);
}

// The refused node's side: one clear line, and it keeps trying with backoff (the holder may be
// an old incarnation on its way out).
TEST_F(LinkTableTest, ARefusalForATakenNameIsLoggedAsSuch) {
  table_.connect("sim://b", "", io_.now);
  const ConnId conn = io_.open_conns.begin()->first;
  auto hellos = io_.sent_on<Hello>(conn);
  Frame hello(hellos.back());
  std::function<std::string()> nonce = [] { return std::string(kNonceBytes, 'p'); };
  AcceptorStep c = acceptor_on_frame(b_.me, b_.in, hello, nonce);
  table_.on_outgoing(conn, encode_frame(*c.reply), io_.now);
  table_.on_outgoing(conn, encode_frame(Frame(Refuse{"name in use: a is the node at sim://a"})),
                     io_.now);
  EXPECT_EQ(logged("refused us: name in use: a is the node at sim://a (another node runs as a"),
            1u);
  EXPECT_EQ(io_.open_conns.count(conn), 0u);
  advance(100ms);
  EXPECT_EQ(io_.open_conns.size(), 1u);  // tried again after its backoff
}

TEST_F(LinkTableTest, ALinkToThisNodeItselfIsLeftForGood) {
  table_.connect("sim://a-alias", "", io_.now);  // our own endpoint under another name
  const ConnId conn = io_.open_conns.begin()->first;
  ScriptedPeer self{config().me};
  Frame hello(io_.sent_on<Hello>(conn).back());
  std::function<std::string()> nonce = [] { return std::string(kNonceBytes, 'p'); };
  AcceptorStep c = acceptor_on_frame(self.me, self.in, hello, nonce);
  table_.on_outgoing(conn, encode_frame(*c.reply), io_.now);
  EXPECT_TRUE(io_.sent_on<Proof>(conn).empty());
  EXPECT_TRUE(io_.open_conns.empty());
  EXPECT_EQ(logged("not linking to sim://a-alias: it is this node itself"), 1u);
  for (int i = 0; i < 100; ++i) advance(100ms);
  EXPECT_TRUE(io_.open_conns.empty());
}

// -- what unauthenticated sources cost ------------------------------------------------------------

// 30,000 connections each sending one bad byte: a line per interval with the count of the rest,
// and nothing remembered per connection.
TEST_F(LinkTableTest, BadBytesFromManySourcesAreLoggedRateLimitedWithACount) {
  for (int i = 0; i < 30000; ++i) {
    table_.on_incoming("junk-" + std::to_string(i), std::string(1, '\xc1'), {}, io_.now);
    if (i % 3000 == 2999) io_.now += 1s;  // 10 s in all
  }
  EXPECT_EQ(table_.frames_rejected(), 30000u);
  EXPECT_EQ(table_.incoming_count(), 0u);
  EXPECT_LE(table_.log_sources(), 1u);
  EXPECT_LE(io_.logs.size(), 3u);
  advance(1s);  // the interval is over: the count of what was held back
  ASSERT_FALSE(io_.logs.empty());
  std::size_t counted = 0;
  for (const std::string& l : io_.logs) {
    if (l.find("more problems with unauthenticated connections") != std::string::npos) {
      counted += std::stoul(l);
    }
  }
  EXPECT_EQ(counted + logged("dropped a frame from a connection before its handshake"), 30000u);
  // Wrong cookies under chosen names: the same.
  for (int i = 0; i < 1000; ++i) {
    ScriptedPeer liar{HandshakeIdentity{"liar-" + std::to_string(i), 1, "sim://x", "wrong", false}};
    table_.on_incoming(
        "liar-" + std::to_string(i),
        encode_frame(Frame(connector_hello(liar.me, liar.out, std::string(kNonceBytes, 'q')))), {},
        io_.now);
    ConnectorStep p = connector_on_frame(liar.me, liar.out, io_.replies.back().second);
    ASSERT_EQ(p.event, ConnectorStep::Event::kAuthFailed);
    Proof forged{std::string(kMacBytes, 'f')};
    table_.on_incoming("liar-" + std::to_string(i), encode_frame(Frame(forged)), {}, io_.now);
  }
  EXPECT_EQ(table_.auth_failures(), 1000u);
  EXPECT_EQ(table_.incoming_count(), 0u);
  EXPECT_LE(table_.log_sources(), 1u);
  for (int i = 0; i < 30; ++i) advance(1s);
  EXPECT_LE(table_.log_sources(), 0u);
}

}  // namespace
}  // namespace nodus::transport
