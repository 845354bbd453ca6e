#include "config.hpp"

#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <tuple>
#include <type_traits>

#include "apps.hpp"
#include "nodus/kv/partition.hpp"
#include "nodus/transport/curve.hpp"

extern char** environ;

namespace nodus::tools {

namespace fs = std::filesystem;

namespace {

// -- checks and conversions shared by the keys ------------------------------------------------

std::string trim(std::string s) {
  auto ws = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && ws(s.back())) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && ws(s[i])) ++i;
  return s.substr(i);
}

bool parse_int(const std::string& s, long long lo, long long hi, long long& out) {
  const char* b = s.data();
  const char* e = b + s.size();
  auto [p, ec] = std::from_chars(b, e, out);
  return ec == std::errc() && p == e && out >= lo && out <= hi;
}

bool valid_tcp_endpoint(const std::string& ep, bool allow_wildcard_port) {
  if (ep.rfind("tcp://", 0) != 0) return false;
  auto colon = ep.rfind(':');
  if (colon == std::string::npos || colon <= 6) return false;
  std::string port = ep.substr(colon + 1);
  if (port == "*") return allow_wildcard_port;
  long long p;
  return parse_int(port, 1, 65535, p);
}

std::string in_quotes(const std::string& s) { return "\"" + s + "\""; }

std::string check_node_name(const std::string& n) {
  const bool ok = !n.empty() && n.size() <= 255 && std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
  return ok ? "" : in_quotes(n) + " is not a name: use letters, digits, - _ . (at most 255)";
}

std::string check_listen(const std::string& ep) {
  return valid_tcp_endpoint(ep, true) ? "" : in_quotes(ep) + " is not tcp://HOST:PORT";
}

std::string check_advertise(const std::string& ep) {
  return valid_tcp_endpoint(ep, false) ? ""
                                       : in_quotes(ep) + " is not tcp://HOST:PORT (a port number)";
}

// "tcp://0.0.0.0:P", "tcp://[::]:P", "tcp://*:P": bound to every address of the machine.
bool wildcard_listen(const std::string& ep) {
  const auto colon = ep.rfind(':');
  if (ep.rfind("tcp://", 0) != 0 || colon == std::string::npos) return false;
  const std::string host = ep.substr(6, colon - 6);
  return host == "0.0.0.0" || host == "[::]" || host == "*";
}

std::string check_host_port(const std::string& hp) {
  auto colon = hp.rfind(':');
  long long port;
  if (colon == std::string::npos || colon == 0 ||
      !parse_int(hp.substr(colon + 1), 1, 65535, port)) {
    return in_quotes(hp) + " is not HOST:PORT (e.g. 127.0.0.1:9101)";
  }
  return "";
}

// A seed as the node takes it: "tcp://HOST:PORT" or "tcp://HOST:PORT#KEY"; in a file also
// "ENDPOINT KEY".
std::string convert_seed(const std::string& text, std::string& out) {
  std::string s = text;
  if (auto sp = s.find(' '); sp != std::string::npos) {
    s = s.substr(0, sp) + "#" + trim(s.substr(sp + 1));
  }
  auto a = transport::parse_peer_address(s);
  if (!valid_tcp_endpoint(a.endpoint, false)) return in_quotes(text) + " is not tcp://HOST:PORT";
  if (!a.public_key.empty() && !transport::is_curve_key(a.public_key)) {
    return "the key of " + in_quotes(text) + " is not 40 characters of Z85";
  }
  out = s;
  return "";
}

std::string convert_allowed(const std::string& text, std::string& out) {
  if (!transport::is_curve_key(text)) {
    return in_quotes(text) + " is not a public key (40 characters of Z85; nodusctl keygen)";
  }
  out = text;
  return "";
}

std::string convert_app(const std::string& text, AppSpec& out) {
  auto app = parse_app(text);
  if (!app.ok()) return app.error().message();
  out = std::move(app.value());
  return "";
}

std::string resolve(const std::string& dir, const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute() || dir.empty()) return path;
  return (fs::path(dir) / path).lexically_normal().string();
}

// -- the keys: one table, each key declared once ----------------------------------------------

// Sets a key's field from one value as given: "" when done, else why not (one clause; the
// caller adds the key and where the value came from). A repeatable key's setter runs once per
// value, in order.
using Setter = std::function<std::string(NodeConfig&, const std::string&)>;
// The key's field as text: the default (in a default NodeConfig) or the effective value.
using Shower = std::function<std::string(const NodeConfig&)>;

struct Key {
  std::string name;  // section.key
  std::string help;
  Setter set;
  Shower show;
  bool repeatable = false;
  std::string required;  // "" = optional; else what to do when it is missing
};

Key named(std::string name, std::string help) {
  Key k;
  k.name = std::move(name);
  k.help = std::move(help);
  return k;
}

// The field reached from a config through a chain of members: field(&NodeConfig::node,
// &NodeOptions::name) is config.node.name.
template <class T>
T& walk(T& x) {
  return x;
}
template <class T, class M, class... Ms>
auto& walk(T& x, M member, Ms... rest) {
  return walk(x.*member, rest...);
}
template <class... M>
auto field(M... members) {
  return [=](auto& config) -> auto& { return walk(config, members...); };
}

template <class T>
constexpr bool kIsDuration = false;
template <class R, class P>
constexpr bool kIsDuration<std::chrono::duration<R, P>> = true;

