// Runtime: the inside of a Node (private): process table, scheduler, timers, routing.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include <set>
#include <variant>
#include <vector>
#include "envelope.hpp"
#include "nodus/node/detail/mutex.hpp"
#include "nodus/node/node.hpp"
#include "nodus/transport/clock.hpp"
#include "nodus/transport/transport.hpp"
#include "process_table.hpp"
#include "scheduler.hpp"
#include "timer_service.hpp"

namespace nodus::detail {

class Process;
class Runtime;

/// The runtime behind a Node, for the runtime's own sources.
struct NodeAccess {
  static Runtime& runtime(Node& node) { return *node.rt_; }
};

/// Registers a starting process under its SpawnOptions name (local, or through its resolver).
NameStatus register_start_name(Runtime& rt, const Name& name, const Pid& pid);

/// Remote sends made on this thread while a scope is open are gathered per peer and sent as
/// one ZeroMQ message each when the batch is flushed or the scope closes. A scheduler thread
/// keeps one open while it lives and flushes it after a few slices, before it goes idle, and
/// (flush_marked) before a process whose sends wait in another thread's batch runs anywhere
/// else: a process's remote messages keep their order.
class RemoteBatchScope {
 public:
  RemoteBatchScope();
  ~RemoteBatchScope();
  RemoteBatchScope(const RemoteBatchScope&) = delete;
  RemoteBatchScope& operator=(const RemoteBatchScope&) = delete;
  /// Sends what this thread gathered so far.
  static void flush();
  /// Frames this thread's batch took so far (counts up; compare two readings).
  static std::uint64_t added();
  /// This thread's batch as it is now.
  static RemoteBatchMark mark();
  /// Any thread: sends what m's batch holds if it was not flushed since m was taken (then a
  /// process that added to it may run elsewhere). No-op for this thread's own batch.
  static void flush_marked(const RemoteBatchMark& m);
};

class Runtime {
 public:
  explicit Runtime(const NodeOptions& options);
  ~Runtime();

  Atom name() const { return name_; }
  /// The Node that owns this runtime.
  Node* node() const { return node_; }
  void set_node(Node* n) { node_ = n; }
  std::uint32_t creation() const { return creation_; }
  bool is_local(const Pid& p) const { return p.node == name_ && p.creation == creation_; }

  // -- time: the system's steady clock, or a simulation's virtual one (NodeOptions::clock) --
  using Clock = std::chrono::steady_clock;
  Clock::time_point now() const { return clock_ ? clock_->now() : Clock::now(); }
  /// now + t, or time_point::max() for infinity.
  Clock::time_point deadline(Timeout t) const {
    return t.is_infinite() ? Clock::time_point::max() : now() + t.duration();
  }
  /// True when time is virtual: timers fire inside Scheduler::step(), not on a thread.
  bool virtual_time() const { return clock_ != nullptr; }
  /// For a plain thread that waits with nothing of this node's to run, under virtual time:
  /// lets the simulation move on by one event. False without virtual time, or when nothing can
  /// happen any more.
  bool advance_time() { return clock_ && clock_->advance(); }

  Ref make_ref() {
    return Ref{name_, creation_, next_ref_.fetch_add(1, std::memory_order_relaxed)};
  }

  /// Registers `p` (taking ownership) and gives it a pid. Does not schedule it.
  Pid adopt(Process* p);
  /// Registers and schedules a fiber process.
  Pid spawn(Process* p);

