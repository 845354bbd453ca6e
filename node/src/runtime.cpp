#include "runtime.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "check.hpp"
#include "process_impl.hpp"

namespace nodus::detail {

namespace {
// Guards g_runtimes: the nodes alive in this OS process, for plain-thread calls.
std::mutex g_runtimes_mu;
std::vector<Runtime*> g_runtimes;

std::uint32_t default_creation() {
  auto now = std::chrono::system_clock::now().time_since_epoch();
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(now).count();
  std::uint32_t c = static_cast<std::uint32_t>(us ^ (us >> 32));
  return c == 0 ? 1 : c;
}
}  // namespace

Runtime::Runtime(const NodeOptions& options)
    : name_(options.name),
      creation_(options.creation ? options.creation : default_creation()),
      timers_(*this),
      scheduler_(*this, options.schedulers, options.fiber_stack_size, options.manual_scheduling) {
  {
    std::lock_guard<std::mutex> lock(g_runtimes_mu);
    g_runtimes.push_back(this);
  }
  timers_.start();
  scheduler_.start();
}

Runtime::~Runtime() {
  shutdown(std::chrono::seconds(5));
  std::lock_guard<std::mutex> lock(g_runtimes_mu);
  g_runtimes.erase(std::remove(g_runtimes.begin(), g_runtimes.end(), this), g_runtimes.end());
}

Runtime* Runtime::for_pid(const Pid& pid) {
  if (Process* p = current_process()) return &p->rt();
  std::lock_guard<std::mutex> lock(g_runtimes_mu);
  for (Runtime* rt : g_runtimes) {
    if (rt->is_local(pid)) return rt;
  }
  return g_runtimes.empty() ? nullptr : g_runtimes.front();
}

Runtime* Runtime::owning(Atom node, std::uint32_t creation) {
  std::lock_guard<std::mutex> lock(g_runtimes_mu);
  for (Runtime* rt : g_runtimes) {
    if (rt->name_ == node && rt->creation_ == creation) return rt;
  }
  return nullptr;
}

Runtime* Runtime::any() {
  std::lock_guard<std::mutex> lock(g_runtimes_mu);
  return g_runtimes.empty() ? nullptr : g_runtimes.front();
}

Pid Runtime::adopt(Process* p) {
  // The pid is set before the table publishes the process: introspection and shutdown read it
  // from other threads as soon as it is there.
  std::uint64_t id = table_.insert(p, [&](std::uint64_t fresh) {
    p->set_pid(Pid{name_, creation_, fresh});
  });
  return Pid{name_, creation_, id};
}

Pid Runtime::spawn(Process* p) {
  Pid pid = adopt(p);
  scheduler_.schedule(p);
  return pid;
}

void Runtime::deliver(const Pid& to, Envelope* e) {
  if (!to.valid()) {
    delete e;
    return;
  }
  if (to.node != name_) {
    deliver_remote(to, e);
    return;
  }
  if (to.creation != creation_) {  // a pid of this node's earlier incarnation
    bounce(e, reasons::noproc(), to);
    return;
  }
  ProcessTable::Handle h = table_.lookup(to.id);
  if (!h) {
    bounce(e, reasons::noproc(), to);
    return;
  }
  switch (h->push(e)) {
    case Process::PushResult::kOk:
      return;
    case Process::PushResult::kClosed:
      bounce(e, reasons::noproc(), to);
      return;
    case Process::PushResult::kRejected:
      bounce(e, reasons::of(ErrorCode::kOverloaded), to);
      return;
  }
}

void Runtime::bounce(Envelope* e, const Reason& reason, const Pid& target) {
  std::unique_ptr<Envelope> owned(e);
  switch (e->kind) {
    case Kind::kCall:
    case Kind::kGetStatus:
    case Kind::kStop:
      send_error_reply(e->from, e->ref, reason);
      break;
    case Kind::kMonitor:
      deliver(e->from, new Envelope(Kind::kDown, target, e->ref, reason));
      break;
    case Kind::kLink:
      deliver(e->from, new Envelope(Kind::kLinkExit, target, Ref{}, reason));
      break;
    default:
      break;  // a message to a dead process is dropped, as in Erlang
  }
}

void Runtime::send_reply(const Pid& to, const Ref& ref, Message value) {
  deliver(to, new Envelope(Kind::kReply, Pid{}, ref, std::move(value)));
}

void Runtime::send_error_reply(const Pid& to, const Ref& ref, const Reason& reason) {
  deliver(to, new Envelope(Kind::kReplyError, Pid{}, ref, reason));
}

void Runtime::retire(Pid pid) {
  table_.remove(pid.id);  // first: a registration racing with this exit then fails its lookup
  forget_name(pid);
}

void Runtime::forget_name(const Pid& pid) {
  if (named_.load() == 0) return;
  std::lock_guard<std::mutex> lock(names_mu_);
  auto it = name_of_.find(pid.id);
  if (it == name_of_.end()) return;
  by_name_.erase(it->second);
  name_of_.erase(it);
  named_.fetch_sub(1);
}

NameStatus Runtime::register_name(std::string_view name, const Pid& pid) {
  if (name.empty()) return Status(ErrorCode::kBadArg, "an empty name");
  if (!is_local(pid)) return Status(ErrorCode::kBadArg, pid.to_string() + " is not on this node");
  std::lock_guard<std::mutex> lock(names_mu_);
  auto held = by_name_.find(std::string(name));
  if (held != by_name_.end()) {
    return NameStatus::taken(held->second);
  }
  if (!table_.lookup(pid.id)) return Status(ErrorCode::kBadArg, pid.to_string() + " is not alive");
  if (auto it = name_of_.find(pid.id); it != name_of_.end()) {
    return Status(ErrorCode::kBadArg, pid.to_string() + " is already registered as " + it->second);
  }
  by_name_.emplace(std::string(name), pid);
  name_of_.emplace(pid.id, std::string(name));
  named_.fetch_add(1);
  return Status::Ok();
}

bool Runtime::unregister_name(std::string_view name) {
  std::lock_guard<std::mutex> lock(names_mu_);
  auto it = by_name_.find(std::string(name));
  if (it == by_name_.end()) return false;
  name_of_.erase(it->second.id);
  by_name_.erase(it);
  named_.fetch_sub(1);
  return true;
}

Pid Runtime::whereis(std::string_view name) const {
  std::lock_guard<std::mutex> lock(names_mu_);
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? Pid{} : it->second;
}

std::vector<std::string> Runtime::registered() const {
  std::vector<std::string> out;
  {
    std::lock_guard<std::mutex> lock(names_mu_);
    for (const auto& [name, pid] : by_name_) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string Runtime::registered_name(const Pid& pid) const {
  if (named_.load() == 0) return {};
  std::lock_guard<std::mutex> lock(names_mu_);
  auto it = name_of_.find(pid.id);
  return it == name_of_.end() ? std::string() : it->second;
}

void Runtime::deliver(const Dest& to, Envelope* e) {
  if (to.is_pid()) {
    deliver(to.pid(), e);
    return;
  }
  if (to.is_via()) {
    Pid pid = to.resolver().whereis_name(*node_, to.via_key());
    if (!pid) {
      bounce(e, reasons::noproc(), Pid{});
      return;
    }
    deliver(pid, e);
    return;
  }
  if (to.node() != Atom() && to.node() != name_) {
    deliver_remote_name(to.node(), to.name(), e);
    return;
  }
  Pid pid = whereis(to.name());
  if (!pid) {
    bounce(e, reasons::noproc(), Pid{});
    return;
  }
  deliver(pid, e);
}

void* Runtime::set_service(std::size_t slot, std::shared_ptr<void> owner) {
  NODUS_CHECK(slot < kServiceSlots);
  std::lock_guard<std::mutex> lock(services_mu_);
  if (void* held = services_[slot].load()) return held;
  void* raw = owner.get();
  service_owners_.push_back(std::move(owner));
  services_[slot].store(raw, std::memory_order_release);
  return raw;
}

void Runtime::shutdown(Timeout grace) {
  if (stopped_.exchange(true)) return;
  shutting_down_.store(true);
  using Clock = std::chrono::steady_clock;
  // Inboxes belong to plain threads and leave when those close them: not waited for.
  auto live = [&] {
    std::size_t n = 0;
    table_.for_each([&](Process& p) {
      if (std::string_view(p.behaviour()) != "inbox") ++n;
    });
    return n;
  };
  auto wait_until_empty = [&](Clock::time_point deadline) {
    while (live() > 0 && Clock::now() < deadline) {
      if (scheduler_.manual() && scheduler_.step()) continue;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return live() == 0;
  };
  auto signal_all = [&](bool only_roots, Kind kind, const Reason& reason) {
    std::vector<Pid> targets;
    table_.for_each([&](Process& p) {
      if (std::string_view(p.behaviour()) == "inbox") return;
      if (only_roots && p.parent().valid()) {
        // A root has no live parent, or a plain thread's Inbox for one (main() starting the
        // top supervisor): the Inbox is never signalled, so its children must be.
        ProcessTable::Handle parent = table_.lookup(p.parent().id);
        if (parent && std::string_view(parent->behaviour()) != "inbox") return;
      }
      targets.push_back(p.pid());
    });
    for (const Pid& pid : targets) deliver(pid, new Envelope(kind, Pid{}, Ref{}, reason));
  };
  const auto deadline = grace.deadline_from_now();
  // Top-level processes first: supervisors stop their children in order.
  signal_all(true, Kind::kShutdown, reasons::shutdown());
  auto roots_deadline = std::min(deadline, Clock::now() + (deadline - Clock::now()) / 2);
  if (!wait_until_empty(roots_deadline)) {
    signal_all(false, Kind::kShutdown, reasons::shutdown());
    if (!wait_until_empty(deadline)) {
      signal_all(false, Kind::kExitSignal, reasons::kill());
      wait_until_empty(Clock::now() + std::chrono::seconds(1));
    }
  }
  if (transport::Transport* t = transport()) t->close();  // peers hear BYE
  timers_.stop();
  scheduler_.stop();
}

}  // namespace nodus::detail

// -- Node -----------------------------------------------------------------------------

namespace nodus {

Node::Node(NodeOptions options, NoStart) : rt_(std::make_unique<detail::Runtime>(options)) {
  rt_->set_node(this);
}

Node::Node(NodeOptions options) : Node(options, NoStart{}) {
  if (options.listen.empty()) return;
  std::fprintf(stderr,
               "nodus: node %s has a listen endpoint: start it with Node::start, which says why "
               "it could not\n",
               options.name.c_str());
  std::abort();
}

Result<std::unique_ptr<Node>> Node::start(NodeOptions options) {
  std::unique_ptr<Node> node(new Node(options, NoStart{}));
  if (!options.listen.empty()) {
    Status s = node->rt_->start_transport(options);
    if (!s.ok()) return s;
  }
  return node;
}

std::string Node::endpoint() const {
  return rt_->transport() ? rt_->transport()->endpoint() : std::string();
}
void Node::connect(const std::string& endpoint) { rt_->connect(endpoint); }

Status Node::connect(const std::string& endpoint, Timeout timeout) {
  transport::Transport* t = rt_->transport();
  if (!t)
    return Status(ErrorCode::kBadConfig,
                  "node " + std::string(name().name()) + " has no networking (no listen endpoint)");
  const std::string ep = transport::parse_peer_address(endpoint).endpoint;
  if (ep == t->endpoint()) return Status::Ok();
  auto linked = [&] {
    for (const transport::PeerInfo& p : t->peers()) {
      if (p.endpoint == ep) return true;
    }
    return false;
  };
  if (linked()) return Status::Ok();
  rt_->connect(endpoint);
  // The transport tells no one of a link by endpoint: look, with a pause that grows to 10 ms
  // (a process's pause parks only that process).
  const auto deadline = timeout.deadline_from_now();
  auto pause = std::chrono::milliseconds(1);
  while (!linked()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status(ErrorCode::kTimeout, "no link to " + ep + " within the timeout");
    }
    sleep_for(std::min<std::chrono::milliseconds>(
        pause, std::chrono::duration_cast<std::chrono::milliseconds>(
                   deadline - std::chrono::steady_clock::now()) +
                   std::chrono::milliseconds(1)));
    pause = std::min(pause * 2, std::chrono::milliseconds(10));
  }
  return Status::Ok();
}
std::vector<Atom> Node::nodes() const { return rt_->nodes(); }
NameStatus Node::register_name(std::string_view name, const Pid& pid) {
  return rt_->register_name(name, pid);
}
bool Node::unregister_name(std::string_view name) { return rt_->unregister_name(name); }
Pid Node::whereis(std::string_view name) const { return rt_->whereis(name); }
std::vector<std::string> Node::registered() const { return rt_->registered(); }
std::size_t detail::new_service_slot() {
  static std::atomic<std::size_t> next{0};
  std::size_t slot = next.fetch_add(1);
  NODUS_CHECK(slot < detail::Runtime::kServiceSlots);
  return slot;
}
void* Node::service_slot(std::size_t slot) const { return rt_->service(slot); }
void* Node::set_service_slot(std::size_t slot, std::shared_ptr<void> owner) {
  return rt_->set_service(slot, std::move(owner));
}
void Node::block_peer(std::string_view node) {
  if (auto* t = rt_->transport()) t->block_peer(std::string(node));
}
void Node::unblock_peer(std::string_view node) {
  if (auto* t = rt_->transport()) t->unblock_peer(std::string(node));
}
NetworkStats Node::network_stats() const {
  NetworkStats s;
  if (auto* t = rt_->transport()) {
    auto ts = t->stats();
    s.frames_in = ts.frames_in;
    s.frames_out = ts.frames_out;
    s.frames_rejected = ts.frames_rejected;
    s.auth_failures = ts.auth_failures;
    s.curve_refused = ts.curve_refused;
  }
  s.messages_rejected = rt_->remote_rejected();
  s.node_up_events = rt_->node_up_events();
  s.node_down_events = rt_->node_down_events();
  return s;
}

std::vector<PeerStats> Node::peers() const {
  std::vector<PeerStats> out;
  auto* t = rt_->transport();
  if (!t) return out;
  std::map<std::string, PeerStats> by_name;
  for (const auto& [name, traffic] : t->traffic()) {
    PeerStats& p = by_name[name];
    p.name = Atom(name);
    p.messages_in = traffic.data_in;
    p.messages_out = traffic.data_out;
  }
  for (const transport::PeerInfo& info : t->peers()) {
    PeerStats& p = by_name[info.name];
    p.name = Atom(info.name);
    p.endpoint = info.endpoint;
    p.up = true;
    p.hidden = info.hidden;
  }
  for (auto& [name, p] : by_name) out.push_back(std::move(p));
  return out;
}

CallLatency Node::call_latency() const { return rt_->call_latency(); }
Node::~Node() = default;

Atom Node::name() const { return rt_->name(); }
std::uint32_t Node::creation() const { return rt_->creation(); }
unsigned Node::schedulers() const { return rt_->scheduler().threads(); }
Ref Node::make_ref() { return rt_->make_ref(); }
std::size_t Node::process_count() const { return rt_->table().size(); }
void Node::shutdown(Timeout grace) { rt_->shutdown(grace); }
bool Node::step() { return rt_->scheduler().step(); }
std::size_t Node::run_until_idle(std::size_t max_steps) {
  std::size_t steps = 0;
  while (steps < max_steps && rt_->scheduler().step()) ++steps;
  return steps;
}

namespace {
ProcessInfo snapshot(detail::Process& p) {
  ProcessInfo info;
  info.pid = p.pid();
  info.registered_name = p.rt().registered_name(p.pid());
  info.behaviour = p.behaviour();
  info.type = p.type_name();
  info.mailbox_length = p.mailbox_length();
  info.messages_handled = p.messages_handled();
  info.memory_bytes = p.memory_estimate();
  info.waiting = p.waiting();
  info.trap_exit = p.trap_exit();
  info.links = p.link_count();
  info.monitors = p.monitor_count();
  info.dropped = p.dropped();
  return info;
}
}  // namespace

std::vector<ProcessInfo> Node::processes() const {
  std::vector<ProcessInfo> out;
  out.reserve(rt_->table().size());
  rt_->table().for_each([&](detail::Process& p) { out.push_back(snapshot(p)); });
  return out;
}

namespace detail {
Result<Message, Reason> call_message(const Dest& to, Message request, Timeout timeout, Kind kind);
}

Result<ProcessInfo, Reason> Node::process_info(const Pid& pid, Timeout timeout) {
  ProcessInfo info;
  {
    if (!rt_->is_local(pid)) return reasons::noproc();
    auto h = rt_->table().lookup(pid.id);
    if (!h) return reasons::noproc();
    info = snapshot(*h.get());
  }
  auto status = detail::call_message(pid, Term(), timeout, detail::Kind::kGetStatus);
  if (!status) return std::move(status).error();
  Message& m = status.value();
  info.status = m.is_term() ? m.term() : Term(atom(m.type_name()));
  return info;
}

}  // namespace nodus