// A whole number (or milliseconds, for a duration field) from lo to hi.
template <class F>
Key number(std::string name, F f, long long lo, long long hi, std::string help) {
  using T = std::remove_cvref_t<decltype(f(std::declval<NodeConfig&>()))>;
  Key k = named(std::move(name), std::move(help));
  k.set = [f, lo, hi](NodeConfig& c, const std::string& v) -> std::string {
    long long n;
    if (!parse_int(v, lo, hi, n)) {
      return "expected a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) +
             (kIsDuration<T> ? " (ms)" : "") + ", got " + in_quotes(v);
    }
    if constexpr (kIsDuration<T>) {
      f(c) = std::chrono::duration_cast<T>(std::chrono::milliseconds(n));
    } else {
      f(c) = static_cast<T>(n);
    }
    return "";
  };
  k.show = [f](const NodeConfig& c) {
    if constexpr (kIsDuration<T>) {
      return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(f(c)).count());
    } else {
      return std::to_string(f(c));
    }
  };
  return k;
}

// Text, with an optional check that returns why a value is wrong.
template <class F>
Key text(std::string name, F f, std::string help,
         std::string (*check)(const std::string&) = nullptr) {
  Key k = named(std::move(name), std::move(help));
  k.set = [f, check](NodeConfig& c, const std::string& v) -> std::string {
    if (check) {
      if (std::string why = check(v); !why.empty()) return why;
    }
    f(c) = v;
    return "";
  };
  k.show = [f](const NodeConfig& c) { return f(c); };
  return k;
}

// One of a few words.
template <class F>
Key word(std::string name, F f, std::vector<std::string> choices, std::string help) {
  Key k = named(std::move(name), std::move(help));
  k.set = [f, choices](NodeConfig& c, const std::string& v) -> std::string {
    if (std::find(choices.begin(), choices.end(), v) == choices.end()) {
      std::string list;
      for (const auto& w : choices) list += (list.empty() ? "" : ", ") + w;
      return in_quotes(v) + " is not one of " + list;
    }
    f(c) = v;
    return "";
  };
  k.show = [f](const NodeConfig& c) { return f(c); };
  return k;
}

// A path, relative to the config file's folder unless absolute.
template <class F>
Key path(std::string name, F f, std::string help) {
  Key k = named(std::move(name), std::move(help));
  k.set = [f](NodeConfig& c, const std::string& v) -> std::string {
    f(c) = resolve(c.config_dir, v);
    return "";
  };
  k.show = [f](const NodeConfig& c) { return f(c); };
  return k;
}

std::string item_text(const std::string& s) { return s; }
std::string item_text(const AppSpec& a) { return a.text; }

// A repeatable key: each value converted (and checked) into one item of a list.
template <class F, class T>
Key list(std::string name, F f, std::string (*convert)(const std::string&, T&), std::string help) {
  Key k = named(std::move(name), std::move(help));
  k.repeatable = true;
  k.set = [f, convert](NodeConfig& c, const std::string& v) -> std::string {
    T item;
    if (std::string why = convert(v, item); !why.empty()) return why;
    f(c).push_back(std::move(item));
    return "";
  };
  k.show = [f](const NodeConfig& c) {
    std::string out;
    for (const auto& item : f(c)) out += (out.empty() ? "" : ", ") + item_text(item);
    return out;
  };
  return k;
}

// A duration in whole seconds, from lo to hi.
template <class F>
Key seconds(std::string name, F f, long long lo, long long hi, std::string help) {
  using T = std::remove_cvref_t<decltype(f(std::declval<NodeConfig&>()))>;
  Key k = named(std::move(name), std::move(help));
  k.set = [f, lo, hi](NodeConfig& c, const std::string& v) -> std::string {
    long long n;
    if (!parse_int(v, lo, hi, n)) {
      return "expected a whole number of seconds from " + std::to_string(lo) + " to " +
             std::to_string(hi) + ", got " + in_quotes(v);
    }
    f(c) = std::chrono::duration_cast<T>(std::chrono::seconds(n));
    return "";
  };
  k.show = [f](const NodeConfig& c) {
    return std::to_string(std::chrono::duration_cast<std::chrono::seconds>(f(c)).count());
  };
  return k;
}

// Node names in one value, separated by spaces or commas: "n1 n2 n3".
template <class F>
Key names(std::string name, F f, std::string help) {
  Key k = named(std::move(name), std::move(help));
  k.set = [f](NodeConfig& c, const std::string& v) -> std::string {
    std::vector<std::string> out;
    std::string item;
    std::istringstream in(v);
    while (std::getline(in, item, ',')) {
      std::istringstream words(item);
      for (std::string w; words >> w;) {
        if (std::string why = check_node_name(w); !why.empty()) return why;
        if (std::find(out.begin(), out.end(), w) != out.end()) {
          return "names " + w + " twice";
        }
        out.push_back(w);
      }
    }
    if (out.empty()) return "is empty; name the nodes that form the ring, e.g. n1 n2 n3";
    f(c) = std::move(out);
    return "";
  };
  k.show = [f](const NodeConfig& c) {
    std::string out;
    for (const auto& n : f(c)) out += (out.empty() ? "" : " ") + n;
    return out;
  };
  return k;
}

// kv.conflicts: siblings | lww.
template <class F>
Key conflicts(std::string name, F f, std::string help) {
  Key k = named(std::move(name), std::move(help));
  k.set = [f](NodeConfig& c, const std::string& v) -> std::string {
    if (v == "siblings") {
      f(c) = kv::Conflicts::kSiblings;
    } else if (v == "lww") {
      f(c) = kv::Conflicts::kLww;
    } else {
      return in_quotes(v) + " is not one of siblings, lww";
    }
    return "";
  };
  k.show = [f](const NodeConfig& c) {
    return std::string(f(c) == kv::Conflicts::kLww ? "lww" : "siblings");
  };
  return k;
}

