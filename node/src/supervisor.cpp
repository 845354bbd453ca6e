// Supervisor and DynamicSupervisor: one GenServer, SupervisorServer, in two modes.
//
// The server keeps its children in start order. A child's exit arrives as an Exit message
// (the server traps exits); the server decides by restart type and strategy, stops the
// siblings that must go (reverse order), and starts again in order. A start that fails during
// a restart is retried through a RetryRestart message to itself, each try counting towards
// the restart intensity, as OTP's supervisor does with its try_again message.
#include "nodus/node/supervisor.hpp"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "process_impl.hpp"

namespace nodus {

namespace {

using Clock = std::chrono::steady_clock;

// -- requests and replies: local typed messages -------------------------------------

struct WhichChildrenRequest {};
struct CountChildrenRequest {};
struct StartChildRequest {
  ChildSpec spec;
};
struct TerminateChildRequest {
  std::string id;
};
struct TerminatePidRequest {
  Pid pid;
};
struct RestartChildRequest {
  std::string id;
};
struct DeleteChildRequest {
  std::string id;
};
/// To itself: try again to start the child with this key, whose restart failed.
struct RetryRestart {
  std::uint64_t key;
};

/// A pid or an error (start_child, restart_child).
struct PidReply {
  Pid pid;
  std::optional<Reason> error;
};
/// ok or an error (terminate_child, delete_child).
struct AckReply {
  std::optional<Reason> error;
};

const char* strategy_name(Strategy s) {
  switch (s) {
    case Strategy::kOneForOne:
      return "one_for_one";
    case Strategy::kOneForAll:
      return "one_for_all";
    case Strategy::kRestForOne:
      return "rest_for_one";
  }
  return "one_for_one";
}

bool should_restart(Restart restart, const Reason& reason) {
  switch (restart) {
    case Restart::kPermanent:
      return true;
    case Restart::kTransient:
      return !reasons::is_clean(reason);
    case Restart::kTemporary:
      return false;
  }
  return false;
}

Term id_term(const std::string& id) { return Term(atom(id)); }

struct Config {
  bool dynamic = false;
  Strategy strategy = Strategy::kOneForOne;
  int intensity = 3;
  std::chrono::milliseconds period{5000};
  std::size_t max_children = 0;
};

class SupervisorServer final : public GenServer {
 public:
  Action init(Config config, std::vector<ChildSpec> specs) {
    config_ = config;
    trap_exit(true);
    for (std::size_t i = 0; i < specs.size(); ++i) {
      if (!specs[i].start) return stop(tuple(atom("invalid_child_spec"), id_term(specs[i].id)));
      for (std::size_t j = 0; j < i; ++j) {
        if (specs[j].id == specs[i].id) {
          return stop(tuple(atom("duplicate_child_name"), id_term(specs[i].id)));
        }
      }
    }
    for (ChildSpec& spec : specs) {
      children_.push_back(Child{std::move(spec), Pid{}, next_key_++, false});
      Child& c = children_.back();
      auto started = start_one(c);
      if (!started) {
        Term why = tuple(atom("failed_to_start_child"), id_term(c.spec.id), started.error().term());
        children_.pop_back();
        stop_all();
        return stop(tuple(atom("shutdown"), std::move(why)));
      }
      if (!started->valid() && c.spec.restart == Restart::kTemporary) children_.pop_back();
    }
    return ok();
  }

  Action handle_call(Message& request, From from) override {
    return request.visit(
        [&](const WhichChildrenRequest&) { return reply(which_children()); },
        [&](const CountChildrenRequest&) { return reply(count_children()); },
        [&](StartChildRequest& r) { return reply(start_child(std::move(r.spec))); },
        [&](const TerminateChildRequest& r) { return reply(terminate_child_by_id(r.id)); },
        [&](const TerminatePidRequest& r) { return reply(terminate_child_by_pid(r.pid)); },
        [&](const RestartChildRequest& r) { return reply(restart_child(r.id)); },
        [&](const DeleteChildRequest& r) { return reply(delete_child(r.id)); },
        [&](Message& other) { return GenServer::handle_call(other, from); });
  }

  Action handle_info(Message& msg) override {
    if (const Exit* x = msg.get<Exit>()) return child_exited(x->from, x->reason);
    if (const RetryRestart* r = msg.get<RetryRestart>()) {
      Child* c = by_key(r->key);
      if (!c || !c->restarting || c->pid.valid()) return noreply();  // overtaken meanwhile
      c->restarting = false;
      if (!add_restart(c->spec.id, Term(atom("restart_failed")))) return stop(reasons::shutdown());
      restart(r->key);
      return noreply();
    }
    return noreply();  // an Exit from an unknown pid (a child stopped meanwhile), or noise
  }

