// kv get, kv put, kv del, kv keys, kv explain, kv mget, kv mput, kv stats, kv watch: the
// key-value store, through the term requests of its `nodus_kv` server on the connected node
// (docs/protocol.md 12.3, 12.7). Values, keys and contexts are written as tools/src/kv_value.hpp
// says.
#include <signal.h>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <csignal>
#include <iostream>
#include <map>
#include <optional>
#include <set>

#include "client.hpp"
#include "ctl.hpp"
#include "json_term.hpp"
#include "kv_value.hpp"
#include "nodus/kv/client.hpp"
#include "nodus/kv/errors.hpp"
#include "nodus/node/process.hpp"

namespace nodus::ctl {

namespace {

using nlohmann::json;

// -- arguments ---------------------------------------------------------------------------------

// A command's words and its --flags (each either taking a value or a switch), checked here
// before anything connects: an unknown flag or a missing word is bad usage.
struct Args {
  std::vector<std::string> words;
  std::map<std::string, std::string> values;
  std::set<std::string> switches;

  bool has(const std::string& flag) const { return values.count(flag) || switches.count(flag); }
  const std::string* value(const std::string& flag) const {
    auto it = values.find(flag);
    return it == values.end() ? nullptr : &it->second;
  }
};

Args parse(const std::vector<std::string>& args, const char* usage, std::size_t min_words,
           std::size_t max_words, std::initializer_list<const char*> with_value,
           std::initializer_list<const char*> switches = {}) {
  auto bad = [&](const std::string& why) {
    return CtlError(ErrorCode::kBadArg, why + "; usage: nodusctl " + usage);
  };
  Args out;
  bool only_words = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (only_words || a.size() < 3 || a.rfind("--", 0) != 0) {
      if (a == "--") {
        only_words = true;
        continue;
      }
      out.words.push_back(a);
      continue;
    }
    const bool takes =
        std::any_of(with_value.begin(), with_value.end(), [&](const char* f) { return a == f; });
    const bool is_switch =
        std::any_of(switches.begin(), switches.end(), [&](const char* f) { return a == f; });
    if (!takes && !is_switch) throw bad("unknown option " + a);
    if (out.has(a)) throw bad(a + " given twice");
    if (is_switch) {
      out.switches.insert(a);
      continue;
    }
    if (i + 1 >= args.size()) throw bad(a + " needs a value");
    out.values[a] = args[++i];
  }
  if (out.words.size() < min_words || out.words.size() > max_words) {
    throw CtlError(ErrorCode::kBadArg, std::string("usage: nodusctl ") + usage);
  }
  return out;
}

// --r, --pr, --w, --pw, --dw, --limit: a whole number from 1 to `most`.
std::int64_t count_of(const Args& a, const std::string& flag, std::int64_t most) {
  const std::string& v = *a.value(flag);
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size() || n < 1 || n > most) {
    throw CtlError(ErrorCode::kBadArg, flag + " takes a whole number from 1 to " +
                                           std::to_string(most) + ", not \"" + v + "\"");
  }
  return n;
}

// --context C / --cursor C: the opaque bytes a reply gave, as base64url.
std::string opaque_of(const Args& a, const std::string& flag, const char* what) {
  auto bytes = tools::from_base64url(*a.value(flag));
  if (!bytes.ok() || bytes->empty()) {
    throw CtlError(ErrorCode::kBadArg, flag + " takes the " + what +
                                           " a reply printed (base64url text), not \"" +
                                           a.value(flag)->substr(0, 40) + "\"");
  }
  return *bytes;
}

// A key in an error line: as value_text shows it, cut to 60 bytes (at a character boundary)
// with its size when it is longer, so that a 64 KiB key does not fill the terminal.
std::string key_label(const std::string& key) {
  std::string text = tools::value_text(key);
  if (text.size() <= 80) return text;
  std::size_t cut = 60;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return text.substr(0, cut) + "... (" + std::to_string(key.size()) + " bytes)";
}

// -- the store's replies -----------------------------------------------------------------------

// What to try after a store error, by its name.
std::string advice(const std::string& name) {
  if (name == "unavailable") {
    return "; the ring has not formed or no replica is up (nodusctl members)";
  }
  if (name == "overloaded") return "; the replica's queue is full: retry later";
  if (name == "timeout") return "; the replicas did not answer in time (nodusctl members)";
  return "";
}

