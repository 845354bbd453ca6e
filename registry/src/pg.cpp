// pg: one GenServer per scope per node ("nodus_pg_<scope>") and the membership table it shares
// with readers. Protocol: docs/protocol.md, "Process groups".
#include "nodus/registry/pg.hpp"

#include <algorithm>
#include <atomic>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "nodus/node/detail/mutex.hpp"
#include "nodus/node/gen_server.hpp"
#include "pg_protocol.hpp"

namespace nodus::pg {

namespace {

namespace proto = pg_protocol;

struct ScopeState {
  Pid server;
  // Guards groups: the scope's server writes, readers read.
  mutable detail::SharedMutex mu;
  std::map<Term, std::vector<Pid>> groups NODUS_GUARDED_BY(mu);
  // Counters for pg::stats: written by the server, read by anyone.
  std::atomic<std::uint64_t> discovers{0};
  std::atomic<std::uint64_t> ignored{0};
};

struct Scopes {
  // Guards by_name: scopes are added at start and never removed.
  detail::Mutex mu;
  std::map<std::string, std::shared_ptr<ScopeState>, std::less<>> by_name NODUS_GUARDED_BY(mu);
};

Scopes& scopes_of(Node& node) {
  Scopes* s = node.service<Scopes>();
  if (!s) s = node.set_service(std::make_shared<Scopes>());
  return *s;
}

std::shared_ptr<ScopeState> scope_of(Node& node, std::string_view scope) {
  Scopes& s = scopes_of(node);
  detail::MutexLock lock(s.mu);
  auto it = s.by_name.find(scope);
  return it == s.by_name.end() ? nullptr : it->second;
}

Term pids_term(const std::vector<Pid>& pids) {
  List l;
  for (const Pid& p : pids) l.emplace_back(p);
  return Term(std::move(l));
}

class ScopeServer : public GenServer {
 public:
  Action init(Node* node, std::string scope, std::shared_ptr<ScopeState> st) {
    node_ = node;
    scope_ = Atom(scope);
    name_ = proto::server_name(scope);
    st_ = std::move(st);
    me_ = node_->name();
    monitor_nodes(true);
    for (Atom peer : node_->nodes()) discover(peer, true);
    return ok();
  }

  Action handle_call(Message& msg, From from) override {
    return msg.visit(
        [&](const proto::JoinRequest& r) { return reply(join(r.group, r.pid)); },
        [&](const proto::LeaveRequest& r) { return reply(leave(r.group, r.pid)); },
        [&](const proto::MonitorRequest& r) {
          watchers_[r.group].insert(r.watcher);
          detail::ReaderLock lock(st_->mu);
          auto it = st_->groups.find(r.group);
          return reply(proto::Reply{Status::Ok(),
                                    it == st_->groups.end() ? std::vector<Pid>{} : it->second});
        },
        [&](const proto::DemonitorRequest& r) {
          watchers_[r.group].erase(r.watcher);
          return reply(proto::Reply{});
        },
        [&](Message& other) { return GenServer::handle_call(other, from); });
  }

  Action handle_info(Message& msg) override {
    msg.visit([&](const NodeUp& up) { discover(up.node, true); },
              [&](const NodeDown& down) {
                peers_.erase(down.node);
                drop_node(down.node);
              },
              [&](const Down& d) { this->down(d); },
              [&](const proto::Discover& m) {
                if (linked_member(m.node)) discovered(m);
              },
              [&](const proto::Join& m) {
                if (member(m.node) && peers_.count(m.node)) add(m.group, m.pids);
              },
              [&](const proto::Leave& m) {
                if (member(m.node) && peers_.count(m.node)) remove(m.group, m.pids);
              },
              [&](const Message&) {});  // anything else: not ours, ignored
    return noreply();
  }

 private:
  proto::Reply join(const Term& group, const Pid& pid) {
    add(group, {pid});
    if (!monitored_.count(pid)) {
      monitored_.insert(pid);
      nodus::monitor(pid);
    }
    local_[pid].push_back(group);
    broadcast(proto::Join{me_, group, {pid}});
    return proto::Reply{};
  }

