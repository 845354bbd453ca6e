// CURVE on the transport: real ZeroMQ sockets on loopback with free ports. Nodes holding
// each other's public keys link and exchange data; a node with an unknown key pair, a
// plaintext node and a raw CURVE socket with an unknown key are all refused before any frame
// reaches the node; gossip carries keys so a node joining through one seed meets the rest.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "nodus/transport/curve.hpp"
#include "nodus/transport/transport.hpp"
#include "peer_harness.hpp"

namespace nodus::transport {
namespace {

using namespace std::chrono_literals;

using ::nodus::testing::eventually;

using Peer = testing::TestPeer;

CurveKeys fresh_keys() {
  auto k = generate_curve_keys();
  EXPECT_OK(k);
  return k.ok() ? k.value() : CurveKeys{};
}

Data data_with(const std::string& payload) {
  Data d;
  d.kind = 1;
  d.to = std::string("sink");
  d.payload = payload;
  return d;
}

class CurveTest : public ::testing::Test {
 protected:
  /// A transport; with `keys`, CURVE on and admitting `allowed`.
  std::unique_ptr<Peer> make(const std::string& name, std::optional<CurveKeys> keys,
                             std::vector<std::string> allowed = {}) {
    TransportOptions o = testing::test_options(name);
    o.curve = keys;
    o.curve_allowed = std::move(allowed);
    return testing::start_peer(std::move(o));
  }

  static Status start_error(TransportOptions o) {
    o.name = "bad";
    o.listen = "tcp://127.0.0.1:*";
    o.cookie = "secret";
    auto t = Transport::start(std::move(o), {});
    return t.ok() ? Status::Ok() : t.error();
  }