// The value of an {ok, ...} reply (the rest of the tuple, as a tuple); throws CtlError for an
// {error, ...} reply, with the exit status of its code. `what` starts the error line.
Term ok_or_throw(const Term& reply, const std::string& what) {
  // The store's own codes (too_many_siblings ...) by name, as for transport's.
  static const bool kKvErrors = kv::detail::errors_registered();
  (void)kKvErrors;
  if (reply.is_tuple() && reply.size() >= 1 && reply[0].is_atom("ok")) return reply;
  if (auto m = reply.match({"error", _atom})) {
    const std::string name(m[0].as_atom().name());
    const ErrorCode code = error_from_name(name).value_or(ErrorCode::kInternal);
    throw CtlError(code,
                   what + ": " + name + ": " + std::string(error_message(code)) + advice(name));
  }
  // {no_quorum, Needed, Got}, or with the quorum that failed: {no_quorum, w, Needed, Got}.
  std::string which;
  std::int64_t needed = 0, got = 0;
  if (auto m = reply.match({"error", {"no_quorum", _int, _int}})) {
    needed = m[0].as_int();
    got = m[1].as_int();
  } else if (auto m4 = reply.match({"error", {"no_quorum", _atom, _int, _int}})) {
    which = std::string(m4[0].as_atom().name()) + ": ";
    needed = m4[1].as_int();
    got = m4[2].as_int();
  }
  if (needed > 0) {
    throw CtlError(ErrorCode::kNoQuorum, what + ": no_quorum: " + which + "needed " +
                                             std::to_string(needed) + " replicas, got " +
                                             std::to_string(got) +
                                             " (nodusctl members shows who is down)");
  }
  if (auto m = reply.match({"error", {_atom, _bin}})) {
    const std::string name(m[0].as_atom().name());
    const ErrorCode code = error_from_name(name).value_or(ErrorCode::kInternal);
    throw CtlError(code, what + ": " + name + ": " + m[1].as_bin() + advice(name));
  }
  throw CtlError(ErrorCode::kProtocol, what + ": unexpected reply " + reply.to_string());
}

// The request's options: the counts given (--r ...), --context, and the deadline of --timeout.
Term options(Context& ctx, const Args& a, std::initializer_list<const char*> counts) {
  MapEntries o;
  for (const char* flag : counts) {
    if (a.value(flag)) o.emplace_back(Term(Atom(flag + 2)), Term(count_of(a, flag, 1000)));
  }
  if (a.has("--context")) {
    o.emplace_back(Term("context"), Term(opaque_of(a, "--context", "context")));
  }
  o.emplace_back(Term("timeout"), Term(static_cast<std::int64_t>(ctx.options().timeout.count())));
  return Term(Map{std::move(o)});
}

Term ask(Context& ctx, const Term& request) {
  Client& c = ctx.client();
  return c.kv(request, ctx.options().timeout);
}

// People's output: "name  value" lines, the names aligned.
void lines(const std::vector<std::pair<std::string, std::string>>& rows) {
  std::size_t w = 0;
  for (const auto& [k, v] : rows) w = std::max(w, k.size());
  for (const auto& [k, v] : rows) {
    std::string name = k;
    name.resize(w + 2, ' ');
    std::cout << colour(name, "1") << v << "\n";
  }
}

// A put's or delete's answer, {ok, Context}: {key, context} as JSON, or `done KEY` and the
// context for people.
int print_written(Context& ctx, const Term& reply, const std::string& what, const char* done,
                  const std::string& key) {
  Term ok = ok_or_throw(reply, what + " " + key_label(key));
  auto m = ok.match({"ok", _bin});
  if (!m) throw CtlError(ErrorCode::kProtocol, "unexpected reply " + ok.to_string());
  const std::string context = tools::to_base64url(m[0].as_bin());
  if (ctx.json()) {
    print_json(json{{"key", tools::value_json(key)}, {"context", context}});
  } else {
    lines({{done, tools::value_text(key)}, {"context", context}});
  }
  return kExitOk;
}

// -- the commands -----------------------------------------------------------------------------

constexpr const char* kGetUsage = "kv get KEY [--r N] [--pr N]";
constexpr const char* kPutUsage =
    "kv put KEY VALUE [--ttl SECONDS] [--context C] [--w N] [--pw N] [--dw N] [--term]";
constexpr const char* kDelUsage = "kv del KEY [--context C]";
constexpr const char* kKeysUsage = "kv keys [PATTERN] [--limit N] [--cursor C]";
constexpr const char* kExplainUsage = "kv explain KEY";
constexpr const char* kStatsUsage = "kv stats [--node NODE]";
constexpr const char* kMgetUsage = "kv mget KEY... [--r N] [--pr N]";
constexpr const char* kMputUsage =
    "kv mput KEY VALUE [KEY VALUE...] [--w N] [--pw N] [--dw N] [--term]";

