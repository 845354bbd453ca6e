// libFuzzer target for the handshake: a client that does not know the cookie sends whatever
// the fuzzer makes up to a real transport (a ZeroMQ ROUTER on loopback), as a sequence of
// messages on a fresh connection. Whatever it sends, the transport must not crash or trip a
// sanitizer, must deliver no DATA and bring no peer up, and must keep answering a HELLO.
//
// The input is split into messages at each 0xff 0xfe pair; each message is sent as it is, and
// when it starts with 0xfd it is replaced by a valid HELLO (with the fuzzer's bytes as its
// nonce), so that the later states of the handshake are reached too. One transport serves
// the whole run. See tests/fuzz/README.md.
#include <zmq.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "nodus/transport/frame.hpp"
#include "nodus/transport/transport.hpp"

namespace {

using namespace nodus::transport;
using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "handshake_fuzz: %s\n", what);
  std::abort();
}

struct Target {
  std::unique_ptr<Transport> transport;
  std::atomic<int> data{0};
  std::atomic<int> ups{0};
  zmq::context_t ctx;

  Target() {
    TransportOptions o;
    o.name = "target";
    o.creation = 1;
    o.listen = "tcp://127.0.0.1:*";
    o.cookie = "the fuzzer does not know this";
    o.log = [](const std::string&) {};  // refusals are expected: keep the output readable
    TransportCallbacks cb;
    cb.on_data = [this](const std::string&, Data&&) { ++data; };
    cb.on_peer_up = [this](const PeerInfo&) { ++ups; };
    auto t = Transport::start(std::move(o), std::move(cb));
    if (!t.ok()) fail("the transport did not start");
    transport = std::move(t.value());
  }
};

Target& target() {
  static Target* t = new Target();  // lives for the whole run
  return *t;
}

std::vector<std::string> split(std::string_view in) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i + 1 < in.size(); ++i) {
    if (static_cast<unsigned char>(in[i]) == 0xff &&
        static_cast<unsigned char>(in[i + 1]) == 0xfe) {
      out.emplace_back(in.substr(start, i - start));
      start = i + 2;
      ++i;
    }
  }
  out.emplace_back(in.substr(start));
  return out;
}

std::string hello(std::string_view nonce_bytes) {
  Hello h;
  h.name = "fuzzer";
  h.creation = 7;
  h.listen = "tcp://127.0.0.1:1";  // nothing listens there: the target's link back fails
  h.nonce.assign(nonce_bytes.substr(0, kNonceBytes));
  h.nonce.resize(kNonceBytes, 'n');
  return encode_frame(Frame(h));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Target& t = target();
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::uint64_t before = t.transport->stats().frames_in;
  zmq::socket_t client(t.ctx, zmq::socket_type::dealer);
  client.set(zmq::sockopt::linger, 0);
  client.connect(t.transport->endpoint());
  std::size_t sent = 0;
  for (const std::string& part : split(input)) {
    if (sent == 16) break;
    std::string bytes = part;
    if (!bytes.empty() && static_cast<unsigned char>(bytes[0]) == 0xfd) bytes = hello(part);
    client.send(zmq::buffer(bytes), zmq::send_flags::none);
    ++sent;
  }
  // Wait until the target has read them (it counts every message it reads), then drain what
  // it answered, so the next input starts on a quiet transport.
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (t.transport->stats().frames_in - before < sent) {
    if (Clock::now() > deadline) fail("the transport stopped reading");
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  zmq::message_t reply;
  while (client.recv(reply, zmq::recv_flags::dontwait)) {
  }
  if (t.data.load() != 0) fail("DATA was delivered from a client that never authenticated");
  if (t.ups.load() != 0) fail("a peer came up without the cookie");
  return 0;
}