// on | off.
template <class F>
Key on_off(std::string name, F f, std::string help) {
  Key k = named(std::move(name), std::move(help));
  k.set = [f](NodeConfig& c, const std::string& v) -> std::string {
    if (v != "on" && v != "off") return in_quotes(v) + " is not one of on, off";
    f(c) = v == "on";
    return "";
  };
  k.show = [f](const NodeConfig& c) { return std::string(f(c) ? "on" : "off"); };
  return k;
}

// kv.sync: always | interval | none.
template <class F>
Key sync_mode(std::string name, F f, std::string help) {
  Key k = named(std::move(name), std::move(help));
  k.set = [f](NodeConfig& c, const std::string& v) -> std::string {
    if (v == "always") {
      f(c) = kv::SyncMode::kAlways;
    } else if (v == "interval") {
      f(c) = kv::SyncMode::kInterval;
    } else if (v == "none") {
      f(c) = kv::SyncMode::kNone;
    } else {
      return in_quotes(v) + " is not one of always, interval, none";
    }
    return "";
  };
  k.show = [f](const NodeConfig& c) {
    switch (f(c)) {
      case kv::SyncMode::kAlways:
        return std::string("always");
      case kv::SyncMode::kInterval:
        return std::string("interval");
      default:
        return std::string("none");
    }
  };
  return k;
}

Key required(Key k, std::string what_to_do) {
  k.required = std::move(what_to_do);
  return k;
}