int run_get(Context& ctx, const std::vector<std::string>& args) {
  Args a = parse(args, kGetUsage, 1, 1, {"--r", "--pr"});
  const std::string& key = a.words[0];
  MapEntries o = options(ctx, a, {"--r", "--pr"}).as_map();
  o.emplace_back(Term("with_ttl"), Term(true));  // the reply says how long the key lives on
  Term reply = ask(ctx, tuple("get", bin(key), Term(Map{std::move(o)})));
  if (reply.match({"error", "not_found"})) {
    if (ctx.json()) print_json(json{{"key", tools::value_json(key)}, {"found", false}});
    throw CtlError(ErrorCode::kNotFound, "kv get " + key_label(key) + ": not_found: no such key");
  }
  Term ok = ok_or_throw(reply, "kv get " + key_label(key));
  auto m = ok.match({"ok", _list, _bin, _});
  if (!m) m = ok.match({"ok", _list, _bin});
  if (!m) throw CtlError(ErrorCode::kProtocol, "unexpected reply " + reply.to_string());
  // The ms the key lives on, or nothing when it does not expire (or the node says nothing).
  std::optional<std::int64_t> ttl_ms;
  if (ok.size() == 4 && ok[3].is_int()) ttl_ms = ok[3].as_int();
  std::vector<std::string> values;
  for (const Term& v : m[0].as_list()) values.push_back(v.is_bin() ? v.as_bin() : v.to_string());
  const std::string context = tools::to_base64url(m[1].as_bin());
  if (ctx.json()) {
    json out{{"key", tools::value_json(key)}};
    if (values.size() == 1) {
      out["value"] = tools::value_json(values[0]);
    } else {
      json s = json::array();
      for (const auto& v : values) s.push_back(tools::value_json(v));
      out["siblings"] = s;
    }
    out["context"] = context;
    out["ttl_ms"] = ttl_ms ? json(*ttl_ms) : json(nullptr);
    print_json(out);
    return kExitOk;
  }
  std::vector<std::pair<std::string, std::string>> rows;
  if (values.size() == 1) {
    rows.emplace_back("value", tools::value_text(values[0]));
  } else {
    rows.emplace_back("siblings", std::to_string(values.size()) +
                                      " concurrent values: write the one to keep with "
                                      "kv put KEY VALUE --context C");
    for (std::size_t i = 0; i < values.size(); ++i) {
      rows.emplace_back("  " + std::to_string(i + 1), tools::value_text(values[i]));
    }
  }
  rows.emplace_back("context", context);
  if (ttl_ms) rows.emplace_back("expires", "in " + std::to_string((*ttl_ms + 999) / 1000) + " s");
  lines(rows);
  return kExitOk;
}

// --ttl SECONDS: a positive number of seconds (fractions allowed, to the ms), as ms.
std::int64_t ttl_ms_of(const Args& a) {
  const std::string& v = *a.value("--ttl");
  double seconds = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), seconds);
  const double ms = seconds * 1000.0;
  if (ec != std::errc() || end != v.data() + v.size() || !(ms >= 1.0) || ms > 1e13) {
    throw CtlError(ErrorCode::kBadArg,
                   "--ttl takes the seconds the value lives (a number from 0.001 to 10000000000), "
                   "not \"" +
                       v.substr(0, 40) + "\"");
  }
  return static_cast<std::int64_t>(std::llround(ms));
}

int run_put(Context& ctx, const std::vector<std::string>& args) {
  Args a = parse(args, kPutUsage, 2, 2, {"--ttl", "--context", "--w", "--pw", "--dw"}, {"--term"});
  const std::int64_t ttl_ms = a.has("--ttl") ? ttl_ms_of(a) : 0;
  const std::string& key = a.words[0];
  auto value = tools::value_bytes(a.words[1], a.has("--term"));
  if (!value.ok()) throw CtlError(value.error().code(), value.error().message());
  Term opts = options(ctx, a, {"--w", "--pw", "--dw"});
  if (ttl_ms > 0) {  // the store takes ms
    MapEntries o = opts.as_map();
    o.emplace_back(Term("ttl"), Term(ttl_ms));
    opts = Term(Map{std::move(o)});
  }
  Term req = tuple("put", bin(key), Term(std::move(*value)), std::move(opts));
  return print_written(ctx, ask(ctx, req), "kv put", "stored", key);
}

