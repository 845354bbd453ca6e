#include "admin.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>

#include "apps.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/registry/global.hpp"

namespace nodus::tools {

namespace {

using namespace std::chrono_literals;

constexpr auto kRelayTimeout = 3s;
constexpr auto kRefreshEvery = 500ms;

Term ok_term(Term v) { return tuple("ok", std::move(v)); }

Term error_term(ErrorCode code, std::string message) {
  return error_reply(Status(code, std::move(message)));
}

// A failure reason as one line: the text of {Name, "text"}, else the reason itself.
std::string reason_message(const Reason& r) {
  if (auto m = r.term().match({_atom, _bin})) return m[1].as_bin();
  return r.to_string();
}

// A failed call or process_info as an error reply.
Term failure_term(const Reason& r, const std::string& context) {
  return error_term(code_of(r), context + reason_message(r));
}

// The example servers of apps.start run wrapped (apps.cpp); show the server's own type.
std::string clean_type(const std::string& type) {
  const std::string wrapper = "nodus::tools::(anonymous namespace)::Logged<";
  if (type.rfind(wrapper, 0) == 0 && type.back() == '>') {
    return type.substr(wrapper.size(), type.size() - wrapper.size() - 1);
  }
  return type;
}

Term proc_term(const ProcessInfo& p) {
  return map({{"pid", p.pid},
              {"name", bin(p.registered_name)},
              {"behaviour", bin(p.behaviour)},
              {"type", bin(clean_type(p.type))},
              {"mailbox", static_cast<std::int64_t>(p.mailbox_length)},
              {"handled", static_cast<std::int64_t>(p.messages_handled)},
              {"memory", static_cast<std::int64_t>(p.memory_bytes)},
              {"waiting", p.waiting},
              {"links", static_cast<std::int64_t>(p.links)},
              {"monitors", static_cast<std::int64_t>(p.monitors)}});
}

std::optional<Pid> find_pid(const Node& node, const std::string& text) {
  for (const ProcessInfo& p : node.processes()) {
    if (p.pid.to_string() == text) return p.pid;
  }
  return std::nullopt;
}

// Where a {call|cast, Target, ...} goes: this node (with the resolved destination) or another.
struct Resolved {
  std::optional<Dest> dest;  // set when the target is on this node
  std::string other_node;    // set when it is elsewhere
  Status error;              // else why not
};

Resolved resolve_target(Node& node, const Term& target) {
  Resolved r;
  const std::string self(node.name().name());
  if (auto m = target.match({"local", _, _atom})) {
    std::string name = m[0].is_bin() ? m[0].as_bin() : m[0].to_string();
    if (m[0].is_atom()) name = std::string(m[0].as_atom().name());
    const std::string on(m[1].as_atom().name());
    if (on != self && on != "undefined") {
      r.other_node = on;
    } else if (Pid p = node.whereis(name)) {
      r.dest = Dest(p);
    } else {
      r.error = Status(ErrorCode::kNoProc, "no process is registered as " + name + " on " + self);
    }
  } else if (auto v = target.match({"via", _bin, _bin, _atom})) {
    const std::string& reg = v[0].as_bin();
    const std::string& key = v[1].as_bin();
    const std::string on(v[2].as_atom().name());
    const auto registries = app_registries(node);
    auto it = registries.find(reg);
    if (on != self && on != "undefined") {
      r.other_node = on;
    } else if (it == registries.end()) {
      r.error = Status(ErrorCode::kNoProc, "no via registry " + reg + " on " + self +
                                               " (apps.start makes one per via:REG/KEY)");
    } else if (Pid p = it->second->whereis_name(node, Term(bin(key)))) {
      r.dest = Dest(p);
    } else {
      r.error = Status(ErrorCode::kNoProc,
                       "no process is registered as " + key + " in " + reg + " on " + self);
    }
  } else if (auto g = target.match({"global", _bin})) {
    if (whereis_global(node, g[0].as_bin())) {
      r.dest = global(g[0].as_bin());
    } else {
      r.error = Status(ErrorCode::kNoProc, "nobody holds the global name " + g[0].as_bin());
    }
  } else if (auto m2 = target.match({"pid", _bin})) {
    const std::string& text = m2[0].as_bin();
    auto pid = parse_pid_text(text);
    if (!pid.ok()) {
      r.error = pid.error();
    } else if (pid->node != self) {
      r.other_node = pid->node;
    } else if (auto p = find_pid(node, text)) {
      r.dest = Dest(*p);
    } else {
      r.error = Status(ErrorCode::kNoProc, "no process " + text + " on " + self);
    }
  } else {
    r.error = Status(ErrorCode::kBadArg,
                     "a target is {local, Name, Node}, {via, Registry, Key, Node}, {global, Name} "
                     "or {pid, Text}");
  }
  return r;
}

// Asks node `on`'s admin server; the result as the admin replies it, or the error of the call
// when it did not answer (nodedown, timeout ...).
Term relay(const std::string& on, const Term& request, std::chrono::milliseconds timeout) {
  auto r = call(named(kAdminName, on), request, timeout);
  if (r.ok()) return *r;
  const ErrorCode code = code_of(r.error());
  std::string why = "node " + on + " did not answer";
  if (const std::string text = reason_message(r.error()); text != error_name(code)) {
    why += " (" + text + ")";
  }
  return error_term(code, std::move(why));
}

// How often a global_register holder checks that its node's table still names it.
constexpr auto kHolderCheck = 500ms;

// The body of a global_register holder: registers itself as `name`, answers `from` with
// #{pid, epoch, registrar} or the error (and exits), then holds the name until it loses it.
void hold_global(Node* node, const std::string& name, bool re_register, const From& from) {
  const Pid me = nodus::self();
  auto r = re_register ? re_register_global(*node, name, me) : register_global(*node, name, me);
  if (!r.ok()) {
    Status why = r.error().status();
    if (r.error().code() == ErrorCode::kAlreadyStarted) {
      why = Status(ErrorCode::kAlreadyStarted,
                   "the global name " + name + " is held by " + r.error().holder().to_string());
    }
    nodus::reply(from, error_reply(why));
    return;
  }
  nodus::reply(from, ok_term(map({{"pid", me},
                                  {"epoch", static_cast<std::int64_t>(r->counter)},
                                  {"registrar", r->node}})));
  for (;;) {
    std::optional<Message> m = nodus::receive(kHolderCheck);
    if (m && m->is_term() && m->term().match({"global_name_conflict", _, _})) return;
    if (whereis_global(*node, name) != me) return;  // re-registered elsewhere, or gone
  }
}

}  // namespace

Result<PidText> parse_pid_text(std::string_view text) {
  auto not_a_pid = [&] {
    std::string why(1, '"');  // appended, not "\"" + string: GCC 12 warns falsely on that
    why.append(text.substr(0, 80)).append("\" is not a pid like <n1.4.0>");
    return Status(ErrorCode::kBadArg, std::move(why));
  };
  if (text.size() < 7 || text.front() != '<' || text.back() != '>') return not_a_pid();
  const std::string_view inner = text.substr(1, text.size() - 2);
  const auto last = inner.rfind('.');
  if (last == std::string_view::npos || last == 0) return not_a_pid();
  const auto prev = inner.rfind('.', last - 1);
  if (prev == std::string_view::npos || prev == 0) return not_a_pid();
  PidText p;
  p.node = std::string(inner.substr(0, prev));
  auto number = [](std::string_view digits, std::uint32_t& out) {
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
    return !digits.empty() && ec == std::errc() && end == digits.data() + digits.size();
  };
  const bool node_ok =
      p.node.size() <= kMaxAtomLength && std::all_of(p.node.begin(), p.node.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
      });
  if (!node_ok || !number(inner.substr(prev + 1, last - prev - 1), p.slot) ||
      !number(inner.substr(last + 1), p.serial)) {
    return not_a_pid();
  }
  return p;
}