  /// Delivers `e` to `to` (taking ownership). If `to` is dead, unknown or refuses the
  /// envelope, it is bounced: a call gets an error reply, a monitor a DOWN, a link an exit.
  void deliver(const Pid& to, Envelope* e);
  /// Answers what `e` asked for with `reason` (the receiver is gone or refused it); frees e.
  void bounce(Envelope* e, const Reason& reason, const Pid& target);
  void send_reply(const Pid& to, const Ref& ref, Message value);
  /// Starts listening and linking to the seeds. Errors: the transport's (kBadConfig ...).
  Status start_transport(const NodeOptions& options);
  transport::Transport* transport() const { return transport_.load(std::memory_order_acquire); }
  /// Starts linking to "tcp://host:port" or "tcp://host:port#PUBLICKEY" (no-op without
  /// networking).
  void connect(const std::string& address);
  /// For an idle scheduler thread: waits at most `max_wait` for input from other nodes (or
  /// for `wake_fd`; -1: none), and delivers what came on this thread. False, at once, without
  /// networking.
  bool wait_for_input(int wake_fd, std::chrono::milliseconds max_wait);
  /// Connected peer nodes.
  std::vector<Atom> nodes() const;
  std::uint64_t remote_rejected() const { return remote_rejected_.load(); }
  std::uint64_t node_up_events() const { return node_ups_.load(std::memory_order_relaxed); }
  std::uint64_t node_down_events() const { return node_downs_.load(std::memory_order_relaxed); }
  std::uint64_t hidden_up_events() const { return hidden_ups_.load(std::memory_order_relaxed); }
  std::uint64_t hidden_down_events() const { return hidden_downs_.load(std::memory_order_relaxed); }
  bool is_hidden_peer(Atom node) const;
  /// Whether this runtime has taken `node`'s link up (hidden or not): what nodes() and sends
  /// see, which lags the transport's peers() by the link-up event's hand-over.
  bool is_peer(Atom node) const;
  /// Records the latency of one call to another node.
  void record_remote_call(std::chrono::steady_clock::duration d);
  CallLatency call_latency() const;
  /// Back-pressure: waits (suspending a process, or sleeping a plain thread) while the queue
  /// to `node` is nearly full, so a fast sender slows down instead of losing messages.
  void await_room(Atom node);
  void send_error_reply(const Pid& to, const Ref& ref, const Reason& reason);

  // -- timers aimed at processes (send_after, cancel_timer) ------------------------------
  /// Sends `msg` to `to` after `delay`: a timer aimed at a process of this node goes with that
  /// process (Erlang's erlang:send_after to a pid), so none is set for one that has exited.
  Ref send_after(const Pid& to, Message msg, std::chrono::milliseconds delay);
  /// The time `timer` had left, or nullopt if it fired, was cancelled, went with its process
  /// or never was.
  std::optional<std::chrono::milliseconds> cancel_timer(const Ref& timer);
  /// A timer's message reached its process: forgets the timer.
  void timer_fired(const Ref& timer);
  /// `pid` is exiting (REQUIRES: marked so in the table): cancels its timers.
  void cancel_timers_of(const Pid& pid);

  ProcessTable& table() { return table_; }
  Scheduler& scheduler() { return scheduler_; }
  TimerService& timers() { return timers_; }
  bool shutting_down() const { return shutting_down_.load(); }

  void shutdown(Timeout grace);

  /// Removes a dead process from the table and frees its name. REQUIRES: it has finished.
  void retire(Pid pid);
  /// Frees the name of an exiting process (before its links and monitors hear of the exit,
  /// as in Erlang; retire() frees it again in case a registration raced with the exit).
  void forget_name(const Pid& pid);  // by value: the process (and its pid member) may go at once

  // -- services other layers attach (Node::service) ----------------------------------
  static constexpr std::size_t kServiceSlots = 16;
  void* service(std::size_t slot) const {
    return slot < kServiceSlots ? services_[slot].load(std::memory_order_acquire) : nullptr;
  }
  void* set_service(std::size_t slot, std::shared_ptr<void> owner);

  // -- local names ------------------------------------------------------------------
  NameStatus register_name(std::string_view name, const Pid& pid);
  bool unregister_name(std::string_view name);
  Pid whereis(std::string_view name) const;
  std::vector<std::string> registered() const;
  /// The name `pid` is registered under, or "".
  std::string registered_name(const Pid& pid) const;
  /// Delivers to a pid or a name (resolved now; a remote name is resolved by its node).
  void deliver(const Dest& to, Envelope* e);

  /// The runtime that owns a local pid, else the process's own, else the first node created
  /// in this OS process; nullptr when there is no node at all.
  static Runtime* for_pid(const Pid& pid);
  /// The runtime in this OS process that is node `node` incarnation `creation`, or nullptr.
  static Runtime* owning(Atom node, std::uint32_t creation);
  static Runtime* any();

