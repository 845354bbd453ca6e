// nodusctl's parts: options, the command table, errors with exit codes, output helpers.
//
// Each command lives in its own cmd_*.cpp with its usage and help beside its code, and adds
// itself to the table with a static Registrar (as fdbcli's commands do).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "nodus/node/term.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::ctl {

/// Exit status: 0 success, 1 the operation failed, 2 bad usage / unreachable / refused.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

/// The exit status for a failure with `code` (error_definitions.hpp): caller misuse (2000-2999:
/// badarg, bad_config ...) and auth_failed are 2, every other failure 1. A code this build does
/// not know (a newer node's) is a failure: 1.
int exit_status(ErrorCode code);

/// A failure that ends nodusctl: one stderr line ("what failed; what to do") and the exit
/// status its code gives (exit_status), never one read from the message.
struct CtlError : std::runtime_error {
  CtlError(ErrorCode c, const std::string& message)
      : std::runtime_error(message), code(c), status(exit_status(c)) {}
  /// The one exception to the codes: the node nodusctl itself talks to cannot be reached
  /// (nodedown, timeout) is bad usage, status 2, as a wrong address is.
  CtlError(ErrorCode c, const std::string& message, int exit)
      : std::runtime_error(message), code(c), status(exit) {}
  ErrorCode code;
  int status;
};

struct GlobalOptions {
  std::string node;                         ///< --node ENDPOINT (or NODUS_NODE)
  std::string config;                       ///< --config FILE
  std::string cookie_file;                  ///< --cookie-file F (or NODUS_COOKIE_FILE)
  std::string curve_secret_file;            ///< --curve-secret-file F: nodusctl's own CURVE key
  std::string curve_server_key;             ///< --curve-server-key K: the node's public key
  bool json = false;                        ///< --json
  std::chrono::milliseconds timeout{5000};  ///< --timeout SECONDS
};

class Client;

/// What a command gets: the options, its arguments, and (lazily) a connection to the node.
class Context {
 public:
  explicit Context(GlobalOptions o);
  ~Context();
  const GlobalOptions& options() const { return opt_; }
  bool json() const { return opt_.json; }
  /// The connection to the node named by --node / --config, made on first use. Throws
  /// CtlError (exit status 2) when it cannot be made.
  Client& client();

 private:
  GlobalOptions opt_;
  std::unique_ptr<Client> client_;
};

struct Command {
  const char* name;
  const char* usage;  ///< "procs NODE"
  const char* help;   ///< one line
  std::function<int(Context&, const std::vector<std::string>&)> run;
  /// For a group of commands ("kv get"): the second word; run gets the arguments after it.
  const char* sub = nullptr;
};

/// The table of commands, in registration order.
std::vector<Command>& commands();
struct Registrar {
  explicit Registrar(Command c) { commands().push_back(std::move(c)); }
};

// -- output ----------------------------------------------------------------------------

/// True when stdout is a terminal and NO_COLOR is unset.
bool use_colour();
/// `text` in a colour (ANSI: "1" bold, "32" green, "31" red, "33" yellow) when use_colour().
std::string colour(const std::string& text, const char* code);

/// An aligned table for people: headers, then rows. Numbers align right.
class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  /// Writes it to stdout; `right` lists the columns to align right.
  void print(const std::vector<std::size_t>& right = {}) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

/// Prints one JSON document on stdout.
void print_json(const nlohmann::json& j);

/// "1.2 KiB", "3.4 MiB".
std::string bytes_text(std::uint64_t n);
/// "3 s", "2 min", "1 h 4 min".
std::string duration_text(std::int64_t ms);
/// An up/down state, coloured on a terminal.
std::string state_text(const std::string& state);

/// Throws CtlError(kBadArg) unless args.size() is within [min, max].
void expect_args(const std::vector<std::string>& args, std::size_t min, std::size_t max,
                 const char* usage);

}  // namespace nodus::ctl