ErrorCode code_of(const Reason& reason) {
  const Term& t = reason.term();
  const Term* head = t.is_atom() ? &t : nullptr;
  if (t.is_tuple() && t.size() > 0 && t[0].is_atom()) head = &t[0];
  if (head) {
    if (auto code = error_from_name(head->as_atom().name()); code && *code != ErrorCode::kOk) {
      return *code;
    }
  }
  return ErrorCode::kExited;
}

Term error_reply(const Status& status) {
  return tuple(
      "error", static_cast<std::int64_t>(status.code()),
      Atom(std::string(error_name(status.code()))),
      bin(status.message().empty() ? std::string(error_message(status.code())) : status.message()));
}

std::optional<AdminError> admin_error(const Term& reply) {
  auto m = reply.match({"error", _int, _atom, _bin});
  if (!m || m[0].as_int() < 0 || m[0].as_int() > 0xffff) return std::nullopt;
  return AdminError{static_cast<ErrorCode>(m[0].as_int()), std::string(m[1].as_atom().name()),
                    m[2].as_bin()};
}

MailboxFigures mailbox_figures(const Node& node) {
  MailboxFigures f;
  for (const ProcessInfo& p : node.processes()) {
    ++f.processes;
    f.total += p.mailbox_length;
    f.max = std::max(f.max, p.mailbox_length);
  }
  return f;
}