int run_del(Context& ctx, const std::vector<std::string>& args) {
  Args a = parse(args, kDelUsage, 1, 1, {"--context"});
  const std::string& key = a.words[0];
  Term req = tuple("delete", bin(key), options(ctx, a, {}));
  return print_written(ctx, ask(ctx, req), "kv del", "deleted", key);
}

// Without --limit every page is fetched (as Redis's KEYS); with it, one page and its cursor.
int run_keys(Context& ctx, const std::vector<std::string>& args) {
  Args a = parse(args, kKeysUsage, 0, 1, {"--limit", "--cursor"});
  const std::string pattern = a.words.empty() ? "*" : a.words[0];
  const bool one_page = a.has("--limit") || a.has("--cursor");
  const std::int64_t limit = a.has("--limit") ? count_of(a, "--limit", 10000) : 1000;
  std::string cursor = a.has("--cursor") ? opaque_of(a, "--cursor", "cursor") : "";
  json keys = json::array();
  for (int page = 0; page < 1000000; ++page) {
    MapEntries o{{Term("limit"), Term(limit)},
                 {Term("timeout"), Term(static_cast<std::int64_t>(ctx.options().timeout.count()))}};
    if (!cursor.empty()) o.emplace_back(Term("cursor"), Term(cursor));
    Term ok = ok_or_throw(ask(ctx, tuple("keys", bin(pattern), Term(Map{std::move(o)}))),
                          "kv keys " + pattern);
    auto m = ok.match({"ok", _list, _});
    if (!m) throw CtlError(ErrorCode::kProtocol, "unexpected reply " + ok.to_string());
    for (const Term& k : m[0].as_list()) {
      if (!k.is_bin()) continue;
      if (ctx.json()) {
        keys.push_back(tools::value_json(k.as_bin()));
      } else {
        std::cout << tools::value_text(k.as_bin()) << "\n";
      }
    }
    cursor = m[1].is_bin() ? m[1].as_bin() : "";
    if (one_page || cursor.empty()) break;
  }
  const json next = cursor.empty() ? json(nullptr) : json(tools::to_base64url(cursor));
  if (ctx.json()) {
    print_json(json{{"keys", keys}, {"cursor", next}});
  } else if (!cursor.empty()) {
    std::cerr << "nodusctl: the next page: add --cursor " << next.get<std::string>() << "\n";
  }
  return kExitOk;
}

// An explain reply's version map, short, for people: "a1b2c3d4:3 e5f6a7b8:1".
std::string version_text(const json& v) {
  if (!v.is_object()) return "-";
  std::string out;
  for (const auto& [actor, counter] : v.items()) {
    out += (out.empty() ? "" : " ") + actor.substr(0, 8) + ":" + counter.dump();
  }
  return out.empty() ? "-" : out;
}

int run_explain(Context& ctx, const std::vector<std::string>& args) {
  Args a = parse(args, kExplainUsage, 1, 1, {});
  const std::string& key = a.words[0];
  Term req = tuple("explain", bin(key), options(ctx, a, {}));
  Term ok = ok_or_throw(ask(ctx, req), "kv explain " + key_label(key));
  auto m = ok.match({"ok", _map});
  if (!m) throw CtlError(ErrorCode::kProtocol, "unexpected reply " + ok.to_string());
  json e = tools::term_to_json(m[0], tools::JsonStyle::kPlain);
  e["key"] = tools::value_json(key);
  if (ctx.json()) {
    print_json(e);
    return kExitOk;
  }
  std::cout << "key " << colour(tools::value_text(key), "1") << " is in partition "
            << e["partition"].dump() << "; its replicas:\n";
  Table t({"NODE", "PARTITION", "ROLE", "STATE", "SIBLINGS", "TTL", "DIGEST", "VERSION"});
  for (const json& r : e["preflist"]) {
    std::string role = r["role"].get<std::string>();
    if (r.contains("for")) role += " for " + r["for"].get<std::string>();
    std::string siblings = r["siblings"].is_number() ? r["siblings"].dump() : "-";
    if (r["tombstone"] == true) siblings = "deleted";
    if (r.value("expired", false)) siblings = "expired";
    const std::string ttl = r.value("ttl_left_ms", json()).is_number()
                                ? std::to_string(r["ttl_left_ms"].get<std::int64_t>()) + " ms"
                                : "-";
    if (r.contains("error")) siblings = r["error"].get<std::string>();
    t.add({r["node"].get<std::string>(), r["partition"].dump(), role,
           state_text(r["state"].get<std::string>()), siblings, ttl,
           r["digest"].is_string() ? r["digest"].get<std::string>() : "-",
           version_text(r["version"])});
  }
  t.print({1, 4, 5});
  if (e["hints"].empty()) {
    std::cout << "hints: none\n";
  } else {
    for (const json& h : e["hints"]) {
      std::cout << "hint: " << h["node"].get<std::string>() << " keeps it for "
                << h["for"].get<std::string>() << " until that node is back\n";
    }
  }
  return kExitOk;
}

