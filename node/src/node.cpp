// Node (node.hpp): the public face of a runtime. Each member asks the runtime behind it.
#include "nodus/node/node.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>

#include "check.hpp"
#include "process_impl.hpp"
#include "runtime.hpp"

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
  // Up at the transport, and taken up by this runtime (what nodes() and sends go by).
  auto linked = [&] {
    for (const transport::PeerInfo& p : t->peers()) {
      if (p.endpoint == ep) return rt_->is_peer(Atom(p.name));
    }
    return false;
  };
  if (linked()) return Status::Ok();
  const std::uint64_t auth_failures = t->stats().auth_failures;
  rt_->connect(endpoint);
  // The transport tells no one of a link by endpoint: look, with a pause that grows to 10 ms
  // (a process's pause parks only that process).
  const auto deadline = timeout.deadline_from_now();
  auto pause = std::chrono::milliseconds(1);
  while (!linked()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status(ErrorCode::kTimeout, "no link to " + ep + " within the timeout");
    }
    if (t->stats().auth_failures != auth_failures) {
      return Status(ErrorCode::kAuth, "authentication with " + ep +
                                          " failed: is the cookie (or the CURVE key) the same?");
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
bool Node::is_hidden(Atom node) const { return rt_->is_hidden_peer(node); }
bool Node::is_process_alive(const Pid& pid) const {
  return rt_->is_local(pid) && rt_->table().alive(pid.id);
}
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
    s.connections_closed = ts.connections_closed;
  }
  s.messages_rejected = rt_->remote_rejected();
  s.node_up_events = rt_->node_up_events();
  s.node_down_events = rt_->node_down_events();
  s.hidden_up_events = rt_->hidden_up_events();
  s.hidden_down_events = rt_->hidden_down_events();
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