Action AdminServer::init(AdminOptions options) {
  opt_ = std::move(options);
  started_ = std::chrono::steady_clock::now();
  trap_exit(true);  // so that its supervisor's shutdown runs terminate
  refresh_peers();
  send_after(self(), "refresh", kRefreshEvery);
  return ok();
}

void AdminServer::refresh_peers() {
  for (const PeerStats& p : opt_.node->peers()) {
    if (p.up && !p.hidden) known_[std::string(p.name.name())] = p.endpoint;
  }
}

Action AdminServer::handle_info(Message& msg) {
  if (msg == "refresh") {
    refresh_peers();
    send_after(self(), "refresh", kRefreshEvery);
    return noreply();
  }
  msg.visit([&](const Down& d) { holders_.erase(d.pid); }, [](const Message&) {});
  return noreply();
}

void AdminServer::terminate(const Reason& reason) {
  spdlog::info("admin server stopped ({})", reason.to_string());
}

Term AdminServer::self_info() {
  Node& n = *opt_.node;
  MailboxFigures f = mailbox_figures(n);
  std::uint64_t in = 0, out = 0;
  std::int64_t peers = 0;
  for (const PeerStats& p : n.peers()) {
    if (p.hidden) continue;
    in += p.messages_in;
    out += p.messages_out;
    if (p.up) ++peers;
  }
  auto up_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started_);
  // The store's share of this node: partitions it owns in the ring, keys its engine holds.
  std::int64_t owned = 0, keys = 0, epoch = 0;
  auto st = kv::stats(n);
  const bool store = st.ok();
  if (st) {
    keys = static_cast<std::int64_t>(st->keys);
    epoch = static_cast<std::int64_t>(st->ring_epoch);
  }
  if (auto r = kv::ring(n); r && !r->empty()) {
    const int me = r->member_index(n.name().name());
    if (me >= 0) owned = r->owned_counts()[static_cast<std::size_t>(me)];
  }
  return map({{"kv", store},
              {"partitions", owned},
              {"keys", keys},
              {"ring_epoch", epoch},
              {"name", n.name()},
              {"endpoint", bin(n.endpoint())},
              {"creation", static_cast<std::int64_t>(n.creation())},
              {"processes", static_cast<std::int64_t>(f.processes)},
              {"mailbox_total", static_cast<std::int64_t>(f.total)},
              {"mailbox_max", static_cast<std::int64_t>(f.max)},
              {"peers", peers},
              {"messages_in", static_cast<std::int64_t>(in)},
              {"messages_out", static_cast<std::int64_t>(out)},
              {"names", static_cast<std::int64_t>(n.registered().size())},
              {"global_names", static_cast<std::int64_t>(global_names(n).size())},
              {"uptime_ms", static_cast<std::int64_t>(up_ms.count())},
              {"cluster", bin(opt_.cluster)}});
}

Term AdminServer::nodes_view() {
  refresh_peers();
  Node& n = *opt_.node;
  std::vector<Atom> up = n.nodes();
  std::map<std::string, Term> rows;
  rows[std::string(n.name().name())] =
      map({{"name", n.name()}, {"endpoint", bin(n.endpoint())}, {"state", "up"}});
  for (const auto& [name, endpoint] : known_) {
    bool is_up = std::find(up.begin(), up.end(), Atom(name)) != up.end();
    rows[name] =
        map({{"name", Atom(name)}, {"endpoint", bin(endpoint)}, {"state", is_up ? "up" : "down"}});
  }
  List out;
  for (auto& [name, row] : rows) out.push_back(std::move(row));
  return Term(std::move(out));
}

