// {keys, Pattern, Opts} and {explain, Key}: see query.hpp.
#include "query.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <set>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "nodus/kv/partition.hpp"
#include "nodus/node/gen_server.hpp"

namespace nodus::kv {

Term error_term(ErrorCode code, const std::string& message) {
  switch (code) {
    case ErrorCode::kNotFound:
    case ErrorCode::kTimeout:
    case ErrorCode::kOverloaded:
    case ErrorCode::kUnavailable:
      return tuple("error", atom(error_name(code)));
    default:
      return tuple("error", tuple(atom(error_name(code)),
                                  bin(message.empty() ? error_message(code) : message)));
  }
}

static Term error_term(const Status& s) { return error_term(s.code(), s.message()); }

namespace {

Term u(std::uint64_t v) { return Term(static_cast<std::int64_t>(v)); }

// The error a failed call to another node stands for.
Status call_error(const Reason& r, const std::string& node) {
  const Term& t = r.term();
  const Term& head = t.is_tuple() && t.size() > 0 ? t[0] : t;
  ErrorCode code = ErrorCode::kUnavailable;
  if (head.is_atom()) {
    if (auto c = error_from_name(head.as_atom().name())) code = *c;
  }
  if (code == ErrorCode::kNoProc || code == ErrorCode::kNodeDown) code = ErrorCode::kUnavailable;
  return Status(code, "node " + node + " did not answer: " + r.to_string());
}

// -- the replica side: nodus_kv_query ----------------------------------------------------------

class QueryServer : public GenServer {
 public:
  Action init(KvState* st) {
    st_ = st;
    return ok();
  }

  Action handle_call(Message& msg, From from) override {
    if (const PartitionKeys* k = msg.get<PartitionKeys>()) return reply(list_keys(*k));
    if (const ReplicaInfo* r = msg.get<ReplicaInfo>()) return reply(replica_info(*r));
    (void)from;  // anything else: an error, not a crash (the default stops the server)
    st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
    return reply(tuple("error", tuple("badarg", bin("not a query"))));
  }
  Action handle_cast(Message&) override {
    st_->counters.bad_messages.fetch_add(1, std::memory_order_relaxed);
    return noreply();
  }

 private:
  // The partition's smallest `limit` live keys after `after` that match: kept in a set of at
  // most limit + 1 while the engine folds the partition, so memory stays bounded by the page.
  PartitionKeysReply list_keys(const PartitionKeys& m) {
    PartitionKeysReply out;
    if (m.partition >= st_->options.partitions) {
      out.code = static_cast<std::uint16_t>(ErrorCode::kBadArg);
      out.message = "no partition " + std::to_string(m.partition);
      return out;
    }
    const std::size_t limit = std::clamp<std::uint32_t>(m.limit, 1, kMaxKeysLimit);
    std::set<std::string, std::less<>> best;
    const std::uint64_t now_ms = st_->wall_ms();
    st_->engine->fold(m.partition, [&](std::string_view key, std::string_view value) {
      if (key <= std::string_view(m.after)) return true;
      if (best.size() > limit && key >= *best.rbegin()) return true;
      if (!glob_match(m.pattern, key)) return true;
      Result<Object> o = decode_object(value);
      if (!o || reads_absent(*o, now_ms)) return true;  // deleted or expired: no key any more
      best.emplace(key);
      if (best.size() > limit + 1) best.erase(std::prev(best.end()));
      return true;
    });
    std::size_t bytes = 0;
    for (const std::string& k : best) {
      if (out.keys.size() == limit || bytes + k.size() > kMaxKeysPageBytes) {
        out.more = true;
        break;
      }
      bytes += k.size();
      out.keys.push_back(k);
    }
    return out;
  }