 private:
  Node* node_ = nullptr;
  // The virtual clock, or null for the system's; set at construction, never changed.
  std::shared_ptr<transport::Clock> clock_owner_;
  transport::Clock* clock_ = nullptr;
  Atom name_;
  std::uint32_t creation_;
  std::atomic<std::uint64_t> next_ref_{1};
  std::atomic<bool> shutting_down_{false};
  std::atomic<bool> stopped_{false};
  void deliver_remote(const Pid& to, Envelope* e);
  void deliver_remote_name(Atom node, const std::string& name, Envelope* e);
  void deliver_remote_to(Atom node, std::variant<Pid, std::string> address, Envelope* e);
  /// Sends e's frame to `node`, or, inside a RemoteBatchScope, adds it to the batch for that
  /// node. Sets `bad` (and sends nothing) when e cannot cross the wire.
  Status send_envelope(transport::Transport& t, Atom node, const Envelope& e,
                       const std::variant<Pid, std::string>& to, std::optional<Reason>& bad);
  void on_remote_data(const std::string& peer, transport::Data&& d);
  void on_peer_change(const std::string& peer, bool up, bool hidden);
  /// Logs (at most once per 10 s) a message from `peer` refused for want of atoms.
  void log_atoms_refused(const std::string& peer, const std::string& why);

  // Guards peers_ and hidden_ (atom ids of connected nodes, and of those that are hidden):
  // written by the transport's thread.
  mutable Mutex peers_mu_;
  std::set<std::uint32_t> peers_ NODUS_GUARDED_BY(peers_mu_);
  std::set<std::uint32_t> hidden_ NODUS_GUARDED_BY(peers_mu_);
  std::atomic<std::uint64_t> node_ups_{0};
  std::atomic<std::uint64_t> node_downs_{0};
  std::atomic<std::uint64_t> hidden_ups_{0};
  std::atomic<std::uint64_t> hidden_downs_{0};
  // Remote call latency buckets (CallLatency): relaxed counters, one add per remote call.
  std::atomic<std::uint64_t> call_buckets_[CallLatency::kBuckets] = {};
  std::atomic<std::uint64_t> call_count_{0};
  std::atomic<std::uint64_t> call_sum_us_{0};
  std::atomic<std::uint64_t> remote_rejected_{0};
  // NodeOptions::log (set before the transport starts); when the atom refusals were last logged.
  std::function<void(const std::string&)> log_;
  std::atomic<std::int64_t> atoms_logged_ms_{0};

  // Guards by_name_ and name_of_: written on (un)registration and exits of named processes,
  // read by name lookups. named_ lets exits of unnamed processes skip the lock.
  mutable Mutex names_mu_;
  std::unordered_map<std::string, Pid> by_name_ NODUS_GUARDED_BY(names_mu_);
  std::unordered_map<std::uint64_t, std::string> name_of_ NODUS_GUARDED_BY(names_mu_);
  std::atomic<std::size_t> named_{0};
  // Guards service_owners_ and the writes to services_ (set_service); readers use the atomic
  // slots without it.
  Mutex services_mu_;
  std::array<std::atomic<void*>, kServiceSlots> services_{};
  std::vector<std::shared_ptr<void>> service_owners_ NODUS_GUARDED_BY(services_mu_);
  // Guards the timers aimed at this node's processes: which process each one is aimed at, and
  // each such process's timers, so that its exit cancels them. send_after and the exit take it
  // in turn (see send_after for why that is enough).
  Mutex user_timers_mu_;
  std::unordered_map<std::uint64_t, std::uint64_t> timer_target_
      NODUS_GUARDED_BY(user_timers_mu_);  // timer id -> pid id
  std::unordered_map<std::uint64_t, std::vector<std::uint64_t>> timers_of_
      NODUS_GUARDED_BY(user_timers_mu_);  // pid id -> timer ids
  ProcessTable table_;
  TimerService timers_;
  Scheduler scheduler_;
  // Last: its thread delivers into the scheduler, so it stops first.
  // The transport's callbacks may run before start() returns, so they read the transport
  // through an atomic pointer published once it is complete; the unique_ptr only owns it.
  std::unique_ptr<transport::Transport> transport_owner_;
  std::atomic<transport::Transport*> transport_{nullptr};
};

}  // namespace nodus::detail
