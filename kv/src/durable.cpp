// What a node with kv.data_dir keeps beside its data: the ring (written on every change, read
// at start, so a restarted member serves with its ring before any peer is up) and, recovered
// at start, the hints it held as a fallback (every key of a partition it is not a primary of
// is a copy kept for that partition's primaries: it is offered back to all of them, as Riak's
// fallback vnodes hand their whole partition back to the owner).
#include <algorithm>

#include "record.hpp"
#include "state.hpp"

namespace nodus::kv {

namespace {

constexpr std::string_view kRingRecord = "ring";

// The ring as a record (record.hpp): "2 EPOCH PARTITIONS REPLICAS MEMBERS", the member names,
// the owners, then the count of next owners (0 or PARTITIONS) and them, the count of leaving
// members and their names. Version 1 (written before) stopped after the owners: it held no
// moving partitions, so a member restarted during a transfer came back with a ring that had
// forgotten them, and won over the others' ring of the same epoch (the lower by its parts).
std::string encode_ring(const Ring& r) {
  RecordWriter w;
  w.number(2).number(r.epoch()).number(r.partitions()).number(r.replicas());
  w.number(r.members().size());
  for (const std::string& m : r.members()) w.bytes(m);
  for (std::uint16_t o : r.owners()) w.number(o);
  w.number(r.next().size());
  for (std::uint16_t o : r.next()) w.number(o);
  w.number(r.leaving().size());
  for (const std::string& m : r.leaving()) w.bytes(m);
  return w.take();
}

Result<Ring> decode_ring(std::string_view s) {
  const Status bad(ErrorCode::kInternal, "the ring stored in kv.data_dir is unreadable");
  RecordReader r(s);
  std::uint64_t version = 0, epoch = 0, partitions = 0, replicas = 0, members = 0;
  if (!r.number(version) || (version != 1 && version != 2) || !r.number(epoch) ||
      !r.number(partitions) || !r.number(replicas) || !r.number(members) ||
      members > Ring::kMaxMembers || partitions > 65536) {
    return bad;
  }
  std::vector<std::string> names(members);
  for (auto& n : names) {
    if (!r.bytes(n)) return bad;
  }
  auto owner_list = [&](std::vector<std::uint16_t>& out) {
    for (auto& o : out) {
      std::uint64_t v = 0;
      if (!r.number(v) || v >= members) return false;
      o = static_cast<std::uint16_t>(v);
    }
    return true;
  };
  std::vector<std::uint16_t> owners(partitions), next;
  std::vector<std::string> leaving;
  if (!owner_list(owners)) return bad;
  if (version == 2) {
    std::uint64_t count = 0;
    if (!r.number(count) || (count != 0 && count != partitions)) return bad;
    next.resize(count);
    if (!owner_list(next) || !r.number(count) || count >= members) return bad;
    leaving.resize(count);
    for (auto& n : leaving) {
      if (!r.bytes(n)) return bad;
    }
  }
  if (!r.done()) return bad;
  Result<Ring> ring = Ring::from_parts(epoch, static_cast<std::uint32_t>(partitions),
                                       static_cast<std::uint32_t>(replicas), std::move(names),
                                       std::move(owners), std::move(next), std::move(leaving));
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
