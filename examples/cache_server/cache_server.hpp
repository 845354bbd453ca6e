// CacheServer: handle_info for messages that are neither calls nor casts. Entries expire after
// their TTL (dropped when read); a timer (send_after) also sweeps out expired entries every
// `cleanup_every` and reports how many it removed.
#pragma once

#include <chrono>
#include <cstdio>
#include <unordered_map>
#include <utility>

#include "nodus/node/gen_server.hpp"

namespace cache_server {

using namespace nodus;
using Clock = std::chrono::steady_clock;

struct CacheOptions {
  /// How often expired entries are swept out (default 10 s, as in the chapter).
  std::chrono::milliseconds cleanup_every{10'000};
  /// If set, each sweep also sends it {cleaned_up, Count} (tests watch this).
  Pid report_to{};
};

class CacheServer : public GenServer {
 public:
  // -- client API (runs in the caller) --
  static Result<Pid, Reason> start_link(Node& node, CacheOptions opts = {}) {
    return nodus::start_link<CacheServer>(node, opts);
  }
  static Term put(Pid cache, Term key, Term value, std::chrono::milliseconds ttl) {
    return call(cache, tuple("put", std::move(key), std::move(value), ttl.count()))
        .value_or(tuple("error", "noproc"));
  }
  /// {ok, Value} or not_found.
  static Term get(Pid cache, Term key) {
    return call(cache, tuple("get", std::move(key))).value_or(tuple("error", "noproc"));
  }

  // -- server callbacks (run in the cache's process) --
  Action init(CacheOptions opts) {
    opts_ = opts;
    schedule_cleanup();
    return ok();
  }

  Action handle_call(Message& msg, From from) override {
    if (auto m = msg.match({"put", _, _, _int})) {
      cache_[m[0]] = {m[1], Clock::now() + std::chrono::milliseconds(m[2].as_int())};
      return reply("ok");
    }
    if (auto m = msg.match({"get", _})) {
      auto it = cache_.find(m[0]);
      if (it == cache_.end()) return reply("not_found");
      if (Clock::now() < it->second.second) return reply(tuple("ok", it->second.first));
      cache_.erase(it);
      return reply("not_found");
    }
    return GenServer::handle_call(msg, from);
  }

  Action handle_info(Message& msg) override {
    if (msg != "cleanup") return noreply();
    auto now = Clock::now();
    auto removed = std::erase_if(cache_, [&](const auto& kv) { return kv.second.second <= now; });
    std::printf("Cleaned up %zu expired entries\n", removed);
    if (opts_.report_to) send(opts_.report_to, tuple("cleaned_up", removed));
    schedule_cleanup();
    return noreply();
  }

 private:
  void schedule_cleanup() { send_after(self(), "cleanup", opts_.cleanup_every); }

  CacheOptions opts_;
  std::unordered_map<Term, std::pair<Term, Clock::time_point>> cache_;  // value, expiry
};

}  // namespace cache_server
