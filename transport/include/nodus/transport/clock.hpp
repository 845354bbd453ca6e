// Clock: a virtual time source for deterministic simulation (nodus/transport/sim.hpp).
//
// A node reads the system's steady clock unless it is given a Clock (NodeOptions::clock). With
// one, every timer, timeout and deadline of that node -- call timeouts, receive timeouts,
// send_after, sleep_for, GenServer idle timeouts, heartbeats and down_after of a simulated
// transport -- runs on the clock's time, which moves only when the simulation advances it: no
// wall clock and no timer thread, so a run is reproducible from its seed. Time points keep the
// steady clock's type, so code that computes deadlines does not change.
//
// Thread-safety: an implementation says; the simulation's is used by one thread.
#pragma once

#include <chrono>

namespace nodus::transport {

class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  virtual ~Clock() = default;

  /// The current time. Never goes backwards.
  virtual time_point now() const = 0;
  /// Something is due at `when` (a timer of a node): when the clock advances, it stops there
  /// rather than jumping past it. Due times already past are ignored.
  virtual void wake_at(time_point when) = 0;
  /// For a plain thread that waits on a node and finds nothing of the node's to run (a call
  /// from a test's main thread, a shutdown): lets the world move on by one event (deliver a
  /// message, run a node, advance time to the next due time). False if nothing can ever happen
  /// again (then the waiting thread gives up its wait at its deadline, or waits in real time).
  virtual bool advance() = 0;
};

}  // namespace nodus::transport
