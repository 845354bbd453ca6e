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

#include "object.hpp"

namespace nodus::kv {

/// How a request ended, or that it has not yet.
enum class Outcome : std::uint8_t { kPending, kOk, kNoQuorum, kTimeout };

/// One replica a request goes to: a primary of the key's preference list, or a fallback
/// standing in for a primary that is down (sloppy quorum).
struct Target {
  std::uint32_t member = 0;  ///< index in the ring's members
  bool primary = true;
  std::uint32_t hint_for = 0;  ///< the primary a fallback stands in for (member index)
};

/// A put: answered once W replicas stored it, PW of them primaries and DW of them durable;
/// no_quorum as soon as the replicas still out cannot make that up.
class PutFsm {
 public:
  PutFsm(std::vector<Target> targets, std::uint32_t w, std::uint32_t pw, std::uint32_t dw)
      : targets_(std::move(targets)), state_(targets_.size(), kOut), w_(w), pw_(pw), dw_(dw) {}

  const std::vector<Target>& targets() const { return targets_; }
  /// Decides what can be decided before any reply (too few targets): call once the
  /// coordinator has fed in its own reply. Events decide by themselves.
  void check() { evaluate(); }
  /// Replica `i` (index into targets) stored the write; `durable` when its engine is.
  void ack(std::size_t i, bool durable) {
    if (i >= state_.size() || state_[i] != kOut) return;
    state_[i] = durable ? kDurable : kStored;
    evaluate();
  }
  /// Replica `i` refused or failed (overloaded, crashed, its node went down).
  void fail(std::size_t i) {
    if (i >= state_.size() || state_[i] != kOut) return;
    state_[i] = kFailed;
    evaluate();
  }
  /// The deadline passed: a request still pending times out.
  void expire() {
    if (outcome_ == Outcome::kPending) outcome_ = Outcome::kTimeout;
  }

  Outcome outcome() const { return outcome_; }
  /// For no_quorum: the quorum that could not be met and how many counted toward it.
  std::uint32_t needed() const { return needed_; }
  std::uint32_t got() const { return got_; }
  /// True once every replica answered (or failed).
  bool all_answered() const {
    for (auto s : state_) {
      if (s == kOut) return false;
    }
    return true;
  }

 private:
  enum State : std::uint8_t { kOut, kStored, kDurable, kFailed };

  void evaluate() {
    if (outcome_ != Outcome::kPending) return;
    std::uint32_t acks = 0, primary = 0, durable = 0, out = 0, out_primary = 0;
    for (std::size_t i = 0; i < state_.size(); ++i) {
      const bool p = targets_[i].primary;
      switch (state_[i]) {
        case kOut:
          ++out;
          if (p) ++out_primary;
          break;
        case kDurable:
          ++durable;
          [[fallthrough]];
        case kStored:
          ++acks;
          if (p) ++primary;
          break;
        case kFailed:
          break;
      }
    }
    if (acks >= w_ && primary >= pw_ && durable >= dw_) {
      outcome_ = Outcome::kOk;
    } else if (acks + out < w_) {
      fail_with(w_, acks);
    } else if (primary + out_primary < pw_) {
      fail_with(pw_, primary);
    } else if (durable + out < dw_) {
      fail_with(dw_, durable);
    }
  }
  void fail_with(std::uint32_t needed, std::uint32_t got) {
    outcome_ = Outcome::kNoQuorum;
    needed_ = needed;
    got_ = got;
  }

  std::vector<Target> targets_;
  std::vector<State> state_;
  std::uint32_t w_, pw_, dw_;
  Outcome outcome_ = Outcome::kPending;
  std::uint32_t needed_ = 0, got_ = 0;
};

/// A get: answered once R replicas replied (a replica without the key counts, as Riak's
/// notfound_ok), with the merge of what they hold; no_quorum when too few can still reply.
/// Kept until every replica answered or the deadline, so read repair can see who is stale.
class GetFsm {
 public:
  GetFsm(std::vector<Target> targets, std::uint32_t r)
      : targets_(std::move(targets)),
        replies_(targets_.size()),
        state_(targets_.size(), kOut),
        r_(r) {}

  const std::vector<Target>& targets() const { return targets_; }
  /// As PutFsm::check.
  void check() { evaluate(); }
  /// Replica `i` answered: its object, or nullopt when it has none.
  void reply(std::size_t i, std::optional<Object> object) {
    if (i >= state_.size() || state_[i] != kOut) return;
    state_[i] = kReplied;
    if (object) merged_ = Object::sync(merged_, *object);
    replies_[i] = std::move(object);
    evaluate();
  }
  void fail(std::size_t i) {
    if (i >= state_.size() || state_[i] != kOut) return;
    state_[i] = kFailed;
    evaluate();
  }
  void expire() {
    if (outcome_ == Outcome::kPending) outcome_ = Outcome::kTimeout;
  }

  Outcome outcome() const { return outcome_; }
  std::uint32_t needed() const { return r_; }
  std::uint32_t got() const { return got_; }
  bool all_answered() const {
    for (auto s : state_) {
      if (s == kOut) return false;
    }
    return true;
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
  enum State : std::uint8_t { kOut, kReplied, kFailed };
  void evaluate() {
    if (outcome_ != Outcome::kPending) return;
    std::uint32_t replied = 0, out = 0;
    for (auto s : state_) {
      if (s == kReplied) ++replied;
      if (s == kOut) ++out;
    }
    got_ = replied;
    if (replied >= r_) {
      outcome_ = Outcome::kOk;
    } else if (replied + out < r_) {
      outcome_ = Outcome::kNoQuorum;
    }
  }

  std::vector<Target> targets_;
  std::vector<std::optional<Object>> replies_;
  std::vector<State> state_;
  std::uint32_t r_;
  Object merged_;
  Outcome outcome_ = Outcome::kPending;
  std::uint32_t got_ = 0;
};

}  // namespace nodus::kv
