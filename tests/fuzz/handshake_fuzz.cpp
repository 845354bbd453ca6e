// libFuzzer target for the handshake and the link logic around it (transport/src/link_table.hpp),
// without sockets: a client that does not know the cookie sends whatever the fuzzer makes up,
// as a sequence of messages on a fresh incoming connection, and the same messages arrive as
// answers on an outgoing connection in the middle of its handshake. Whatever it sends, the link
// table must not crash or trip a sanitizer, must deliver no DATA, bring no peer up, keep no
// state for connections that never authenticated beyond the handshake window, and must keep
// answering a HELLO with a CHALLENGE.
//
// The input is split into messages at each 0xff 0xfe pair; each message is fed as it is, and
// when it starts with 0xfd it is replaced by a valid HELLO (with the fuzzer's bytes as its
// nonce), so that the later states of the handshake are reached too. One link table serves the
// whole run, its clock advanced a second per input. See tests/fuzz/README.md.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "link_table.hpp"
#include "nodus/transport/frame.hpp"

namespace {

using namespace nodus::transport;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "handshake_fuzz: %s\n", what);
  std::abort();
}

/// Counts what the table does that it must not, and keeps the last reply.
class WatchingIo final : public LinkIo {
 public:
  int data = 0;
  int ups = 0;
  std::string last_reply;
  bool open(ConnId, const std::string&, const std::string&, std::string&) override { return true; }
  void close(ConnId) override {}
  void send(ConnId, std::string_view) override {}
  void reply(const std::string&, std::string_view frame) override { last_reply.assign(frame); }
  void publish(const std::string&, ConnId) override {}
  void peer_up(const PeerInfo&, ConnId) override { ++ups; }
  void peer_down(const std::string&, const std::string&, bool, bool) override {}
  void deliver(const std::string&, Data&&) override { ++data; }
  void count_data_in(const std::string&, std::uint64_t) override {}
  std::chrono::steady_clock::duration idle_for(ConnId, TimePoint) override { return {}; }
  std::string nonce() override { return std::string(kNonceBytes, 'n'); }
  void log(const std::string&) override {}  // refusals are expected
};

struct Target {
  WatchingIo io;
  std::unique_ptr<LinkTable> table;
  TimePoint now{};
  std::uint64_t connection = 0;

  Target() {
    LinkConfig c;
    c.me = HandshakeIdentity{"target", 1, "sim://target", "the fuzzer does not know this", false};
    c.listen = c.me.listen;
    table = std::make_unique<LinkTable>(std::move(c), io);
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
  h.listen = "sim://fuzzer";
  h.nonce.assign(nonce_bytes.substr(0, kNonceBytes));
  h.nonce.resize(kNonceBytes, 'n');
  return encode_frame(Frame(h));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Target& t = target();
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string in = "in-" + std::to_string(++t.connection);
  // An outgoing connection in its handshake (a fresh attempt if the last one was refused), to a
  // node that answers with the fuzzer's bytes.
  t.table->connect("sim://peer", "", t.now);
  const auto conns = t.table->connections();
  std::size_t sent = 0;
  for (const std::string& part : split(input)) {
    if (sent == 16) break;
    std::string bytes = part;
    if (!bytes.empty() && static_cast<unsigned char>(bytes[0]) == 0xfd) bytes = hello(part);
    t.table->on_incoming(in, bytes, {}, t.now);
    for (const auto& [id, up] : conns) t.table->on_outgoing(id, bytes, t.now);
    ++sent;
  }
  if (t.io.data != 0) fail("DATA was delivered from a client that never authenticated");
  if (t.io.ups != 0) fail("a peer came up without the cookie");
  // Still answering: a HELLO on a fresh connection is challenged.
  t.io.last_reply.clear();
  t.table->on_incoming("probe-" + std::to_string(t.connection), hello("probe"), {}, t.now);
  auto reply = decode_frame(t.io.last_reply);
  if (!reply.ok() || !std::holds_alternative<Challenge>(*reply)) fail("a HELLO was not challenged");
  // Unfinished handshakes are forgotten after down_after: state stays bounded.
  t.now += std::chrono::seconds(1);
  t.table->tick(t.now);
  if (t.table->incoming_count() > 64) fail("state for unauthenticated connections piles up");
  return 0;
}