const std::vector<Key>& keys() {
  static const std::vector<Key> kTable = [] {
    std::vector<Key> k;
    // [node]
    k.push_back(required(text("node.name", field(&NodeConfig::node, &NodeOptions::name),
                              "the node's name, unique in the cluster", check_node_name),
                         "give every node a name unique in the cluster"));
    k.push_back(required(
        text("node.listen", field(&NodeConfig::node, &NodeOptions::listen),
             "where peers and nodusctl connect, tcp://HOST:PORT (loopback for one machine)",
             check_listen),
        "set it to tcp://127.0.0.1:PORT (a free port)"));
    k.push_back(text("node.advertise", field(&NodeConfig::node, &NodeOptions::advertise),
                     "the endpoint peers reach this node at, tcp://HOST:PORT (HOST may be a DNS "
                     "name); needed when node.listen binds every address (0.0.0.0 or [::]); "
                     "default: node.listen",
                     check_advertise));
    k.push_back(number("node.schedulers", field(&NodeConfig::node, &NodeOptions::schedulers), 0,
                       1024, "scheduler threads; 0 = one per core"));
    k.push_back(number("node.heartbeat_ms",
                       field(&NodeConfig::node, &NodeOptions::heartbeat_interval), 10, 60000,
                       "heartbeat period of idle links; shorter notices failures sooner, at a "
                       "little traffic"));
    k.push_back(number("node.down_after_ms", field(&NodeConfig::node, &NodeOptions::down_after), 50,
                       600000,
                       "a peer silent this long is declared down (its names go, monitors fire); "
                       "longer than node.heartbeat_ms"));
    k.push_back(path("node.curve_secret_file", field(&NodeConfig::curve_secret_file),
                     "file holding this node's CURVE secret key (Z85; nodusctl keygen); set, "
                     "links are encrypted and only cluster.curve_allowed keys get in"));
    k.push_back(text("node.curve_public_key", field(&NodeConfig::curve_public_key),
                     "this node's CURVE public key (Z85); checked against the secret key"));
    // [cluster]
    k.push_back(text("cluster.name", field(&NodeConfig::cluster_name),
                     "the cluster's name, shown by nodusctl status"));
    k.push_back(list("cluster.seed", field(&NodeConfig::node, &NodeOptions::seeds), convert_seed,
                     "a node to join through, tcp://HOST:PORT (with CURVE: "
                     "tcp://HOST:PORT#PUBLICKEY); any that answers will do"));
    k.push_back(required(path("cluster.cookie_file", field(&NodeConfig::cookie_file),
                              "file holding the cluster's shared secret; trailing white space "
                              "is not part of it"),
                         "point it at a file holding the cluster's shared secret"));
    k.push_back(list("cluster.curve_allowed", field(&NodeConfig::node, &NodeOptions::curve_allowed),
                     convert_allowed,
                     "a public key (Z85) admitted under CURVE: every other node's"));
    // [kv]: the store's options (kv::Options holds their defaults and trade-offs)
    k.push_back(names("kv.initial_members", field(&NodeConfig::kv, &kv::Options::initial_members),
                      "the nodes that form the ring of a new cluster, e.g. n1 n2 n3: the store "
                      "runs on this node when set (the same list on every node; a node not in "
                      "it is a candidate, not a member); unset = no store"));
    k.push_back(number("kv.partitions", field(&NodeConfig::kv, &kv::Options::partitions), 1, 65536,
                       "ring size Q, a power of two, fixed at cluster creation"));
    k.push_back(number("kv.replicas", field(&NodeConfig::kv, &kv::Options::replicas), 1, 16,
                       "copies of each key (N)"));
    k.push_back(number("kv.write_quorum", field(&NodeConfig::kv, &kv::Options::write_quorum), 1, 16,
                       "replicas that must acknowledge a write (W <= N; per request: --w)"));
    k.push_back(number("kv.read_quorum", field(&NodeConfig::kv, &kv::Options::read_quorum), 1, 16,
                       "replicas that must answer a read (R <= N; per request: --r)"));
    k.push_back(number("kv.primary_write_quorum",
                       field(&NodeConfig::kv, &kv::Options::primary_write_quorum), 0, 16,
                       "of W, acks that must come from primaries, not fallbacks (PW <= N; 0: "
                       "none; per request: --pw)"));
    k.push_back(number("kv.durable_write_quorum",
                       field(&NodeConfig::kv, &kv::Options::durable_write_quorum), 0, 16,
                       "of W, acks from replicas that synced the write to disk (DW <= N; 0: "
                       "none; only kv.data_dir with kv.sync = always is durable; per request: "
                       "--dw)"));
    k.push_back(number("kv.primary_read_quorum",
                       field(&NodeConfig::kv, &kv::Options::primary_read_quorum), 0, 16,
                       "of R, replies that must come from primaries (PR <= N; 0: none; PW + PR > "
                       "N makes a read meet every acknowledged write; per request: --pr)"));
    k.push_back(conflicts("kv.conflicts", field(&NodeConfig::kv, &kv::Options::conflicts),
                          "siblings (concurrent writes are all kept until a write with their "
                          "context) or lww (the last write by timestamp wins: LOSES concurrent "
                          "writes)"));
    k.push_back(number("kv.max_value_bytes", field(&NodeConfig::kv, &kv::Options::max_value_bytes),
                       1, 1 << 20, "largest value in bytes; larger puts are refused"));
    k.push_back(number("kv.max_object_bytes",
                       field(&NodeConfig::kv, &kv::Options::max_object_bytes), 0, 48 << 20,
                       "largest stored object in bytes, siblings and versions together; a write "
                       "that would pass it is refused; 0: 8 MiB, or 48 MiB / N when less "
                       "(above kv.max_value_bytes + 1024, times N at most 48 MiB)"));
    k.push_back(seconds("kv.tombstone_ttl", field(&NodeConfig::kv, &kv::Options::tombstone_ttl), 0,
                        365 * 24 * 3600,
                        "seconds a delete's tombstone is kept at least, and until every primary "
                        "holds it"));
    k.push_back(number("kv.request_timeout_ms",
                       field(&NodeConfig::kv, &kv::Options::request_timeout), 1, 600000,
                       "a request's deadline when it names none (ms)"));
    k.push_back(number("kv.vnode_queue", field(&NodeConfig::kv, &kv::Options::vnode_queue), 1,
                       1000000, "requests queued per vnode before it answers overloaded"));
    k.push_back(number("kv.max_siblings", field(&NodeConfig::kv, &kv::Options::max_siblings), 1,
                       100000,
                       "siblings a key may hold; a blind write beyond is refused "
                       "(too_many_siblings), a write with a read's context resolves them"));
    k.push_back(number("kv.read_repair_per_s",
                       field(&NodeConfig::kv, &kv::Options::read_repair_per_s), 0, 10000000,
                       "read repairs started per second at most (0: none); beyond, they are "
                       "skipped and counted (repair under overload would add load)"));
    k.push_back(number("kv.ttl_sweep_interval_ms",
                       field(&NodeConfig::kv, &kv::Options::ttl_sweep_interval), 1, 3600000,
                       "how often each vnode turns values past their TTL into tombstones (ms; "
                       "reads treat them as absent at once)"));
    k.push_back(number("kv.handoff_interval_ms",
                       field(&NodeConfig::kv, &kv::Options::handoff_interval), 10, 3600000,
                       "how often a fallback offers its hints to primaries that are up (ms)"));
    k.push_back(number("kv.transfer_limit", field(&NodeConfig::kv, &kv::Options::transfer_limit), 1,
                       64,
                       "partition transfers (hand-off on a membership change) a node sends at "
                       "a time"));
    k.push_back(on_off("kv.aae", field(&NodeConfig::kv, &kv::Options::aae),
                       "active anti-entropy: on (each partition replica keeps a hash tree and "
                       "the replicas of each preference list exchange theirs and repair what "
                       "differs) or off"));
    k.push_back(number("kv.aae_exchange_interval_ms",
                       field(&NodeConfig::kv, &kv::Options::aae_exchange_interval), 10, 86400000,
                       "how often each pair of replicas of a partition is exchanged at most (ms)"));
    k.push_back(number("kv.aae_concurrency", field(&NodeConfig::kv, &kv::Options::aae_concurrency),
                       1, 64, "anti-entropy exchanges a node runs at a time"));
    k.push_back(number("kv.aae_repairs_per_second",
                       field(&NodeConfig::kv, &kv::Options::aae_repairs_per_second), 1, 10000000,
                       "keys a node repairs by anti-entropy per second at most"));
    k.push_back(number("kv.aae_cpu_percent", field(&NodeConfig::kv, &kv::Options::aae_cpu_percent),
                       1, 100, "share of one core a node's anti-entropy work may take (percent)"));
    k.push_back(path("kv.data_dir", field(&NodeConfig::kv, &kv::Options::data_dir),
                     "where the node keeps its data and ring (RocksDB); absent = memory only, "
                     "lost when the node stops"));
    k.push_back(sync_mode("kv.sync", field(&NodeConfig::kv, &kv::Options::sync),
                          "with kv.data_dir: always (a write is acknowledged once synced to "
                          "disk, syncs shared by concurrent writers), interval (synced every "
                          "kv.sync_interval_ms: a machine crash loses up to that much) or none "
                          "(the OS decides: a machine crash loses what it had not written)"));
    k.push_back(number("kv.sync_interval_ms", field(&NodeConfig::kv, &kv::Options::sync_interval),
                       1, 60000, "with kv.sync = interval: ms between syncs"));
    k.push_back(number("kv.watch_queue", field(&NodeConfig::kv, &kv::Options::watch_queue), 1,
                       10000000,
                       "events a watcher may leave untaken; one more ends its watch with "
                       "{kv_watch_lost, Pattern}"));
    k.push_back(number("kv.max_keys", field(&NodeConfig::kv, &kv::Options::max_keys), 0, 1LL << 40,
                       "live keys a node holds at most before it deletes the least recently "
                       "used ones cluster-wide (counted as evictions); 0: off"));
    k.push_back(number("kv.max_memory", field(&NodeConfig::kv, &kv::Options::max_memory), 0,
                       1LL << 50,
                       "bytes of engine memory a node holds at most before it evicts as "
                       "kv.max_keys does; 0: off, else at least 1048576"));
    k.push_back(number("kv.max_watches", field(&NodeConfig::kv, &kv::Options::max_watches), 1,
                       1000000, "watches a node holds at most (more: too_many_watches)"));
    // [log]
    k.push_back(word("log.level", field(&NodeConfig::log, &LogSettings::level),
                     {"trace", "debug", "info", "warn", "error", "critical", "off"},
                     "trace, debug, info, warn, error, critical or off"));
    k.push_back(word("log.format", field(&NodeConfig::log, &LogSettings::format), {"text", "json"},
                     "text (lines for people) or json (one JSON object a line)"));
    k.push_back(path("log.file", field(&NodeConfig::log, &LogSettings::file),
                     "where logs go; absent = stderr"));
    // [apps]
    k.push_back(list("apps.start", field(&NodeConfig::apps), convert_app,
                     "KIND NAME: a server to start under the node's application supervisor; "
                     "NAME is local:X, global:X or via:REG/X"));
    // [admin]
    k.push_back(text("admin.http", field(&NodeConfig::admin_http),
                     "HOST:PORT serving /metrics (Prometheus text) and /health; absent = no HTTP",
                     check_host_port));
    // [resp]
    k.push_back(text("resp.listen", field(&NodeConfig::resp_listen),
                     "HOST:PORT serving the Redis protocol (RESP2) onto the store; absent = none",
                     check_host_port));
    k.push_back(number("resp.max_clients", field(&NodeConfig::resp_max_clients), 1, 100000,
                       "Redis-protocol connections at once; more are refused"));
    // [testing]
    k.push_back(word("testing.control", field(&NodeConfig::testing_control), {"off", "on"},
                     "on: the control server of nodus::testing::Cluster (nodus_test_control), "
                     "through which any peer holding the cookie can cut this node's links; for "
                     "tests only"));
    return k;
  }();
  return kTable;
}

