// LockRound: the vote of one round of a global name's lock (docs/protocol.md section 9), apart
// from the messages that carry it, so that its arithmetic can be read and tested on its own.
//
// The voters are this node (the registrar) and the peers it asked; a peer that goes down
// meanwhile stops being one, and the majority is counted anew. The round is won once more than
// half of the voters, this node included, granted the lock; it is lost at once when this
// node's own lock was taken, once so many refused that a majority can no longer grant it, or
// when it outlasted its time (a peer that never answers). Any two majorities of the same voters
// share one, and a node grants a name's lock to one round at a time: two rounds on one name
// cannot both win.
//
// Thread-safety: a value, used by the global name server's process only.
#pragma once

#include <cstddef>
#include <set>

#include "nodus/node/term.hpp"

namespace nodus::global_protocol {

class LockRound {
 public:
  enum class Outcome { kOpen, kWon, kLost };

  /// A round that asks `peers`, after this node took its own lock (`own_granted`) or found it
  /// taken by another round (then the round is lost from the start).
  LockRound(std::set<Atom> peers, bool own_granted);

  /// Records `peer`'s answer. False (and nothing changes) when it was not waited for: a peer
  /// not asked, gone since, or that answered already.
  bool answer(Atom peer, bool granted);
  /// `peer` went away: it no longer votes. False when it was no voter.
  bool drop(Atom peer);
  /// The round outlasted its time: lost, unless it was won already.
  void expire();

  Outcome outcome() const;
  bool settled() const { return outcome() != Outcome::kOpen; }

  /// Every voter, this node included.
  std::size_t voters() const { return 1 + asked_.size(); }
  /// The peers that granted the lock, and those that have not answered yet: who must be told
  /// to release it when the round is lost (a late grant is released by the message after it).
  const std::set<Atom>& granted() const { return granted_; }
  const std::set<Atom>& waiting() const { return waiting_; }

 private:
  std::set<Atom> asked_;    // the peers that vote
  std::set<Atom> waiting_;  // asked, and not answered yet
  std::set<Atom> granted_;
  bool own_granted_;
  bool expired_ = false;
};

}  // namespace nodus::global_protocol
