// The handshake's state machines without sockets (transport/src/handshake.hpp): the MACs are
// the ones docs/protocol.md section 3 specifies, a connector and an acceptor that share the
// cookie complete the handshake, and every way of getting it wrong ends in a refusal.
#include "handshake.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_util.hpp"

namespace nodus::transport {
namespace {

using ::nodus::testing::spec_hmac;

const std::string kNul(1, '\0');

class HandshakeTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_GE(sodium_init(), 0); }

  HandshakeIdentity connector_{"c", 7, "tcp://127.0.0.1:1", "secret", false};
  HandshakeIdentity acceptor_{"a", 9, "tcp://127.0.0.1:2", "secret", false};
  ConnectorState cs_;
  AcceptorState as_;
  int nonces_ = 0;
  std::function<std::string()> nonce_ = [this] {
    return std::string(kNonceBytes, static_cast<char>('A' + nonces_++));
  };

  // HELLO from the connector, answered by the acceptor.
  AcceptorStep SendHello() {
    Frame hello(connector_hello(connector_, cs_, std::string(kNonceBytes, 'c')));
    return acceptor_on_frame(acceptor_, as_, hello, nonce_);
  }
};

TEST_F(HandshakeTest, MacsAreTheOnesTheProtocolSpecifies) {
  const std::string nc(32, 'x'), na(32, 'y');
  EXPECT_EQ(challenge_mac("k", nc, "a", "c"),
            spec_hmac("k", {"nodus1/challenge", nc, "a", kNul, "c"}));
  EXPECT_EQ(proof_mac("k", na, "c", "a"), spec_hmac("k", {"nodus1/proof", na, "c", kNul, "a"}));
  // The NUL keeps names apart: ("ab", "c") and ("a", "bc") prove different things.
  EXPECT_NE(challenge_mac("k", nc, "ab", "c"), challenge_mac("k", nc, "a", "bc"));
  EXPECT_TRUE(same_mac("abc", "abc"));
  EXPECT_FALSE(same_mac("abc", "abd"));
  EXPECT_FALSE(same_mac("abc", "ab"));
}

TEST_F(HandshakeTest, ConnectorAndAcceptorWithOneCookieCompleteIt) {
  AcceptorStep challenged = SendHello();
  ASSERT_EQ(challenged.event, AcceptorStep::Event::kChallenged);
  ASSERT_TRUE(challenged.reply);
  const auto& c = std::get<Challenge>(*challenged.reply);
  EXPECT_EQ(c.name, "a");
  EXPECT_EQ(c.creation, 9u);
  EXPECT_EQ(as_.hello.name, "c");
  EXPECT_EQ(as_.hello.listen, "tcp://127.0.0.1:1");

  ConnectorStep proved = connector_on_frame(connector_, cs_, *challenged.reply);
  ASSERT_EQ(proved.event, ConnectorStep::Event::kAuthenticated);
  EXPECT_EQ(cs_.peer, "a");
  EXPECT_EQ(cs_.peer_creation, 9u);
  ASSERT_TRUE(proved.reply);
  ASSERT_TRUE(std::holds_alternative<Proof>(*proved.reply));

  Frame proof = *proved.reply;
  AcceptorStep welcomed = acceptor_on_frame(acceptor_, as_, proof, nonce_);
  ASSERT_EQ(welcomed.event, AcceptorStep::Event::kAuthenticated);
  ASSERT_TRUE(welcomed.reply);
  EXPECT_TRUE(std::holds_alternative<Welcome>(*welcomed.reply));
  EXPECT_EQ(as_.phase, AcceptorState::Phase::kAuthenticated);

  EXPECT_EQ(connector_on_frame(connector_, cs_, *welcomed.reply).event,
            ConnectorStep::Event::kWelcomed);
  EXPECT_EQ(cs_.phase, ConnectorState::Phase::kUp);
}

TEST_F(HandshakeTest, AnAcceptorWithAnotherCookieIsRefusedByTheConnector) {
  acceptor_.cookie = "another";
  AcceptorStep challenged = SendHello();
  ConnectorStep refused = connector_on_frame(connector_, cs_, *challenged.reply);
  EXPECT_EQ(refused.event, ConnectorStep::Event::kAuthFailed);
  ASSERT_TRUE(refused.reply);
  EXPECT_EQ(std::get<Refuse>(*refused.reply).reason, "authentication failed");
  EXPECT_EQ(refused.detail, "a");
}

