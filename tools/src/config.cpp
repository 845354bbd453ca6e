#include "config.hpp"

#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "nodus/transport/curve.hpp"

extern char** environ;

namespace nodus::tools {

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace {

// -- the keys: one table, documented once ------------------------------------------------

struct Key {
  const char* name;
  const char* default_text;  // "" = none
  bool repeatable;
  const char* help;
};

const Key kKeys[] = {
    {"node.name", "", false, "the node's name, unique in the cluster (required)"},
    {"node.listen", "", false,
     "where peers and nodusctl connect, tcp://HOST:PORT (required; loopback for one machine)"},
    {"node.schedulers", "0", false, "scheduler threads; 0 = one per core"},
    {"node.heartbeat_ms", "300", false,
     "heartbeat period of idle links; shorter notices failures sooner, at a little traffic"},
    {"node.down_after_ms", "2000", false,
     "a peer silent this long is declared down (its names go, monitors fire)"},
    {"node.curve_secret_file", "", false,
     "file holding this node's CURVE secret key (Z85; nodusctl keygen); set, links are "
     "encrypted and only cluster.curve_allowed keys get in"},
    {"node.curve_public_key", "", false,
     "this node's CURVE public key (Z85); checked against the secret key"},
    {"cluster.name", "", false, "the cluster's name, shown by nodusctl status"},
    {"cluster.seed", "", true,
     "a node to join through, tcp://HOST:PORT (with CURVE: tcp://HOST:PORT#PUBLICKEY); "
     "repeatable, any that answers will do"},
    {"cluster.cookie_file", "", false,
     "file holding the cluster's shared secret (required); relative to the config file"},
    {"cluster.curve_allowed", "", true,
     "a public key (Z85) admitted to this node under CURVE; repeatable: every other node's"},
    {"kv.partitions", "64", false, "ring size, fixed at cluster creation (the store comes later)"},
    {"kv.replicas", "3", false, "copies of each key (N)"},
    {"kv.write_quorum", "2", false, "replicas that must acknowledge a write (W <= N)"},
    {"kv.read_quorum", "2", false, "replicas that must answer a read (R <= N)"},
    {"kv.data_dir", "", false, "the durable backend's home; absent = memory only"},
    {"log.level", "info", false, "trace, debug, info, warn, error, critical or off"},
    {"log.format", "text", false, "text (lines for people) or json (one JSON object a line)"},
    {"log.file", "", false, "where logs go; absent = stderr; relative to the config file"},
    {"apps.start", "", true,
     "KIND NAME: a server to start under the node's application supervisor; NAME is "
     "local:X, global:X or via:REG/X; repeatable"},
    {"admin.http", "", false,
     "HOST:PORT serving /metrics (Prometheus text) and /health; absent = no HTTP"},
};

const Key* find_key(const std::string& name) {
  for (const Key& k : kKeys) {
    if (name == k.name) return &k;
  }
  return nullptr;
}

// NODUS_CLUSTER_COOKIE_FILE -> cluster.cookie_file
std::string env_name(const std::string& key) {
  std::string out = "NODUS_";
  for (char c : key) {
    out.push_back(c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return out;
}

const char* const kSections[] = {"node", "cluster", "kv", "log", "apps", "admin"};

po::options_description key_options() {
  po::options_description d("config keys");
  for (const Key& k : kKeys) {
    if (k.repeatable) {
      d.add_options()(k.name, po::value<std::vector<std::string>>(), k.help);
    } else {
      d.add_options()(k.name, po::value<std::string>(), k.help);
    }
  }
  return d;
}

std::string trim(std::string s) {
  auto ws = [](unsigned char c) { return std::isspace(c) != 0; };
  while (!s.empty() && ws(static_cast<unsigned char>(s.back()))) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && ws(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

// Reads the INI file into --section.key=value arguments for Boost.Program_options' parser.
// Comments start with # or ; at the start of a line or after whitespace, so that a '#' inside
// a value (CURVE keys are Z85, whose alphabet has one) survives. Keys are checked here, where
// the line number is known.
bool read_ini(const std::string& path, std::vector<std::string>& args, std::string& why) {
  std::ifstream in(path);
  if (!in) {
    why = path + ": cannot read the config file (" + std::strerror(errno) +
          "); check the path given to --config";
    return false;
  }
  std::string line, section;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    for (std::size_t i = 0; i < line.size(); ++i) {
      if ((line[i] == '#' || line[i] == ';') &&
          (i == 0 || std::isspace(static_cast<unsigned char>(line[i - 1])))) {
        line.resize(i);
        break;
      }
    }
    line = trim(line);
    if (line.empty()) continue;
    const std::string where = path + ":" + std::to_string(n);
    if (line.front() == '[') {
      if (line.back() != ']') {
        why = where + ": a section header must look like [node]";
        return false;
      }
      section = trim(line.substr(1, line.size() - 2));
      if (std::find(std::begin(kSections), std::end(kSections), section) == std::end(kSections)) {
        why = where + ": unknown section [" + section +
              "]; sections are [node] [cluster] [kv] [log] [apps] [admin] (see nodusd --help)";
        return false;
      }
      continue;
    }
    auto eq = line.find('=');
    if (eq == std::string::npos) {
      why = where + ": expected KEY = VALUE, got \"" + line + "\"";
      return false;
    }
    std::string key = trim(line.substr(0, eq));
    std::string value = trim(line.substr(eq + 1));
    if (section.empty()) {
      why = where + ": key '" + key + "' is outside a section; put it under [node], [cluster] ...";
      return false;
    }
    const std::string full = section + "." + key;
    if (!find_key(full)) {
      why = where + ": unknown key '" + full + "'; nodusd --help lists the keys";
      return false;
    }
    args.push_back("--" + full + "=" + value);
  }
  return true;
}

std::string resolve(const std::string& dir, const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute() || dir.empty()) return path;
  return (fs::path(dir) / path).lexically_normal().string();
}

bool read_secret_file(const std::string& path, std::string& out, std::string& why) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    why = std::string("cannot read ") + path + " (" + std::strerror(errno) + ")";
    return false;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' ')) {
    out.pop_back();
  }
  return true;
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

bool valid_node_name(const std::string& n) {
  if (n.empty() || n.size() > 255) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
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

struct Sources {
  po::variables_map vm;                 // flag > env > file: the first store wins
  std::map<std::string, Source> where;  // key -> source of its effective value
};

// Converts and checks every value. `file` names the config file in messages.
std::optional<NodeConfig> build(Sources& src, const std::string& file, ConfigError& error) {
  NodeConfig c;
  c.config_file = file;
  c.config_dir = file.empty() ? std::string() : fs::path(file).parent_path().string();
  const std::string in_file = file.empty() ? std::string(" (no config file)") : " in " + file;

  auto fail = [&](const std::string& key, const std::string& what) {
    auto it = src.where.find(key);
    std::string from = in_file;
    if (it != src.where.end() && it->second == Source::kFlag) from = " (flag --" + key + ")";
    if (it != src.where.end() && it->second == Source::kEnv) from = " (from " + env_name(key) + ")";
    error.message = "bad config: " + key + from + ": " + what;
    return std::nullopt;
  };
  auto has = [&](const std::string& key) { return src.vm.count(key) > 0; };
  auto str = [&](const std::string& key, const std::string& dflt) {
    return has(key) ? src.vm[key].as<std::string>() : dflt;
  };
  auto list = [&](const std::string& key) {
    return has(key) ? src.vm[key].as<std::vector<std::string>>() : std::vector<std::string>{};
  };
  auto integer = [&](const std::string& key, long long dflt, long long lo, long long hi,
                     long long& out) {
    if (!has(key)) {
      out = dflt;
      return true;
    }
    return parse_int(src.vm[key].as<std::string>(), lo, hi, out);
  };

  for (const Key& k : kKeys) {
    std::string text;
    if (has(k.name)) {
      if (k.repeatable) {
        for (const auto& v : list(k.name)) text += (text.empty() ? "" : ", ") + v;
      } else {
        text = str(k.name, "");
      }
    } else {
      text = k.default_text;
    }
    auto it = src.where.find(k.name);
    c.effective[k.name] = {text, it == src.where.end() ? Source::kDefault : it->second};
  }

  // [node]
  c.node.name = str("node.name", "");
  if (c.node.name.empty()) return fail("node.name", "missing; give every node a unique name");
  if (!valid_node_name(c.node.name)) {
    return fail("node.name", "\"" + c.node.name + "\" is not a name: use letters, digits, - _ .");
  }
  c.node.listen = str("node.listen", "");
  if (c.node.listen.empty()) {
    return fail("node.listen", "missing; set it to tcp://127.0.0.1:PORT (a free port)");
  }
  if (!valid_tcp_endpoint(c.node.listen, true)) {
    return fail("node.listen", "\"" + c.node.listen + "\" is not tcp://HOST:PORT");
  }
  long long v;
  if (!integer("node.schedulers", 0, 0, 1024, v)) {
    return fail("node.schedulers", "expected a number of threads from 0 to 1024");
  }
  c.node.schedulers = static_cast<unsigned>(v);
  if (!integer("node.heartbeat_ms", 300, 10, 60000, v)) {
    return fail("node.heartbeat_ms", "expected milliseconds from 10 to 60000");
  }
  c.node.heartbeat_interval = std::chrono::milliseconds(v);
  if (!integer("node.down_after_ms", 2000, 50, 600000, v)) {
    return fail("node.down_after_ms", "expected milliseconds from 50 to 600000");
  }
  c.node.down_after = std::chrono::milliseconds(v);
  if (c.node.down_after <= c.node.heartbeat_interval) {
    return fail("node.down_after_ms", "must be longer than node.heartbeat_ms");
  }

  // [cluster]
  c.cluster_name = str("cluster.name", "");
  c.cookie_file = resolve(c.config_dir, str("cluster.cookie_file", ""));
  if (c.cookie_file.empty()) {
    return fail("cluster.cookie_file",
                "missing; point it at a file holding the cluster's shared secret");
  }
  std::string why;
  if (!read_secret_file(c.cookie_file, c.node.cookie, why)) {
    return fail("cluster.cookie_file", why +
                                           "; create it or fix the path (relative paths are "
                                           "relative to the config file)");
  }
  if (c.node.cookie.empty()) {
    return fail("cluster.cookie_file", c.cookie_file + " is empty; put the shared secret in it");
  }
  for (const std::string& seed : list("cluster.seed")) {
    // In a file a seed may also be "ENDPOINT PUBLICKEY".
    std::string s = seed;
    if (auto sp = s.find(' '); sp != std::string::npos) {
      s = s.substr(0, sp) + "#" + trim(s.substr(sp + 1));
    }
    auto a = transport::parse_peer_address(s);
    if (!valid_tcp_endpoint(a.endpoint, false)) {
      return fail("cluster.seed", "\"" + seed + "\" is not tcp://HOST:PORT");
    }
    if (!a.public_key.empty() && !transport::is_curve_key(a.public_key)) {
      return fail("cluster.seed", "the key of \"" + seed + "\" is not 40 characters of Z85");
    }
    c.node.seeds.push_back(s);
  }
  for (const std::string& key : list("cluster.curve_allowed")) {
    if (!transport::is_curve_key(key)) {
      return fail("cluster.curve_allowed",
                  "\"" + key + "\" is not a public key (40 characters of Z85; nodusctl keygen)");
    }
    c.node.curve_allowed.push_back(key);
  }

  // CURVE
  const std::string secret_file = resolve(c.config_dir, str("node.curve_secret_file", ""));
  const std::string public_key = str("node.curve_public_key", "");
  if (!secret_file.empty()) {
    transport::CurveKeys keys;
    if (!read_secret_file(secret_file, keys.secret_key, why)) {
      return fail("node.curve_secret_file", why + "; make a key pair with nodusctl keygen");
    }
    if (public_key.empty()) {
      return fail("node.curve_public_key", "missing: CURVE needs this node's public key too");
    }
    keys.public_key = public_key;
    if (Status s = transport::check_curve_keys(keys); !s.ok()) {
      return fail("node.curve_public_key", s.message() + " (secret key in " + secret_file + ")");
    }
    c.node.curve = keys;
    for (const std::string& seed : c.node.seeds) {
      if (transport::parse_peer_address(seed).public_key.empty()) {
        return fail("cluster.seed", "\"" + seed +
                                        "\" has no public key; with CURVE on write "
                                        "ENDPOINT#PUBLICKEY (or ENDPOINT PUBLICKEY in a file)");
      }
    }
  } else {
    if (!public_key.empty()) {
      return fail("node.curve_secret_file", "missing: node.curve_public_key is set without it");
    }
    if (!c.node.curve_allowed.empty()) {
      return fail("cluster.curve_allowed", "set without node.curve_secret_file (CURVE is off)");
    }
  }

  // [kv]
  if (!integer("kv.partitions", 64, 1, 65536, v)) {
    return fail("kv.partitions", "expected a ring size from 1 to 65536");
  }
  c.kv_partitions = static_cast<int>(v);
  if (!integer("kv.replicas", 3, 1, 16, v)) return fail("kv.replicas", "expected 1 to 16");
  c.kv_replicas = static_cast<int>(v);
  if (!integer("kv.write_quorum", 2, 1, 16, v) || v > c.kv_replicas) {
    return fail("kv.write_quorum",
                "expected 1 to kv.replicas (" + std::to_string(c.kv_replicas) + ")");
  }
  c.kv_write_quorum = static_cast<int>(v);
  if (!integer("kv.read_quorum", 2, 1, 16, v) || v > c.kv_replicas) {
    return fail("kv.read_quorum",
                "expected 1 to kv.replicas (" + std::to_string(c.kv_replicas) + ")");
  }
  c.kv_read_quorum = static_cast<int>(v);
  c.kv_data_dir = resolve(c.config_dir, str("kv.data_dir", ""));

  // [log]
  c.log_level = str("log.level", "info");
  static const std::set<std::string> kLevels = {"trace", "debug",    "info", "warn",
                                                "error", "critical", "off"};
  if (!kLevels.count(c.log_level)) {
    return fail("log.level", "\"" + c.log_level +
                                 "\" is not one of trace, debug, info, warn, error, critical, off");
  }
  c.log_format = str("log.format", "text");
  if (c.log_format != "text" && c.log_format != "json") {
    return fail("log.format", "\"" + c.log_format + "\" is not text or json");
  }
  c.log_file = resolve(c.config_dir, str("log.file", ""));
  if (!c.log_file.empty()) {
    std::ofstream probe(c.log_file, std::ios::app);
    if (!probe) {
      return fail("log.file", "cannot open " + c.log_file + " for writing (" +
                                  std::strerror(errno) + "); fix the path or its permissions");
    }
  }

  // [apps]
  std::set<std::string> names;
  for (const std::string& text : list("apps.start")) {
    AppSpec app;
    if (!parse_app(text, app, why)) return fail("apps.start", why);
    if (!names.insert(app.scope + ":" + app.name).second) {
      return fail("apps.start", "the name " + app.scope + ":" + app.name + " is used twice");
    }
    c.apps.push_back(app);
  }

  // [admin]
  c.admin_http = str("admin.http", "");
  if (!c.admin_http.empty()) {
    auto colon = c.admin_http.rfind(':');
    long long port;
    if (colon == std::string::npos || colon == 0 ||
        !parse_int(c.admin_http.substr(colon + 1), 1, 65535, port)) {
      return fail("admin.http", "\"" + c.admin_http + "\" is not HOST:PORT (e.g. 127.0.0.1:9101)");
    }
  }
  return c;
}

// Stores `parsed` under the keys not already set, and notes their source.
void store(Sources& src, const po::parsed_options& parsed, Source from) {
  for (const auto& o : parsed.options) {
    if (find_key(o.string_key) && !src.where.count(o.string_key)) {
      src.where[o.string_key] = from;
    }
  }
  po::store(parsed, src.vm);
}

// The NODUS_<SECTION>_<KEY> variables. A variable that starts like a section but names no
// key is refused (a typo would otherwise be ignored silently).
bool parse_env(Sources& src, const po::options_description& desc, ConfigError& error) {
  std::map<std::string, std::string> by_env;
  for (const Key& k : kKeys) by_env[env_name(k.name)] = k.name;
  for (char** e = environ; e && *e; ++e) {
    std::string var(*e);
    std::string name = var.substr(0, var.find('='));
    if (by_env.count(name)) continue;
    for (const char* s : kSections) {
      std::string prefix = env_name(s) + "_";
      if (name.rfind(prefix, 0) == 0) {
        error.message = "bad config: environment variable " + name +
                        " names no key; unset it or see nodusd --help for the keys";
        return false;
      }
    }
  }
  po::parsed_options parsed = po::parse_environment(desc, [&](const std::string& var) {
    auto it = by_env.find(var);
    return it == by_env.end() ? std::string() : it->second;
  });
  store(src, parsed, Source::kEnv);
  return true;
}

std::optional<NodeConfig> load(const std::vector<std::string>& flags, const std::string& file,
                               ConfigError& error) {
  po::options_description desc = key_options();
  Sources src;
  try {
    if (!flags.empty()) {
      store(src,
            po::command_line_parser(flags)
                .options(desc)
                .style(po::command_line_style::unix_style)
                .run(),
            Source::kFlag);
    }
    if (!parse_env(src, desc, error)) return std::nullopt;
    std::string abs_file;
    if (!file.empty()) {
      abs_file = fs::absolute(file).lexically_normal().string();
      std::vector<std::string> args;
      std::string why;
      if (!read_ini(abs_file, args, why)) {
        error.message = "bad config: " + why;
        return std::nullopt;
      }
      try {
        store(src, po::command_line_parser(args).options(desc).run(), Source::kFile);
      } catch (const po::multiple_occurrences& e) {
        error.message = "bad config: " + e.get_option_name().substr(2) + " in " + abs_file +
                        ": given more than once; keep one";
        return std::nullopt;
      }
    }
    po::notify(src.vm);
    return build(src, abs_file, error);
  } catch (const po::multiple_occurrences& e) {
    error.message = "bad config: " + e.get_option_name() + ": given more than once; keep one";
  } catch (const po::unknown_option& e) {
    error.message =
        "bad usage: unknown option " + e.get_option_name() + "; nodusd --help lists them";
  } catch (const po::error& e) {
    error.message = std::string("bad usage: ") + e.what() + "; see nodusd --help";
  }
  return std::nullopt;
}

}  // namespace

std::optional<NodeConfig> load_config(int argc, const char* const* argv, CommandLine& cmd,
                                      ConfigError& error) {
  std::vector<std::string> flags;
  std::string file;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--check") {
      cmd.check = true;
    } else if (a == "--help" || a == "-h") {
      cmd.help = true;
    } else if (a == "--config" || a == "-c") {
      if (i + 1 >= argc) {
        error.message = "bad usage: --config needs a FILE";
        return std::nullopt;
      }
      file = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      file = a.substr(9);
    } else {
      flags.push_back(a);
    }
  }
  if (cmd.help) return std::nullopt;
  return load(flags, file, error);
}

