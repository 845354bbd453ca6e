// Envelope: one message or signal in a mailbox (private to the runtime).
#pragma once

#include <chrono>
#include <cstdint>

#include "nodus/node/message.hpp"
#include "nodus/node/term.hpp"

namespace nodus::detail {

enum class Kind : std::uint8_t {
  // User messages: queued in order and dispatched to the behaviour.
  kInfo,       // a plain send: handle_info
  kCast,       // handle_cast
  kCall,       // handle_call; from + ref say where the reply goes
  kGetStatus,  // system: reply to from/ref with format_status
  kStop,       // system: stop with reason `msg` (stop(pid, reason, timeout))
  // Replies: matched against the refs the process awaits; others are dropped (late replies).
  kReply,       // msg is the reply
  kReplyError,  // msg is the reason (a Term)
  // Signals: handled as soon as the process fetches them, ahead of queued user messages.
  kLink,
  kUnlink,
  kLinkExit,     // a linked process exited with reason `msg`; the link is gone
  kExitSignal,   // exit(pid, reason) from `from`
  kMonitor,      // `from` monitors this process under `ref`
  kDemonitor,    // `from` dropped the monitor `ref`
  kDown,         // a process this one monitors under `ref` exited with reason `msg`
  kShutdown,     // the node is shutting down: terminate with reason `shutdown`
  kWakeup,       // a wait with deadline token `ref` timed out
  kIdleTimeout,  // the behaviour's idle timeout with sequence number ref.id
  kNodeDown,     // node `msg` (an atom) went down: monitors, links and calls to it end
  kNodeUp        // node `msg` came up (for node monitors)
};

inline bool is_user_kind(Kind k) { return k <= Kind::kStop; }

struct Envelope {
  Envelope(Kind k, const Pid& f, const Ref& r, Message m)
      : kind(k), from(f), ref(r), msg(std::move(m)) {}

  Envelope* next = nullptr;
  Kind kind;
  Pid from;
  Ref ref;
  Message msg;
  /// A call's deadline (its caller gives up then); max() = none. Travels to remote nodes as
  /// the remaining budget.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

}  // namespace nodus::detail
