// NodeConfig: a node's configuration as nodusd reads it (DESIGN.md "Node configuration"), from
// an INI file, NODUS_<SECTION>_<KEY> variables and --section.key flags (flag > env > file).
//
// Every key, its default and its trade-off is listed once, in config.cpp's key table; nodusd
// --help prints it. Loading validates everything before anything starts: an unknown key, a bad
// value or an unreadable file is one line naming the key and the file, and nodusd exits 2.
//
// Thread-safety: plain values and free functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nodus/node/node.hpp"

namespace nodus::tools {

/// One `apps.start = KIND NAME` entry.
struct AppSpec {
  std::string kind;   ///< counter, stack, logger, cache, pool, ratelimiter, slow, todo
  std::string scope;  ///< local, global or via
  std::string name;   ///< the name within its scope (for via: "REG/X")
  std::string text;   ///< as written: "counter global:hits"
};

/// Where one key's value came from.
enum class Source { kDefault, kFile, kEnv, kFlag };

struct NodeConfig {
  std::string config_file;  ///< absolute; "" when nodusd runs from flags alone
  std::string config_dir;   ///< relative paths in the file are relative to this

  NodeOptions node;  ///< name, listen, cookie, seeds, heartbeat, CURVE (hidden stays off)
  std::string cluster_name;
  std::string cookie_file;  ///< absolute

  // kv.* (validated now, used by the store later)
  int kv_partitions = 64;
  int kv_replicas = 3;
  int kv_write_quorum = 2;
  int kv_read_quorum = 2;
  std::string kv_data_dir;

  std::string log_level = "info";
  std::string log_format = "text";  ///< text | json
  std::string log_file;             ///< absolute; "" = stderr

  std::vector<AppSpec> apps;
  std::string admin_http;  ///< "host:port" or ""

  /// Each key's effective value as text, and where it came from, for --check.
  std::map<std::string, std::pair<std::string, Source>> effective;
};

/// What went wrong, as one line for the operator: names the key and the file, says what to do.
struct ConfigError {
  std::string message;
};

/// What load_config was asked to do besides loading.
struct CommandLine {
  bool check = false;  ///< --check
  bool help = false;   ///< --help
};

/// Reads argv (nodusd's flags: --config FILE, --check, --help and every --section.key), the
/// environment and the config file; validates every value; reads the cookie file and the
/// CURVE secret file. The ports are not probed here (nodusd does that by listening).
/// Returns the config, or the one-line error.
std::optional<NodeConfig> load_config(int argc, const char* const* argv, CommandLine& cmd,
                                      ConfigError& error);

/// Loads a node's config file as nodusctl does (file and environment, no flags).
std::optional<NodeConfig> load_config_file(const std::string& path, ConfigError& error);

/// The --help text: usage and every key with its default and meaning.
std::string config_help();

/// The --check text: every key's effective value and its source, one per line.
std::string describe(const NodeConfig& config);

/// Parses "counter global:hits". Returns false and sets `why` when malformed.
bool parse_app(const std::string& text, AppSpec& out, std::string& why);

/// The example server kinds apps.start knows, sorted.
std::vector<std::string> app_kinds();

}  // namespace nodus::tools