  Term replica_info(const ReplicaInfo& m) {
    if (m.partition >= st_->options.partitions) return tuple("error", "badarg");
    std::string object;
    Status s = st_->engine->get(m.partition, m.key, &object);
    if (!s.ok() && s.code() != ErrorCode::kNotFound) {
      return tuple("error", atom(error_name(s.code())));
    }
    // The hint table is the vnode's own: ask it (a local call).
    List hints;
    auto h = call(st_->vnode(m.partition), tuple("hints_for", bin(m.key)),
                  std::chrono::milliseconds(2000));
    if (h && h->is_list()) {
      for (const Term& t : h->as_list()) {
        if (t.is_bin()) hints.push_back(t);
      }
    }
    return tuple("ok", Term(std::move(object)), Term(std::move(hints)));
  }

  KvState* st_ = nullptr;
};

// -- requests ----------------------------------------------------------------------------------

struct Query {
  bool keys = false;
  std::string pattern = "*";  // keys
  std::string key;            // explain
  std::uint32_t limit = kDefaultKeysLimit;
  KeysCursor cursor;
  std::chrono::milliseconds timeout{0};
};

Result<Query> parse(const Term& t) {
  const Status shape(ErrorCode::kBadArg,
                     "expected {keys, Pattern, Opts} or {explain, Key, Opts} (Opts may be left "
                     "out)");
  if (!t.is_tuple() || t.size() < 2 || t.size() > 3) return shape;
  Query q;
  q.keys = t[0].is_atom("keys");
  if (!t[1].is_bin()) {
    return Status(ErrorCode::kBadArg, q.keys ? "the pattern must be a binary (\"*\" for all)"
                                             : "the key must be a binary");
  }
  if (q.keys) {
    q.pattern = t[1].as_bin();
    if (q.pattern.size() > kMaxKeyBytes) {
      return Status(ErrorCode::kBadArg, "the pattern is longer than a key may be");
    }
  } else {
    q.key = t[1].as_bin();
    if (q.key.empty()) return Status(ErrorCode::kBadArg, "empty key");
    if (q.key.size() > kMaxKeyBytes) {
      return Status(ErrorCode::kValueTooLarge, "key is " + std::to_string(q.key.size()) +
                                                   " bytes, the limit is " +
                                                   std::to_string(kMaxKeyBytes));
    }
  }
  if (t.size() < 3 || (t[2].is_list() && t[2].as_list().empty())) return q;
  if (!t[2].is_map()) return Status(ErrorCode::kBadArg, "options must be a map");
  for (const auto& [k, v] : t[2].as_map()) {
    if (!k.is_atom()) return Status(ErrorCode::kBadArg, "option names are atoms");
    const std::string name(k.as_atom().name());
    if (name == "timeout") {
      if (!v.is_int() || v.as_int() < 1 || v.as_int() > 0x7fffffff) {
        return Status(ErrorCode::kBadArg, "option timeout must be an integer >= 1 (ms)");
      }
      q.timeout = std::chrono::milliseconds(v.as_int());
    } else if (q.keys && name == "limit") {
      if (!v.is_int() || v.as_int() < 1 || v.as_int() > kMaxKeysLimit) {
        return Status(ErrorCode::kBadArg,
                      "option limit must be an integer from 1 to " + std::to_string(kMaxKeysLimit));
      }
      q.limit = static_cast<std::uint32_t>(v.as_int());
    } else if (q.keys && name == "cursor") {
      if (v.is_atom("undefined")) continue;
      if (!v.is_bin()) return Status(ErrorCode::kBadArg, "option cursor must be a binary");
      Result<KeysCursor> c = decode_cursor(v.as_bin());
      if (!c) return c.error();
      q.cursor = std::move(*c);
    } else {
      return Status(ErrorCode::kBadArg, "unknown option " + name);
    }
  }
  return q;
}

Dest query_server(const View& v, std::uint32_t member) {
  if (static_cast<int>(member) == v.self) return named(kQueryName);
  return named(kQueryName, v.names[member].name());
}

// One page of keys, partition by partition from the cursor's, each asked of its first up
// replica (the next one when that fails), until the page is full.
Term run_keys(KvState* st, const Query& q) {
  std::shared_ptr<const View> view = st->view();
  if (!view || !view->ready()) return error_term(ErrorCode::kUnavailable, "");
  const std::uint32_t parts = view->ring->partitions();
  if (q.cursor.partitions != 0 && q.cursor.partitions != parts) {
    return error_term(ErrorCode::kBadArg, "the cursor is of a ring of " +
                                              std::to_string(q.cursor.partitions) +
                                              " partitions, this one has " + std::to_string(parts));
  }
  const auto deadline = st->now() + (q.timeout.count() ? q.timeout : st->options.request_timeout);
  List keys;
  std::uint32_t p = q.cursor.partition;
  std::string after = q.cursor.after;
  while (p < parts && keys.size() < q.limit) {
    const std::vector<Target> targets = view->targets(p, st->options.replicas);
    std::optional<PartitionKeysReply> page;
    Status last(ErrorCode::kUnavailable, "no replica of partition " + std::to_string(p) + " is up");
    for (const Target& t : targets) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - st->now());
      if (left.count() <= 0) return error_term(ErrorCode::kTimeout, "");
      PartitionKeys ask{p, q.pattern, after, static_cast<std::uint32_t>(q.limit - keys.size())};
      auto r = call_as<PartitionKeysReply>(query_server(*view, t.member), std::move(ask), left);
      if (!r) {
        last = call_error(r.error(), std::string(view->names[t.member].name()));
        continue;
      }
      if (r->code != 0) {
        last = Status(static_cast<ErrorCode>(r->code), r->message);
        continue;
      }
      page = std::move(*r);
      break;
    }
    if (!page) return error_term(last);
    for (std::string& k : page->keys) keys.emplace_back(std::move(k));
    if (page->more && !keys.empty() && keys.back().is_bin()) {
      after = keys.back().as_bin();
      break;
    }
    ++p;
    after.clear();
  }
  Term cursor = p < parts ? Term(encode_cursor(KeysCursor{parts, p, after})) : Term();
  return tuple("ok", Term(std::move(keys)), std::move(cursor));
}