// One key's failure in a multi reply, {error, ...}, as "name: message" (not_found: "missing").
std::string multi_error(const Term& reply, const std::string& key) {
  if (reply.match({"error", "not_found"})) return "not_found";
  try {
    (void)ok_or_throw(reply, key_label(key));
  } catch (const CtlError& e) {
    const std::string what = e.what();
    const std::string prefix = key_label(key) + ": ";
    return what.rfind(prefix, 0) == 0 ? what.substr(prefix.size()) : what;
  }
  return "unexpected reply " + reply.to_string();
}

// The {ok, [Reply...]} of a multi request, one per key; throws for a failed request.
std::vector<Term> multi_replies(const Term& reply, const std::string& what, std::size_t n) {
  Term ok = ok_or_throw(reply, what);
  auto m = ok.match({"ok", _list});
  if (!m || m[0].as_list().size() != n) {
    throw CtlError(ErrorCode::kProtocol, "unexpected reply " + reply.to_string());
  }
  return std::vector<Term>(m[0].as_list().begin(), m[0].as_list().end());
}

// Exit 1 with one line on stderr when some keys failed; the output lists every key.
int multi_exit(std::size_t failed, std::size_t n, const char* what) {
  if (failed == 0) return kExitOk;
  std::cerr << "nodusctl: kv " << what << ": " << failed << " of " << n
            << " keys failed or are missing (see each key's line)\n";
  return kExitFailed;
}

// {multi_get, Keys, Opts}: per key {key, value | siblings, context}, {key, found: false} or
// {key, error} with --json (an array, in the order given); a table for people.
int run_mget(Context& ctx, const std::vector<std::string>& args) {
  Args a = parse(args, kMgetUsage, 1, 10000, {"--r", "--pr"});
  List keys;
  for (const auto& k : a.words) keys.push_back(bin(k));
  const auto replies = multi_replies(
      ask(ctx, tuple("multi_get", Term(std::move(keys)), options(ctx, a, {"--r", "--pr"}))),
      "kv mget", a.words.size());
  json out = json::array();
  Table t({"KEY", "VALUE", "CONTEXT"});
  std::size_t failed = 0;
  for (std::size_t i = 0; i < replies.size(); ++i) {
    const std::string& key = a.words[i];
    json one{{"key", tools::value_json(key)}};
    auto m = replies[i].match({"ok", _list, _bin});
    if (!m) {
      ++failed;
      const std::string why = multi_error(replies[i], key);
      if (why == "not_found") {
        one["found"] = false;
      } else {
        one["error"] = why;
      }
      t.add({tools::value_text(key), why == "not_found" ? "(missing)" : "(" + why + ")", "-"});
      out.push_back(one);
      continue;
    }
    std::vector<std::string> values;
    for (const Term& v : m[0].as_list()) values.push_back(v.is_bin() ? v.as_bin() : v.to_string());
    const std::string context = tools::to_base64url(m[1].as_bin());
    if (values.size() == 1) {
      one["value"] = tools::value_json(values[0]);
      t.add({tools::value_text(key), tools::value_text(values[0]), context});
    } else {
      json sib = json::array();
      std::string text = std::to_string(values.size()) + " siblings:";
      for (const auto& v : values) {
        sib.push_back(tools::value_json(v));
        text += ' ';
        text += tools::value_text(v);
      }
      one["siblings"] = sib;
      t.add({tools::value_text(key), text, context});
    }
    one["context"] = context;
    out.push_back(one);
  }
  if (ctx.json()) {
    print_json(out);
  } else {
    t.print();
  }
  return multi_exit(failed, replies.size(), "mget");
}