  const CurveKeys a_keys_ = fresh_keys();
  const CurveKeys b_keys_ = fresh_keys();
  const CurveKeys c_keys_ = fresh_keys();
};

// -- keys -----------------------------------------------------------------------------------

TEST(CurveKeysTest, GenerateReturnsFreshZ85Pairs) {
  auto one = generate_curve_keys();
  auto two = generate_curve_keys();
  ASSERT_OK(one);
  ASSERT_OK(two);
  EXPECT_EQ(one->public_key.size(), kCurveKeyChars);
  EXPECT_EQ(one->secret_key.size(), kCurveKeyChars);
  EXPECT_TRUE(is_curve_key(one->public_key));
  EXPECT_TRUE(is_curve_key(one->secret_key));
  EXPECT_NE(one->public_key, one->secret_key);
  EXPECT_NE(one->public_key, two->public_key);
  EXPECT_NE(one->secret_key, two->secret_key);
  EXPECT_OK(check_curve_keys(*one));
}

TEST(CurveKeysTest, CheckRefusesMismatchedAndMalformedKeys) {
  auto one = generate_curve_keys();
  auto two = generate_curve_keys();
  ASSERT_OK(one);
  ASSERT_OK(two);
  EXPECT_EQ(check_curve_keys({one->public_key, two->secret_key}).code(), ErrorCode::kBadConfig);
  EXPECT_EQ(check_curve_keys({"short", one->secret_key}).code(), ErrorCode::kBadConfig);
  EXPECT_FALSE(is_curve_key(std::string(kCurveKeyChars, '"')));  // not in the Z85 alphabet
  EXPECT_FALSE(is_curve_key(""));
}

TEST(CurveKeysTest, PeerAddressSplitsAtTheFirstHash) {
  EXPECT_EQ(parse_peer_address("tcp://h:1"), (PeerAddress{"tcp://h:1", ""}));
  // '#' is a Z85 character, so a key may hold one.
  const std::string key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7#";
  EXPECT_EQ(parse_peer_address("tcp://h:1#" + key), (PeerAddress{"tcp://h:1", key}));
}

TEST_F(CurveTest, StartRefusesBadCurveOptions) {
  TransportOptions o;
  o.curve_allowed = {a_keys_.public_key};
  EXPECT_EQ(start_error(o).code(), ErrorCode::kBadConfig);  // allowed keys without own keys
  o.curve = CurveKeys{a_keys_.public_key, b_keys_.secret_key};
  EXPECT_EQ(start_error(o).code(), ErrorCode::kBadConfig);  // not a pair
  o.curve = a_keys_;
  o.curve_allowed = {"not a key"};
  EXPECT_EQ(start_error(o).code(), ErrorCode::kBadConfig);
  o.curve_allowed = {b_keys_.public_key};
  EXPECT_OK(start_error(o));
}

// -- links ----------------------------------------------------------------------------------

TEST_F(CurveTest, NodesWithEachOthersKeysLinkAndExchangeData) {
  auto a = make("a", a_keys_, {b_keys_.public_key});
  auto b = make("b", b_keys_, {a_keys_.public_key});
  a->t->connect(b->t->endpoint(), b_keys_.public_key);
  ASSERT_TRUE(eventually([&] { return a->is_up("b") && b->is_up("a"); }));
  ASSERT_OK(a->t->send("b", data_with("to b")));
  ASSERT_OK(b->t->send("a", data_with("to a")));
  ASSERT_TRUE(eventually([&] { return a->count_received() == 1 && b->count_received() == 1; }));
  {
    detail::MutexLock lock(b->mu);
    EXPECT_EQ(b->received[0].first, "a");
    EXPECT_EQ(b->received[0].second.payload, "to b");
  }
  // b linked back with the key a was admitted under.
  for (const PeerInfo& p : b->t->peers()) EXPECT_EQ(p.public_key, a_keys_.public_key);
  EXPECT_EQ(a->t->stats().curve_refused, 0u);
  EXPECT_EQ(b->t->stats().curve_refused, 0u);
}

TEST_F(CurveTest, UnknownKeyPairIsRefusedBeforeAnyFrame) {
  auto a = make("a", a_keys_, {b_keys_.public_key});
  // The intruder has the cookie and a's public key, but a key pair a does not know.
  auto x = make("x", c_keys_, {a_keys_.public_key});
  x->t->connect(a->t->endpoint(), a_keys_.public_key);
  ASSERT_TRUE(eventually(
      [&] { return a->t->stats().curve_refused >= 1 && a->logged("is not in curve_allowed"); }));
  EXPECT_TRUE(a->logged(c_keys_.public_key));
  EXPECT_FALSE(a->is_up("x"));
  EXPECT_FALSE(x->is_up("a"));
  EXPECT_EQ(a->t->stats().frames_in, 0u);  // not even its HELLO got through
  EXPECT_EQ(x->t->send("a", data_with("no")).code(), ErrorCode::kNodeDown);
}

TEST_F(CurveTest, PlaintextNodeIsRefused) {
  auto a = make("a", a_keys_, {b_keys_.public_key});
  auto p = make("plain", std::nullopt);
  p->t->connect(a->t->endpoint());
  ASSERT_TRUE(eventually([&] {
    return a->t->stats().curve_refused >= 1 && a->logged("refused a connection");
  })) << a->t->stats().curve_refused
      << " " << a->all_logs();
  EXPECT_FALSE(a->is_up("plain"));
  EXPECT_FALSE(p->is_up("a"));
  EXPECT_EQ(a->t->stats().frames_in, 0u);
}

TEST_F(CurveTest, RawCurveSocketWithAnUnknownKeyGetsNothingThrough) {
  auto a = make("a", a_keys_, {b_keys_.public_key});
  zmq::context_t ctx;
  zmq::socket_t raw(ctx, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.set(zmq::sockopt::curve_serverkey, a_keys_.public_key);
  raw.set(zmq::sockopt::curve_publickey, c_keys_.public_key);
  raw.set(zmq::sockopt::curve_secretkey, c_keys_.secret_key);
  raw.connect(a->t->endpoint());
  // A well-formed HELLO and some junk, queued until the handshake that never completes.
  Hello h;
  h.name = "raw";
  h.listen = "tcp://127.0.0.1:1";
  h.nonce = std::string(kNonceBytes, 'n');
  raw.send(zmq::buffer(encode_frame(Frame(h))), zmq::send_flags::dontwait);
  raw.send(zmq::str_buffer("junk"), zmq::send_flags::dontwait);
  ASSERT_TRUE(eventually([&] { return a->t->stats().curve_refused >= 1; }));
  // The refusal is counted before it is logged.
  EXPECT_TRUE(eventually([&] { return a->logged(c_keys_.public_key); }));

  // A cluster node links afterwards: its data is all that arrives.
  auto b = make("b", b_keys_, {a_keys_.public_key});
  b->t->connect(a->t->endpoint(), a_keys_.public_key);
  ASSERT_TRUE(eventually([&] { return b->is_up("a"); }));
  ASSERT_OK(b->t->send("a", data_with("from b")));
  ASSERT_TRUE(eventually([&] { return a->count_received() == 1; }));
  EXPECT_EQ(a->t->stats().frames_rejected, 0u);  // the junk never reached the decoder
  EXPECT_FALSE(a->is_up("raw"));
  zmq::message_t answer;
  EXPECT_FALSE(raw.recv(answer, zmq::recv_flags::dontwait));  // no CHALLENGE came back
}

TEST_F(CurveTest, ConnectWithoutTheServerKeyIsLoggedAndIgnored) {
  auto a = make("a", a_keys_, {b_keys_.public_key});
  auto b = make("b", b_keys_, {a_keys_.public_key});
  a->t->connect(b->t->endpoint());
  ASSERT_TRUE(eventually([&] { return a->logged("its public key is unknown"); }));
  a->t->connect(b->t->endpoint(), c_keys_.public_key);
  ASSERT_TRUE(eventually([&] { return a->logged("is not in curve_allowed"); }));
  EXPECT_EQ(b->t->stats().curve_refused, 0u);  // a never even tried
  EXPECT_FALSE(a->is_up("b"));
}

TEST_F(CurveTest, GossipCarriesKeysSoAJoiningNodeMeetsEveryone) {
  const std::vector<std::string> cluster = {a_keys_.public_key, b_keys_.public_key,
                                            c_keys_.public_key};
  auto a = make("a", a_keys_, cluster);
  auto b = make("b", b_keys_, cluster);
  auto c = make("c", c_keys_, cluster);
  a->t->connect(b->t->endpoint(), b_keys_.public_key);
  ASSERT_TRUE(eventually([&] { return a->is_up("b") && b->is_up("a"); }));
  // c knows only a (the seed form "endpoint#KEY"), and learns b with its key from a.
  PeerAddress seed = parse_peer_address(a->address());
  c->t->connect(seed.endpoint, seed.public_key);
  ASSERT_TRUE(
      eventually([&] { return c->is_up("a") && c->is_up("b") && a->is_up("c") && b->is_up("c"); }));
  ASSERT_OK(c->t->send("b", data_with("hello b")));
  ASSERT_TRUE(eventually([&] { return b->count_received() == 1; }));
  for (const Peer* p : {a.get(), b.get(), c.get()}) EXPECT_EQ(p->t->stats().curve_refused, 0u);
}

}  // namespace
}  // namespace nodus::transport
