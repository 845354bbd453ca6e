// The claimant's staged changes: see claimant.hpp. What may be staged mirrors Riak's checks
// (riak_core_claimant:maybe_stage/3): a join names a node running the store that is linked and
// not a member; a leave names a member that is up (it must hand its partitions off); a remove
// names a member that is down (nothing can be handed off from it; its partitions are rebuilt
// from the other replicas). One change per node; each is checked against the ring at once, so
// a plan that cannot be made (the last member leaving) is refused when it is staged.
#include "claimant.hpp"

#include <algorithm>

#include "query.hpp"
#include "record.hpp"
#include "transfer.hpp"

namespace nodus::kv {

namespace {

Term u(std::uint64_t v) { return Term(static_cast<std::int64_t>(v)); }

Term bad(const std::string& message) { return error_term(ErrorCode::kBadArg, message); }

const char* const kUsage =
    "expected {cluster, join|leave|remove, Node} or {cluster, plan|commit|clear}";

}  // namespace

bool is_cluster_request(const Term& request) {
  return request.is_tuple() && request.size() >= 1 && request[0] == Term("cluster");
}

Term moves_term(const Ring& from, const Ring& to) {
  List moves;
  for (std::uint32_t p = 0; p < to.partitions() && p < from.partitions(); ++p) {
    const std::string& was = from.members()[from.owner(p)];
    const std::string& will = to.members()[to.next_owner(p)];
    if (was == will) continue;
    const bool rebuild = to.member_index(was) < 0;
    moves.push_back(map({{"partition", u(p)},
                         {"from", bin(was)},
                         {"to", bin(will)},
                         {"kind", rebuild ? "rebuild" : "transfer"}}));
  }
  return Term(std::move(moves));
}

Result<Ring> Claimant::plan(const Ring& ring) const {
  std::vector<std::string> joins, leaves, removes;
  for (const Change& c : staged_) {
    (c.kind == "join" ? joins : c.kind == "leave" ? leaves : removes).push_back(c.node);
  }
  return ring.with_changes(joins, leaves, removes);
}

Term Claimant::plan_term(const ClusterContext& ctx) const {
  List staged;
  for (const Change& c : staged_) {
    staged.push_back(map({{"action", atom(c.kind)}, {"node", bin(c.node)}}));
  }
  const Ring& ring = *ctx.ring;
  MapEntries m = {
      {atom("claimant"), bin(ctx.self)},
      {atom("epoch"), u(ring.epoch())},
      {atom("staged"), Term(std::move(staged))},
      {atom("pending"), u(ring.transfers().size())},
  };
  List candidates;  // linked nodes running the store that are not members
  for (const auto& n : *ctx.store) {
    if (ring.member_index(n) < 0) candidates.push_back(bin(n));
  }
  m.emplace_back(atom("candidates"), Term(std::move(candidates)));
  if (!staged_.empty()) {
    Result<Ring> next = plan(ring);
    if (next) {
      m.emplace_back(atom("moves"), moves_term(ring, *next));
      m.emplace_back(atom("next_epoch"), u(next->epoch()));
    } else {
      m.emplace_back(atom("error"), bin(next.error().message()));
    }
  } else {
    m.emplace_back(atom("moves"), Term(List{}));
  }
  return Term(Map{std::move(m)});
}

Claimant::Outcome Claimant::handle(const Term& t, const ClusterContext& ctx) {
  const Ring& ring = *ctx.ring;
  if (t.size() == 2 && t[1].is_atom()) {
    const std::string_view op = t[1].as_atom().name();
    if (op == "plan") return {tuple("ok", plan_term(ctx)), std::nullopt};
    if (op == "clear") {
      version_ += !staged_.empty();
      staged_.clear();
      return {Term("ok"), std::nullopt};
    }
    if (op == "commit") {
      if (staged_.empty()) {
        return {bad("nothing is staged: stage changes with cluster join, leave or remove first"),
                std::nullopt};
      }
      Result<Ring> next = plan(ring);
      if (!next) return {error_term(next.error().code(), next.error().message()), std::nullopt};
      Term reply =
          tuple("ok", map({{"epoch", u(next->epoch())}, {"moves", moves_term(ring, *next)}}));
      staged_.clear();
      ++version_;
      return {std::move(reply), std::move(*next)};
    }
    return {bad(kUsage), std::nullopt};
  }
  if (t.size() != 3 || !t[1].is_atom() || !(t[2].is_bin() || t[2].is_atom())) {
    return {bad(kUsage), std::nullopt};
  }
  const std::string kind(t[1].as_atom().name());
  const std::string node(t[2].is_bin() ? t[2].as_bin() : std::string(t[2].as_atom().name()));
  if (kind != "join" && kind != "leave" && kind != "remove") return {bad(kUsage), std::nullopt};
  if (node.empty() || node.size() > kMaxAtomLength) {
    return {bad("a node name is 1.." + std::to_string(kMaxAtomLength) + " bytes"), std::nullopt};
  }
  for (const Change& c : staged_) {
    if (c.node == node) {
      return {bad("a " + c.kind + " of " + node +
                  " is staged already: cluster clear drops the staged changes"),
              std::nullopt};
    }
  }
  const bool member = ring.member_index(node) >= 0;
  const bool up = node == ctx.self || ctx.up->count(node) > 0;
  if (kind == "join") {
    if (member) return {bad(node + " is already a member"), std::nullopt};
    if (!up) {
      return {bad(node + " is not linked to the claimant " + ctx.self +
                  ": start it with the cluster's seeds first"),
              std::nullopt};
    }
    if (!ctx.store->count(node)) {
      return {bad(node + " does not run the store: set kv.initial_members in its config as on "
                         "the members"),
              std::nullopt};
    }
  } else {
    if (!member) return {bad(node + " is not a member of the ring"), std::nullopt};
    if (ring.is_leaving(node)) return {bad(node + " is leaving already"), std::nullopt};
    if (kind == "leave" && !up) {
      return {bad(node + " is down: it cannot hand its partitions off; cluster remove " + node +
                  " drops it and rebuilds its replicas from the others"),
              std::nullopt};
    }
    if (kind == "remove" && up) {
      return {
          bad(node + " is up: cluster leave " + node + " hands its partitions off before it goes"),
          std::nullopt};
    }
  }
  staged_.push_back(Change{kind, node});
  if (Result<Ring> next = plan(ring); !next && next.error().code() != ErrorCode::kUnavailable) {
    staged_.pop_back();
    return {error_term(next.error().code(), next.error().message()), std::nullopt};
  }
  ++version_;
  return {Term("ok"), std::nullopt};
}

// "1 COUNT" then per change its kind and node as byte strings.
std::string Claimant::staged_record() const {
  if (staged_.empty()) return std::string();
  RecordWriter w;
  w.number(1).number(staged_.size());
  for (const Change& c : staged_) w.bytes(c.kind).bytes(c.node);
  return w.take();
}

bool Claimant::restore(std::string_view record) {
  RecordReader r(record);
  std::uint64_t version = 0, count = 0;
  if (!r.number(version) || version != 1 || !r.number(count) || count > Ring::kMaxMembers) {
    return false;
  }
  std::vector<Change> staged(count);
  for (Change& c : staged) {
    if (!r.bytes(c.kind) || !r.bytes(c.node) ||
        (c.kind != "join" && c.kind != "leave" && c.kind != "remove") || c.node.empty() ||
        c.node.size() > kMaxAtomLength) {
      return false;
    }
  }
  if (!r.done()) return false;
  staged_ = std::move(staged);
  ++version_;
  return true;
}

void Claimant::prune(const Ring& ring) {
  const std::size_t before = staged_.size();
  staged_.erase(std::remove_if(staged_.begin(), staged_.end(),
                               [&](const Change& c) {
                                 const bool member = ring.member_index(c.node) >= 0;
                                 return c.kind == "join" ? member
                                                         : !member || ring.is_leaving(c.node);
                               }),
                staged_.end());
  version_ += staged_.size() != before;
}

std::optional<Ring> Claimant::transfer_done(const Ring& ring, std::uint32_t x,
                                            const std::string& from, std::uint32_t n) {
  if (ring.epoch() != done_epoch_) {
    done_.clear();
    done_epoch_ = ring.epoch();
  }
  if (x >= ring.partitions() || ring.next_owner(x) == ring.owner(x)) return std::nullopt;
  std::set<std::string> senders;
  for (const Handoff& h : handoffs_for(ring, x, n)) senders.insert(h.from);
  if (!senders.count(from)) return std::nullopt;
  auto& done = done_[x];
  done.insert(from);
  if (!std::includes(done.begin(), done.end(), senders.begin(), senders.end())) {
    return std::nullopt;
  }
  Result<Ring> next = ring.with_transfer_done(x);
  if (!next) return std::nullopt;
  return std::move(*next);
}

std::optional<Ring> Claimant::switch_idle(const Ring& ring, std::uint32_t n) const {
  for (std::uint32_t x : ring.transfers()) {
    if (!handoffs_for(ring, x, n).empty()) continue;
    Result<Ring> next = ring.with_transfer_done(x);
    if (next) return std::move(*next);
  }
  return std::nullopt;
}

}  // namespace nodus::kv
