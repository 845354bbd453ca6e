// pg: one GenServer per scope per node ("nodus_pg_<scope>") and the membership table it shares
// with readers. Protocol: docs/protocol.md, "Process groups".
#include "nodus/registry/pg.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>

#include "nodus/node/gen_server.hpp"

namespace nodus::pg {

namespace {

struct ScopeState {
  Pid server;
  // Guards groups: the scope's server writes, readers read.
  mutable std::shared_mutex mu;
  std::map<Term, std::vector<Pid>> groups;
};

struct Scopes {
  // Guards by_name: scopes are added at start and never removed.
  std::mutex mu;
  std::map<std::string, std::shared_ptr<ScopeState>, std::less<>> by_name;
};

std::size_t scopes_slot() {
  static const std::size_t slot = Node::new_service_slot();
  return slot;
}

Scopes& scopes_of(Node& node) {
  void* s = node.service(scopes_slot());
  if (!s) s = node.set_service(scopes_slot(), std::make_shared<Scopes>());
  return *static_cast<Scopes*>(s);
}

std::shared_ptr<ScopeState> scope_of(Node& node, std::string_view scope) {
  Scopes& s = scopes_of(node);
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.by_name.find(scope);
  return it == s.by_name.end() ? nullptr : it->second;
}

std::string server_name(std::string_view scope) {
  std::string n = "nodus_pg_";
  n += scope;
  return n;
}

Term pids_term(const std::vector<Pid>& pids) {
  List l;
  for (const Pid& p : pids) l.emplace_back(p);
  return Term(std::move(l));
}

std::vector<Pid> pids_of(const Term& t) {
  std::vector<Pid> out;
  if (!t.is_list()) return out;
  for (const Term& p : t.as_list()) {
    if (p.is_pid()) out.push_back(p.as_pid());
  }
  return out;
}

class ScopeServer : public GenServer {
 public:
  Action init(Node* node, std::string scope, std::shared_ptr<ScopeState> st) {
    node_ = node;
    scope_ = Atom(scope);
    name_ = server_name(scope);
    st_ = std::move(st);
    me_ = node_->name();
    monitor_nodes(true);
    for (Atom peer : node_->nodes()) discover(peer, true);
    return ok();
  }

  Action handle_call(Message& msg, From from) override {
    if (auto m = msg.match({"join", _, _pid})) {
      const Pid pid = m[1].as_pid();
      add(m[0], {pid});
      if (!monitored_.count(pid)) {
        monitored_.insert(pid);
        nodus::monitor(pid);
      }
      local_[pid].push_back(m[0]);
      broadcast(tuple("pg_join", me_, m[0], pids_term({pid})));
      return reply("ok");
    }
    if (auto m = msg.match({"leave", _, _pid})) {
      const Pid pid = m[1].as_pid();
      auto it = local_.find(pid);
      if (it == local_.end()) return reply("not_found");
      auto g = std::find(it->second.begin(), it->second.end(), m[0]);
      if (g == it->second.end()) return reply("not_found");
      it->second.erase(g);
      remove(m[0], {pid});
      broadcast(tuple("pg_leave", me_, m[0], pids_term({pid})));
      return reply("ok");
    }
    if (auto m = msg.match({"monitor", _, _pid})) {
      watchers_[m[0]].insert(m[1].as_pid());
      std::shared_lock lock(st_->mu);
      auto it = st_->groups.find(m[0]);
      return reply(pids_term(it == st_->groups.end() ? std::vector<Pid>{} : it->second));
    }
    if (auto m = msg.match({"demonitor", _, _pid})) {
      watchers_[m[0]].erase(m[1].as_pid());
      return reply("ok");
    }
    return GenServer::handle_call(msg, from);
  }