  proto::Reply leave(const Term& group, const Pid& pid) {
    auto it = local_.find(pid);
    auto g = it == local_.end() ? std::vector<Term>::iterator{}
                                : std::find(it->second.begin(), it->second.end(), group);
    if (it == local_.end() || g == it->second.end()) {
      return proto::Reply{Status(ErrorCode::kNotFound, pid.to_string()), {}};
    }
    it->second.erase(g);
    remove(group, {pid});
    broadcast(proto::Leave{me_, group, {pid}});
    return proto::Reply{};
  }

  void down(const Down& d) {
    if (auto server = peer_servers_.find(d.pid); server != peer_servers_.end()) {
      // A peer's scope server exited while its node stays up: nobody tells us of its members'
      // leaves any more, so they go now (as in OTP's pg); a new server introduces itself.
      const Atom peer = server->second;
      peer_servers_.erase(server);
      peers_.erase(peer);
      drop_node(peer);
      return;
    }
    monitored_.erase(d.pid);
    auto it = local_.find(d.pid);
    if (it == local_.end()) return;
    std::vector<Term> groups = std::move(it->second);
    local_.erase(it);
    for (const Term& g : groups) {
      remove(g, {d.pid});
      broadcast(proto::Leave{me_, g, {d.pid}});
    }
  }

  void discovered(const proto::Discover& m) {
    const Atom peer = m.node;
    const bool fresh = peers_.insert(peer).second;
    if (m.server.node == peer && !peer_servers_.count(m.server)) {
      peer_servers_[m.server] = peer;
      nodus::monitor(m.server);
    }
    if (fresh || m.want_answer) discover(peer, false);  // ours may have changed since
    // Its members anew (what it had before a partition may have changed), only its own.
    std::map<Term, std::vector<Pid>> theirs;
    for (const proto::Members& gm : m.groups) {
      for (const Pid& p : gm.pids) {
        if (p.node == peer) theirs[gm.group].push_back(p);
      }
    }
    sync_node(peer, std::move(theirs));
    st_->discovers.fetch_add(1, std::memory_order_relaxed);
  }

  // Makes `node`'s members equal to `theirs` (a pid once per join) as a difference from what
  // this node had of it, in one step under the lock: a Discover that changes nothing (the
  // answer to ours, after its own) tells watchers nothing, and members() never reads a member
  // that stays as gone in between. OTP's pg applies a peer's state the same way.
  void sync_node(Atom node, std::map<Term, std::vector<Pid>> theirs) {
    std::vector<std::pair<Term, std::vector<Pid>>> joined, left;
    {
      detail::WriterLock lock(st_->mu);
      for (auto it = st_->groups.begin(); it != st_->groups.end();) {
        std::vector<Pid>& all = it->second;
        std::vector<Pid> had;
        for (const Pid& p : all) {
          if (p.node == node) had.push_back(p);
        }
        std::vector<Pid> now;
        if (auto t = theirs.find(it->first); t != theirs.end()) {
          now = std::move(t->second);
          theirs.erase(t);
        }
        std::sort(had.begin(), had.end());
        std::sort(now.begin(), now.end());
        std::vector<Pid> gone, fresh;
        std::set_difference(had.begin(), had.end(), now.begin(), now.end(),
                            std::back_inserter(gone));
        std::set_difference(now.begin(), now.end(), had.begin(), had.end(),
                            std::back_inserter(fresh));
        for (const Pid& p : gone) all.erase(std::find(all.begin(), all.end(), p));
        all.insert(all.end(), fresh.begin(), fresh.end());
        if (!gone.empty()) left.emplace_back(it->first, std::move(gone));
        if (!fresh.empty()) joined.emplace_back(it->first, std::move(fresh));
        it = all.empty() ? st_->groups.erase(it) : std::next(it);
      }
      for (auto& [group, pids] : theirs) {  // groups this node did not have yet
        if (pids.empty()) continue;
        auto& all = st_->groups[group];
        all.insert(all.end(), pids.begin(), pids.end());
        joined.emplace_back(group, std::move(pids));
      }
    }
    for (const auto& [g, pids] : left) notify("pg_leave", g, pids);
    for (const auto& [g, pids] : joined) notify("pg_join", g, pids);
  }