const Key* find_key(const std::string& name) {
  for (const Key& k : keys()) {
    if (name == k.name) return &k;
  }
  return nullptr;
}

// The sections, in the table's order.
std::vector<std::string> sections() {
  std::vector<std::string> out;
  for (const Key& k : keys()) {
    std::string s = k.name.substr(0, k.name.find('.'));
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

// NODUS_CLUSTER_COOKIE_FILE <- cluster.cookie_file
std::string env_name(const std::string& key) {
  std::string out = "NODUS_";
  for (char c : key) {
    out.push_back(c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return out;
}

const char* source_name(Source s) {
  switch (s) {
    case Source::kDefault:
      return "default";
    case Source::kFile:
      return "file";
    case Source::kEnv:
      return "env";
    case Source::kFlag:
      return "flag";
  }
  return "?";
}

// -- where values come from -----------------------------------------------------------------

// A value as given, and where, for messages: " in /x/n1.conf (line 3)", " (flag --node.name)",
// " (from NODUS_NODE_NAME)".
struct Given {
  std::string value;
  Source source;
  std::string where;
};
using Givens = std::map<std::string, std::vector<Given>>;  // key -> values of one source

Status bad(std::string message) { return Status(ErrorCode::kBadConfig, std::move(message)); }

// Reads the INI file. Comments start with # or ; at the start of a line or after white space,
// so that a '#' inside a value (CURVE keys are Z85, whose alphabet has one) survives.
Status read_ini(const std::string& file, Givens& out) {
  std::error_code ec;
  if (fs::is_directory(file, ec)) {
    return bad("bad config: " + file + " is a directory; give --config a node's .conf file");
  }
  std::ifstream in(file);
  if (!in) {
    return bad("bad config: " + file + ": cannot read the config file (" + std::strerror(errno) +
               "); check the path given to --config");
  }
  const std::vector<std::string> known = sections();
  std::string line, section;
  for (int n = 1; std::getline(in, line); ++n) {
    for (std::size_t i = 0; i < line.size(); ++i) {
      if ((line[i] == '#' || line[i] == ';') &&
          (i == 0 || std::isspace(static_cast<unsigned char>(line[i - 1])))) {
        line.resize(i);
        break;
      }
    }
    line = trim(line);
    if (line.empty()) continue;
    const std::string at = file + ":" + std::to_string(n);
    if (line.front() == '[') {
      if (line.back() != ']') return bad("bad config: " + at + ": a section header is [name]");
      section = trim(line.substr(1, line.size() - 2));
      if (std::find(known.begin(), known.end(), section) == known.end()) {
        std::string list;
        for (const auto& s : known) list += (list.empty() ? "[" : " [") + s + "]";
        return bad("bad config: " + at + ": unknown section [" + section + "]; sections are " +
                   list + " (see nodusd --help)");
      }
      continue;
    }
    auto eq = line.find('=');
    if (eq == std::string::npos) {
      return bad("bad config: " + at + ": expected KEY = VALUE, got " + in_quotes(line));
    }
    const std::string key = trim(line.substr(0, eq));
    if (section.empty()) {
      return bad("bad config: " + at + ": key '" + key +
                 "' is outside a section; put it under [node], [cluster] ...");
    }
    const std::string full = section + "." + key;
    const Key* k = find_key(full);
    if (!k)
      return bad("bad config: " + at + ": unknown key '" + full +
                 "'; nodusd --help lists the keys");
    const std::string where = " in " + file + " (line " + std::to_string(n) + ")";
    auto& values = out[full];
    if (!k->repeatable && !values.empty()) {
      return bad("bad config: " + full + where + ": given more than once (first" +
                 values.front().where + "); keep one");
    }
    values.push_back({trim(line.substr(eq + 1)), Source::kFile, where});
  }
  return Status::Ok();
}

// The NODUS_<SECTION>_<KEY> variables. A variable that starts like a section but names no
// key is refused (a typo would otherwise be ignored silently).
Status read_env(const Environment& env, Givens& out) {
  std::map<std::string, const Key*> by_env;
  for (const Key& k : keys()) by_env[env_name(k.name)] = &k;
  const std::vector<std::string> known = sections();
  for (const auto& [name, value] : env) {
    auto it = by_env.find(name);
    if (it != by_env.end()) {
      out[it->second->name].push_back({value, Source::kEnv, " (from " + name + ")"});
      continue;
    }
    for (const std::string& s : known) {
      if (name.rfind(env_name(s) + "_", 0) == 0) {
        return bad("bad config: environment variable " + name +
                   " names no key; unset it or see nodusd --help for the keys");
      }
    }
  }
  return Status::Ok();
}

Status read_flags(const CommandLine& cmd, Givens& out) {
  for (const auto& [key, value] : cmd.flags) {
    const Key* k = find_key(key);
    if (!k) {
      return Status(ErrorCode::kBadArg,
                    "bad usage: unknown option --" + key + "; nodusd --help lists them");
    }
    auto& values = out[key];
    if (!k->repeatable && !values.empty()) {
      return bad("bad config: --" + key + " given more than once; keep one");
    }
    values.push_back({value, Source::kFlag, " (flag --" + key + ")"});
  }
  return Status::Ok();
}

// The checks that span keys, and reading the files the keys name. `where` gives a key's origin.
Status finish(NodeConfig& c, const std::function<std::string(const std::string&)>& where) {
  auto fail = [&](const std::string& key, const std::string& why) {
    return bad("bad config: " + key + where(key) + ": " + why);
  };
  if (c.node.down_after <= c.node.heartbeat_interval) {
    return fail("node.down_after_ms", "must be longer than node.heartbeat_ms (" +
                                          std::to_string(c.node.heartbeat_interval.count()) +
                                          " ms)");
  }
  if (wildcard_listen(c.node.listen) && c.node.advertise.empty()) {
    return fail("node.listen", c.node.listen +
                                   " binds every address, which peers cannot dial: set "
                                   "node.advertise to tcp://ADDRESS-OR-HOST:PORT that they can");
  }
  if (!kv::valid_partition_count(c.kv.partitions)) {
    return fail("kv.partitions", "expected a power of two (1, 2, 4 ... 65536), got " +
                                     std::to_string(c.kv.partitions));
  }
  for (const auto& [key, q, least] :
       {std::tuple{"kv.write_quorum", c.kv.write_quorum, 1},
        std::tuple{"kv.read_quorum", c.kv.read_quorum, 1},
        std::tuple{"kv.primary_write_quorum", c.kv.primary_write_quorum, 0},
        std::tuple{"kv.durable_write_quorum", c.kv.durable_write_quorum, 0},
        std::tuple{"kv.primary_read_quorum", c.kv.primary_read_quorum, 0}}) {
    if (q > c.kv.replicas) {
      return fail(key, "expected " + std::to_string(least) + " to kv.replicas (" +
                           std::to_string(c.kv.replicas) + "), got " + std::to_string(q));
    }
  }
  if (c.kv.initial_members.size() > kv::Ring::kMaxMembers) {
    return fail("kv.initial_members",
                "names more than " + std::to_string(kv::Ring::kMaxMembers) + " nodes");
  }
  if (c.run_store()) {
    const auto members = static_cast<std::uint32_t>(c.kv.initial_members.size());
    const auto most = std::max(c.kv.write_quorum, c.kv.read_quorum);
    if (most > members) {
      c.warnings.push_back("kv.write_quorum / kv.read_quorum (" + std::to_string(most) +
                           ") is more than the " + std::to_string(members) +
                           " node(s) of kv.initial_members: requests will fail no_quorum "
                           "until that many members are up");
    }
  }
  if (!c.kv.data_dir.empty() && c.kv.sync != kv::SyncMode::kAlways &&
      c.kv.durable_write_quorum > 0) {
    c.warnings.push_back("kv.durable_write_quorum is " + std::to_string(c.kv.durable_write_quorum) +
                         " but only kv.sync = always makes a replica durable: puts will fail "
                         "no_quorum (dw) unless other nodes sync always");
  }
  if (!c.resp_listen.empty() && !c.run_store()) {
    return fail("resp.listen",
                "serves the store, which runs on this node only when "
                "kv.initial_members is set; set it, or remove resp.listen");
  }

  auto cookie = read_secret_file(c.cookie_file, c.warnings);
  if (!cookie.ok()) {
    return fail("cluster.cookie_file", cookie.error().message() +
                                           "; point it at the file holding the cluster's shared "
                                           "secret (a relative path is relative to the config "
                                           "file)");
  }
  c.node.cookie = std::move(cookie.value());
  c.kv.context_secret = kv_context_secret(c.node.cookie);
  // The store's own checks (kv.max_object_bytes against kv.max_value_bytes and N ...): its
  // message begins with the key at fault.
  if (Status s = kv::check_options(c.kv); !s.ok()) {
    std::string key = s.message().substr(0, s.message().find(' '));
    return fail(find_key(key) ? key : std::string("[kv]"), s.message());
  }

  if (!c.curve_secret_file.empty()) {
    auto secret = read_secret_file(c.curve_secret_file, c.warnings);
    if (!secret.ok()) {
      return fail("node.curve_secret_file",
                  secret.error().message() + "; make a key pair with nodusctl keygen");
    }
    if (c.curve_public_key.empty()) {
      return fail("node.curve_public_key", "missing: CURVE needs this node's public key too");
    }
    transport::CurveKeys keys{c.curve_public_key, std::move(secret.value())};
    if (Status s = transport::check_curve_keys(keys); !s.ok()) {
      return fail("node.curve_public_key",
                  s.message() + " (secret key in " + c.curve_secret_file + ")");
    }
    c.node.curve = std::move(keys);
    for (const std::string& seed : c.node.seeds) {
      if (transport::parse_peer_address(seed).public_key.empty()) {
        return fail("cluster.seed", in_quotes(seed) +
                                        " has no public key; with CURVE on write "
                                        "ENDPOINT#PUBLICKEY (or ENDPOINT PUBLICKEY in a file)");
      }
    }
  } else {
    if (!c.curve_public_key.empty()) {
      return fail("node.curve_secret_file", "missing: node.curve_public_key is set without it");
    }
    if (!c.node.curve_allowed.empty()) {
      return fail("cluster.curve_allowed", "set without node.curve_secret_file (CURVE is off)");
    }
  }

  if (!c.log.file.empty()) {
    std::error_code ec;
    if (fs::is_directory(c.log.file, ec)) {
      return fail("log.file", c.log.file + " is a directory; name a file in it");
    }
    std::ofstream probe(c.log.file, std::ios::app);
    if (!probe) {
      return fail("log.file", "cannot open " + c.log.file + " for writing (" +
                                  std::strerror(errno) + "); fix the path or its permissions");
    }
  }

  std::set<std::string> names;
  for (const AppSpec& app : c.apps) {
    if (app.kind == "kv_store" && !c.run_store()) {
      return fail("apps.start", "kv_store (in " + in_quotes(app.text) +
                                    ") needs the store on this node, which runs when "
                                    "kv.initial_members is set; set it, or remove that entry");
    }
    if (!names.insert(app.scope + ":" + app.name).second) {
      return fail("apps.start", "the name " + app.scope + ":" + app.name + " is used twice");
    }
  }
  return Status::Ok();
}

Result<NodeConfig> load(const CommandLine& cmd, const Environment& env) {
  // One source per key, the strongest that gives it: flag > env > file.
  Givens flags, vars, file;
  if (Status s = read_flags(cmd, flags); !s.ok()) return s;
  if (Status s = read_env(env, vars); !s.ok()) return s;
  NodeConfig c;
  if (!cmd.config_file.empty()) {
    c.config_file = fs::absolute(cmd.config_file).lexically_normal().string();
    c.config_dir = fs::path(c.config_file).parent_path().string();
    if (Status s = read_ini(c.config_file, file); !s.ok()) return s;
  }
  const std::string in_file =
      c.config_file.empty() ? std::string(" (no config file)") : " in " + c.config_file;
  std::map<std::string, std::string> where;  // key -> where its value came from
  const NodeConfig defaults;
  for (const Key& k : keys()) {
    const std::vector<Given>* values = nullptr;
    for (const Givens* g : {&flags, &vars, &file}) {
      auto it = g->find(k.name);
      if (it != g->end() && !it->second.empty()) {
        values = &it->second;
        break;
      }
    }
    if (!values) {
      if (!k.required.empty()) {
        return bad("bad config: " + k.name + in_file + ": missing; " + k.required);
      }
      c.effective[k.name] = {k.show(defaults), Source::kDefault};
      continue;
    }
    where[k.name] = values->front().where;
    for (const Given& g : *values) {
      if (!k.required.empty() && trim(g.value).empty()) {
        return bad("bad config: " + k.name + g.where + ": is empty; " + k.required);
      }
      if (std::string why = k.set(c, g.value); !why.empty()) {
        return bad("bad config: " + k.name + g.where + ": " + why);
      }
    }
    c.effective[k.name] = {k.show(c), values->front().source};
  }
  auto where_of = [&](const std::string& key) {
    auto it = where.find(key);
    return it == where.end() ? in_file : it->second;
  };
  if (Status s = finish(c, where_of); !s.ok()) return s;
  return c;
}

}  // namespace

Environment process_environment() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    std::string var(*e);
    auto eq = var.find('=');
    if (eq != std::string::npos) env[var.substr(0, eq)] = var.substr(eq + 1);
  }
  return env;
}

Result<CommandLine> parse_command_line(int argc, const char* const* argv) {
  CommandLine cmd;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--check") {
      cmd.check = true;
    } else if (a == "--help" || a == "-h") {
      cmd.help = true;
    } else if (a == "--config" || a == "-c") {
      if (i + 1 >= argc) return Status(ErrorCode::kBadArg, "bad usage: --config needs a FILE");
      cmd.config_file = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      cmd.config_file = a.substr(9);
    } else if (a.rfind("--", 0) == 0 && a.size() > 2) {
      const auto eq = a.find('=');
      const std::string key = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
      if (!find_key(key)) {
        return Status(ErrorCode::kBadArg,
                      "bad usage: unknown option --" + key + "; nodusd --help lists them");
      }
      if (eq != std::string::npos) {
        cmd.flags.emplace_back(key, a.substr(eq + 1));
      } else if (i + 1 < argc) {
        cmd.flags.emplace_back(key, argv[++i]);
      } else {
        return Status(ErrorCode::kBadArg, "bad usage: --" + key + " needs a value");
      }
    } else {
      return Status(ErrorCode::kBadArg, "bad usage: unexpected argument " + in_quotes(a) +
                                            "; nodusd --config FILE [--section.key=VALUE ...]");
    }
  }
  return cmd;
}