  void terminate(const Reason&) override { stop_all(); }

  Term format_status() override {
    ChildCounts n = count_children();
    MapEntries status = {
        {atom("strategy"), atom(strategy_name(config_.strategy))},
        {atom("intensity"), config_.intensity},
        {atom("period_ms"), static_cast<std::int64_t>(config_.period.count())},
        {atom("specs"), n.specs},
        {atom("active"), n.active},
        {atom("restarts"), total_restarts_},
    };
    if (config_.dynamic) status.emplace_back(atom("max_children"), config_.max_children);
    return Term(Map{std::move(status)});
  }

 private:
  struct Child {
    ChildSpec spec;
    Pid pid;            // invalid when not running
    std::uint64_t key;  // stable identity (ids need not be unique in a DynamicSupervisor)
    bool restarting;    // its restart failed; a RetryRestart is on its way
  };

  // -- starting and stopping one child ------------------------------------------------

  // Runs the child's start function in this process: its pid, an invalid pid for `ignore`,
  // or the error. A start function that throws fails with the exception's reason.
  Result<Pid, Reason> start_one(Child& c) {
    Result<Pid, Reason> r = reasons::noproc();
    try {
      r = c.spec.start();
    } catch (const detail::ProcessExit&) {
      throw;  // this supervisor is being killed: let it unwind
    } catch (...) {
      r = detail::current_exception_reason();
    }
    if (!r) {
      if (r.error() == reasons::of(ErrorCode::kIgnored)) {
        c.pid = Pid{};
        c.restarting = false;
        return Pid{};
      }
      return r;
    }
    c.pid = *r;
    c.restarting = false;
    link(c.pid);  // usually linked already (then a redundant signal); see ChildSpec::start
    return r;
  }

  // Stops a running child as its Shutdown says and waits until it is gone. Unlinking first
  // means no Exit arrives for it; one that was already queued names a pid no child has any
  // more, and is ignored.
  void stop_child(Child& c) {
    Pid pid = std::exchange(c.pid, Pid{});
    c.restarting = false;
    if (!pid.valid()) return;
    unlink(pid);
    Ref ref = monitor(pid);
    if (!c.spec.shutdown.is_brutal_kill()) {
      exit(pid, reasons::shutdown());
      if (await_down(ref, c.spec.shutdown.timeout_for(c.spec.type))) return;
    }
    exit(pid, reasons::kill());
    (void)await_down(ref, infinity);
  }

  // Every running child, in reverse start order.
  void stop_all() {
    for (std::size_t i = children_.size(); i-- > 0;) stop_child(children_[i]);
  }

  // -- exits and restarts -----------------------------------------------------------

  Action child_exited(const Pid& pid, const Reason& reason) {
    auto it = std::find_if(children_.begin(), children_.end(),
                           [&](const Child& c) { return c.pid == pid; });
    if (it == children_.end()) return noreply();
    it->pid = Pid{};
    if (!should_restart(it->spec.restart, reason)) {
      if (config_.dynamic || it->spec.restart == Restart::kTemporary) children_.erase(it);
      return noreply();
    }
    if (!add_restart(it->spec.id, reason)) return stop(reasons::shutdown());
    restart(it->key);
    return noreply();
  }

  // Counts a restart; false when that exceeds the intensity (the supervisor must stop).
  bool add_restart(const std::string& id, const Reason& reason) {
    const auto now = Clock::now();
    ++total_restarts_;
    restarts_.push_back(now);
    while (!restarts_.empty() && now - restarts_.front() > config_.period) restarts_.pop_front();
    if (static_cast<long long>(restarts_.size()) <= config_.intensity) return true;
    std::fprintf(stderr,
                 "nodus: supervisor %s: reached_max_restart_intensity (more than %d restarts in "
                 "%lld ms; last: child %s exited with %s): shutting down\n",
                 self().to_string().c_str(), config_.intensity,
                 static_cast<long long>(config_.period.count()),
                 config_.dynamic ? "(dynamic)" : id.c_str(), reason.to_string().c_str());
    return false;
  }

  // Restarts the child with `key` and, by strategy, its siblings: those that must go are
  // stopped in reverse order (temporary ones are dropped, as in OTP), then every child of the
  // group that is not running starts in order. A start that fails leaves it and the rest of
  // the group stopped, and queues a retry.
  void restart(std::uint64_t key) {
    auto group = group_of(key);
    for (std::size_t i = group.second; i-- > group.first;) {
      if (children_[i].key != key) stop_child(children_[i]);
    }
    const auto first = children_.begin() + static_cast<std::ptrdiff_t>(group.first);
    const auto last = children_.begin() + static_cast<std::ptrdiff_t>(group.second);
    auto dropped = std::remove_if(first, last, [&](const Child& c) {
      return c.key != key && c.spec.restart == Restart::kTemporary;
    });
    children_.erase(dropped, last);
    group = group_of(key);
    for (std::size_t i = group.first; i < group.second; ++i) {
      Child& c = children_[i];
      if (c.pid.valid()) continue;
      auto started = start_one(c);
      if (!started) {
        c.restarting = true;
        send(self(), RetryRestart{c.key});
        return;
      }
      // A DynamicSupervisor drops a child whose restart was ignored, freeing its slot, as
      // Elixir's does; a static one keeps its spec, not running, as OTP's does.
      if (!started->valid() && config_.dynamic) {
        children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(i));
        return;
      }
    }
  }