std::string hex64(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Every replica of one key: the primaries (up or down), the fallbacks standing in for down
// ones now, and any other member that holds a copy or a hint for it.
Term run_explain(KvState* st, const Query& q) {
  std::shared_ptr<const View> view = st->view();
  if (!view || !view->ready()) return error_term(ErrorCode::kUnavailable, "");
  const Ring& ring = *view->ring;
  const std::uint32_t parts = ring.partitions();
  const std::uint32_t p = partition_of(q.key, parts);
  const auto deadline = st->now() + (q.timeout.count() ? q.timeout : st->options.request_timeout);
  const std::size_t members = ring.members().size();
  const std::uint64_t now_ms = st->wall_ms();

  struct Info {
    std::string object;
    std::vector<std::string> hints;
  };
  std::vector<std::optional<Info>> infos(members);
  std::vector<std::string> errors(members);
  std::vector<std::pair<std::uint32_t, RequestId>> asked;
  for (std::uint32_t m = 0; m < members; ++m) {
    if (view->up[m])
      asked.emplace_back(m, send_request(query_server(*view, m), ReplicaInfo{p, q.key}));
  }
  for (auto& [m, id] : asked) {
    const auto left =
        std::max(std::chrono::milliseconds(0),
                 std::chrono::duration_cast<std::chrono::milliseconds>(deadline - st->now()));
    auto r = wait_response(id, left);
    if (!r) {
      errors[m] = std::string(error_name(call_error(r.error(), "").code()));
      continue;
    }
    if (auto ok = r->match({"ok", _bin, _list})) {
      Info info{ok[0].as_bin(), {}};
      for (const Term& h : ok[1].as_list()) {
        if (h.is_bin()) info.hints.push_back(h.as_bin());
      }
      infos[m] = std::move(info);
    } else if (auto err = r->match({"error", _atom})) {
      errors[m] = std::string(err[0].as_atom().name());
    } else {
      errors[m] = "protocol_error";
    }
  }

  // The partition of the walk from p whose owner made `m` a replica.
  auto walk_partition = [&](std::uint32_t m) {
    for (std::uint32_t i = 0; i < parts; ++i) {
      if (ring.owner((p + i) % parts) == m) return (p + i) % parts;
    }
    return p;
  };
  auto entry = [&](std::uint32_t m, bool primary, const std::string& stands_for) {
    MapEntries e;
    e.emplace_back(Term("node"), bin(ring.members()[m]));
    e.emplace_back(Term("partition"), u(walk_partition(m)));
    e.emplace_back(Term("role"), Term(primary ? "primary" : "fallback"));
    e.emplace_back(Term("state"), Term(view->up[m] ? "up" : "down"));
    Term version, digest, siblings, ttl_left;
    bool tombstone = false, expired = false;
    if (infos[m] && !infos[m]->object.empty()) {
      const std::string& bytes = infos[m]->object;
      if (Result<Object> o = decode_object(bytes)) {
        MapEntries vv;
        for (const auto& [actor, counter] : o->join()) {
          vv.emplace_back(bin(hex64(actor.vnode) + "/" + std::to_string(actor.epoch)), u(counter));
        }
        version = Term(Map{std::move(vv)});
        std::uint64_t live = 0;
        for (const Sibling& s : o->values()) {
          live += is_live(s, now_ms) ? 1 : 0;
          expired |= s.expiry_ms != 0 && s.expiry_ms <= now_ms;
        }
        siblings = u(live);
        tombstone = all_tombstones(*o);
        expired = expired && live == 0;
        // The key's time left on this replica: undefined when it never expires or is gone.
        if (const auto left = ttl_left_ms(*o, now_ms); left && *left > 0) ttl_left = u(*left);
      }
      digest = bin(hex64(XXH3_64bits(bytes.data(), bytes.size())));
    } else if (infos[m]) {
      siblings = u(0);
    }
    e.emplace_back(Term("version"), std::move(version));
    e.emplace_back(Term("digest"), std::move(digest));
    e.emplace_back(Term("ttl_left_ms"), std::move(ttl_left));
    e.emplace_back(Term("expired"), Term(expired));
    e.emplace_back(Term("siblings"), std::move(siblings));
    e.emplace_back(Term("tombstone"), Term(tombstone));
    if (!stands_for.empty()) e.emplace_back(Term("for"), bin(stands_for));
    if (!errors[m].empty()) e.emplace_back(Term("error"), bin(errors[m]));
    return Term(Map{std::move(e)});
  };

  List preflist;
  std::vector<bool> listed(members, false);
  for (std::uint32_t m : view->primaries(p, st->options.replicas)) {
    preflist.push_back(entry(m, true, ""));
    listed[m] = true;
  }
  for (const Target& t : view->targets(p, st->options.replicas)) {
    if (t.primary || listed[t.member]) continue;
    preflist.push_back(entry(t.member, false, ring.members()[t.hint_for]));
    listed[t.member] = true;
  }
  List hints;
  for (std::uint32_t m = 0; m < members; ++m) {
    if (!infos[m]) continue;
    for (const std::string& primary : infos[m]->hints) {
      hints.push_back(map({{"node", bin(ring.members()[m])}, {"for", bin(primary)}}));
    }
    if (!listed[m] && (!infos[m]->object.empty() || !infos[m]->hints.empty())) {
      preflist.push_back(
          entry(m, false, infos[m]->hints.empty() ? std::string() : infos[m]->hints.front()));
      listed[m] = true;
    }
  }
  return tuple("ok", map({{"key", bin(q.key)},
                          {"partition", u(p)},
                          {"preflist", Term(std::move(preflist))},
                          {"hints", Term(std::move(hints))}}));
}

// One element of a glob at `p`: whether it matches `c`; `next` is where the element ends.
bool match_one(std::string_view pat, std::size_t p, char c, std::size_t& next) {
  if (pat[p] == '?') {
    next = p + 1;
    return true;
  }
  if (pat[p] == '\\' && p + 1 < pat.size()) {
    next = p + 2;
    return pat[p + 1] == c;
  }
  if (pat[p] == '[') {
    std::size_t i = p + 1;
    const bool negate = i < pat.size() && pat[i] == '^';
    if (negate) ++i;
    bool hit = false;
    bool closed = false;
    for (bool first = true; i < pat.size(); first = false) {
      if (pat[i] == ']' && !first) {
        closed = true;
        break;
      }
      if (pat[i] == '\\' && i + 1 < pat.size()) {
        hit |= pat[i + 1] == c;
        i += 2;
      } else if (i + 2 < pat.size() && pat[i + 1] == '-' && pat[i + 2] != ']') {
        auto lo = static_cast<unsigned char>(pat[i]), hi = static_cast<unsigned char>(pat[i + 2]);
        if (lo > hi) std::swap(lo, hi);
        const auto uc = static_cast<unsigned char>(c);
        hit |= uc >= lo && uc <= hi;
        i += 3;
      } else {
        hit |= pat[i] == c;
        ++i;
      }
    }
    if (closed) {
      next = i + 1;
      return hit != negate;
    }
    // No closing bracket: the '[' is a byte like any other.
  }
  next = p + 1;
  return pat[p] == c;
}

}  // namespace

