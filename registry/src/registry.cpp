#include "nodus/registry/registry.hpp"

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "nodus/node/detail/mutex.hpp"
#include "nodus/node/gen_server.hpp"

namespace nodus {

struct Registry::Partition {
  Atom registry;
  std::vector<Pid> listeners;
  Pid watcher;
  // Guards table, by_pid, monitored and size: callers write and read it directly; the watcher
  // removes the entries of processes that exit.
  mutable detail::SharedMutex mu;
  std::unordered_map<Term, std::vector<RegistryEntry>> table NODUS_GUARDED_BY(mu);
  // A key per entry of the pid.
  std::unordered_map<Pid, std::vector<Term>> by_pid NODUS_GUARDED_BY(mu);
  std::unordered_set<Pid> monitored NODUS_GUARDED_BY(mu);
  std::size_t size NODUS_GUARDED_BY(mu) = 0;

  void tell(const Term& msg) const {
    for (const Pid& l : listeners) nodus::send(l, msg);
  }
  // Forgets one of `pid`'s keys `key` (its entry was removed from table).
  void drop_key_of(const Pid& pid, const Term& key) NODUS_REQUIRES(mu) {
    auto it = by_pid.find(pid);
    if (it == by_pid.end()) return;
    auto k = std::find(it->second.begin(), it->second.end(), key);
    if (k != it->second.end()) it->second.erase(k);
    if (it->second.empty()) by_pid.erase(it);
  }
};

namespace {

// Watches the processes registered in one partition and removes their entries when they exit.
class PartitionWatcher : public GenServer {
 public:
  Action init(std::shared_ptr<Registry::Partition> part) {
    part_ = std::move(part);
    return ok();
  }
  Action handle_cast(Message& msg) override {
    if (auto m = msg.match({"monitor", _pid})) monitor(m[0].as_pid());
    return noreply();
  }
  Action handle_info(Message& msg) override {
    const Down* d = msg.get<Down>();
    if (!d) return noreply();
    std::vector<Term> gone;
    {
      detail::WriterLock lock(part_->mu);
      part_->monitored.erase(d->pid);
      auto it = part_->by_pid.find(d->pid);
      if (it != part_->by_pid.end()) {
        gone = std::move(it->second);
        part_->by_pid.erase(it);
      }
      for (const Term& key : gone) {
        auto t = part_->table.find(key);
        if (t == part_->table.end()) continue;
        auto& v = t->second;
        const std::size_t before = v.size();
        std::erase_if(v, [&](const RegistryEntry& e) { return e.pid == d->pid; });
        part_->size -= before - v.size();
        if (v.empty()) part_->table.erase(t);
      }
    }
    std::sort(gone.begin(), gone.end());
    gone.erase(std::unique(gone.begin(), gone.end()), gone.end());
    for (const Term& key : gone) part_->tell(tuple("unregister", part_->registry, key, d->pid));
    return noreply();
  }

