#include "lock_round.hpp"

#include <utility>

namespace nodus::global_protocol {

LockRound::LockRound(std::set<Atom> peers, bool own_granted)
    : asked_(std::move(peers)), waiting_(asked_), own_granted_(own_granted) {}

bool LockRound::answer(Atom peer, bool granted) {
  if (!waiting_.erase(peer)) return false;
  if (granted) granted_.insert(peer);  // a refusal only lowers what the round can still get
  return true;
}

bool LockRound::drop(Atom peer) {
  if (!asked_.erase(peer)) return false;
  waiting_.erase(peer);
  granted_.erase(peer);
  return true;
}

void LockRound::expire() { expired_ = true; }

LockRound::Outcome LockRound::outcome() const {
  const std::size_t grants = own_granted_ ? 1 + granted_.size() : 0;
  if (own_granted_ && 2 * grants > voters()) return Outcome::kWon;
  // What it could still get if every peer yet to answer granted it.
  const std::size_t possible = grants + (own_granted_ ? waiting_.size() : 0);
  if (!own_granted_ || expired_ || 2 * possible <= voters()) return Outcome::kLost;
  return Outcome::kOpen;
}

}  // namespace nodus::global_protocol
