// The claim: a balanced, spaced assignment of partitions to members that keeps what it can.
//
// Riak's claim_v2 picked partitions greedily per joining node and could leave the ring uneven
// (basho/riak#348, riak_core#913). Here balance is fixed first (targets of floor or ceil of
// Q/M, the larger ones going to the members that own most already, so fewer partitions move),
// then partitions without an owner (a fresh ring, a member that left) go to members below
// their target, each to the candidate with the fewest same-owner neighbours less than N apart,
// then members above their target hand partitions to members below it, best spacing first, and
// swaps that improve spacing repair what is left. If the result is still worse spaced than a
// striped ring (owner of p = p mod M), the striped ring aligned with the old owners wins.
#include "nodus/kv/ring.hpp"

#include <algorithm>
#include <numeric>

#include "nodus/kv/partition.hpp"
#include "nodus/node/term.hpp"

namespace nodus::kv {

namespace {

class Layout {
 public:
  Layout(std::vector<int> own, std::uint32_t members, std::uint32_t replicas)
      : own_(std::move(own)),
        q_(static_cast<std::uint32_t>(own_.size())),
        m_(members),
        reach_(std::min<std::uint32_t>(replicas > 0 ? replicas - 1 : 0, q_ > 0 ? q_ - 1 : 0)) {}

  // Same-owner neighbours of p (less than N apart, either side) if `node` owned p.
  int conflicts(int node, std::uint32_t p) const {
    int c = 0;
    for (std::uint32_t d = 1; d <= reach_; ++d) {
      if (own_[(p + d) % q_] == node) ++c;
      if (own_[(p + q_ - d) % q_] == node) ++c;
    }
    return c;
  }
  std::size_t violations() const {
    std::size_t v = 0;
    for (std::uint32_t p = 0; p < q_; ++p) {
      for (std::uint32_t d = 1; d <= reach_; ++d) {
        if (own_[p] >= 0 && own_[p] == own_[(p + d) % q_]) ++v;
      }
    }
    return v;
  }

  void run() {
    std::vector<int> count(m_, 0);
    for (int o : own_) {
      if (o >= 0) ++count[o];
    }
    // Targets: the members that own most now get the larger share.
    std::vector<int> order(m_);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return count[a] > count[b]; });
    std::vector<int> target(m_, static_cast<int>(q_ / m_));
    for (std::uint32_t i = 0; i < q_ % m_; ++i) ++target[order[i]];

    // Partitions without an owner.
    for (std::uint32_t p = 0; p < q_; ++p) {
      if (own_[p] >= 0) continue;
      int best = -1;
      int best_c = 0;
      for (int u = 0; u < static_cast<int>(m_); ++u) {
        if (count[u] >= target[u]) continue;
        const int c = conflicts(u, p);
        if (best < 0 || c < best_c ||
            (c == best_c && target[u] - count[u] > target[best] - count[best])) {
          best = u;
          best_c = c;
        }
      }
      own_[p] = best;
      ++count[best];
    }

    // Members above their target hand partitions to members below it.
    for (;;) {
      int best_p = -1;
      int best_u = -1;
      int best_delta = 0;
      for (std::uint32_t p = 0; p < q_; ++p) {
        const int o = own_[p];
        if (count[o] <= target[o]) continue;
        const int keep = conflicts(o, p);
        for (int u = 0; u < static_cast<int>(m_); ++u) {
          if (count[u] >= target[u]) continue;
          const int delta = conflicts(u, p) - keep;
          if (best_p < 0 || delta < best_delta) {
            best_p = static_cast<int>(p);
            best_u = u;
            best_delta = delta;
          }
        }
      }
      if (best_p < 0) break;
      --count[own_[best_p]];
      own_[best_p] = best_u;
      ++count[best_u];
    }

    // Swaps that improve spacing keep the counts.
    for (int pass = 0; pass < 4; ++pass) {
      bool improved = false;
      for (std::uint32_t p = 0; p < q_; ++p) {
        if (conflicts(own_[p], p) == 0) continue;
        for (std::uint32_t p2 = 0; p2 < q_; ++p2) {
          const int a = own_[p];
          const int b = own_[p2];
          if (a == b) continue;
          const int before = conflicts(a, p) + conflicts(b, p2);
          std::swap(own_[p], own_[p2]);
          const int after = conflicts(b, p) + conflicts(a, p2);
          if (after < before) {
            improved = true;
            if (conflicts(own_[p], p) == 0) break;
          } else {
            std::swap(own_[p], own_[p2]);
          }
        }
      }
      if (!improved) break;
    }
  }