// {multi_put, [{Key, Value}...], Opts}: per pair {key, context} or {key, error}.
int run_mput(Context& ctx, const std::vector<std::string>& args) {
  Args a = parse(args, kMputUsage, 2, 20000, {"--w", "--pw", "--dw"}, {"--term"});
  if (a.words.size() % 2 != 0) {
    throw CtlError(ErrorCode::kBadArg, "kv mput takes KEY VALUE pairs: the last key, " +
                                           key_label(a.words.back()) +
                                           ", has no value; usage: nodusctl " + kMputUsage);
  }
  List pairs;
  std::vector<std::string> keys;
  for (std::size_t i = 0; i < a.words.size(); i += 2) {
    auto value = tools::value_bytes(a.words[i + 1], a.has("--term"));
    if (!value.ok()) {
      throw CtlError(value.error().code(),
                     "the value of " + key_label(a.words[i]) + ": " + value.error().message());
    }
    pairs.push_back(tuple(bin(a.words[i]), Term(std::move(*value))));
    keys.push_back(a.words[i]);
  }
  const auto replies = multi_replies(ask(ctx, tuple("multi_put", Term(std::move(pairs)),
                                                    options(ctx, a, {"--w", "--pw", "--dw"}))),
                                     "kv mput", keys.size());
  json out = json::array();
  Table t({"KEY", "STORED", "CONTEXT"});
  std::size_t failed = 0;
  for (std::size_t i = 0; i < replies.size(); ++i) {
    json one{{"key", tools::value_json(keys[i])}};
    if (auto m = replies[i].match({"ok", _bin})) {
      one["context"] = tools::to_base64url(m[0].as_bin());
      t.add({tools::value_text(keys[i]), "yes", one["context"].get<std::string>()});
    } else {
      ++failed;
      one["error"] = multi_error(replies[i], keys[i]);
      t.add({tools::value_text(keys[i]), "no: " + one["error"].get<std::string>(), "-"});
    }
    out.push_back(one);
  }
  if (ctx.json()) {
    print_json(out);
  } else {
    t.print();
  }
  return multi_exit(failed, replies.size(), "mput");
}

// The store's figures, cluster-wide ({stats, cluster}: every member's summed, each node's
// beside), or one node's with --node (a member's name).
int run_stats(Context& ctx, const std::vector<std::string>& args) {
  Args a = parse(args, kStatsUsage, 0, 0, {"--node"});
  Term ok = ok_or_throw(ask(ctx, tuple("stats", "cluster")), "kv stats");
  auto m = ok.match({"ok", _map});
  if (!m) throw CtlError(ErrorCode::kProtocol, "unexpected reply " + ok.to_string());
  json all = tools::term_to_json(m[0], tools::JsonStyle::kPlain);
  if (const std::string* want = a.value("--node")) {
    for (const json& n : all["nodes"]) {
      if (n.value("node", "") != *want) continue;
      if (n.value("state", "") != "up") {
        throw CtlError(ErrorCode::kUnavailable,
                       "kv stats: node " + *want + " is down (nodusctl members)");
      }
      if (ctx.json()) {
        print_json(n);
      } else {
        lines({{"node", *want},
               {"keys", n["keys"].dump() + " (" + n["live_keys"].dump() + " live)"},
               {"memory", bytes_text(n["memory_bytes"].get<std::uint64_t>())},
               {"hits", n["hits"].dump()},
               {"misses", n["misses"].dump()},
               {"replicas", n["replicas"].dump()},
               {"evictions", n["evictions"].dump()},
               {"expired", n["expired"].dump()},
               {"siblings_max", n["siblings_max"].dump()}});
      }
      return kExitOk;
    }
    throw CtlError(ErrorCode::kBadArg,
                   "kv stats: no member is named " + *want + " (nodusctl members lists them)");
  }
  if (ctx.json()) {
    print_json(all);
    return kExitOk;
  }
  lines({{"keys", all["keys"].dump() + " replica objects (" + all["live_keys"].dump() + " live)"},
         {"memory", bytes_text(all["memory_bytes"].get<std::uint64_t>())},
         {"hits", all["hits"].dump()},
         {"misses", all["misses"].dump()},
         {"replicas", all["replicas"].dump()},
         {"evictions", all["evictions"].dump()},
         {"expired", all["expired"].dump()},
         {"siblings_max", all["siblings_max"].dump()},
         {"nodes", all["nodes_up"].dump() + " up, " + all["nodes_down"].dump() + " down"}});
  std::cout << "\n";
  Table t({"NODE", "STATE", "KEYS", "MEMORY", "HITS", "MISSES", "EVICTIONS", "EXPIRED"});
  for (const json& n : all["nodes"]) {
    if (n.value("state", "") != "up") {
      t.add({n.value("node", "?"), state_text("down"), "-", "-", "-", "-", "-", "-"});
      continue;
    }
    t.add({n.value("node", "?"), state_text("up"), n["keys"].dump(),
           bytes_text(n["memory_bytes"].get<std::uint64_t>()), n["hits"].dump(), n["misses"].dump(),
           n["evictions"].dump(), n["expired"].dump()});
  }
  t.print({2, 3, 4, 5, 6, 7});
  return kExitOk;
}