  // The children [first, last) restarted with the child `key`.
  std::pair<std::size_t, std::size_t> group_of(std::uint64_t key) const {
    std::size_t i = index_of(key);
    if (config_.dynamic) return {i, i + 1};
    switch (config_.strategy) {
      case Strategy::kOneForAll:
        return {0, children_.size()};
      case Strategy::kRestForOne:
        return {i, children_.size()};
      case Strategy::kOneForOne:
        break;
    }
    return {i, i + 1};
  }

  std::size_t index_of(std::uint64_t key) const {
    for (std::size_t i = 0; i < children_.size(); ++i) {
      if (children_[i].key == key) return i;
    }
    return children_.size();
  }
  Child* by_key(std::uint64_t key) {
    std::size_t i = index_of(key);
    return i < children_.size() ? &children_[i] : nullptr;
  }
  Child* by_id(const std::string& id) {
    for (Child& c : children_) {
      if (c.spec.id == id) return &c;
    }
    return nullptr;
  }

  // -- requests ---------------------------------------------------------------------

  std::vector<ChildInfo> which_children() const {
    std::vector<ChildInfo> out;
    out.reserve(children_.size());
    for (const Child& c : children_) {
      out.push_back(ChildInfo{c.spec.id, c.pid, c.spec.type, c.spec.restart});
    }
    return out;
  }

  ChildCounts count_children() const {
    ChildCounts n;
    n.specs = children_.size();
    for (const Child& c : children_) {
      if (c.pid.valid()) ++n.active;
      if (c.spec.type == ChildType::kSupervisor) {
        ++n.supervisors;
      } else {
        ++n.workers;
      }
    }
    return n;
  }

  PidReply start_child(ChildSpec spec) {
    if (!spec.start) return {Pid{}, Reason(tuple(atom("invalid_child_spec"), id_term(spec.id)))};
    if (config_.dynamic) {
      if (config_.max_children && children_.size() >= config_.max_children) {
        return {Pid{}, Reason(atom("max_children"))};
      }
    } else if (Child* existing = by_id(spec.id)) {
      if (existing->pid.valid())
        return {Pid{}, reasons::of(ErrorCode::kAlreadyStarted, existing->pid)};
      return {Pid{}, Reason(atom("already_present"))};
    }
    children_.push_back(Child{std::move(spec), Pid{}, next_key_++, false});
    auto started = start_one(children_.back());
    if (!started) {
      children_.pop_back();
      return {Pid{}, std::move(started).error()};
    }
    if (!started->valid() &&
        (config_.dynamic || children_.back().spec.restart == Restart::kTemporary)) {
      children_.pop_back();
    }
    return {*started, std::nullopt};
  }

  AckReply terminate_child_by_id(const std::string& id) {
    if (config_.dynamic) return {Reason(atom("not_supported"))};
    Child* c = by_id(id);
    if (!c) return {reasons::of(ErrorCode::kNotFound)};
    terminate_and_forget(*c);
    return {};
  }

  AckReply terminate_child_by_pid(const Pid& pid) {
    auto it = std::find_if(children_.begin(), children_.end(),
                           [&](const Child& c) { return c.pid.valid() && c.pid == pid; });
    if (it == children_.end()) return {reasons::of(ErrorCode::kNotFound)};
    terminate_and_forget(*it);
    return {};
  }

  // Stops the child; a DynamicSupervisor, or a temporary spec, forgets it.
  void terminate_and_forget(Child& c) {
    const std::uint64_t key = c.key;
    stop_child(c);
    if (config_.dynamic || c.spec.restart == Restart::kTemporary) {
      children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(index_of(key)));
    }
  }

  PidReply restart_child(const std::string& id) {
    if (config_.dynamic) return {Pid{}, Reason(atom("not_supported"))};
    Child* c = by_id(id);
    if (!c) return {Pid{}, reasons::of(ErrorCode::kNotFound)};
    if (c->pid.valid()) return {Pid{}, Reason(atom("running"))};
    if (c->restarting) return {Pid{}, Reason(atom("restarting"))};
    auto started = start_one(*c);
    if (!started) return {Pid{}, std::move(started).error()};
    return {*started, std::nullopt};
  }