Action AdminServer::handle_call(Message& msg, From from) {
  Node& n = *opt_.node;
  if (!msg.is_term()) return reply(error_term(ErrorCode::kBadArg, "not an admin request"));
  const Term& req = msg.term();
  if (req == "ping") return reply(ok_term("pong"));
  if (req == "self") return reply(ok_term(self_info()));
  if (req == "nodes") return reply(ok_term(nodes_view()));
  if (req == "names") {
    List out;
    for (const std::string& name : n.registered()) {
      out.push_back(map({{"name", bin(name)}, {"pid", n.whereis(name)}}));
    }
    for (const auto& [pid, via] : app_via_names(n)) {
      out.push_back(map({{"name", bin(via)}, {"pid", pid}}));
    }
    return reply(ok_term(Term(std::move(out))));
  }
  if (req == "global_names") {
    List out;
    for (const GlobalEntry& e : global_names(n)) {
      out.push_back(map({{"name", bin(e.name)},
                         {"pid", e.pid},
                         {"node", e.node},
                         {"epoch", static_cast<std::int64_t>(e.epoch.counter)},
                         {"registrar", e.epoch.node}}));
    }
    return reply(ok_term(Term(std::move(out))));
  }
  if (auto g = req.match({"global_register", _, _atom})) {
    const Term& mode = g[1];
    if (!g[0].is_bin() || g[0].as_bin().empty() || (mode != "register" && mode != "re_register")) {
      return reply(error_term(ErrorCode::kBadArg,
                              "global_register takes a name (a binary, not empty) and register "
                              "or re_register"));
    }
    if (holders_.size() >= kMaxGlobalHolders) {
      return reply(error_term(ErrorCode::kOverloaded, std::to_string(holders_.size()) +
                                                          " global_register holders alive "
                                                          "on this node already"));
    }
    Node* node = &n;
    const std::string name = g[0].as_bin();
    const bool re = mode == "re_register";
    const Pid holder = spawn(n, [node, name, re, from] { hold_global(node, name, re, from); });
    holders_.insert(holder);
    monitor(holder);
    return noreply();
  }
  if (req == "procs") {
    std::map<Pid, std::string> global_of;  // a process known by a global or via name shows it
    for (const auto& [pid, via] : app_via_names(n)) global_of.emplace(pid, via);
    for (const GlobalEntry& e : global_names(n)) global_of[e.pid] = "global:" + e.name;
    List out;
    for (ProcessInfo& p : n.processes()) {
      if (p.registered_name.empty() && global_of.count(p.pid)) {
        p.registered_name = global_of[p.pid];
      }
      out.push_back(proc_term(p));
    }
    return reply(ok_term(Term(std::move(out))));
  }
  if (auto m = req.match({"info", _bin})) {
    if (auto text = parse_pid_text(m[0].as_bin()); !text.ok()) {
      return reply(error_reply(text.error()));
    }
    auto pid = find_pid(n, m[0].as_bin());
    if (!pid) {
      return reply(error_term(ErrorCode::kNoProc, "no process " + m[0].as_bin() + " on " +
                                                      std::string(n.name().name())));
    }
    Node* node = &n;
    Pid target = *pid;
    // process_info waits for the process: a helper waits instead of the admin server.
    spawn(n, [node, target, from] {
      auto info = node->process_info(target, std::chrono::seconds(2));
      if (!info.ok()) {
        nodus::reply(from, failure_term(info.error(), ""));
        return;
      }
      Term t = proc_term(*info);
      MapEntries e = t.as_map();
      e.emplace_back(Term("status"), info->status ? *info->status : Term());
      nodus::reply(from, ok_term(Term(Map{std::move(e)})));
    });
    return noreply();
  }
  if (req == "status") {
    Term nodes = nodes_view();
    Term self_row = self_info();
    const std::string self_name(n.name().name());
    AdminOptions o = opt_;
    // The ring as the store on this node has it, else the configured shape.
    Term ring = map({{"partitions", static_cast<std::int64_t>(o.kv_partitions)},
                     {"replicas", static_cast<std::int64_t>(o.kv_replicas)},
                     {"epoch", 0}});
    if (auto r = kv::ring(n); r && !r->empty()) {
      ring = map({{"partitions", static_cast<std::int64_t>(r->partitions())},
                  {"replicas", static_cast<std::int64_t>(r->replicas())},
                  {"epoch", static_cast<std::int64_t>(r->epoch())}});
    }
    spawn(n, [nodes, self_row, self_name, o, ring, from] {
      List rows;
      std::vector<std::pair<std::size_t, RequestId>> asked;
      for (const Term& row : nodes.as_list()) {
        rows.push_back(row);
        const Term* name = row.find(Term("name"));
        const Term* state = row.find(Term("state"));
        if (*name == Term(Atom(self_name)) || *state != Term("up")) continue;
        asked.emplace_back(rows.size() - 1,
                           send_request(named(kAdminName, name->as_atom().name()), "self"));
      }
      auto extend = [](const Term& row, const Term* info) {
        MapEntries e = row.as_map();
        auto add = [&](const char* key) {
          const Term* v = info ? info->find(Term(key)) : nullptr;
          e.emplace_back(Term(key), v ? *v : Term());
        };
        add("processes");
        add("peers");
        add("messages_in");
        add("messages_out");
        add("uptime_ms");
        add("partitions");
        add("keys");
        add("kv");
        add("ring_epoch");
        return Term(Map{std::move(e)});
      };
      std::vector<Term> infos(rows.size());
      for (auto& [i, id] : asked) {
        auto r = wait_response(id, kRelayTimeout);
        if (r.ok() && r->match({"ok", _map})) infos[i] = (*r)[1];
      }
      for (std::size_t i = 0; i < rows.size(); ++i) {
        const Term* name = rows[i].find(Term("name"));
        const Term* info = nullptr;
        if (*name == Term(Atom(self_name))) {
          info = &self_row;
        } else if (infos[i].is_map()) {
          info = &infos[i];
        }
        rows[i] = extend(rows[i], info);
      }
      nodus::reply(from, ok_term(map({{"cluster", bin(o.cluster)},
                                      {"node", Atom(self_name)},
                                      {"nodes", Term(std::move(rows))},
                                      {"ring", ring}})));
    });
    return noreply();
  }
  if (auto m = req.match({"relay", _atom, _})) {
    const std::string on(m[0].as_atom().name());
    Term inner = m[1];
    if (on == std::string(n.name().name())) {
      // To ourselves: answer in a helper, as another node would.
      spawn(n, [inner, from] {
        nodus::reply(from, relay(std::string(nodus::self().node.name()), inner, kRelayTimeout));
      });
      return noreply();
    }
    spawn(n, [on, inner, from] { nodus::reply(from, relay(on, inner, kRelayTimeout)); });
    return noreply();
  }
  const bool is_call = static_cast<bool>(req.match({"call", _, _, _int}));
  const bool is_cast = static_cast<bool>(req.match({"cast", _, _}));
  if (is_call || is_cast) {
    Resolved r = resolve_target(n, req[1]);
    if (!r.other_node.empty()) {
      Term whole = req;
      const std::string on = r.other_node;
      const auto ms = is_call ? std::chrono::milliseconds(req[3].as_int()) : kRelayTimeout;
      spawn(n, [on, whole, ms, from] {
        nodus::reply(from, relay(on, whole, ms + std::chrono::seconds(1)));
      });
      return noreply();
    }
    if (!r.dest) return reply(error_reply(r.error));
    if (is_cast) {
      cast(*r.dest, req[2]);
      return reply(ok_term("ok"));
    }
    Dest to = *r.dest;
    Term request = req[2];
    const auto ms = std::chrono::milliseconds(std::max<std::int64_t>(1, req[3].as_int()));
    spawn(n, [to, request, ms, from] {
      auto res = call(to, request, ms);
      nodus::reply(from, res.ok() ? ok_term(*res) : failure_term(res.error(), ""));
    });
    return noreply();
  }
  return reply(error_term(ErrorCode::kBadArg, "unknown admin request " + req.to_string()));
}

}  // namespace nodus::tools