  const std::vector<int>& owners() const { return own_; }

 private:
  std::vector<int> own_;
  std::uint32_t q_;
  std::uint32_t m_;
  std::uint32_t reach_;
};

// The striped ring (owner of p = the member given residue class p mod M), with classes given
// to members so that as many partitions as possible stay where they are.
std::vector<int> aligned_stripes(const std::vector<int>& old, std::uint32_t m) {
  const auto q = static_cast<std::uint32_t>(old.size());
  const std::uint32_t classes = std::min(m, q);
  std::vector<std::vector<int>> overlap(classes, std::vector<int>(m, 0));
  for (std::uint32_t p = 0; p < q; ++p) {
    if (old[p] >= 0) ++overlap[p % m][old[p]];
  }
  std::vector<int> member_of(classes, -1);
  std::vector<bool> used(m, false);
  for (std::uint32_t round = 0; round < classes; ++round) {
    int bc = -1;
    int bu = -1;
    for (std::uint32_t c = 0; c < classes; ++c) {
      if (member_of[c] >= 0) continue;
      for (std::uint32_t u = 0; u < m; ++u) {
        if (used[u]) continue;
        if (bc < 0 || overlap[c][u] > overlap[bc][bu]) {
          bc = static_cast<int>(c);
          bu = static_cast<int>(u);
        }
      }
    }
    member_of[bc] = bu;
    used[bu] = true;
  }
  std::vector<int> own(q);
  for (std::uint32_t p = 0; p < q; ++p) own[p] = member_of[p % m];
  return own;
}

std::vector<std::string> normalise(std::vector<std::string> members) {
  std::sort(members.begin(), members.end());
  members.erase(std::unique(members.begin(), members.end()), members.end());
  return members;
}

Status check(std::uint32_t partitions, std::uint32_t replicas,
             const std::vector<std::string>& members) {
  if (!valid_partition_count(partitions)) {
    return Status(ErrorCode::kBadConfig, "kv.partitions must be a power of two in 1..65536, not " +
                                             std::to_string(partitions));
  }
  if (replicas == 0) return Status(ErrorCode::kBadConfig, "kv.replicas must be at least 1");
  if (members.empty()) return Status(ErrorCode::kBadConfig, "a ring needs at least one member");
  if (members.size() > Ring::kMaxMembers) {
    return Status(ErrorCode::kBadConfig,
                  "a ring holds at most " + std::to_string(Ring::kMaxMembers) + " members");
  }
  for (const auto& name : members) {
    if (name.empty()) return Status(ErrorCode::kBadConfig, "a member name is empty");
    if (name.size() > kMaxAtomLength) {
      return Status(ErrorCode::kBadConfig,
                    "a member name is longer than " + std::to_string(kMaxAtomLength) + " bytes");
    }
  }
  return Status();
}

// The claim: assigns every partition to one of `members` members. `owners[p]` is the current
// owner's index, or -1 for a partition to assign (a fresh ring, or one whose owner left).
// Returns the new owners. REQUIRES: members >= 1, owners.size() a power of two.
std::vector<std::uint16_t> claim(std::vector<int> owners, std::uint32_t members,
                                 std::uint32_t replicas) {
  const std::vector<int> old = owners;
  Layout kept(std::move(owners), members, replicas);
  kept.run();
  Layout striped(aligned_stripes(old, members), members, replicas);
  const std::vector<int>& chosen =
      striped.violations() < kept.violations() ? striped.owners() : kept.owners();
  return std::vector<std::uint16_t>(chosen.begin(), chosen.end());
}

}  // namespace

Result<Ring> Ring::create(std::uint32_t partitions, std::uint32_t replicas,
                          std::vector<std::string> members) {
  members = normalise(std::move(members));
  if (Status s = check(partitions, replicas, members); !s.ok()) return s;
  Ring r;
  r.epoch_ = 1;
  r.replicas_ = replicas;
  r.members_ = std::move(members);
  r.owners_ = claim(std::vector<int>(partitions, -1), static_cast<std::uint32_t>(r.members_.size()),
                    replicas);
  return r;
}

Result<Ring> Ring::with_members(std::vector<std::string> members) const {
  members = normalise(std::move(members));
  if (Status s = check(partitions(), replicas_, members); !s.ok()) return s;
  std::vector<int> old(owners_.size(), -1);
  for (std::size_t p = 0; p < owners_.size(); ++p) {
    const std::string& name = members_[owners_[p]];
    auto it = std::lower_bound(members.begin(), members.end(), name);
    if (it != members.end() && *it == name) old[p] = static_cast<int>(it - members.begin());
  }
  Ring r;
  r.epoch_ = epoch_ + 1;
  r.replicas_ = replicas_;
  r.members_ = std::move(members);
  r.owners_ = claim(std::move(old), static_cast<std::uint32_t>(r.members_.size()), replicas_);
  return r;
}