Result<NodeConfig> load_config(const CommandLine& cmd, const Environment& env) {
  return load(cmd, env);
}

Result<NodeConfig> load_config_file(const std::string& path) {
  CommandLine cmd;
  cmd.config_file = path;
  return load(cmd, process_environment());
}

Result<std::string> read_secret_file(const std::string& path, std::vector<std::string>& warnings) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return bad(path + (errno == ENOENT
                           ? std::string(" does not exist")
                           : " cannot be read (" + std::string(std::strerror(errno)) + ")"));
  }
  if (S_ISDIR(st.st_mode)) return bad(path + " is a directory, not a file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return bad(path + " cannot be read (" + std::strerror(errno) + ")");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string out = ss.str();
  while (!out.empty() && std::isspace(static_cast<unsigned char>(out.back()))) out.pop_back();
  if (out.empty()) return bad(path + " is empty (or white space only)");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    warnings.push_back(path + " holds a secret but others than its owner may read it (mode " +
                       mode + "); chmod 600 " + path);
  }
  return out;
}

std::string kv_context_secret(const std::string& cookie) {
  static constexpr char kLabel[] = "nodus kv causal-context secret, version 1";
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, reinterpret_cast<const unsigned char*>(cookie.data()),
                              cookie.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(kLabel),
                                sizeof(kLabel) - 1);
  crypto_auth_hmacsha256_final(&st, mac);
  return std::string(reinterpret_cast<const char*>(mac), sizeof(mac));
}

