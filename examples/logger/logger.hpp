// Logger: call vs cast. log is a cast (fire and forget); flush_to_disk, get_logs and clear
// are calls, because the caller needs an answer or must know the work is done.
#pragma once

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "nodus/node/format.hpp"
#include "nodus/node/gen_server.hpp"

namespace logger {

using namespace nodus;

class Logger : public GenServer {
 public:
  // -- client API (runs in the caller) --
  static Result<Pid, Reason> start_link(Node& node) { return nodus::start_link<Logger>(node); }
  static void log(Pid logger, Atom level, std::string message) {
    auto now = std::chrono::system_clock::now().time_since_epoch();
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now).count();
    cast(logger, tuple("log", level, std::move(message), ms));
  }
  /// ok, or {error, "why"}.
  static Term flush_to_disk(Pid logger, std::string path) {
    return call(logger, tuple("flush", std::move(path))).value_or(tuple("error", "noproc"));
  }
  /// The entries (#{level, message, timestamp}), oldest first; only `level`'s if given.
  static Term get_logs(Pid logger, Atom level = Atom()) {
    return call(logger, tuple("get_logs", level)).value_or(tuple("error", "noproc"));
  }
  static Term clear(Pid logger) { return call(logger, "clear").value_or(tuple("error", "noproc")); }

  // -- server callbacks (run in the logger's process) --
  Action handle_cast(Message& msg) override {
    if (auto m = msg.match({"log", _atom, _bin, _int})) {
      fmt::print("[{}] {}\n", m[0], m[1].as_bin());
      logs_.push_back(map({{"level", m[0]}, {"message", m[1]}, {"timestamp", m[2]}}));
    }
    return noreply();
  }

  Action handle_call(Message& msg, From from) override {
    if (auto m = msg.match({"flush", _bin})) return reply(write_file(m[0].as_bin()));
    if (auto m = msg.match({"get_logs", _atom})) {
      List out;
      for (const Term& e : logs_) {
        if (m[0] == "undefined" || *e.find("level") == m[0]) out.push_back(e);
      }
      return reply(out);
    }
    if (msg == "clear") {
      logs_.clear();
      return reply("ok");
    }
    return GenServer::handle_call(msg, from);
  }

 private:
  Term write_file(const std::string& path) const {
    std::FILE* f = std::fopen(path.c_str(), "w");
    if (!f) return tuple("error", bin(std::strerror(errno)));
    for (const Term& e : logs_) fmt::print(f, "{}\n", e);
    return std::fclose(f) == 0 ? Term("ok") : tuple("error", bin(std::strerror(errno)));
  }

  List logs_;  // oldest first
};

}  // namespace logger