 private:
  std::shared_ptr<Registry::Partition> part_;
};

Pid current_pid() { return has_self() ? self() : Pid{}; }

}  // namespace

Registry::Registry(RegistryOptions options)
    : options_(std::move(options)), name_(options_.name.empty() ? "registry" : options_.name) {}

Registry::~Registry() = default;

Result<std::shared_ptr<Registry>> Registry::start(Node& node, RegistryOptions options) {
  if (options.partitions == 0) return Status(ErrorCode::kBadArg, "a registry needs a partition");
  std::shared_ptr<Registry> r(new Registry(std::move(options)));
  r->node_ = &node;
  r->node_name_ = node.name();
  for (std::size_t i = 0; i < r->options_.partitions; ++i) {
    auto part = std::make_shared<Partition>();
    part->registry = r->name_;
    part->listeners = r->options_.listeners;
    auto w = nodus::start<PartitionWatcher>(node, part);
    if (!w) return Status(ErrorCode::kInternal, w.error().to_string());
    part->watcher = *w;
    r->parts_.push_back(std::move(part));
  }
  return r;
}

void Registry::stop() {
  for (auto& p : parts_) {
    if (p->watcher) (void)nodus::stop(p->watcher, reasons::shutdown());
    p->watcher = Pid{};
  }
}

Registry::Partition& Registry::partition_of(const Term& key) const {
  if (parts_.size() == 1) return *parts_[0];
  return *parts_[key.hash() % parts_.size()];
}

bool Registry::known_dead(const Pid& pid) const {
  return pid.node == node_name_ && !node_->is_process_alive(pid);
}

NameStatus Registry::add(const Term& key, const Pid& pid, Term value) const {
  if (!pid) return Status(ErrorCode::kBadArg, "register needs a process");
  Partition& p = partition_of(key);
  bool watch = false;
  Pid replaced;  // a holder that had exited, whose watcher had not removed it yet
  {
    detail::WriterLock lock(p.mu);
    auto& v = p.table[key];
    if (options_.keys == RegistryKeys::kUnique && !v.empty()) {
      if (!known_dead(v.front().pid)) return NameStatus::taken(v.front().pid);
      replaced = v.front().pid;
      p.drop_key_of(replaced, key);
      v.clear();
      --p.size;
    }
    v.push_back(RegistryEntry{pid, value});
    p.by_pid[pid].push_back(key);
    ++p.size;
    watch = p.monitored.insert(pid).second;
  }
  if (watch) cast(p.watcher, tuple("monitor", pid));
  if (replaced) p.tell(tuple("unregister", name_, key, replaced));
  p.tell(tuple("register", name_, key, pid, std::move(value)));
  return Status::Ok();
}

std::size_t Registry::remove_if(const Term& key, const Pid& pid,
                                const std::function<bool(const Term&)>& which) const {
  Partition& p = partition_of(key);
  std::size_t n = 0;
  {
    detail::WriterLock lock(p.mu);
    auto t = p.table.find(key);
    if (t == p.table.end()) return 0;
    auto& v = t->second;
    for (auto it = v.begin(); it != v.end();) {
      if (it->pid == pid && which(it->value)) {
        it = v.erase(it);
        p.drop_key_of(pid, key);
        ++n;
      } else {
        ++it;
      }
    }
    p.size -= n;
    if (v.empty()) p.table.erase(t);
  }
  if (n > 0) p.tell(tuple("unregister", name_, key, pid));
  return n;
}

NameStatus Registry::register_key(const Term& key, Term value) {
  return add(key, current_pid(), std::move(value));
}

std::size_t Registry::unregister(const Term& key) {
  return remove_if(key, current_pid(), [](const Term&) { return true; });
}

std::size_t Registry::unregister_match(const Term& key, const Pattern& pattern) {
  return remove_if(key, current_pid(),
                   [&](const Term& v) { return static_cast<bool>(v.match(pattern)); });
}

Result<Term> Registry::update_value(const Term& key, const std::function<Term(const Term&)>& fn) {
  const Pid me = current_pid();
  Partition& p = partition_of(key);
  detail::WriterLock lock(p.mu);
  auto t = p.table.find(key);
  if (t != p.table.end()) {
    for (RegistryEntry& e : t->second) {
      if (e.pid != me) continue;
      e.value = fn(e.value);
      return e.value;
    }
  }
  return Status(ErrorCode::kNotFound, key.to_string());
}

std::vector<RegistryEntry> Registry::lookup(const Term& key) const {
  std::vector<RegistryEntry> out;
  const Partition& p = partition_of(key);
  detail::ReaderLock lock(p.mu);
  auto t = p.table.find(key);
  if (t == p.table.end()) return out;
  for (const RegistryEntry& e : t->second) {
    if (!known_dead(e.pid)) out.push_back(e);
  }
  return out;
}

std::vector<RegistryEntry> Registry::match(const Term& key, const Pattern& pattern) const {
  std::vector<RegistryEntry> out;
  const Partition& p = partition_of(key);
  detail::ReaderLock lock(p.mu);
  auto t = p.table.find(key);
  if (t == p.table.end()) return out;
  for (const RegistryEntry& e : t->second) {
    if (e.value.match(pattern) && !known_dead(e.pid)) out.push_back(e);
  }
  return out;
}

std::size_t Registry::count() const {
  std::size_t n = 0;
  for (const auto& p : parts_) {
    detail::ReaderLock lock(p->mu);
    n += p->size;
  }
  return n;
}

std::size_t Registry::count_match(const Term& key, const Pattern& pattern) const {
  const Partition& p = partition_of(key);
  detail::ReaderLock lock(p.mu);
  auto t = p.table.find(key);
  if (t == p.table.end()) return 0;
  return static_cast<std::size_t>(std::count_if(
      t->second.begin(), t->second.end(),
      [&](const RegistryEntry& e) { return static_cast<bool>(e.value.match(pattern)); }));
}

bool Registry::dispatch(const Term& key,
                        const std::function<void(const std::vector<RegistryEntry>&)>& fn) const {
  std::vector<RegistryEntry> entries = lookup(key);
  if (entries.empty()) return false;
  fn(entries);
  return true;
}

std::vector<Term> Registry::keys(const Pid& pid) const {
  std::vector<Term> out;
  for (const auto& p : parts_) {
    detail::ReaderLock lock(p->mu);
    auto it = p->by_pid.find(pid);
    if (it != p->by_pid.end()) out.insert(out.end(), it->second.begin(), it->second.end());
  }
  return out;
}

std::vector<Pid> Registry::partitions() const {
  std::vector<Pid> out;
  for (const auto& p : parts_) out.push_back(p->watcher);
  return out;
}

Pid Registry::whereis_name(Node&, const Term& key) const {
  const Partition& p = partition_of(key);
  detail::ReaderLock lock(p.mu);
  auto t = p.table.find(key);
  if (t == p.table.end() || t->second.size() != 1) return Pid{};
  const Pid& holder = t->second.front().pid;
  return known_dead(holder) ? Pid{} : holder;
}

NameStatus Registry::register_name(Node&, const Term& key, const Pid& pid) const {
  if (options_.keys != RegistryKeys::kUnique) {
    return Status(ErrorCode::kBadArg, "via names need a registry with unique keys");
  }
  return add(key, pid, Term());
}

bool Registry::unregister_name(Node&, const Term& key) const {
  const Pid holder = [&] {
    const Partition& p = partition_of(key);
    detail::ReaderLock lock(p.mu);
    auto t = p.table.find(key);
    return t == p.table.end() || t->second.empty() ? Pid{} : t->second.front().pid;
  }();
  if (!holder) return false;
  return remove_if(key, holder, [](const Term&) { return true; }) > 0;
}

std::string Registry::describe(const Term& key) const {
  std::string out = "via(";
  out += name_.name();
  out += ", ";
  out += key.to_string();
  out += ")";
  return out;
}

}  // namespace nodus