std::string config_help() {
  std::ostringstream out;
  out << "usage: nodusd --config FILE [--check] [--section.key=VALUE ...]\n\n"
         "Runs one nodus node. Every key below may be set in the INI file (under [section]),\n"
         "as an environment variable NODUS_SECTION_KEY, or as a flag --section.key=VALUE;\n"
         "a flag wins over the environment, which wins over the file.\n"
         "  --check    validate, print the effective configuration and where each value came\n"
         "             from, and exit\n\nkeys (default in brackets):\n";
  const NodeConfig defaults;
  for (const Key& k : keys()) {
    std::string name = k.name;
    if (k.repeatable) name += " (repeatable)";
    out << "  " << name;
    for (std::size_t i = name.size(); i < 36; ++i) out << ' ';
    out << k.help;
    const std::string d = k.required.empty() ? k.show(defaults) : "required";
    if (!d.empty()) out << " [" << d << "]";
    out << "\n";
  }
  out << "\napp kinds (apps.start = KIND NAME):\n";
  for (const AppKind& kind : app_kinds()) {
    std::string name = kind.name;
    name.resize(std::max<std::size_t>(name.size(), 14), ' ');
    out << "  " << name << kind.help << "\n";
  }
  out << "\nexit status: 0 stopped cleanly, 2 bad configuration or the node could not start\n";
  return out.str();
}