std::optional<NodeConfig> load_config_file(const std::string& path, ConfigError& error) {
  return load({}, path, error);
}

std::string config_help() {
  std::ostringstream out;
  out << "usage: nodusd --config FILE [--check] [--section.key=VALUE ...]\n\n"
         "Runs one nodus node. Every key below may be set in the INI file (under [section]),\n"
         "as an environment variable NODUS_SECTION_KEY, or as a flag --section.key=VALUE;\n"
         "a flag wins over the environment, which wins over the file.\n"
         "  --check    validate, print the effective configuration and where each value came\n"
         "             from, and exit\n\nkeys (default in brackets):\n";
  for (const Key& k : kKeys) {
    std::string name = k.name;
    if (k.repeatable) name += " (repeatable)";
    out << "  " << name;
    for (std::size_t i = name.size(); i < 34; ++i) out << ' ';
    out << k.help;
    if (*k.default_text) out << " [" << k.default_text << "]";
    out << "\n";
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
  for (const Key& k : kKeys) {
    const auto& [value, source] = config.effective.at(k.name);
    std::string line = std::string(k.name);
    line.resize(w + 1, ' ');
    line += "= " + value;
    if (line.size() < w + 40) line.resize(w + 40, ' ');
    line += std::string("  # ") + source_name(source);
    if (source == Source::kEnv) line += " " + env_name(k.name);
    out << line << "\n";
  }
  return out.str();
}

std::vector<std::string> app_kinds() {
  return {"cache", "counter", "logger", "pool", "ratelimiter", "slow", "stack"};
}

bool parse_app(const std::string& text, AppSpec& out, std::string& why) {
  std::istringstream in(text);
  std::string kind, name, extra;
  in >> kind >> name;
  if (kind.empty() || name.empty() || (in >> extra)) {
    why = "\"" + text + "\" is not KIND NAME (e.g. counter global:hits)";
    return false;
  }
  auto kinds = app_kinds();
  if (std::find(kinds.begin(), kinds.end(), kind) == kinds.end()) {
    std::string list;
    for (const auto& k : kinds) list += (list.empty() ? "" : ", ") + k;
    why = "unknown kind \"" + kind + "\" in \"" + text + "\"; kinds: " + list;
    return false;
  }
  auto colon = name.find(':');
  if (colon == std::string::npos) {
    why = "\"" + name + "\" in \"" + text + "\" is not local:X, global:X or via:REG/X";
    return false;
  }
  out.kind = kind;
  out.scope = name.substr(0, colon);
  out.name = name.substr(colon + 1);
  out.text = text;
  if (out.scope != "local" && out.scope != "global" && out.scope != "via") {
    why = "\"" + name + "\" in \"" + text + "\": the scope must be local, global or via";
    return false;
  }
  if (out.name.empty() || out.name.size() > 255) {
    why = "\"" + name + "\" in \"" + text + "\": the name is empty or too long";
    return false;
  }
  if (out.scope == "via" && out.name.find('/') == std::string::npos) {
    why = "\"" + name + "\" in \"" + text + "\": a via name is via:REGISTRY/KEY";
    return false;
  }
  return true;
}

}  // namespace nodus::tools