Result<Ring> Ring::with_changes(const std::vector<std::string>& joins,
                                const std::vector<std::string>& leaves,
                                const std::vector<std::string>& removes) const {
  // A dead member may be removed while partitions move (a transfer whose sender died for
  // good would wait for it forever); joins and leaves wait for the moves to finish.
  if (has_transfers() && (!joins.empty() || !leaves.empty() || removes.empty())) {
    return Status(ErrorCode::kUnavailable,
                  std::to_string(transfers().size()) +
                      " partition(s) of the ring are still being handed off: wait for the "
                      "transfers to finish (nodusctl transfers); only a remove of a dead member "
                      "is taken meanwhile");
  }
  auto contains = [](const std::vector<std::string>& v, const std::string& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };
  std::vector<std::string> members = members_;
  for (const auto& j : joins) {
    if (member_index(j) >= 0) return Status(ErrorCode::kBadArg, j + " is already a member");
    members.push_back(j);
  }
  for (const auto& x : leaves) {
    if (member_index(x) < 0) return Status(ErrorCode::kBadArg, x + " is not a member");
  }
  std::vector<std::string> leaving = leaving_;
  for (const auto& x : removes) {
    if (member_index(x) < 0) return Status(ErrorCode::kBadArg, x + " is not a member");
    members.erase(std::remove(members.begin(), members.end(), x), members.end());
  }
  members = normalise(std::move(members));
  if (Status s = check(partitions(), replicas_, members); !s.ok()) return s;
  for (const auto& x : leaves) leaving.push_back(x);
  leaving = normalise(std::move(leaving));
  leaving.erase(std::remove_if(leaving.begin(), leaving.end(),
                               [&](const std::string& x) { return !contains(members, x); }),
                leaving.end());
  // The members that will own partitions, and the claim over them from the owners they are
  // bound for (the next owners: moves under way stay as they are where they can).
  std::vector<std::string> claimers;
  for (const auto& m : members) {
    if (!contains(leaving, m)) claimers.push_back(m);
  }
  if (claimers.empty()) {
    return Status(ErrorCode::kBadArg,
                  "no member would be left to own the partitions: keep at least one");
  }
  const auto q = partitions();
  std::vector<int> old(q, -1);
  for (std::uint32_t p = 0; p < q; ++p) {
    const std::string& bound = members_[next_owner(p)];
    auto it = std::lower_bound(claimers.begin(), claimers.end(), bound);
    if (it != claimers.end() && *it == bound) {
      old[p] = static_cast<int>(it - claimers.begin());
    }
  }
  const std::vector<std::uint16_t> target =
      claim(std::move(old), static_cast<std::uint32_t>(claimers.size()), replicas_);
  Ring r;
  r.epoch_ = epoch_ + 1;
  r.replicas_ = replicas_;
  r.members_ = std::move(members);
  r.leaving_ = std::move(leaving);
  r.owners_.resize(q);
  r.next_.resize(q);
  for (std::uint32_t p = 0; p < q; ++p) {
    const auto to = static_cast<std::uint16_t>(r.member_index(claimers[target[p]]));
    const int from = r.member_index(members_[owners_[p]]);
    r.next_[p] = to;
    r.owners_[p] = from >= 0 ? static_cast<std::uint16_t>(from) : to;  // removed: no source
  }
  r.settle();
  return r;
}

Result<Ring> Ring::with_transfer_done(std::uint32_t p) const {
  if (p >= partitions() || next_owner(p) == owner(p)) {
    return Status(ErrorCode::kBadArg, "partition " + std::to_string(p) +
                                          " is not being handed off in ring epoch " +
                                          std::to_string(epoch_));
  }
  Ring r = *this;
  r.epoch_ = epoch_ + 1;
  r.owners_[p] = r.next_[p];
  r.settle();
  return r;
}

