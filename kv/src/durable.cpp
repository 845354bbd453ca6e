// What a node with kv.data_dir keeps beside its data: the ring (written on every change, read
// at start, so a restarted member serves with its ring before any peer is up) and, recovered
// at start, the hints it held as a fallback (every key of a partition it is not a primary of
// is a copy kept for that partition's primaries: it is offered back to all of them, as Riak's
// fallback vnodes hand their whole partition back to the owner).
#include <algorithm>
#include <charconv>

#include "state.hpp"

namespace nodus::kv {

namespace {

constexpr std::string_view kRingRecord = "ring";

// The ring as text: "1 EPOCH PARTITIONS REPLICAS MEMBERS" then per member "LEN:NAME", then the
// owners, all separated by single spaces.
std::string encode_ring(const Ring& r) {
  std::string s = "1";
  auto num = [&s](std::uint64_t v) {
    s.push_back(' ');
    s.append(std::to_string(v));
  };
  num(r.epoch());
  num(r.partitions());
  num(r.replicas());
  num(r.members().size());
  for (const std::string& m : r.members()) {
    num(m.size());
    s.push_back(':');
    s.append(m);
  }
  for (std::uint16_t o : r.owners()) num(o);
  return s;
}

class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  bool number(std::uint64_t& v) {
    skip_space();
    const char* end = s_.data() + s_.size();
    auto [p, ec] = std::from_chars(s_.data() + pos_, end, v);
    if (ec != std::errc()) return false;
    pos_ = static_cast<std::size_t>(p - s_.data());
    return true;
  }
  bool name(std::string& out) {
    std::uint64_t n = 0;
    if (!number(n) || pos_ >= s_.size() || s_[pos_] != ':' || n > s_.size() - pos_ - 1) {
      return false;
    }
    out.assign(s_.substr(pos_ + 1, n));
    pos_ += 1 + n;
    return true;
  }

 private:
  void skip_space() {
    if (pos_ < s_.size() && s_[pos_] == ' ') ++pos_;
  }
  std::string_view s_;
  std::size_t pos_ = 0;
};

Result<Ring> decode_ring(std::string_view s) {
  const Status bad(ErrorCode::kInternal, "the ring stored in kv.data_dir is unreadable");
  Reader r(s);
  std::uint64_t version = 0, epoch = 0, partitions = 0, replicas = 0, members = 0;
  if (!r.number(version) || version != 1 || !r.number(epoch) || !r.number(partitions) ||
      !r.number(replicas) || !r.number(members) || members > Ring::kMaxMembers ||
      partitions > 65536) {
    return bad;
  }
  std::vector<std::string> names(members);
  for (auto& n : names) {
    if (!r.name(n)) return bad;
  }
  std::vector<std::uint16_t> owners(partitions);
  for (auto& o : owners) {
    std::uint64_t v = 0;
    if (!r.number(v) || v >= members) return bad;
    o = static_cast<std::uint16_t>(v);
  }
  Result<Ring> ring =
      Ring::from_parts(epoch, static_cast<std::uint32_t>(partitions),
                       static_cast<std::uint32_t>(replicas), std::move(names), std::move(owners));
  if (!ring) return bad;
  return ring;
}

}  // namespace

Status save_ring(KvState& st, const Ring& ring) {
  return st.engine->put_meta(kRingRecord, encode_ring(ring));
}

Status restore_durable_state(KvState& st) {
  std::string bytes;
  Status s = st.engine->get_meta(kRingRecord, &bytes);
  if (s.code() == ErrorCode::kNotFound) return Status();
  if (!s.ok()) return s;
  Result<Ring> ring = decode_ring(bytes);
  if (!ring) return ring.error();
  if (ring->partitions() != st.options.partitions || ring->replicas() != st.options.replicas) {
    return Status(ErrorCode::kBadConfig,
                  "the ring stored in kv.data_dir has " + std::to_string(ring->partitions()) +
                      " partitions and N = " + std::to_string(ring->replicas()) +
                      "; kv.partitions is " + std::to_string(st.options.partitions) +
                      " and kv.replicas " + std::to_string(st.options.replicas));
  }
  auto view = std::make_shared<View>();
  view->ring = std::make_shared<const Ring>(std::move(*ring));
  const std::string me(st.node.name().name());
  for (const std::string& m : view->ring->members()) {
    view->names.push_back(atom(m));
    view->up.push_back(m == me);
  }
  view->self = view->ring->member_index(me);
  // Hints: every key of a partition whose primaries do not include this node.
  for (std::uint32_t p = 0; p < st.options.partitions; ++p) {
    const auto prim = view->primaries(p, st.options.replicas);
    if (view->self >= 0 &&
        std::find(prim.begin(), prim.end(), static_cast<std::uint32_t>(view->self)) != prim.end()) {
      continue;
    }
    if (st.engine->keys(p) == 0) continue;
    std::vector<Atom> owners;
    for (std::uint32_t m : prim) owners.push_back(view->names[m]);
    auto& hints = st.parts[p].hints;
    st.engine->fold(p, [&](std::string_view key, std::string_view) {
      hints.emplace(std::string(key), owners);
      return true;
    });
    st.hinted[p].store(static_cast<std::uint32_t>(hints.size()));
  }
  st.set_view(std::move(view));
  return Status();
}

}  // namespace nodus::kv