  AckReply delete_child(const std::string& id) {
    if (config_.dynamic) return {Reason(atom("not_supported"))};
    Child* c = by_id(id);
    if (!c) return {reasons::of(ErrorCode::kNotFound)};
    if (c->pid.valid()) return {Reason(atom("running"))};
    if (c->restarting) return {Reason(atom("restarting"))};
    children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(index_of(c->key)));
    return {};
  }

  Config config_;
  std::vector<Child> children_;  // in start order
  std::uint64_t next_key_ = 1;
  std::deque<Clock::time_point> restarts_;  // within the last period
  std::int64_t total_restarts_ = 0;
};

Result<Pid, Reason> start_supervisor_server(Node& node, Config config, std::vector<ChildSpec> specs,
                                            SpawnOptions opts, const std::string* type) {
  opts.link = true;
  auto args = std::make_shared<std::pair<Config, std::vector<ChildSpec>>>(config, std::move(specs));
  detail::ServerFactory make = [args]() -> std::pair<std::unique_ptr<GenServer>, Action> {
    auto server = std::make_unique<SupervisorServer>();
    Action a = server->init(args->first, std::move(args->second));
    return {std::move(server), std::move(a)};
  };
  return detail::start_server(node, opts, std::move(make), type, sizeof(SupervisorServer),
                              "supervisor");
}

CallResult ack(Result<AckReply, Reason> r) {
  if (!r) return std::move(r).error();
  if (r->error) return std::move(*r->error);
  return Term(atom("ok"));
}

Result<Pid, Reason> pid_or_error(Result<PidReply, Reason> r) {
  if (!r) return std::move(r).error();
  if (r->error) return std::move(*r->error);
  return r->pid;
}

}  // namespace

Result<Pid, Reason> start_supervisor(Node& node, SupervisorFlags flags,
                                     std::vector<ChildSpec> children, SpawnOptions opts) {
  Config config;
  config.strategy = flags.strategy;
  config.intensity = flags.intensity;
  config.period = flags.period;
  static const std::string type = "nodus::Supervisor";
  return start_supervisor_server(node, config, std::move(children), opts, &type);
}

Result<Pid, Reason> start_dynamic_supervisor(Node& node, DynamicSupervisorFlags flags,
                                             SpawnOptions opts) {
  Config config;
  config.dynamic = true;
  config.intensity = flags.intensity;
  config.period = flags.period;
  config.max_children = flags.max_children;
  static const std::string type = "nodus::DynamicSupervisor";
  return start_supervisor_server(node, config, {}, opts, &type);
}

ChildSpec supervisor_child(Node& node, std::string id, SupervisorFlags flags,
                           std::vector<ChildSpec> children) {
  Node* n = &node;
  ChildSpec spec;
  spec.id = std::move(id);
  spec.start = [n, flags, children = std::move(children)]() {
    return start_supervisor(*n, flags, children);
  };
  spec.type = ChildType::kSupervisor;
  return spec;
}

ChildSpec dynamic_supervisor_child(Node& node, std::string id, DynamicSupervisorFlags flags) {
  Node* n = &node;
  ChildSpec spec;
  spec.id = std::move(id);
  spec.start = [n, flags]() { return start_dynamic_supervisor(*n, flags); };
  spec.type = ChildType::kSupervisor;
  return spec;
}

Result<std::vector<ChildInfo>, Reason> which_children(const Pid& sup, Timeout timeout) {
  return call_as<std::vector<ChildInfo>>(sup, WhichChildrenRequest{}, timeout);
}

Result<ChildCounts, Reason> count_children(const Pid& sup, Timeout timeout) {
  return call_as<ChildCounts>(sup, CountChildrenRequest{}, timeout);
}

Result<Pid, Reason> start_child(const Pid& sup, ChildSpec spec, Timeout timeout) {
  return pid_or_error(call_as<PidReply>(sup, StartChildRequest{std::move(spec)}, timeout));
}

CallResult terminate_child(const Pid& sup, const std::string& id, Timeout timeout) {
  return ack(call_as<AckReply>(sup, TerminateChildRequest{id}, timeout));
}

CallResult terminate_child(const Pid& sup, const Pid& child, Timeout timeout) {
  return ack(call_as<AckReply>(sup, TerminatePidRequest{child}, timeout));
}

Result<Pid, Reason> restart_child(const Pid& sup, const std::string& id, Timeout timeout) {
  return pid_or_error(call_as<PidReply>(sup, RestartChildRequest{id}, timeout));
}

CallResult delete_child(const Pid& sup, const std::string& id, Timeout timeout) {
  return ack(call_as<AckReply>(sup, DeleteChildRequest{id}, timeout));
}

}  // namespace nodus
