// SimCluster (sim_cluster.hpp): Nodes on a SimNetwork, driven one event at a time.
#include "sim_cluster.hpp"

#include <algorithm>
#include <cstdlib>
#include <utility>

#include "nodus/node/process.hpp"

namespace nodus::testing {

SimCluster::SimCluster(std::uint64_t seed, transport::SimFaults faults)
    : net_(std::make_unique<transport::SimNetwork>(seed, faults)), start_(net_->now()) {
  // A plain thread that waits on a node moves the whole simulation, nodes included.
  net_->clock()->set_driver([this] { return run_one(); });
}

SimCluster::~SimCluster() {
  // Newest first; each node's shutdown runs the others meanwhile (they hear its BYE).
  while (!members_.empty()) {
    std::unique_ptr<Node> node = std::move(members_.back().node);
    members_.pop_back();
    node.reset();
  }
  net_->clock()->set_driver(nullptr);
}

Node& SimCluster::add(const std::string& name, const std::vector<std::string>& seeds,
                      const std::function<void(NodeOptions&)>& tweak) {
  NodeOptions o;
  o.name = name;
  o.creation = next_creation_++;
  o.manual_scheduling = true;
  o.listen = "sim://" + name;
  o.cookie = "sim";
  for (const std::string& s : seeds) o.seeds.push_back("sim://" + s);
  o.log = [this, name](const std::string& line) { logs_.push_back(name + ": " + line); };
  if (tweak) tweak(o);
  o.manual_scheduling = true;  // whatever tweak did: the simulation steps the node
  o.clock = net_->clock();
  o.transport_factory = net_->factory();
  auto node = Node::start(std::move(o));
  if (!node.ok()) {
    std::fprintf(stderr, "SimCluster: node %s cannot start: %s\n", name.c_str(),
                 node.error().to_string().c_str());
    std::abort();
  }
  members_.push_back(Member{name, std::move(node.value())});
  return *members_.back().node;
}

SimCluster::Member* SimCluster::find(const std::string& name) {
  for (Member& m : members_) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

const SimCluster::Member* SimCluster::find(const std::string& name) const {
  for (const Member& m : members_) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

Node& SimCluster::node(const std::string& name) {
  Member* m = find(name);
  if (!m) {
    std::fprintf(stderr, "SimCluster: no node %s\n", name.c_str());
    std::abort();
  }
  return *m->node;
}

std::vector<std::string> SimCluster::names() const {
  std::vector<std::string> out;
  for (const Member& m : members_) out.push_back(m.name);
  return out;
}

std::chrono::milliseconds SimCluster::elapsed() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(now() - start_);
}

bool SimCluster::run_one() {
  // What can happen now, in an order the seed chooses: each live node's next slice, and the
  // network's next message or tick (members_.size() stands for the network).
  order_.resize(members_.size() + 1);
  for (std::size_t i = 0; i < order_.size(); ++i) order_[i] = i;
  std::shuffle(order_.begin(), order_.end(), net_->random());
  for (std::size_t k : order_) {
    if (k == members_.size()) {
      if (net_->step()) return true;
      continue;
    }
    Member& m = members_[k];
    if (net_->paused(m.name)) continue;
    if (m.node->step()) return true;
  }
  // Nothing can happen now: on to the next due moment (a message, a tick, a timer).
  std::optional<TimePoint> next = net_->next_due();
  std::optional<TimePoint> wake = net_->clock()->next_wakeup();
  if (!next || (wake && *wake < *next)) next = wake;
  if (!next) return false;
  net_->advance_to(*next);
  return true;
}

bool SimCluster::run_until(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  const TimePoint end = now() + limit;
  while (!done()) {
    if (now() > end) return done();
    if (!run_one()) {
      if (now() >= end) return done();
      net_->advance_to(end);  // nothing will happen before: every node paused or idle
    }
  }
  return true;
}

void SimCluster::run_for(std::chrono::milliseconds d) {
  const TimePoint end = now() + d;
  run_until([&] { return now() >= end; }, d);
}

bool SimCluster::meshed() const {
  for (const Member& m : members_) {
    if (net_->paused(m.name)) continue;
    const std::vector<Atom> linked = m.node->nodes();
    for (const Member& other : members_) {
      if (&other == &m || net_->paused(other.name)) continue;
      if (std::find(linked.begin(), linked.end(), Atom(other.name)) == linked.end()) return false;
    }
  }
  return true;
}

void SimCluster::pause(const std::string& name) { net_->pause(name); }

void SimCluster::resume(const std::string& name) { net_->resume(name); }

void SimCluster::stop(const std::string& name) {
  auto it = std::find_if(members_.begin(), members_.end(),
                         [&](const Member& m) { return m.name == name; });
  if (it == members_.end()) return;
  std::unique_ptr<Node> node = std::move(it->node);
  members_.erase(it);
  node.reset();  // a graceful shutdown: the others hear its BYE meanwhile
}

void SimCluster::crash(const std::string& name) {
  auto it = std::find_if(members_.begin(), members_.end(),
                         [&](const Member& m) { return m.name == name; });
  if (it == members_.end()) return;
  net_->crash(name);  // silent from now on: no BYE, nothing in or out
  std::unique_ptr<Node> node = std::move(it->node);
  members_.erase(it);
  node.reset();  // its processes stop; the others find out by down_after
}

Pid SimCluster::spawn(const std::string& name, std::function<void()> body) {
  return nodus::spawn(node(name), std::move(body));
}

}  // namespace nodus::testing