  // Whether a message from `node` may change this node's groups: not when `node` is a hidden
  // node, which is no member (docs/protocol.md section 11). Counted when not.
  bool member(Atom node) {
    if (!node_->is_hidden(node)) return true;
    st_->ignored.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  // For a Discover, which makes its sender a peer: the sender must be a member whose link this
  // node counts as up. A hidden node never is; a Discover that overtook its sender's link
  // coming up here is ignored too, and its state comes again in the answer to the Discover
  // this node sends when it sees the link up. Counted when not.
  bool linked_member(Atom node) {
    const std::vector<Atom> up = node_->nodes();  // hidden nodes excepted
    if (std::find(up.begin(), up.end(), node) != up.end()) return true;
    st_->ignored.fetch_add(1, std::memory_order_relaxed);
    return false;
  }

  template <class M>
  void broadcast(const M& m) {
    for (Atom peer : peers_) send(named(name_, peer.name()), M(m));
  }

  void discover(Atom peer, bool want_answer) {
    std::map<Term, std::vector<Pid>> mine;
    for (const auto& [pid, groups] : local_) {
      for (const Term& g : groups) mine[g].push_back(pid);
    }
    proto::Discover d{me_, {}, want_answer, self()};
    for (auto& [g, pids] : mine) d.groups.push_back(proto::Members{g, std::move(pids)});
    send(named(name_, peer.name()), std::move(d));
  }

  void notify(const char* what, const Term& group, const std::vector<Pid>& pids) {
    if (pids.empty()) return;
    auto it = watchers_.find(group);
    if (it == watchers_.end()) return;
    for (const Pid& w : it->second) send(w, tuple(what, scope_, group, pids_term(pids)));
  }

  void add(const Term& group, const std::vector<Pid>& pids) {
    {
      detail::WriterLock lock(st_->mu);
      auto& v = st_->groups[group];
      v.insert(v.end(), pids.begin(), pids.end());
    }
    notify("pg_join", group, pids);
  }

  void remove(const Term& group, const std::vector<Pid>& pids) {
    std::vector<Pid> gone;
    {
      detail::WriterLock lock(st_->mu);
      auto it = st_->groups.find(group);
      if (it == st_->groups.end()) return;
      for (const Pid& p : pids) {
        auto f = std::find(it->second.begin(), it->second.end(), p);
        if (f == it->second.end()) continue;
        it->second.erase(f);
        gone.push_back(p);
      }
      if (it->second.empty()) st_->groups.erase(it);
    }
    notify("pg_leave", group, gone);
  }

  void drop_node(Atom node) {
    std::vector<std::pair<Term, std::vector<Pid>>> gone;
    {
      detail::WriterLock lock(st_->mu);
      for (auto it = st_->groups.begin(); it != st_->groups.end();) {
        std::vector<Pid> out;
        std::erase_if(it->second, [&](const Pid& p) {
          if (p.node != node) return false;
          out.push_back(p);
          return true;
        });
        if (!out.empty()) gone.emplace_back(it->first, std::move(out));
        it = it->second.empty() ? st_->groups.erase(it) : std::next(it);
      }
    }
    for (const auto& [g, pids] : gone) notify("pg_leave", g, pids);
  }

  Node* node_ = nullptr;
  Atom scope_;
  std::string name_;
  std::shared_ptr<ScopeState> st_;
  Atom me_;
  std::set<Atom> peers_;
  std::map<Pid, std::vector<Term>> local_;  // this node's members and their groups
  std::set<Pid> monitored_;
  std::map<Pid, Atom> peer_servers_;  // the peers' scope servers, monitored
  std::map<Term, std::set<Pid>> watchers_;
};

// Asks `node`'s server of `scope`. Errors: kNotFound when the scope does not run there; the
// call's failure; the server's answer.
Result<std::vector<Pid>> ask(Node& node, std::string_view scope, Message request) {
  auto st = scope_of(node, scope);
  if (!st) return Status(ErrorCode::kNotFound, "pg scope " + std::string(scope) + " not started");
  auto r = call_as<proto::Reply>(st->server, std::move(request));
  if (!r) return Status(ErrorCode::kTimeout, r.error().to_string());
  if (!r->status.ok()) return r->status;
  return std::move(r->members);
}

}  // namespace

Status start(Node& node, std::string_view scope) {
  if (Status s = proto::register_messages(); !s.ok()) return s;
  Scopes& s = scopes_of(node);
  std::shared_ptr<ScopeState> st;
  {
    detail::MutexLock lock(s.mu);
    auto it = s.by_name.find(scope);
    // Running already; or its server exited: a new one starts afresh (members join again).
    if (it != s.by_name.end() && node.whereis(proto::server_name(scope))) return Status::Ok();
    st = std::make_shared<ScopeState>();
    s.by_name.insert_or_assign(std::string(scope), st);
  }
  SpawnOptions o;
  o.name = proto::server_name(scope);
  auto server = nodus::start<ScopeServer>(node, o, &node, std::string(scope), st);
  if (!server) return Status(ErrorCode::kInternal, server.error().to_string());
  st->server = *server;
  return Status::Ok();
}

Status join(Node& node, std::string_view scope, const Term& group, const Pid& pid) {
  if (pid.node != node.name() || pid.creation != node.creation()) {
    return Status(ErrorCode::kBadArg,
                  pid.to_string() + " is not on node " + std::string(node.name().name()));
  }
  auto r = ask(node, scope, proto::JoinRequest{group, pid});
  return r.ok() ? Status::Ok() : r.error();
}

Status leave(Node& node, std::string_view scope, const Term& group, const Pid& pid) {
  auto r = ask(node, scope, proto::LeaveRequest{group, pid});
  return r.ok() ? Status::Ok() : r.error();
}

std::vector<Pid> members(Node& node, std::string_view scope, const Term& group) {
  auto st = scope_of(node, scope);
  if (!st) return {};
  std::vector<Pid> out;
  {
    detail::ReaderLock lock(st->mu);
    auto it = st->groups.find(group);
    if (it == st->groups.end()) return {};
    out = it->second;
  }
  // A member of this node that has exited is none, even before the server handled its exit.
  std::erase_if(out,
                [&](const Pid& p) { return p.node == node.name() && !node.is_process_alive(p); });
  std::stable_sort(out.begin(), out.end(),
                   [](const Pid& a, const Pid& b) { return a.node < b.node; });
  return out;
}

std::vector<Pid> local_members(Node& node, std::string_view scope, const Term& group) {
  std::vector<Pid> out = members(node, scope, group);
  std::erase_if(out, [&](const Pid& p) { return p.node != node.name(); });
  return out;
}

std::vector<Term> which_groups(Node& node, std::string_view scope) {
  auto st = scope_of(node, scope);
  if (!st) return {};
  detail::ReaderLock lock(st->mu);
  std::vector<Term> out;
  for (const auto& [g, pids] : st->groups) out.push_back(g);
  return out;
}

Result<std::vector<Pid>> monitor(Node& node, std::string_view scope, const Term& group) {
  return ask(node, scope, proto::MonitorRequest{group, self()});
}

Stats stats(Node& node, std::string_view scope) {
  Stats out;
  auto st = scope_of(node, scope);
  if (!st) return out;
  out.discovers = st->discovers.load(std::memory_order_relaxed);
  out.ignored = st->ignored.load(std::memory_order_relaxed);
  return out;
}

void demonitor(Node& node, std::string_view scope, const Term& group) {
  (void)ask(node, scope, proto::DemonitorRequest{group, self()});
}

}  // namespace nodus::pg