std::string describe(const NodeConfig& config) {
  std::ostringstream out;
  out << "# effective configuration"
      << (config.config_file.empty() ? std::string() : " of " + config.config_file) << "\n";
  std::size_t w = 0;
  for (const auto& [key, vs] : config.effective) w = std::max(w, key.size());
  for (const Key& k : keys()) {
    auto it = config.effective.find(k.name);
    if (it == config.effective.end()) continue;
    const auto& [value, source] = it->second;
    std::string line = k.name;
    line.resize(w + 1, ' ');
    line += "= " + value;
    if (line.size() < w + 40) line.resize(w + 40, ' ');
    line += std::string("  # ") + source_name(source);
    if (source == Source::kEnv) line += " " + env_name(k.name);
    out << line << "\n";
  }
  return out.str();
}

Result<AppSpec> parse_app(const std::string& text) {
  std::istringstream in(text);
  std::string kind, name, extra;
  in >> kind >> name;
  if (kind.empty() || name.empty() || (in >> extra)) {
    return bad(in_quotes(text) + " is not KIND NAME (e.g. counter global:hits)");
  }
  const auto& kinds = app_kinds();
  if (std::none_of(kinds.begin(), kinds.end(), [&](const AppKind& k) { return kind == k.name; })) {
    std::string list;
    for (const AppKind& k : kinds) list += (list.empty() ? "" : ", ") + std::string(k.name);
    return bad("unknown kind " + in_quotes(kind) + " in " + in_quotes(text) + "; kinds: " + list);
  }
  auto colon = name.find(':');
  if (colon == std::string::npos) {
    return bad(in_quotes(name) + " in " + in_quotes(text) +
               " is not local:X, global:X or via:REG/X");
  }
  AppSpec out{kind, name.substr(0, colon), name.substr(colon + 1), text};
  if (out.scope != "local" && out.scope != "global" && out.scope != "via") {
    return bad(in_quotes(name) + " in " + in_quotes(text) +
               ": the scope must be local, global or via");
  }
  if (out.name.empty() || out.name.size() > 255) {
    return bad(in_quotes(name) + " in " + in_quotes(text) + ": the name is empty or too long");
  }
  if (out.scope == "via" && out.name.find('/') == std::string::npos) {
    return bad(in_quotes(name) + " in " + in_quotes(text) + ": a via name is via:REGISTRY/KEY");
  }
  return out;
}

}  // namespace nodus::tools