void Ring::settle() {
  if (!next_.empty() && next_ == owners_) next_.clear();
  std::vector<bool> keep(members_.size(), true);
  for (std::size_t i = 0; i < members_.size(); ++i) {
    if (!is_leaving(members_[i])) continue;
    bool holds = false;
    for (std::uint32_t p = 0; p < partitions() && !holds; ++p) {
      holds = owner(p) == i || next_owner(p) == i;
    }
    keep[i] = holds;
  }
  if (std::all_of(keep.begin(), keep.end(), [](bool k) { return k; })) return;
  std::vector<std::uint16_t> index(members_.size(), 0);
  std::vector<std::string> members;
  for (std::size_t i = 0; i < members_.size(); ++i) {
    if (!keep[i]) {
      leaving_.erase(std::remove(leaving_.begin(), leaving_.end(), members_[i]), leaving_.end());
      continue;
    }
    index[i] = static_cast<std::uint16_t>(members.size());
    members.push_back(members_[i]);
  }
  for (auto& o : owners_) o = index[o];
  for (auto& o : next_) o = index[o];
  members_ = std::move(members);
}

Result<Ring> Ring::from_parts(std::uint64_t epoch, std::uint32_t partitions, std::uint32_t replicas,
                              std::vector<std::string> members, std::vector<std::uint16_t> owners,
                              std::vector<std::uint16_t> next, std::vector<std::string> leaving) {
  if (Status s = check(partitions, replicas, members); !s.ok()) {
    return Status(ErrorCode::kProtocol, "bad ring: " + s.message());
  }
  if (!std::is_sorted(members.begin(), members.end()) ||
      std::adjacent_find(members.begin(), members.end()) != members.end()) {
    return Status(ErrorCode::kProtocol, "bad ring: members not sorted and unique");
  }
  if (owners.size() != partitions || (!next.empty() && next.size() != partitions)) {
    return Status(ErrorCode::kProtocol, "bad ring: " + std::to_string(owners.size()) + " owners (" +
                                            std::to_string(next.size()) + " next) for " +
                                            std::to_string(partitions) + " partitions");
  }
  for (std::uint16_t o : owners) {
    if (o >= members.size()) return Status(ErrorCode::kProtocol, "bad ring: owner out of range");
  }
  for (std::uint16_t o : next) {
    if (o >= members.size()) return Status(ErrorCode::kProtocol, "bad ring: next out of range");
  }
  if (!std::is_sorted(leaving.begin(), leaving.end()) ||
      std::adjacent_find(leaving.begin(), leaving.end()) != leaving.end() ||
      !std::includes(members.begin(), members.end(), leaving.begin(), leaving.end())) {
    return Status(ErrorCode::kProtocol, "bad ring: leaving members not sorted members");
  }
  if (leaving.size() >= members.size()) {
    return Status(ErrorCode::kProtocol, "bad ring: every member is leaving");
  }
  if (epoch == 0) return Status(ErrorCode::kProtocol, "bad ring: epoch 0");
  Ring r;
  r.epoch_ = epoch;
  r.replicas_ = replicas;
  r.members_ = std::move(members);
  r.owners_ = std::move(owners);
  r.next_ = std::move(next);
  r.leaving_ = std::move(leaving);
  if (!r.next_.empty() && r.next_ == r.owners_) r.next_.clear();
  return r;
}

const std::string& Ring::claimant() const {
  for (const auto& m : members_) {
    if (!is_leaving(m)) return m;
  }
  return members_.front();
}

bool Ring::is_leaving(std::string_view name) const {
  return std::binary_search(leaving_.begin(), leaving_.end(), name);
}

std::vector<std::uint32_t> Ring::transfers() const {
  std::vector<std::uint32_t> out;
  for (std::uint32_t p = 0; p < next_.size(); ++p) {
    if (next_[p] != owners_[p]) out.push_back(p);
  }
  return out;
}

int Ring::member_index(std::string_view name) const {
  auto it = std::lower_bound(members_.begin(), members_.end(), name);
  if (it == members_.end() || *it != name) return -1;
  return static_cast<int>(it - members_.begin());
}

std::vector<std::uint32_t> Ring::owned_counts() const {
  std::vector<std::uint32_t> c(members_.size(), 0);
  for (std::uint16_t o : owners_) ++c[o];
  return c;
}

std::vector<std::uint32_t> Ring::preference_list(std::uint32_t p, std::uint32_t n) const {
  std::vector<std::uint32_t> out;
  const auto want = std::min<std::size_t>(n, members_.size());
  const auto q = static_cast<std::uint32_t>(owners_.size());
  for (std::uint32_t i = 0; i < q && out.size() < want; ++i) {
    const std::uint32_t o = owners_[(p + i) % q];
    if (std::find(out.begin(), out.end(), o) == out.end()) out.push_back(o);
  }
  return out;
}

std::size_t Ring::spacing_violations() const {
  std::vector<int> own(owners_.begin(), owners_.end());
  return Layout(std::move(own), static_cast<std::uint32_t>(members_.size()), replicas_)
      .violations();
}

}  // namespace nodus::kv