bool glob_match(std::string_view pat, std::string_view s) {
  std::size_t p = 0, i = 0;
  std::size_t star = std::string_view::npos, star_i = 0;
  while (i < s.size()) {
    if (p < pat.size() && pat[p] == '*') {
      star = p++;
      star_i = i;
      continue;
    }
    std::size_t next = 0;
    if (p < pat.size() && match_one(pat, p, s[i], next)) {
      p = next;
      ++i;
      continue;
    }
    if (star == std::string_view::npos) return false;
    p = star + 1;  // let the last star take one more byte
    i = ++star_i;
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

std::string encode_cursor(const KeysCursor& c) {
  std::string out;
  out.push_back(1);  // version
  for (std::uint32_t v : {c.partitions, c.partition}) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
  }
  out += c.after;
  return out;
}

Result<KeysCursor> decode_cursor(std::string_view bytes) {
  const Status bad(ErrorCode::kBadArg, "malformed cursor: pass back the one a keys reply gave");
  if (bytes.empty()) return KeysCursor{};
  if (bytes.size() < 9 || bytes[0] != 1 || bytes.size() - 9 > kMaxKeyBytes) return bad;
  auto read = [&](std::size_t at) {
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[at + i]);
    return v;
  };
  KeysCursor c{read(1), read(5), std::string(bytes.substr(9))};
  if (!valid_partition_count(c.partitions) || c.partition >= c.partitions) return bad;
  return c;
}

bool is_query(const Term& t) {
  return t.is_tuple() && t.size() >= 1 && (t[0].is_atom("keys") || t[0].is_atom("explain"));
}

void start_query(Node& node, KvState* st, const Term& request, From from) {
  Result<Query> q = parse(request);
  if (!q) {
    reply(from, error_term(q.error()));
    return;
  }
  spawn(node, [st, query = std::move(*q), from] {
    reply(from, query.keys ? run_keys(st, query) : run_explain(st, query));
  });
}

Status register_query_protocol() {
  for (Status s : {register_message<PartitionKeys>(), register_message<PartitionKeysReply>(),
                   register_message<ReplicaInfo>()}) {
    if (!s.ok()) return s;
  }
  return Status();
}

Result<Pid, Reason> start_query_server(Node& node, KvState* st) {
  SpawnOptions so;
  so.name = kQueryName;
  so.max_mailbox = 4096;  // beyond, callers get overloaded
  return nodus::start_link<QueryServer>(node, so, st);
}

}  // namespace nodus::kv