  Action handle_info(Message& msg) override {
    if (const NodeUp* up = msg.get<NodeUp>()) {
      discover(up->node, true);
      return noreply();
    }
    if (const NodeDown* down = msg.get<NodeDown>()) {
      peers_.erase(down->node);
      drop_node(down->node);
      return noreply();
    }
    if (const Down* d = msg.get<Down>()) {
      if (auto server = peer_servers_.find(d->pid); server != peer_servers_.end()) {
        // A peer's scope server exited while its node stays up: nobody tells us of its members'
        // leaves any more, so they go now (as in OTP's pg); a new server introduces itself.
        const Atom peer = server->second;
        peer_servers_.erase(server);
        peers_.erase(peer);
        drop_node(peer);
        return noreply();
      }
      monitored_.erase(d->pid);
      auto it = local_.find(d->pid);
      if (it == local_.end()) return noreply();
      std::vector<Term> groups = std::move(it->second);
      local_.erase(it);
      for (const Term& g : groups) {
        remove(g, {d->pid});
        broadcast(tuple("pg_leave", me_, g, pids_term({d->pid})));
      }
      return noreply();
    }
    if (auto m = msg.match({"pg_discover", _atom, _list, _atom, _pid})) {
      const Atom peer = m[0].as_atom();
      const bool fresh = peers_.insert(peer).second;
      if (const Pid server = m[3].as_pid(); server.node == peer && !peer_servers_.count(server)) {
        peer_servers_[server] = peer;
        nodus::monitor(server);
      }
      if (fresh || m[2].is_atom("true")) discover(peer, false);  // ours may have changed since
      drop_node(peer);  // its members anew: what it had before a partition may have changed
      for (const Term& gm : m[1].as_list()) {
        if (gm.match({_, _list})) add(gm[0], pids_of(gm[1]));
      }
      return noreply();
    }
    if (auto m = msg.match({"pg_join", _atom, _, _list})) {
      if (peers_.count(m[0].as_atom())) add(m[1], pids_of(m[2]));
      return noreply();
    }
    if (auto m = msg.match({"pg_leave", _atom, _, _list})) {
      if (peers_.count(m[0].as_atom())) remove(m[1], pids_of(m[2]));
    }
    return noreply();
  }

 private:
  void broadcast(const Term& t) {
    for (Atom peer : peers_) send(named(name_, peer.name()), t);
  }

  void discover(Atom peer, bool want_answer) {
    std::map<Term, std::vector<Pid>> mine;
    for (const auto& [pid, groups] : local_) {
      for (const Term& g : groups) mine[g].push_back(pid);
    }
    List l;
    for (auto& [g, pids] : mine) l.push_back(tuple(g, pids_term(pids)));
    send(named(name_, peer.name()),
         tuple("pg_discover", me_, Term(std::move(l)), Term(want_answer), self()));
  }

  void notify(const char* what, const Term& group, const std::vector<Pid>& pids) {
    if (pids.empty()) return;
    auto it = watchers_.find(group);
    if (it == watchers_.end()) return;
    for (const Pid& w : it->second) send(w, tuple(what, scope_, group, pids_term(pids)));
  }

  void add(const Term& group, const std::vector<Pid>& pids) {
    {
      std::unique_lock lock(st_->mu);
      auto& v = st_->groups[group];
      v.insert(v.end(), pids.begin(), pids.end());
    }
    notify("pg_join", group, pids);
  }

  void remove(const Term& group, const std::vector<Pid>& pids) {
    std::vector<Pid> gone;
    {
      std::unique_lock lock(st_->mu);
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
      std::unique_lock lock(st_->mu);
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

Result<Term> server_call(Node& node, std::string_view scope, Term request) {
  auto st = scope_of(node, scope);
  if (!st) return Status(ErrorCode::kNotFound, "pg scope " + std::string(scope) + " not started");
  auto r = call(st->server, std::move(request));
  if (!r) return Status(ErrorCode::kTimeout, r.error().to_string());
  return *r;
}

}  // namespace

Status start(Node& node, std::string_view scope) {
  Scopes& s = scopes_of(node);
  std::shared_ptr<ScopeState> st;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.by_name.find(scope);
    // Running already; or its server exited: a new one starts afresh (members join again).
    if (it != s.by_name.end() && node.whereis(server_name(scope))) return Status::Ok();
    st = std::make_shared<ScopeState>();
    s.by_name.insert_or_assign(std::string(scope), st);
  }
  SpawnOptions o;
  o.name = server_name(scope);
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
  auto r = server_call(node, scope, tuple("join", group, pid));
  return r.ok() ? Status::Ok() : r.error();
}

Status leave(Node& node, std::string_view scope, const Term& group, const Pid& pid) {
  auto r = server_call(node, scope, tuple("leave", group, pid));
  if (!r.ok()) return r.error();
  return *r == Term("ok") ? Status::Ok() : Status(ErrorCode::kNotFound, pid.to_string());
}

std::vector<Pid> members(Node& node, std::string_view scope, const Term& group) {
  auto st = scope_of(node, scope);
  if (!st) return {};
  std::shared_lock lock(st->mu);
  auto it = st->groups.find(group);
  if (it == st->groups.end()) return {};
  std::vector<Pid> out = it->second;
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
  std::shared_lock lock(st->mu);
  std::vector<Term> out;
  for (const auto& [g, pids] : st->groups) out.push_back(g);
  return out;
}

Result<std::vector<Pid>> monitor(Node& node, std::string_view scope, const Term& group) {
  auto r = server_call(node, scope, tuple("monitor", group, self()));
  if (!r.ok()) return r.error();
  return pids_of(*r);
}

void demonitor(Node& node, std::string_view scope, const Term& group) {
  (void)server_call(node, scope, tuple("demonitor", group, self()));
}

}  // namespace nodus::pg