TEST_F(HandshakeTest, AProofForAnotherNonceIsRefusedByTheAcceptor) {
  AcceptorStep challenged = SendHello();
  const auto& c = std::get<Challenge>(*challenged.reply);
  // Made with the cookie, but for an older challenge: a replay.
  Frame replay(Proof{proof_mac("secret", std::string(kNonceBytes, 'Z'), "c", "a")});
  ASSERT_NE(c.nonce, std::string(kNonceBytes, 'Z'));
  AcceptorStep step = acceptor_on_frame(acceptor_, as_, replay, nonce_);
  EXPECT_EQ(step.event, AcceptorStep::Event::kAuthFailed);
  ASSERT_TRUE(step.reply);
  EXPECT_EQ(std::get<Refuse>(*step.reply).reason, "authentication failed");
  EXPECT_NE(as_.phase, AcceptorState::Phase::kAuthenticated);
}

TEST_F(HandshakeTest, ARefusalAfterTheChallengeIsNotAnsweredWithAnother) {
  SendHello();
  Frame refuse(Refuse{"authentication failed"});
  AcceptorStep step = acceptor_on_frame(acceptor_, as_, refuse, nonce_);
  EXPECT_EQ(step.event, AcceptorStep::Event::kAuthFailed);
  EXPECT_FALSE(step.reply);  // two refusals must not bounce back and forth
}

TEST_F(HandshakeTest, AHelloOfAnotherVersionIsRefusedNamingIt) {
  Hello h = connector_hello(connector_, cs_, std::string(kNonceBytes, 'c'));
  h.version = 2;
  Frame f(h);
  AcceptorStep step = acceptor_on_frame(acceptor_, as_, f, nonce_);
  EXPECT_EQ(step.event, AcceptorStep::Event::kVersionRefused);
  ASSERT_TRUE(step.reply);
  EXPECT_EQ(std::get<Refuse>(*step.reply).reason, "protocol version 2 not supported");
}

TEST_F(HandshakeTest, PeerFramesBeforeTheHandshakeAreNotAuthenticated) {
  for (Frame f : {Frame(Heartbeat{1}), Frame(Data{}), Frame(Peers{}), Frame(Bye{"x"}),
                  Frame(Proof{std::string(kMacBytes, 'p')}), Frame(Welcome{})}) {
    AcceptorState fresh;
    AcceptorStep step = acceptor_on_frame(acceptor_, fresh, f, nonce_);
    EXPECT_EQ(step.event, AcceptorStep::Event::kNotAuthenticated) << f.index();
    EXPECT_EQ(fresh.phase, AcceptorState::Phase::kAwaitHello);
  }
}

TEST_F(HandshakeTest, AnAuthenticatedConnectionPassesPeerFramesOnAndIgnoresHandshakeFrames) {
  AcceptorStep challenged = SendHello();
  Frame proof = *connector_on_frame(connector_, cs_, *challenged.reply).reply;
  ASSERT_EQ(acceptor_on_frame(acceptor_, as_, proof, nonce_).event,
            AcceptorStep::Event::kAuthenticated);
  Frame hb(Heartbeat{3});
  EXPECT_EQ(acceptor_on_frame(acceptor_, as_, hb, nonce_).event, AcceptorStep::Event::kPeerFrame);
  Frame again(connector_hello(connector_, cs_, std::string(kNonceBytes, 'd')));
  AcceptorStep step = acceptor_on_frame(acceptor_, as_, again, nonce_);
  EXPECT_EQ(step.event, AcceptorStep::Event::kUnexpected);
  EXPECT_EQ(as_.phase, AcceptorState::Phase::kAuthenticated);
}

TEST_F(HandshakeTest, AConnectorTakesFramesOnlyInTheirPlace) {
  (void)connector_hello(connector_, cs_, std::string(kNonceBytes, 'c'));
  // A WELCOME before our PROOF proves nothing.
  EXPECT_EQ(connector_on_frame(connector_, cs_, Frame(Welcome{})).event,
            ConnectorStep::Event::kUnexpected);
  EXPECT_EQ(cs_.phase, ConnectorState::Phase::kHelloSent);
  EXPECT_EQ(connector_on_frame(connector_, cs_, Frame(Heartbeat{1})).event,
            ConnectorStep::Event::kUnexpected);
  ConnectorStep refused = connector_on_frame(connector_, cs_, Frame(Refuse{"go away"}));
  EXPECT_EQ(refused.event, ConnectorStep::Event::kRefused);
  EXPECT_EQ(refused.detail, "go away");
}

TEST_F(HandshakeTest, AHiddenConnectorSaysSoInItsHello) {
  connector_.hidden = true;
  Hello h = connector_hello(connector_, cs_, std::string(kNonceBytes, 'c'));
  EXPECT_TRUE(is_hidden(h));
  connector_.hidden = false;
  EXPECT_FALSE(is_hidden(connector_hello(connector_, cs_, std::string(kNonceBytes, 'c'))));
}

}  // namespace
}  // namespace nodus::transport
