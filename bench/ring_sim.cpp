// ring-sim: issue 15's "on paper, with numbers", from the store's own code. No network, no
// nodes: it runs kv::Ring's claim (the code the claimant runs) and encodes the frames a node
// sends (transport/frame.hpp, the store's RingGossip message) to count their bytes.
//
//   1. Ring balance and transfer volume: for Q partitions, N = 3, a ring of 3 members grows by
//      one join at a time (Ring::with_changes, then every move handed off with
//      with_transfer_done) up to Ring::kMaxMembers; per member count, the spread of owned
//      partitions (max - min), the partitions moved by the join against the least any claim
//      could move (the newcomer's share, Q / members), and the spacing violations.
//   2. Membership gossip per node and second, for 5, 16, 64, 100 and 1,000 nodes: nodus is a
//      full mesh, so each node sends a HEARTBEAT on each of its n - 1 idle links every
//      heartbeat_interval (300 ms), and the store sends its ring (RingGossip in a DATA frame)
//      to one random peer a second. Bytes are the encoded frames; ZeroMQ adds 2 bytes per
//      message (flags, short length) and, when each goes in a packet of its own, TCP/IPv4
//      52 bytes more (timestamps on).
//
// Prints `name: value` lines; bench/README.md "Ring and gossip at scale" holds the figures.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "kv_protocol.hpp"
#include "nodus/kv/ring.hpp"
#include "nodus/node/message.hpp"
#include "nodus/transport/frame.hpp"

namespace {

using nodus::kv::Ring;

std::string name_of(std::size_t i) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "node%03zu", i);
  return buf;
}

// Hands off every moving partition of `r`.
Ring settle(Ring r) {
  while (r.has_transfers()) {
    auto next = r.with_transfer_done(r.transfers().front());
    if (!next) {
      std::fprintf(stderr, "with_transfer_done: %s\n", next.error().to_string().c_str());
      std::exit(1);
    }
    r = std::move(*next);
  }
  return r;
}

void balance(std::uint32_t partitions) {
  std::vector<std::string> members = {name_of(0), name_of(1), name_of(2)};
  auto created = Ring::create(partitions, 3, members);
  if (!created) {
    std::fprintf(stderr, "create: %s\n", created.error().to_string().c_str());
    std::exit(1);
  }
  Ring r = *created;
  std::printf(
      "# Q=%u N=3: members, owned min..max, spread, moved by the join, least possible, "
      "spacing violations\n",
      partitions);
  std::size_t worst_spread = 0, moved_total = 0, least_total = 0;
  double worst_ratio = 0;
  for (std::size_t n = 4; n <= Ring::kMaxMembers; ++n) {
    auto staged = r.with_changes({name_of(n - 1)}, {}, {});
    if (!staged) {
      std::fprintf(stderr, "with_changes: %s\n", staged.error().to_string().c_str());
      std::exit(1);
    }
    const std::size_t moved = staged->transfers().size();
    r = settle(std::move(*staged));
    auto counts = r.owned_counts();
    std::uint32_t lo = partitions, hi = 0;
    for (auto c : counts) {
      lo = std::min(lo, c);
      hi = std::max(hi, c);
    }
    const std::size_t least = partitions / n;  // the newcomer's share (at least floor)
    worst_spread = std::max<std::size_t>(worst_spread, hi - lo);
    moved_total += moved;
    least_total += least;
    if (least > 0) worst_ratio = std::max(worst_ratio, static_cast<double>(moved) / least);
    if (n <= 8 || n % 8 == 0) {
      std::printf(
          "ring_q%u_n%zu: owned %u..%u spread %u moved %zu least %zu (%.0f%% of Q) "
          "spacing_violations %zu\n",
          partitions, n, lo, hi, hi - lo, moved, least, 100.0 * moved / partitions,
          r.spacing_violations());
    }
  }
  std::printf("ring_q%u_worst_spread: %zu partitions\n", partitions, worst_spread);
  std::printf("ring_q%u_moved_over_least: %.2f (all joins 4..%zu), worst join %.2f\n", partitions,
              static_cast<double>(moved_total) / static_cast<double>(least_total),
              Ring::kMaxMembers, worst_ratio);
}

// Bytes of one HEARTBEAT frame (a seq past 2^32: the largest uint encoding, 9 bytes).
std::size_t heartbeat_bytes() {
  return nodus::transport::encode_frame(nodus::transport::Heartbeat{1ull << 40}).size();
}

// Bytes of the DATA frame carrying a RingGossip of `members` members and `partitions`
// partitions, from the store's server on one node to the store's registered name on another.
std::size_t ring_gossip_bytes(std::size_t members, std::uint32_t partitions) {
  nodus::kv::RingGossip g;
  g.epoch = 1000;
  g.partitions = partitions;
  g.replicas = 3;
  for (std::size_t i = 0; i < members; ++i) g.members.push_back(name_of(i));
  for (std::uint32_t p = 0; p < partitions; ++p) {
    g.owners.push_back(static_cast<std::uint16_t>(p % members));
  }
  std::string payload;
  nodus::Message(std::move(g)).encode(payload);
  nodus::transport::Data d;
  d.kind = 1;
  d.from = nodus::transport::WireId{name_of(members - 1), 1764000000u, 12345};
  d.to = std::string("nodus_kv");
  d.tag = 507;
  d.payload = std::move(payload);
  return nodus::transport::encode_frame(d).size();
}

void gossip() {
  constexpr double kHeartbeatsPerLinkPerS = 1000.0 / 300.0;
  constexpr std::size_t kZmq = 2, kTcpIp = 52;
  const std::size_t hb = heartbeat_bytes();
  std::printf("heartbeat_frame_bytes: %zu\n", hb);
  for (std::size_t n : {5, 16, 64, 100, 1000}) {
    for (std::uint32_t q : {64u, 1024u}) {
      if (q < n) continue;  // a ring needs a partition per member
      const std::size_t ring = ring_gossip_bytes(n, q);
      const double hb_frames = static_cast<double>(n - 1) * kHeartbeatsPerLinkPerS;
      const double payload = hb_frames * hb + ring;
      const double wire = hb_frames * (hb + kZmq + kTcpIp) + ring + kZmq + kTcpIp;
      std::printf(
          "gossip_n%zu_q%u: ring_gossip_frame %zu B, heartbeats %.0f/s, sent %.0f B/s "
          "of frames, %.0f B/s on the wire (as many received), links %zu\n",
          n, q, ring, hb_frames, payload, wire, n - 1);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::uint32_t> qs = {64, 256, 1024};
  if (argc > 1) {
    qs.clear();
    for (int i = 1; i < argc; ++i) qs.push_back(static_cast<std::uint32_t>(std::atoi(argv[i])));
  }
  for (auto q : qs) balance(q);
  gossip();
  return 0;
}
