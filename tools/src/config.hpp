// NodeConfig: a node's configuration as nodusd reads it (DESIGN.md "Node configuration"), from
// an INI file, NODUS_<SECTION>_<KEY> variables and --section.key flags (flag > env > file).
//
// Every key is declared once, in config.cpp's key table: its name, its help, the field it sets
// and how (a range for numbers, the choices for words, a check for the rest). Its default is
// the value that field holds in a default NodeConfig, that is the options structs' own
// (NodeOptions for [node] and [cluster], kv::Options for [kv], LogSettings): nodusd --help and
// --check print it from there. Adding a key is one line in the table, plus a field here when the
// options structs do not have one yet.
//
// Loading validates everything before anything starts: an unknown key, a bad value or an
// unreadable file is a kBadConfig Status whose message is one line naming the key, where it
// came from (the file and line, the flag or the variable) and what to do; nodusd exits 2.
//
// Thread-safety: plain values and free functions.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "nodus/kv/kv.hpp"
#include "nodus/node/node.hpp"

namespace nodus::tools {

/// One `apps.start = KIND NAME` entry.
struct AppSpec {
  std::string kind;   ///< one of app_kinds() (apps.hpp)
  std::string scope;  ///< local, global or via
  std::string name;   ///< the name within its scope (for via: "REG/X")
  std::string text;   ///< as written: "counter global:hits"
};

/// [log]
struct LogSettings {
  std::string level = "info";
  std::string format = "text";  ///< text | json
  std::string file;             ///< absolute; "" = stderr
};

/// Where one key's value came from.
enum class Source { kDefault, kFile, kEnv, kFlag };

struct NodeConfig {
  std::string config_file;  ///< absolute; "" when nodusd runs from flags alone
  std::string config_dir;   ///< relative paths in the file are relative to this

  NodeOptions node;  ///< name, listen, cookie, seeds, heartbeat, CURVE (hidden stays off)
  std::string cluster_name;
  std::string cookie_file;        ///< absolute
  std::string curve_secret_file;  ///< absolute; "" = no CURVE
  std::string curve_public_key;   ///< Z85, checked against the secret key
  /// [kv]: the store's options; it runs on this node when kv.initial_members is set
  /// (run_store()). context_secret is derived from the cookie (kv_context_secret).
  kv::Options kv;
  LogSettings log;
  std::vector<AppSpec> apps;
  std::string admin_http;                 ///< "host:port" or ""
  std::string resp_listen;                ///< [resp] listen: "host:port" or "" (none)
  std::uint32_t resp_max_clients = 1000;  ///< [resp] max_clients
  /// [testing] control: "on" starts nodus::testing's control server (tests only); "off".
  std::string testing_control = "off";

  /// True when the store runs on this node: kv.initial_members is set.
  bool run_store() const { return !kv.initial_members.empty(); }

  /// What is allowed but unwise (a secret file others may read), one line each, for the log.
  std::vector<std::string> warnings;
  /// Each key's effective value as text, and where it came from, for --check.
  std::map<std::string, std::pair<std::string, Source>> effective;
};

/// nodusd's command line: --config FILE, --check, --help and --section.key=VALUE flags (also
/// --section.key VALUE).
struct CommandLine {
  std::string config_file;                                 ///< as given; "" = none
  bool check = false;                                      ///< --check
  bool help = false;                                       ///< --help
  std::vector<std::pair<std::string, std::string>> flags;  ///< key -> value, in order
};

/// The environment's variables, name -> value.
using Environment = std::map<std::string, std::string>;
/// This process's environment.
Environment process_environment();

/// Parses nodusd's arguments. Errors: kBadArg for an unknown flag or one without its value.
Result<CommandLine> parse_command_line(int argc, const char* const* argv);

/// Reads the flags, the NODUS_* variables of `env` and the config file; validates every value;
/// reads the cookie file and the CURVE secret file. The ports are not probed here (nodusd
/// does that by listening). Errors: kBadConfig, one line naming the key and where it came from.
Result<NodeConfig> load_config(const CommandLine& cmd, const Environment& env);

/// Loads a node's config file as nodusctl does (the file and this process's environment).
Result<NodeConfig> load_config_file(const std::string& path);

/// The contents of a file holding a secret (cookie, CURVE secret key), without trailing
/// white space (a newline is not part of the key). Errors: kBadConfig saying whether the file
/// is missing, unreadable, a directory or empty. `warnings` gets a line when others than its
/// owner may read it (mode & 077), as ssh warns of an open private key.
Result<std::string> read_secret_file(const std::string& path, std::vector<std::string>& warnings);

/// The secret that signs the store's causal contexts, derived from the cluster cookie: a keyed
/// hash (HMAC-SHA-256 keyed with the cookie, of a fixed label), so every node of the cluster
/// derives the same, contexts cannot be forged without the cookie, and the cookie itself never
/// reaches the store (which keeps and uses its secret for as long as it runs).
std::string kv_context_secret(const std::string& cookie);

/// The --help text: usage, every key with its default and meaning, and the app kinds.
std::string config_help();

/// The --check text: every key's effective value and its source, one per line.
std::string describe(const NodeConfig& config);

/// Parses "counter global:hits". Errors: kBadConfig saying what is wrong with it.
Result<AppSpec> parse_app(const std::string& text);

}  // namespace nodus::tools