const Registrar kStats({"kv", kStatsUsage,
                        "the store's figures (keys, memory, hits, misses, evictions ...), "
                        "cluster-wide and per node; --node NODE: that node's only",
                        run_stats, "stats"});
// -- kv watch ---------------------------------------------------------------------------------
//
// nodusctl's own node is the watcher's node: the watch is held by the target's store and this
// thread (an Inbox) receives the events. Being on a hidden node, it acknowledges what it took
// ({kv_watch_ack, WatchRef, N}, docs/protocol.md 12.7) every kAckEvery events and whenever no
// more are waiting, so it is dropped only when it really falls behind (more than
// kv.watch_queue events not yet printed).

constexpr const char* kWatchUsage = "kv watch [PATTERN] [--prefix | --key] [--count N]";
constexpr std::uint32_t kAckEvery = 16;
constexpr std::size_t kMostPattern = 64 * 1024;  // the store's bound (12.7)

volatile std::sig_atomic_t g_watch_stop = 0;
extern "C" void on_watch_signal(int) { g_watch_stop = 1; }

// Bytes for people on one line: value_text, or the JSON string form when it would break the
// line (a newline or another control character in it).
std::string one_line(const std::string& bytes) {
  std::string text = tools::value_text(bytes);
  const bool plain = std::none_of(text.begin(), text.end(), [](char ch) {
    return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f;
  });
  return plain ? text : tools::value_json(bytes).dump();
}

const char* kind_word(kv::WatchKind k) {
  switch (k) {
    case kv::WatchKind::kPut:
      return "put";
    case kv::WatchKind::kDelete:
      return "delete";
    case kv::WatchKind::kExpire:
      return "expire";
  }
  return "?";
}

// One event: a JSON line {"event", "key", "value", "context"} (value null for a delete, the
// expired value for an expiry), or for people "put    KEY = VALUE", "delete KEY",
// "expire KEY (was VALUE)".
void print_event(bool as_json, const kv::WatchEvent& e) {
  const char* kind = kind_word(e.kind);
  if (as_json) {
    json j{{"event", kind}, {"key", tools::value_json(e.key)}};
    j["value"] = e.kind == kv::WatchKind::kDelete ? json(nullptr) : tools::value_json(e.value);
    j["context"] = tools::to_base64url(e.context);
    std::cout << j.dump() << "\n";
  } else {
    std::string word = kind;
    word.resize(6, ' ');
    std::cout << word << " " << one_line(e.key);
    if (e.kind == kv::WatchKind::kPut) std::cout << " = " << one_line(e.value);
    if (e.kind == kv::WatchKind::kExpire) std::cout << " (was " << one_line(e.value) << ")";
    std::cout << "\n";
  }
  std::cout.flush();
}

