// The coordinator's quorum logic as pure state machines (Riak's riak_kv_put_fsm and
// riak_kv_get_fsm, without the processes): fed replies, failures and the deadline, they say
// when a request is answered and with what. The vnode that coordinates a request hosts them;
// tests step them directly.
//
// Thread-safety: values, used by one process.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "nodus/node/term.hpp"
#include "object.hpp"

namespace nodus::kv {

/// How a request ended, or that it has not yet.
enum class Outcome : std::uint8_t { kPending, kOk, kNoQuorum, kTimeout };

/// The quorum a request could not meet (Riak names them in r_val_unsatisfied,
/// pr_val_unsatisfied, w_val_unsatisfied, pw_val_unsatisfied, dw_val_unsatisfied).
enum class Quorum : std::uint8_t { kR, kPr, kW, kPw, kDw };

/// "r", "pr", "w", "pw" or "dw": the word users see in {no_quorum, Which, Needed, Got}.
inline const char* quorum_name(Quorum q) {
  switch (q) {
    case Quorum::kR:
      return "r";
    case Quorum::kPr:
      return "pr";
    case Quorum::kW:
      return "w";
    case Quorum::kPw:
      return "pw";
    case Quorum::kDw:
      return "dw";
  }
  return "?";
}

/// One replica a request goes to: a primary of the key's preference list, or a fallback
/// standing in for a primary that is down (sloppy quorum).
struct Target {
  std::uint32_t member = 0;  ///< index in the ring's members
  bool primary = true;
  std::uint32_t hint_for = 0;  ///< the primary a fallback stands in for (member index)
  Atom node;                   ///< the member's name, to match replies and node-downs
};

namespace detail {

/// What both machines share: one state per target, the outcome, and for no_quorum which quorum
/// failed with how many counted toward it.
/// (CRTP: Derived::evaluate decides the outcome from the replicas' states.)
template <class Derived>
class QuorumState {
 public:
  const std::vector<Target>& targets() const { return targets_; }
  Outcome outcome() const { return outcome_; }
  /// For no_quorum: the quorum that could not be met, how many it needed and how many counted.
  Quorum which() const { return which_; }
  std::uint32_t needed() const { return needed_; }
  std::uint32_t got() const { return got_; }
  /// True once every replica answered (or failed).
  bool all_answered() const { return out_ == 0; }
  /// Decides what can be decided before any reply (too few targets): call once the
  /// coordinator has fed in its own reply. Events decide by themselves.
  void check() { self().evaluate(); }
  /// Replica `i` (index into targets) refused or failed (overloaded, crashed, its node went
  /// down); a duplicate or an index out of range is ignored.
  void fail(std::size_t i) {
    if (settle(i, kFailed)) self().evaluate();
  }
  /// The deadline passed: a request still pending times out.
  void expire() {
    if (outcome_ == Outcome::kPending) outcome_ = Outcome::kTimeout;
  }

 protected:
  static constexpr std::uint8_t kOut = 0;
  static constexpr std::uint8_t kFailed = 1;

  explicit QuorumState(std::vector<Target> targets)
      : targets_(std::move(targets)),
        state_(targets_.size(), kOut),
        out_(static_cast<std::uint32_t>(targets_.size())) {}
  Derived& self() { return static_cast<Derived&>(*this); }

  // Moves target i out of kOut; false when it was not out (a duplicate or a bad index).
  bool settle(std::size_t i, std::uint8_t to) {
    if (i >= state_.size() || state_[i] != kOut) return false;
    state_[i] = to;
    --out_;
    return true;
  }
  void fail_with(Quorum which, std::uint32_t needed, std::uint32_t got) {
    outcome_ = Outcome::kNoQuorum;
    which_ = which;
    needed_ = needed;
    got_ = got;
  }

  std::vector<Target> targets_;
  std::vector<std::uint8_t> state_;
  std::uint32_t out_;
  Outcome outcome_ = Outcome::kPending;
  Quorum which_ = Quorum::kW;
  std::uint32_t needed_ = 0, got_ = 0;
};

}  // namespace detail

/// A put: answered once W replicas stored it, PW of them primaries and DW of them durable;
/// no_quorum as soon as the replicas still out cannot make that up.
class PutFsm : public detail::QuorumState<PutFsm> {
 public:
  PutFsm(std::vector<Target> targets, std::uint32_t w, std::uint32_t pw, std::uint32_t dw)
      : QuorumState(std::move(targets)), w_(w), pw_(pw), dw_(dw) {}