int run_watch(Context& ctx, const std::vector<std::string>& args) {
  Args a = parse(args, kWatchUsage, 0, 1, {"--count"}, {"--prefix", "--key"});
  auto bad = [&](const std::string& why) {
    return CtlError(ErrorCode::kBadArg,
                    "kv watch: " + why + "; usage: nodusctl " + std::string(kWatchUsage));
  };
  if (a.has("--prefix") && a.has("--key")) throw bad("--prefix and --key exclude each other");
  kv::WatchMatch match = kv::WatchMatch::kGlob;
  if (a.has("--prefix")) match = kv::WatchMatch::kPrefix;
  if (a.has("--key")) match = kv::WatchMatch::kKey;
  if (match != kv::WatchMatch::kGlob && a.words.empty()) {
    throw bad(std::string(a.has("--prefix") ? "--prefix" : "--key") + " needs a PATTERN");
  }
  const std::string pattern = a.words.empty() ? "*" : a.words[0];
  if (pattern.empty()) {
    throw bad("the pattern is empty: give a key, a prefix (--prefix) or a glob such as 'user:*'");
  }
  if (pattern.size() > kMostPattern) {
    throw bad("the pattern has " + std::to_string(pattern.size()) + " bytes, more than 65536");
  }
  const std::int64_t count = a.has("--count") ? count_of(a, "--count", 1'000'000'000'000) : 0;

  Client& c = ctx.client();
  Inbox inbox(c.node());
  const Atom target(c.target());
  monitor_node(target);
  kv::Client store(c.node(), c.target());
  auto ref = store.watch(pattern, match);
  if (!ref.ok()) {
    const ErrorCode code = ref.error().code();
    std::string why = "kv watch " + key_label(pattern) + ": " + ref.error().to_string();
    if (code == ErrorCode::kNoProc) {
      throw CtlError(code,
                     why + ": node " + c.target() +
                         " runs no store: set kv.initial_members in its config (nodusd --help)",
                     kExitUsage);
    }
    if (code == ErrorCode::kNodeDown) throw CtlError(code, why, kExitUsage);
    throw CtlError(code, why + advice(std::string(error_name(code))));
  }
  // Ctrl-C (and SIGTERM) end the watch cleanly: the loop sees the flag within 100 ms.
  struct sigaction sa {};
  sa.sa_handler = on_watch_signal;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  std::cerr << "nodusctl: watching " << key_label(pattern)
            << (match == kv::WatchMatch::kPrefix ? " (prefix)"
                : match == kv::WatchMatch::kKey  ? " (key)"
                                                 : "")
            << " on " << c.target() << (count > 0 ? "" : "; Ctrl-C stops") << std::endl;

  std::int64_t seen = 0;
  std::uint32_t unacked = 0;
  auto ack = [&] {
    if (unacked == 0) return;
    store.watch_ack(*ref, unacked);
    unacked = 0;
  };
  while (!g_watch_stop && (count == 0 || seen < count)) {
    std::optional<Message> msg = receive(std::chrono::milliseconds(0));
    if (!msg) {
      ack();  // nothing waiting: whatever came was printed
      msg = receive(std::chrono::milliseconds(100));
      if (!msg) continue;
    }
    if (auto e = kv::watch_event(*msg)) {
      print_event(ctx.json(), *e);
      ++seen;
      if (++unacked >= kAckEvery) ack();
      continue;
    }
    if (kv::watch_lost(*msg)) {
      throw CtlError(ErrorCode::kOverloaded,
                     "kv watch " + key_label(pattern) + ": the watch was lost (" +
                         std::to_string(seen) +
                         " events printed): this watcher fell behind (kv.watch_queue), an event "
                         "came out of order, or the node's watch server restarted; events may "
                         "have been missed: read what you need (kv get / kv keys), then watch "
                         "again");
    }
    if (const NodeDown* down = msg->get<NodeDown>(); down && down->node == target) {
      throw CtlError(ErrorCode::kNodeDown,
                     "kv watch " + key_label(pattern) + ": node " + c.target() +
                         " went down; the watch ended (" + std::to_string(seen) +
                         " events printed): watch again through another node");
    }
  }
  ack();
  (void)store.unwatch(*ref);
  return kExitOk;
}

const Registrar kWatch({"kv", kWatchUsage,
                        "prints each change of the keys PATTERN matches (a glob; default all; "
                        "--prefix, --key), one line each (JSON lines with --json), until Ctrl-C "
                        "or N events",
                        run_watch, "watch"});
const Registrar kMget({"kv", kMgetUsage,
                       "the values and contexts of several keys at once, one line per key "
                       "(exit 1 if any is missing or failed)",
                       run_mget, "mget"});
const Registrar kMput({"kv", kMputUsage,
                       "stores several KEY VALUE pairs at once (not atomically), one line per "
                       "key (exit 1 if any failed)",
                       run_mput, "mput"});
const Registrar kGet({"kv", kGetUsage,
                      "a key's value (or its siblings) and causal context; exit 1 if missing",
                      run_get, "get"});
const Registrar kPut({"kv", kPutUsage,
                      "stores VALUE (its text; --term: JSON as a term); --context C supersedes "
                      "what that read saw; --ttl S: it expires after S seconds",
                      run_put, "put"});
const Registrar kDel({"kv", kDelUsage, "deletes a key (a tombstone superseding --context)", run_del,
                      "del"});
const Registrar kKeys({"kv", kKeysUsage,
                       "keys matching a glob (* ? [a-z]), cluster-wide; --limit for one page",
                       run_keys, "keys"});
const Registrar kExplain({"kv", kExplainUsage,
                          "where a key lives: each replica's node, role, state, version, and "
                          "the hints kept for it",
                          run_explain, "explain"});

}  // namespace

}  // namespace nodus::ctl