  /// Replica `i` (index into targets) stored the write; `durable` when its engine is.
  void ack(std::size_t i, bool durable) {
    if (settle(i, durable ? kDurable : kStored)) evaluate();
  }

 private:
  static constexpr std::uint8_t kStored = 2;
  static constexpr std::uint8_t kDurable = 3;

  friend class detail::QuorumState<PutFsm>;
  void evaluate() {
    if (outcome_ != Outcome::kPending) return;
    std::uint32_t acks = 0, primary = 0, durable = 0, out_primary = 0;
    for (std::size_t i = 0; i < state_.size(); ++i) {
      const bool p = targets_[i].primary;
      switch (state_[i]) {
        case kOut:
          if (p) ++out_primary;
          break;
        case kDurable:
          ++durable;
          [[fallthrough]];
        case kStored:
          ++acks;
          if (p) ++primary;
          break;
        default:
          break;
      }
    }
    if (acks >= w_ && primary >= pw_ && durable >= dw_) {
      outcome_ = Outcome::kOk;
    } else if (acks + out_ < w_) {
      fail_with(Quorum::kW, w_, acks);
    } else if (primary + out_primary < pw_) {
      fail_with(Quorum::kPw, pw_, primary);
    } else if (durable + out_ < dw_) {
      fail_with(Quorum::kDw, dw_, durable);
    }
  }

  std::uint32_t w_, pw_, dw_;
};

/// A get: answered once R replicas replied, PR of them primaries (a replica without the key
/// counts, as Riak's notfound_ok: so a fallback that has not been handed the key yet counts
/// toward R; PR counts primaries only), with the merge of what they hold; no_quorum when too
/// few can still reply. Kept until every replica answered or the deadline, so read repair can
/// see who is stale.
class GetFsm : public detail::QuorumState<GetFsm> {
 public:
  GetFsm(std::vector<Target> targets, std::uint32_t r, std::uint32_t pr = 0)
      : QuorumState(std::move(targets)), replies_(targets_.size()), r_(r), pr_(pr) {}

  /// Replica `i` answered: its object, or nullopt when it has none.
  void reply(std::size_t i, std::optional<Object> object) {
    if (!settle(i, kReplied)) return;
    if (object) merged_ = Object::sync(merged_, *object);
    replies_[i] = std::move(object);
    evaluate();
  }

  /// The merge of every reply so far (empty when none had the key).
  const Object& merged() const { return merged_; }
  /// The replicas that replied with less than the merge (older, or nothing while the merge
  /// holds something): read repair sends them the merge.
  std::vector<std::size_t> stale() const {
    std::vector<std::size_t> out;
    if (merged_.empty()) return out;
    const VersionVector all = merged_.join();
    for (std::size_t i = 0; i < state_.size(); ++i) {
      if (state_[i] != kReplied) continue;
      if (!replies_[i] || replies_[i]->join() != all) out.push_back(i);
    }
    return out;
  }

 private:
  static constexpr std::uint8_t kReplied = 2;

  friend class detail::QuorumState<GetFsm>;
  void evaluate() {
    if (outcome_ != Outcome::kPending) return;
    std::uint32_t replied = 0, primary = 0, out_primary = 0;
    for (std::size_t i = 0; i < state_.size(); ++i) {
      const bool p = targets_[i].primary;
      if (state_[i] == kReplied) {
        ++replied;
        if (p) ++primary;
      } else if (state_[i] == kOut && p) {
        ++out_primary;
      }
    }
    if (replied >= r_ && primary >= pr_) {
      outcome_ = Outcome::kOk;
    } else if (replied + out_ < r_) {
      fail_with(Quorum::kR, r_, replied);
    } else if (primary + out_primary < pr_) {
      fail_with(Quorum::kPr, pr_, primary);
    }
  }

  std::vector<std::optional<Object>> replies_;
  std::uint32_t r_, pr_;
  Object merged_;
};

}  // namespace nodus::kv
