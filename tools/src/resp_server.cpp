// RespServer (resp.hpp): the event loop, the connections' processes and the commands.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <unordered_map>
#include <utility>

#include "nodus/kv/client.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/kv/watch.hpp"
#include "nodus/node/process.hpp"
#include "nodus/transport/detail/mutex.hpp"
#include "resp.hpp"

namespace nodus::tools {

namespace {

using Clock = std::chrono::steady_clock;
using Args = std::vector<std::string>;

constexpr const char* kStore = "nodus_kv";  // docs/protocol.md 12.3
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kMaxCursors = 256;             // SCAN cursors remembered per connection
constexpr std::uint32_t kKeysPage = 10000;           // the store's largest keys page
constexpr const char* kRedisVersion = "7.0.0";       // what HELLO and INFO claim to speak
constexpr long long kMaxTtlMs = 10'000'000'000'000;  // the longest ttl the store takes
// What a subscriber reads, last, when the store ended its watch (kv_watch_lost).
constexpr const char* kWatchLostError =
    "ERR keyspace notifications were lost (the store ended this connection's watch): "
    "reconnect and subscribe again";

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool to_ll(std::string_view s, long long& out) {
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

// Redis's glob (util.c stringmatchlen) for PSUBSCRIBE patterns: `*`, `?`, `[abc]`, `[^a-z]`,
// `\x`. Backtracks to the last `*` only, so it takes O(pattern x text) at worst.
bool class_match(std::string_view p, std::size_t& pi, char ch) {  // p[pi] == '['
  std::size_t j = pi + 1;
  const bool negate = j < p.size() && p[j] == '^';
  if (negate) ++j;
  bool hit = false;
  while (j < p.size() && p[j] != ']') {
    if (p[j] == '\\' && j + 1 < p.size()) {
      hit = hit || p[j + 1] == ch;
      j += 2;
    } else if (j + 2 < p.size() && p[j + 1] == '-' && p[j + 2] != ']') {
      char lo = p[j], hi = p[j + 2];
      if (lo > hi) std::swap(lo, hi);
      hit = hit || (ch >= lo && ch <= hi);
      j += 3;
    } else {
      hit = hit || p[j] == ch;
      ++j;
    }
  }
  pi = j < p.size() ? j + 1 : j;  // an unclosed class ends the pattern, as in Redis
  return hit != negate;
}

bool glob_match(std::string_view p, std::string_view s) {
  constexpr std::size_t kNone = std::string_view::npos;
  std::size_t pi = 0, si = 0, star_p = kNone, star_s = 0;
  while (si < s.size()) {
    if (pi < p.size() && p[pi] == '*') {
      while (pi < p.size() && p[pi] == '*') ++pi;
      if (pi == p.size()) return true;
      star_p = pi;
      star_s = si;
      continue;
    }
    if (pi < p.size()) {
      std::size_t next = pi + 1;
      bool ok = false;
      if (p[pi] == '?') {
        ok = true;
      } else if (p[pi] == '[') {
        next = pi;
        ok = class_match(p, next, s[si]);
      } else if (p[pi] == '\\' && pi + 1 < p.size()) {
        ok = p[pi + 1] == s[si];
        next = pi + 2;
      } else {
        ok = p[pi] == s[si];
      }
      if (ok) {
        pi = next;
        ++si;
        continue;
      }
    }
    if (star_p == kNone) return false;
    pi = star_p;
    si = ++star_s;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

std::string address_of(int fd, bool peer) {
  sockaddr_storage a{};
  socklen_t len = sizeof(a);
  const int rc = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
                      : ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  if (rc != 0) return "?";
  char text[INET6_ADDRSTRLEN] = {};
  int port = 0;
  if (a.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
    port = ntohs(in->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    port = ntohs(in6->sin6_port);
  }
  return std::string(text) + ":" + std::to_string(port);
}

// The server's counters, for INFO.
struct Counters {
  std::atomic<std::uint64_t> connections{0};  // accepted, ever
  std::atomic<std::uint64_t> rejected{0};     // refused over max_clients
  std::atomic<std::uint64_t> commands{0};
  std::atomic<std::uint64_t> protocol_errors{0};
  std::atomic<std::uint64_t> output_overflows{0};  // disconnected over max_output
  std::atomic<std::uint64_t> pubsub_lost{0};       // subscribers disconnected on kv_watch_lost
  std::atomic<std::uint64_t> input_pauses{0};      // reading stopped over max_pending_input
  std::atomic<std::uint64_t> clients{0};           // connected now
};

// One client connection, shared by the loop thread and the connection's process.
struct Conn {
  std::uint64_t id = 0;
  int fd = -1;
  Pid pid;
  std::string addr, laddr;
  Clock::time_point since = Clock::now();

  // The loop thread's own.
  RespParser parser;
  bool reading = true;   // EPOLLIN armed
  bool writing = false;  // EPOLLOUT armed

  detail::Mutex mu;
  std::deque<Args> pending NODUS_GUARDED_BY(mu);  // parsed, not yet run
  std::size_t pending_bytes NODUS_GUARDED_BY(mu) = 0;
  bool scheduled NODUS_GUARDED_BY(mu) = false;          // a "work" message is on its way
  bool paused NODUS_GUARDED_BY(mu) = false;             // the loop stopped reading: over the bound
  std::string protocol_error NODUS_GUARDED_BY(mu);      // answer it after pending, then close
  bool closed NODUS_GUARDED_BY(mu) = false;             // the socket is done for
  bool close_after_flush NODUS_GUARDED_BY(mu) = false;  // QUIT, protocol error
  std::string out NODUS_GUARDED_BY(mu);                 // replies not yet sent
  std::size_t out_pos NODUS_GUARDED_BY(mu) = 0;
  bool loop_done NODUS_GUARDED_BY(mu) = false;  // whoever is second closes fd
  bool proc_done NODUS_GUARDED_BY(mu) = false;
  std::string name NODUS_GUARDED_BY(mu);

  explicit Conn(RespParser::Limits limits) : parser(limits) {}

  // Sends what it can of `out`; false when the socket failed (then closed is set).
  bool flush() NODUS_REQUIRES(mu) {
    while (out_pos < out.size()) {
      const ssize_t n = ::send(fd, out.data() + out_pos, out.size() - out_pos, MSG_NOSIGNAL);
      if (n > 0) {
        out_pos += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      } else {
        closed = true;
        ::shutdown(fd, SHUT_RDWR);
        return false;
      }
    }
    if (out_pos == out.size()) {
      out.clear();
      out_pos = 0;
    } else if (out_pos > (1 << 20)) {
      out.erase(0, out_pos);
      out_pos = 0;
    }
    if (out.empty() && close_after_flush && !closed) {
      closed = true;
      ::shutdown(fd, SHUT_RDWR);
    }
    return true;
  }
  std::size_t unsent() const NODUS_REQUIRES(mu) { return out.size() - out_pos; }
};

// What the loop thread and every connection's process share.
struct Shared {
  Node* node = nullptr;
  RespOptions options;
  Counters counters;
  Clock::time_point started = Clock::now();
  int wake_fd = -1;  // the loop's eventfd; closed with the last user

  ~Shared() {
    if (wake_fd >= 0) ::close(wake_fd);
  }

  detail::Mutex mu;
  // Connections whose process left replies the socket did not take: arm EPOLLOUT; or whose
  // reading was paused and may resume.
  std::vector<std::pair<std::uint64_t, bool /*resume*/>> requests NODUS_GUARDED_BY(mu);

  void ask_loop(std::uint64_t id, bool resume) NODUS_EXCLUDES(mu) {
    {
      detail::MutexLock lock(mu);
      requests.emplace_back(id, resume);
    }
    const std::uint64_t one = 1;
    (void)!::write(wake_fd, &one, sizeof(one));
  }
};

// -- the commands, run by a connection's process --------------------------------------------

class Session {
 public:
  Session(std::shared_ptr<Shared> shared, std::shared_ptr<Conn> conn)
      : sh_(std::move(shared)), conn_(std::move(conn)) {}

  // Runs what is pending; false once the connection is done.
  bool step() {
    std::deque<Args> batch;
    std::string protocol_error;
    bool resume = false;
    {
      detail::MutexLock lock(conn_->mu);
      if (conn_->closed) return false;
      // After QUIT or a protocol error: nothing more runs; the process waits for the loop to
      // finish sending the last replies and close (closed, then "closed" arrives).
      if (quit_) return true;
      batch.swap(conn_->pending);
      conn_->pending_bytes = 0;
      conn_->scheduled = false;
      protocol_error.swap(conn_->protocol_error);
      if (conn_->paused) {
        conn_->paused = false;
        resume = true;
      }
    }
    if (resume) sh_->ask_loop(conn_->id, true);
    std::string out;
    for (Args& args : batch) {
      sh_->counters.commands.fetch_add(1, std::memory_order_relaxed);
      run(args, out);
      if (quit_) break;
      if (out.size() >= 64 * 1024 && !write(out)) return false;
    }
    if (!protocol_error.empty()) {
      resp::error(out, "ERR " + protocol_error);
      quit_ = true;
    }
    return write(out);
  }

  // -- pub/sub: keyspace notifications fed by a store watch -----------------------------------
  //
  // A connection with a subscription holds one watch of every key ({watch, <<"*">>} to the
  // node's store, this process the watcher), and turns each {kv_event, ...} into Redis's
  // keyspace notifications: `__keyspace@0__:KEY` with `set`, `del` or `expired`, and
  // `__keyevent@0__:set|del|expired` with the key, sent as `message` to a channel subscribed by
  // name and as `pmessage` to each pattern (Redis's glob) that matches. The watch goes with the
  // last subscription.

  // Takes the store's message `msg` if it is a watch's: true when it was one.
  bool watch_message(const Message& msg) {
    if (auto e = kv::watch_event(msg)) {
      if (subscribed()) notify(*e);
      return true;
    }
    if (kv::watch_lost(msg)) {
      // The store ended the watch (this process fell behind kv.watch_queue, an event would
      // have come out of order, the node was cut off from the others, or its watch server
      // restarted): events are missing, which a subscriber cannot be told otherwise; after the
      // notifications it had, it gets this error and is disconnected, as Redis disconnects a
      // subscriber past its output limit.
      if (subscribed() && !quit_) {
        sh_->counters.pubsub_lost.fetch_add(1, std::memory_order_relaxed);
        resp::error(events_, kWatchLostError);
        quit_ = true;
      }
      return true;
    }
    return false;
  }
  // Writes the notifications made since the last call; false when the connection is done.
  bool flush_events() {
    if (events_.empty() && !quit_) return true;
    return write(events_);
  }

 private:
  bool subscribed() const { return !channels_.empty() || !patterns_.empty(); }
  std::size_t subscriptions() const { return channels_.size() + patterns_.size(); }

  void notify(const kv::WatchEvent& e) {
    const char* what = e.kind == kv::WatchKind::kPut      ? "set"
                       : e.kind == kv::WatchKind::kDelete ? "del"
                                                          : "expired";
    const std::pair<std::string, std::string_view> sent[] = {
        {"__keyspace@0__:" + e.key, what}, {std::string("__keyevent@0__:") + what, e.key}};
    for (const auto& [channel, payload] : sent) {
      if (channels_.count(channel)) {
        resp::array(events_, 3);
        resp::bulk(events_, "message");
        resp::bulk(events_, channel);
        resp::bulk(events_, payload);
      }
      for (const std::string& p : patterns_) {
        if (!glob_match(p, channel)) continue;
        resp::array(events_, 4);
        resp::bulk(events_, "pmessage");
        resp::bulk(events_, p);
        resp::bulk(events_, channel);
        resp::bulk(events_, payload);
      }
    }
  }

  // The watch of every key, made once for the first subscription; false with the error line.
  bool ensure_watch(std::string& error) {
    if (watch_) return true;
    auto r = call(store(), tuple("watch", bin("*")), call_timeout());
    if (!r) {
      error = "ERR store unreachable: " + r.error().to_string();
      return false;
    }
    if (auto m = r->match({"ok", _ref})) {
      watch_ = m[0].as_ref();
      return true;
    }
    if (auto e = r->match({"error", _})) {
      error = "ERR " + error_text(e[0]);
    } else {
      error = "ERR unexpected store reply " + r->to_string().substr(0, 200);
    }
    return false;
  }
  void drop_watch() {
    if (!watch_) return;
    (void)call(store(), tuple("unwatch", Term(*watch_)), call_timeout());
    watch_.reset();
  }

  static constexpr std::size_t kMaxSubscriptions = 10000;  // channels and patterns together

  // SUBSCRIBE channel... / PSUBSCRIBE pattern...: one reply per name, with the count after it.
  void subscribe(Args& a, std::string& out) {
    const bool by_pattern = lower(a[0]) == "psubscribe";
    std::string error;
    if (subscriptions() + (a.size() - 1) > kMaxSubscriptions) {
      return resp::error(out, "ERR more than " + std::to_string(kMaxSubscriptions) +
                                  " channels and patterns on one connection");
    }
    if (!ensure_watch(error)) return resp::error(out, error);
    auto& set = by_pattern ? patterns_ : channels_;
    for (std::size_t i = 1; i < a.size(); ++i) {
      set.insert(a[i]);
      resp::array(out, 3);
      resp::bulk(out, by_pattern ? "psubscribe" : "subscribe");
      resp::bulk(out, a[i]);
      resp::integer(out, static_cast<long long>(subscriptions()));
    }
  }

  // UNSUBSCRIBE [channel...] / PUNSUBSCRIBE [pattern...]: without names, all of them (a nil
  // name when there were none, as Redis answers).
  void unsubscribe(Args& a, std::string& out) {
    const bool by_pattern = lower(a[0]) == "punsubscribe";
    auto& set = by_pattern ? patterns_ : channels_;
    const char* word = by_pattern ? "punsubscribe" : "unsubscribe";
    std::vector<std::string> names(a.begin() + 1, a.end());
    if (names.empty()) names.assign(set.begin(), set.end());
    if (names.empty()) {
      resp::array(out, 3);
      resp::bulk(out, word);
      resp::null(out);
      resp::integer(out, static_cast<long long>(subscriptions()));
    }
    for (const std::string& n : names) {
      set.erase(n);
      resp::array(out, 3);
      resp::bulk(out, word);
      resp::bulk(out, n);
      resp::integer(out, static_cast<long long>(subscriptions()));
    }
    if (!subscribed()) drop_watch();
  }

  // RESET: out of subscribed mode and MULTI, WATCH forgotten (Redis 6.2).
  void reset(Args&, std::string& out) {
    channels_.clear();
    patterns_.clear();
    drop_watch();
    queued_.clear();
    watched_.clear();
    in_multi_ = multi_dirty_ = false;
    resp::simple(out, "RESET");
  }

  // Hands `out` to the socket; false when the connection is done.
  bool write(std::string& out) {
    if (out.empty() && !quit_) return true;
    bool ask = false;
    {
      detail::MutexLock lock(conn_->mu);
      if (conn_->closed) return false;
      conn_->out.append(out);
      out.clear();
      if (quit_) conn_->close_after_flush = true;
      if (!conn_->flush()) return false;
      if (conn_->unsent() >
          (subscribed() ? sh_->options.max_pubsub_output : sh_->options.max_output)) {
        sh_->counters.output_overflows.fetch_add(1, std::memory_order_relaxed);
        conn_->closed = true;
        ::shutdown(conn_->fd, SHUT_RDWR);
        return false;
      }
      ask = conn_->unsent() > 0;
    }
    if (ask) sh_->ask_loop(conn_->id, false);
    return true;
  }

  // -- the store ----------------------------------------------------------------------------

  std::chrono::milliseconds call_timeout() const {
    return sh_->options.request_timeout + std::chrono::milliseconds(1000);
  }

  // A store error term ({error, E}'s E) as the text after "-ERR ".
  static std::string error_text(const Term& e) {
    if (e.is_atom()) return std::string(e.as_atom().name());
    if (auto m = e.match({"no_quorum", _, _, _})) {
      return "no_quorum: " + m[0].to_string() + ": needed " + m[1].to_string() + ", got " +
             m[2].to_string();
    }
    if (e.is_tuple() && e.size() == 2 && e[0].is_atom()) {
      return std::string(e[0].as_atom().name()) + ": " +
             (e[1].is_bin() ? e[1].as_bin() : e[1].to_string());
    }
    return e.to_string();
  }

  // A failed kv::Client request as the text after "-ERR ": the error's name, then its message
  // ("no_quorum: w: needed 2, got 1", "overloaded").
  static std::string error_text(const Status& s) {
    std::string text(error_name(s.code()));
    if (!s.message().empty()) text += ": " + s.message();
    return text;
  }

  // The store's answer to a get (or why there is none): ok with the key's values, or the
  // error text; not_found is an answer too (`found` false).
  struct Answer {
    bool ok = false;
    bool found = false;
    std::vector<std::string> values;
    std::string context;
    std::string error;
    // A get that found the key: the ms it lives on, or -1 when it never expires.
    long long ttl_ms = -1;
  };
  static Answer answer_of(Result<kv::GetResult> r) {
    Answer a;
    if (!r) {
      a.ok = r.error().code() == ErrorCode::kNotFound;
      if (!a.ok) a.error = error_text(r.error());
      return a;
    }
    a.ok = a.found = true;
    a.values = std::move(r->values);
    a.context = std::move(r->context);
    if (r->ttl) a.ttl_ms = r->ttl->count();
    return a;
  }

  Dest store() const { return named(kStore); }

  // The requests of one key go through kv::Client, which sends them straight to the vnode of
  // the key's partition on this node when this node is a primary of it (a KvDirect), else to
  // nodus_kv, which forwards them to a primary: one hop fewer than nodus_kv for most keys.
  kv::RequestOptions request_options() const {
    kv::RequestOptions o;
    o.timeout = sh_->options.request_timeout;
    return o;
  }
  Answer get_key(const std::string& key) { return answer_of(client_.get(key, request_options())); }
  // Many keys' gets at once (kv::Client::multi_get), one answer per key in order.
  std::vector<Answer> get_keys(const std::vector<std::string>& keys) {
    std::vector<Answer> out;
    out.reserve(keys.size());
    for (std::size_t at = 0; at < keys.size(); at += kv::Client::kMaxMultiKeys) {
      const std::size_t n = std::min(kv::Client::kMaxMultiKeys, keys.size() - at);
      const std::vector<std::string> part(keys.begin() + static_cast<std::ptrdiff_t>(at),
                                          keys.begin() + static_cast<std::ptrdiff_t>(at + n));
      for (auto& r : client_.multi_get(part, request_options())) {
        out.push_back(answer_of(std::move(r)));
      }
    }
    return out;
  }

  // The value a GET answers from a get's values: the one value, or of siblings the greatest
  // by bytes (the rule lww uses to break ties), so that every client sees the same one.
  static const std::string* chosen(const Answer& a) {
    if (!a.found || a.values.empty()) return nullptr;
    return &*std::max_element(a.values.begin(), a.values.end());
  }

  // A put of key = value superseding `context`, expiring after ttl_ms (0: never); without a
  // context, a blind overwrite (kv::RequestOptions::overwrite): it supersedes what the
  // coordinating replica holds, so SET is one store round trip and overwrites rather than
  // adding a sibling. "" when stored, else the error text.
  std::string put_key(const std::string& key, const std::string& value, const std::string& context,
                      long long ttl_ms) {
    kv::RequestOptions o = request_options();
    o.context = context;
    o.overwrite = context.empty();
    o.ttl = std::chrono::milliseconds(std::max(ttl_ms, 0LL));
    auto r = client_.put(key, value, o);
    return r ? std::string() : error_text(r.error());
  }
  // A delete superseding `context` (what a get saw). "" when done, else the error text.
  std::string delete_key(const std::string& key, const std::string& context) {
    kv::RequestOptions o = request_options();
    o.context = context;
    auto r = client_.del(key, o);
    return r ? std::string() : error_text(r.error());
  }

  // Puts key = value for each pair, each a blind overwrite (put_key): one store round trip
  // per key, the keys at once (kv::Client::multi_put). "" when all stored, else the first error.
  std::string put_all(const std::vector<std::pair<std::string, std::string>>& kvs,
                      long long ttl_ms = 0) {
    if (kvs.size() == 1) return put_key(kvs[0].first, kvs[0].second, {}, ttl_ms);
    kv::RequestOptions o = request_options();
    o.overwrite = true;
    o.ttl = std::chrono::milliseconds(std::max(ttl_ms, 0LL));
    for (std::size_t at = 0; at < kvs.size(); at += kv::Client::kMaxMultiKeys) {
      const std::size_t n = std::min(kv::Client::kMaxMultiKeys, kvs.size() - at);
      const std::vector<std::pair<std::string, std::string>> part(
          kvs.begin() + static_cast<std::ptrdiff_t>(at),
          kvs.begin() + static_cast<std::ptrdiff_t>(at + n));
      for (auto& r : client_.multi_put(part, o)) {
        if (!r) return error_text(r.error());
      }
    }
    return {};
  }

  // One page of keys; false (with `error` set) on failure.
  bool keys_page(const std::string& pattern, const std::string& cursor, std::uint32_t limit,
                 std::vector<std::string>& keys, std::string& next, std::string& error) {
    MapEntries o;
    o.emplace_back(Term("limit"), Term(static_cast<std::int64_t>(limit)));
    if (!cursor.empty()) o.emplace_back(Term("cursor"), Term(cursor));
    auto r = call(store(), tuple("keys", bin(pattern), Term(Map{std::move(o)})), call_timeout());
    if (!r) {
      error = "store unreachable: " + r.error().to_string();
      return false;
    }
    if (auto e = r->match({"error", _})) {
      error = error_text(e[0]);
      return false;
    }
    auto m = r->match({"ok", _list, _});
    if (!m) {
      error = "unexpected keys reply " + r->to_string();
      return false;
    }
    for (const Term& k : m[0].as_list()) {
      if (k.is_bin()) keys.push_back(k.as_bin());
    }
    next = m[1].is_bin() ? m[1].as_bin() : std::string();
    return true;
  }

  // -- compare-and-set and transactions (docs/protocol.md 12.6) -----------------------------
  //
  // INCR and its kin are compare-and-set loops at the key's partition's first primary: read,
  // add, write if unchanged, keeping the key's ttl. MULTI queues commands; EXEC reads every key
  // they and WATCH name (one store transaction: the keys must share a hash tag, else CROSSSLOT),
  // runs them here on that snapshot, and commits their writes with each key's version as a
  // condition: a watched key that changed since WATCH makes EXEC answer nil; any other change runs
  // them again.

  static constexpr int kCasAttempts = 32;

  // After a compare-and-set lost a race: a random pause of up to 2^attempt ms (at most 32),
  // parking this process only, so that racing clients spread out instead of colliding again
  // (with none, six clients incrementing one key could each lose 32 times in a row).
  void cas_backoff(int attempt) {
    const int most = 1 << std::min(attempt, 5);
    std::uniform_int_distribution<int> pick(0, most);
    sleep_for(std::chrono::milliseconds(pick(rng_)));
  }

  // A key's state at the first primary: the value GET would choose, and its causal context
  // ("" for a key never written).
  struct KeyState {
    bool found = false;
    std::string value;
    std::string context;
  };
  static KeyState key_state(const Term& t) {  // {[Value...], Context}
    KeyState s;
    if (!t.is_tuple() || t.size() != 2 || !t[0].is_list()) return s;
    const std::string* best = nullptr;
    for (const Term& v : t[0].as_list()) {
      if (v.is_bin() && (!best || v.as_bin() > *best)) best = &v.as_bin();
    }
    if (best) {
      s.found = true;
      s.value = *best;
    }
    if (t[1].is_bin()) s.context = t[1].as_bin();
    return s;
  }
  static Term if_of(const KeyState& s) {
    return s.context.empty() ? Term(atom("absent")) : bin(s.context);
  }

  enum class TxnOutcome { kOk, kMismatch, kFailed };
  // A {txn, Ops} request: kOk or kMismatch with every key's state now in `states`, else
  // kFailed with the whole error line (after "-") in `error`.
  TxnOutcome txn(List ops, std::vector<KeyState>& states, std::string& error) {
    const std::size_t n = ops.size();
    auto r = call(store(), tuple("txn", Term(std::move(ops))), call_timeout());
    if (!r) {
      error = "ERR store unreachable: " + r.error().to_string();
      return TxnOutcome::kFailed;
    }
    auto fill = [&](const Term& list) {
      states.clear();
      for (const Term& k : list.as_list()) states.push_back(key_state(k));
      return states.size() == n;
    };
    if (auto m = r->match({"ok", _list})) {
      if (fill(m[0])) return TxnOutcome::kOk;
    } else if (auto mm = r->match({"error", {"version_mismatch", _, _list}})) {
      if (fill(mm[1])) return TxnOutcome::kMismatch;
    } else if (auto e = r->match({"error", _})) {
      error = e[0].match({"cross_partition", _})
                  ? "CROSSSLOT Keys in request don't hash to the same slot (give them one "
                    "{hash tag})"
                  : "ERR " + error_text(e[0]);
      return TxnOutcome::kFailed;
    }
    error = "ERR unexpected store reply " + r->to_string().substr(0, 200);
    return TxnOutcome::kFailed;
  }

  // v + delta as Redis's INCRBY: false with the error line when v is no integer or it overflows.
  static bool add_to(const std::optional<std::string>& v, long long delta, long long& n,
                     std::string& error) {
    long long cur = 0;
    if (v && !to_ll(*v, cur)) {
      error = "ERR value is not an integer or out of range";
      return false;
    }
    if ((delta > 0 && cur > LLONG_MAX - delta) || (delta < 0 && cur < LLONG_MIN - delta)) {
      error = "ERR increment or decrement would overflow";
      return false;
    }
    n = cur + delta;
    return true;
  }

  // INCR, DECR, INCRBY, DECRBY: the delta, or false with the error line.
  static bool delta_of(const Args& a, long long& d, std::string& error) {
    const std::string name = lower(a[0]);
    if (name == "incr" || name == "decr") {
      d = name == "incr" ? 1 : -1;
      return true;
    }
    if (a.size() < 3 || !to_ll(a[2], d) || (name == "decrby" && d == LLONG_MIN)) {
      error = "ERR value is not an integer or out of range";
      return false;
    }
    if (name == "decrby") d = -d;
    return true;
  }

  void incr(Args& a, std::string& out) {
    long long delta = 0;
    std::string error;
    if (!delta_of(a, delta, error)) return resp::error(out, error);
    std::vector<KeyState> st;
    if (txn(List{tuple("read", bin(a[1]))}, st, error) != TxnOutcome::kOk) {
      return resp::error(out, error);
    }
    for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
      long long n = 0;
      if (!add_to(st[0].found ? std::optional(st[0].value) : std::nullopt, delta, n, error)) {
        return resp::error(out, error);
      }
      // A mismatch brings the key's state now: the next attempt adds to that.
      // keep_ttl: the new value expires when the one it replaces would have, as in Redis.
      const Term opts = map({{"if_version", if_of(st[0])}, {"keep_ttl", true}});
      switch (txn(List{tuple("put", bin(a[1]), bin(std::to_string(n)), opts)}, st, error)) {
        case TxnOutcome::kOk:
          return resp::integer(out, n);
        case TxnOutcome::kFailed:
          return resp::error(out, error);
        case TxnOutcome::kMismatch:
          cas_backoff(attempt);
          break;
      }
    }
    resp::error(out, "ERR version_mismatch: the key changed during each of " +
                         std::to_string(kCasAttempts) + " attempts: retry");
  }

  // The commands MULTI takes, and the keys of one.
  static bool transactional(const std::string& name) {
    static const char* const kNames[] = {"get",  "set",  "del",  "exists", "mget",
                                         "mset", "incr", "decr", "incrby", "decrby"};
    return std::find_if(std::begin(kNames), std::end(kNames),
                        [&](const char* n) { return name == n; }) != std::end(kNames);
  }
  static std::vector<std::string> keys_of(const Args& c) {
    const std::string name = lower(c[0]);
    std::vector<std::string> keys;
    if (name == "mset") {
      for (std::size_t i = 1; i < c.size(); i += 2) keys.push_back(c[i]);
    } else if (name == "del" || name == "exists" || name == "mget") {
      keys.assign(c.begin() + 1, c.end());
    } else {
      keys.push_back(c[1]);
    }
    return keys;
  }

  // Inside MULTI: queues a command (true), or leaves it to run (false: EXEC, DISCARD, MULTI,
  // WATCH, QUIT). A command that cannot be queued is answered with an error and makes EXEC
  // abort, as in Redis.
  bool queue(Args& args, std::string& out) {
    const std::string name = lower(args[0]);
    if (name == "exec" || name == "discard" || name == "multi" || name == "watch" ||
        name == "quit") {
      return false;
    }
    const auto n = static_cast<int>(args.size());
    for (const Command& c : commands()) {
      if (name != c.name) continue;
      if ((c.arity > 0 && n != c.arity) || (c.arity < 0 && n < -c.arity) ||
          (name == "mset" && n % 2 == 0)) {
        multi_dirty_ = true;
        resp::error(out, "ERR wrong number of arguments for '" + name + "' command");
        return true;
      }
      if (!transactional(name) || (name == "set" && n > 3)) {
        multi_dirty_ = true;
        resp::error(out, "ERR '" + name + (name == "set" ? " with options" : "") +
                             "' is not supported inside MULTI here: GET SET DEL EXISTS MGET "
                             "MSET INCR DECR INCRBY DECRBY are");
        return true;
      }
      if (queued_.size() >= 10000) {
        multi_dirty_ = true;
        resp::error(out, "ERR more than 10000 commands queued in one MULTI");
        return true;
      }
      queued_.push_back(std::move(args));
      resp::simple(out, "QUEUED");
      return true;
    }
    multi_dirty_ = true;
    in_multi_ = false;  // the unknown command's own error, from run()
    run(args, out);
    in_multi_ = true;
    return true;
  }

  // Runs queued command `c` on `now` (the keys' values, nullopt: absent), marking what it
  // writes; appends its reply.
  static void run_queued(const Args& c, const std::map<std::string, std::size_t>& index,
                         std::vector<std::optional<std::string>>& now, std::vector<bool>& written,
                         std::string& replies) {
    const std::string name = lower(c[0]);
    auto at = [&](const std::string& k) { return index.at(k); };
    if (name == "get") {
      const auto& v = now[at(c[1])];
      return v ? resp::bulk(replies, *v) : resp::null(replies);
    }
    if (name == "set" || name == "mset") {
      for (std::size_t i = 1; i + 1 < c.size(); i += 2) {
        now[at(c[i])] = c[i + 1];
        written[at(c[i])] = true;
      }
      return resp::simple(replies, "OK");
    }
    if (name == "mget") {
      resp::array(replies, c.size() - 1);
      for (std::size_t i = 1; i < c.size(); ++i) {
        const auto& v = now[at(c[i])];
        v ? resp::bulk(replies, *v) : resp::null(replies);
      }
      return;
    }
    if (name == "exists" || name == "del") {
      long long n = 0;
      for (std::size_t i = 1; i < c.size(); ++i) {
        auto& v = now[at(c[i])];
        if (!v) continue;
        ++n;
        if (name == "del") {
          v.reset();
          written[at(c[i])] = true;
        }
      }
      return resp::integer(replies, n);
    }
    long long delta = 0, n = 0;  // incr, decr, incrby, decrby
    std::string error;
    if (!delta_of(c, delta, error) || !add_to(now[at(c[1])], delta, n, error)) {
      return resp::error(replies, error);  // this command fails alone, as in Redis
    }
    now[at(c[1])] = std::to_string(n);
    written[at(c[1])] = true;
    resp::integer(replies, n);
  }

  void multi(Args&, std::string& out) {
    if (in_multi_) return resp::error(out, "ERR MULTI calls can not be nested");
    in_multi_ = true;
    resp::simple(out, "OK");
  }

  void discard(Args&, std::string& out) {
    if (!in_multi_) return resp::error(out, "ERR DISCARD without MULTI");
    in_multi_ = multi_dirty_ = false;
    queued_.clear();
    watched_.clear();
    resp::simple(out, "OK");
  }

  // WATCH keys...: their versions now, at their partition's first primary.
  void watch(Args& a, std::string& out) {
    if (in_multi_) return resp::error(out, "ERR WATCH inside MULTI is not allowed");
    List reads;
    for (std::size_t i = 1; i < a.size(); ++i) reads.push_back(tuple("read", bin(a[i])));
    std::vector<KeyState> st;
    std::string error;
    if (txn(std::move(reads), st, error) != TxnOutcome::kOk) return resp::error(out, error);
    if (watched_.size() + st.size() > 10000) return resp::error(out, "ERR too many keys watched");
    for (std::size_t i = 1; i < a.size(); ++i) watched_.emplace(a[i], st[i - 1].context);
    resp::simple(out, "OK");
  }

  void unwatch(Args&, std::string& out) {
    watched_.clear();
    resp::simple(out, "OK");
  }

  void exec(Args&, std::string& out) {
    if (!in_multi_) return resp::error(out, "ERR EXEC without MULTI");
    const std::vector<Args> cmds = std::move(queued_);
    const std::map<std::string, std::string> watched = std::move(watched_);
    const bool dirty = multi_dirty_;
    queued_.clear();
    watched_.clear();
    in_multi_ = multi_dirty_ = false;
    if (dirty) {
      return resp::error(out, "EXECABORT Transaction discarded because of previous errors.");
    }
    std::vector<std::string> keys;
    std::map<std::string, std::size_t> index;
    auto add = [&](const std::string& k) {
      if (index.emplace(k, keys.size()).second) keys.push_back(k);
    };
    for (const auto& [k, ctx] : watched) add(k);
    for (const Args& c : cmds) {
      for (const std::string& k : keys_of(c)) add(k);
    }
    if (keys.empty()) return resp::array(out, 0);
    List reads;
    for (const std::string& k : keys) reads.push_back(tuple("read", bin(k)));
    std::vector<KeyState> st;
    std::string error;
    if (txn(std::move(reads), st, error) != TxnOutcome::kOk) return resp::error(out, error);
    for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
      for (const auto& [k, ctx] : watched) {
        if (st[index.at(k)].context != ctx) {
          out += "*-1\r\n";  // a watched key changed: nothing runs (redis-py's WatchError)
          return;
        }
      }
      std::vector<std::optional<std::string>> now(keys.size());
      for (std::size_t i = 0; i < keys.size(); ++i) {
        if (st[i].found) now[i] = st[i].value;
      }
      std::vector<bool> written(keys.size(), false);
      std::string replies;
      for (const Args& c : cmds) run_queued(c, index, now, written, replies);
      List ops;
      for (std::size_t i = 0; i < keys.size(); ++i) {
        const Term key = bin(keys[i]);
        if (!written[i]) {
          ops.push_back(tuple("check", key, if_of(st[i])));
        } else if (now[i]) {
          ops.push_back(tuple("put", key, bin(*now[i]), if_of(st[i])));
        } else {
          ops.push_back(tuple("delete", key, if_of(st[i])));
        }
      }
      switch (txn(std::move(ops), st, error)) {
        case TxnOutcome::kOk:
          resp::array(out, cmds.size());
          out += replies;
          return;
        case TxnOutcome::kFailed:
          return resp::error(out, error);
        case TxnOutcome::kMismatch:
          break;  // run them again on the keys' state now
      }
    }
    resp::error(out, "ERR version_mismatch: the keys changed during each of " +
                         std::to_string(kCasAttempts) + " attempts: retry");
  }

  // -- dispatch -----------------------------------------------------------------------------

  using Handler = void (Session::*)(Args&, std::string&);
  struct Command {
    const char* name;
    int arity;  // Redis's: N exactly, -N at least N (the name counts)
    const char* flags;
    int first_key, last_key, step;
    Handler run;
  };
  static const std::vector<Command>& commands() {
    static const std::vector<Command> table = {
        {"ping", -1, "fast", 0, 0, 0, &Session::ping},
        {"echo", 2, "fast", 0, 0, 0, &Session::echo},
        {"select", 2, "fast", 0, 0, 0, &Session::select},
        {"quit", -1, "fast", 0, 0, 0, &Session::quit},
        {"get", 2, "readonly fast", 1, 1, 1, &Session::get},
        {"set", -3, "write", 1, 1, 1, &Session::set},
        {"expire", -3, "write fast", 1, 1, 1, &Session::expire},
        {"pexpire", -3, "write fast", 1, 1, 1, &Session::expire},
        {"expireat", -3, "write fast", 1, 1, 1, &Session::expire},
        {"pexpireat", -3, "write fast", 1, 1, 1, &Session::expire},
        {"persist", 2, "write fast", 1, 1, 1, &Session::persist},
        {"ttl", 2, "readonly fast", 1, 1, 1, &Session::ttl},
        {"pttl", 2, "readonly fast", 1, 1, 1, &Session::ttl},
        {"del", -2, "write", 1, -1, 1, &Session::del},
        {"exists", -2, "readonly fast", 1, -1, 1, &Session::exists},
        {"mget", -2, "readonly fast", 1, -1, 1, &Session::mget},
        {"mset", -3, "write", 1, -1, 2, &Session::mset},
        {"keys", 2, "readonly", 0, 0, 0, &Session::keys},
        {"scan", -2, "readonly", 0, 0, 0, &Session::scan},
        {"dbsize", 1, "readonly", 0, 0, 0, &Session::dbsize},
        {"info", -1, "loading stale", 0, 0, 0, &Session::info},
        {"command", -1, "loading stale", 0, 0, 0, &Session::command},
        {"client", -2, "loading stale", 0, 0, 0, &Session::client},
        {"hello", -1, "fast", 0, 0, 0, &Session::hello},
        {"config", -2, "admin", 0, 0, 0, &Session::config},
        {"incr", 2, "write fast", 1, 1, 1, &Session::incr},
        {"decr", 2, "write fast", 1, 1, 1, &Session::incr},
        {"incrby", 3, "write fast", 1, 1, 1, &Session::incr},
        {"decrby", 3, "write fast", 1, 1, 1, &Session::incr},
        {"multi", 1, "fast", 0, 0, 0, &Session::multi},
        {"exec", 1, "slow", 0, 0, 0, &Session::exec},
        {"discard", 1, "fast", 0, 0, 0, &Session::discard},
        {"watch", -2, "fast", 1, -1, 1, &Session::watch},
        {"unwatch", 1, "fast", 0, 0, 0, &Session::unwatch},
        {"subscribe", -2, "pubsub loading stale", 0, 0, 0, &Session::subscribe},
        {"psubscribe", -2, "pubsub loading stale", 0, 0, 0, &Session::subscribe},
        {"unsubscribe", -1, "pubsub loading stale", 0, 0, 0, &Session::unsubscribe},
        {"punsubscribe", -1, "pubsub loading stale", 0, 0, 0, &Session::unsubscribe},
        {"reset", 1, "fast loading stale", 0, 0, 0, &Session::reset},
    };
    return table;
  }

  void run(Args& args, std::string& out) {
    if (in_multi_ && queue(args, out)) return;
    const std::string name = lower(args[0]);
    for (const Command& c : commands()) {
      if (name != c.name) continue;
      const auto n = static_cast<int>(args.size());
      if ((c.arity > 0 && n != c.arity) || (c.arity < 0 && n < -c.arity)) {
        resp::error(out, "ERR wrong number of arguments for '" + name + "' command");
        return;
      }
      if (subscribed() && name != "subscribe" && name != "psubscribe" && name != "unsubscribe" &&
          name != "punsubscribe" && name != "ping" && name != "quit" && name != "reset") {
        resp::error(out, "ERR Can't execute '" + name +
                             "': only (P)SUBSCRIBE / (P)UNSUBSCRIBE / PING / QUIT / RESET are "
                             "allowed in this context");
        return;
      }
      (this->*c.run)(args, out);
      return;
    }
    // Redis's own text (server.c processCommand).
    std::string list;
    for (std::size_t i = 1; i < args.size() && list.size() < 128; ++i) {
      list += "'" + args[i].substr(0, 128 - list.size()) + "' ";
    }
    resp::error(out, "ERR unknown command '" + args[0].substr(0, 128) +
                         "', with args beginning with: " + list);
  }

  // -- the commands -------------------------------------------------------------------------

  void ping(Args& a, std::string& out) {
    if (a.size() > 2) {
      resp::error(out, "ERR wrong number of arguments for 'ping' command");
    } else if (subscribed()) {  // RESP2's subscribed form: [pong, message]
      resp::array(out, 2);
      resp::bulk(out, "pong");
      resp::bulk(out, a.size() == 2 ? a[1] : std::string());
    } else if (a.size() == 2) {
      resp::bulk(out, a[1]);
    } else {
      resp::simple(out, "PONG");
    }
  }
  void echo(Args& a, std::string& out) { resp::bulk(out, a[1]); }
  void select(Args& a, std::string& out) {
    long long db = 0;
    if (!to_ll(a[1], db)) {
      resp::error(out, "ERR value is not an integer or out of range");
    } else if (db != 0) {
      resp::error(out, "ERR DB index is out of range");
    } else {
      resp::simple(out, "OK");
    }
  }
  void quit(Args&, std::string& out) {
    resp::simple(out, "OK");
    quit_ = true;
  }

  void get(Args& a, std::string& out) {
    Answer r = get_key(a[1]);
    if (!r.ok) return resp::error(out, "ERR " + r.error);
    const std::string* v = chosen(r);
    if (v) {
      resp::bulk(out, *v);
    } else {
      resp::null(out);
    }
  }

  // SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL]. Without NX, XX,
  // GET or KEEPTTL: a blind overwrite (put_key), one store round trip. With any of them: a write
  // at the key's first primary (set_if).
  void set(Args& a, std::string& out) {
    bool nx = false, xx = false, get_old = false, keep_ttl = false, expiry = false;
    long long ttl_ms = 0;
    for (std::size_t i = 3; i < a.size(); ++i) {
      const std::string opt = lower(a[i]);
      if (opt == "nx" && !xx) {
        nx = true;
      } else if (opt == "xx" && !nx) {
        xx = true;
      } else if (opt == "get") {
        get_old = true;
      } else if (opt == "keepttl" && !expiry) {
        keep_ttl = true;
      } else if ((opt == "ex" || opt == "px" || opt == "exat" || opt == "pxat") && !expiry &&
                 !keep_ttl && i + 1 < a.size()) {
        expiry = true;
        if (long long n = 0; !to_ll(a[i + 1], n)) {
          return resp::error(out, "ERR value is not an integer or out of range");
        }
        std::optional<long long> ms = expire_ms(opt, a[++i]);
        if (!ms || *ms <= 0) {
          // Redis: a zero or negative EX/PX is refused; an EXAT/PXAT in the past is a 1 ms ttl.
          if (!ms || opt == "ex" || opt == "px") {
            return resp::error(out, "ERR invalid expire time in 'set' command");
          }
          ms = 1;
        }
        ttl_ms = *ms;
      } else {
        return resp::error(out, "ERR syntax error");
      }
    }
    if (!nx && !xx && !get_old && !keep_ttl) {
      std::string e = put_all({{a[1], a[2]}}, ttl_ms);
      if (!e.empty()) return resp::error(out, "ERR " + e);
      return resp::simple(out, "OK");
    }
    set_if(a[1], a[2], nx, xx, get_old, ttl_ms, keep_ttl, out);
  }

  // SET with NX, XX, GET or KEEPTTL: a write at the key's partition's first primary
  // (docs/protocol.md 12.6), checked and stored there in one step, so the condition and the
  // old value GET answers are exactly what the write superseded, atomic with every other write
  // that primary coordinates (of two clients setting one key NX, exactly one wins). The expiry
  // goes with the write (`ttl`, or `keep_ttl`: the value expires when the one it replaces would
  // have), in the same step.
  // - KEEPTTL alone: an unconditional write: one round trip.
  // - NX (with or without GET): written only if the key is `absent` there: one round trip; a
  //   refusal brings the key's value, which GET answers.
  // - GET without NX or XX: a compare-and-set guessing the key absent first (one round trip for
  //   a new key); a refusal brings its state, and the write is tried again on that version (two
  //   round trips for a key that exists), as long as it keeps changing meanwhile.
  // - XX: the key's state is read there first, then written only if still that version.
  void set_if(const std::string& key, const std::string& value, bool nx, bool xx, bool get_old,
              long long ttl_ms, bool keep_ttl, std::string& out) {
    auto put = [&](std::optional<Term> if_version) {
      MapEntries o;
      if (if_version) o.emplace_back(Term("if_version"), std::move(*if_version));
      if (ttl_ms > 0) o.emplace_back(Term("ttl"), Term(static_cast<std::int64_t>(ttl_ms)));
      if (keep_ttl) o.emplace_back(Term("keep_ttl"), Term(atom("true")));
      if (o.empty()) return tuple("put", bin(key), bin(value));
      return tuple("put", bin(key), bin(value), Term(Map{std::move(o)}));
    };
    // The answer when the key was written (old: the state the write superseded), and when the
    // condition kept it from being written (old: the key's state now).
    auto written = [&](const KeyState& old) {
      if (!get_old) return resp::simple(out, "OK");
      if (old.found) return resp::bulk(out, old.value);
      resp::null(out);
    };
    auto not_written = [&](const KeyState& old) {
      if (get_old && old.found) return resp::bulk(out, old.value);
      resp::null(out);
    };
    std::vector<KeyState> st;
    std::string error;
    if (!nx && !xx && !get_old) {  // KEEPTTL alone
      if (txn(List{put(std::nullopt)}, st, error) != TxnOutcome::kOk) {
        return resp::error(out, error);
      }
      return written(st[0]);
    }
    bool guessed = !xx;  // st[0] is a guess (absent), not a state the store answered
    if (xx) {
      if (txn(List{tuple("read", bin(key))}, st, error) != TxnOutcome::kOk) {
        return resp::error(out, error);
      }
    } else {
      st.assign(1, KeyState{});
    }
    for (int attempt = 0; attempt < kCasAttempts; ++attempt) {
      if (xx && !st[0].found) return not_written(st[0]);
      const KeyState old = st[0];
      switch (txn(List{put(nx ? Term(atom("absent")) : if_of(old))}, st, error)) {
        case TxnOutcome::kOk:
          return written(old);
        case TxnOutcome::kFailed:
          return resp::error(out, error);
        case TxnOutcome::kMismatch:
          if (nx) return not_written(st[0]);  // the key exists
          if (!guessed) cas_backoff(attempt);
          guessed = false;
          break;  // changed meanwhile (or the guess was wrong): decide again on its state now
      }
    }
    resp::error(out, "ERR version_mismatch: the key changed during each of " +
                         std::to_string(kCasAttempts) + " attempts: retry");
  }

  // -- expiry -------------------------------------------------------------------------------

  // The ttl in ms that EX/PX/EXAT/PXAT (or EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT) with argument
  // `arg` ask for, from now (the absolute ones by this node's clock); nullopt when `arg` is no
  // integer or the time is out of range.
  static std::optional<long long> expire_ms(const std::string& opt, const std::string& arg) {
    long long n = 0;
    if (!to_ll(arg, n)) return std::nullopt;
    constexpr long long kMost = kMaxTtlMs;
    const bool seconds = opt == "ex" || opt == "exat" || opt == "expire" || opt == "expireat";
    if (n > kMost / (seconds ? 1000 : 1) || n < -kMost / (seconds ? 1000 : 1)) return std::nullopt;
    long long ms = seconds ? n * 1000 : n;
    if (opt == "exat" || opt == "pxat" || opt == "expireat" || opt == "pexpireat") {
      ms -= static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
    }
    if (ms > kMost) return std::nullopt;
    return ms;
  }

  // EXPIRE key seconds [NX | XX | GT | LT] (and PEXPIRE, EXPIREAT, PEXPIREAT): a get, then a put
  // of the value it read with its context and the new ttl (so siblings resolve to the value GET
  // shows); a time not in the future deletes the key, as in Redis. 1 when set, 0 when the key
  // is missing or the condition did not hold.
  void expire(Args& a, std::string& out) {
    const std::string cmd = lower(a[0]);
    std::optional<long long> ms = expire_ms(cmd, a[2]);
    if (!ms) {
      if (long long n = 0; !to_ll(a[2], n)) {
        return resp::error(out, "ERR value is not an integer or out of range");
      }
      return resp::error(out, "ERR invalid expire time in '" + cmd + "' command");
    }
    bool nx = false, xx = false, gt = false, lt = false;
    for (std::size_t i = 3; i < a.size(); ++i) {
      const std::string opt = lower(a[i]);
      if (opt == "nx") {
        nx = true;
      } else if (opt == "xx") {
        xx = true;
      } else if (opt == "gt") {
        gt = true;
      } else if (opt == "lt") {
        lt = true;
      } else {
        return resp::error(out, "ERR Unsupported option " + a[i]);
      }
    }
    if (nx && (xx || gt || lt)) {
      return resp::error(out,
                         "ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if (gt && lt) {
      return resp::error(out, "ERR GT and LT options at the same time are not compatible");
    }
    Answer old = get_key(a[1]);
    if (!old.ok) return resp::error(out, "ERR " + old.error);
    const std::string* value = chosen(old);
    if (!value) return resp::integer(out, 0);
    const bool has = old.ttl_ms >= 0;  // no ttl counts as an infinite one for GT and LT
    if ((nx && has) || (xx && !has) || (gt && (!has || *ms <= old.ttl_ms)) ||
        (lt && has && *ms >= old.ttl_ms)) {
      return resp::integer(out, 0);
    }
    const std::string e =
        *ms <= 0 ? delete_key(a[1], old.context) : put_key(a[1], *value, old.context, *ms);
    if (!e.empty()) return resp::error(out, "ERR " + e);
    resp::integer(out, 1);
  }

  // PERSIST key: 1 when the key had a ttl, now gone (a put of its value with the get's
  // context), else 0.
  void persist(Args& a, std::string& out) {
    Answer old = get_key(a[1]);
    if (!old.ok) return resp::error(out, "ERR " + old.error);
    const std::string* value = chosen(old);
    if (!value || old.ttl_ms < 0) return resp::integer(out, 0);
    const std::string e = put_key(a[1], *value, old.context, 0);
    if (!e.empty()) return resp::error(out, "ERR " + e);
    resp::integer(out, 1);
  }

  // TTL key / PTTL key: -2 missing, -1 no expiry, else the time left (TTL in seconds, rounded
  // as Redis does).
  void ttl(Args& a, std::string& out) {
    Answer r = get_key(a[1]);
    if (!r.ok) return resp::error(out, "ERR " + r.error);
    if (!r.found) return resp::integer(out, -2);
    if (r.ttl_ms < 0) return resp::integer(out, -1);
    resp::integer(out, lower(a[0]) == "pttl" ? r.ttl_ms : (r.ttl_ms + 500) / 1000);
  }

  void mset(Args& a, std::string& out) {
    if (a.size() % 2 == 0) {
      return resp::error(out, "ERR wrong number of arguments for 'mset' command");
    }
    // The last value of a key named twice wins, as in Redis.
    std::vector<std::pair<std::string, std::string>> kvs;
    std::map<std::string, std::size_t> at;
    for (std::size_t i = 1; i + 1 < a.size(); i += 2) {
      auto [it, fresh] = at.emplace(a[i], kvs.size());
      if (fresh) {
        kvs.emplace_back(std::move(a[i]), std::move(a[i + 1]));
      } else {
        kvs[it->second].second = std::move(a[i + 1]);
      }
    }
    std::string e = put_all(kvs);
    if (!e.empty()) return resp::error(out, "ERR " + e);
    resp::simple(out, "OK");
  }

  void mget(Args& a, std::string& out) {
    const std::vector<Answer> answers = get_keys(Args(a.begin() + 1, a.end()));
    for (const Answer& r : answers) {
      if (!r.ok) return resp::error(out, "ERR " + r.error);
    }
    resp::array(out, answers.size());
    for (const Answer& r : answers) {
      const std::string* v = chosen(r);
      if (v) {
        resp::bulk(out, *v);
      } else {
        resp::null(out);
      }
    }
  }

  void exists(Args& a, std::string& out) {
    const std::vector<Answer> answers =
        a.size() == 2 ? std::vector<Answer>{get_key(a[1])} : get_keys(Args(a.begin() + 1, a.end()));
    long long n = 0;
    std::string first_error;
    for (const Answer& r : answers) {
      if (!r.ok && first_error.empty()) first_error = r.error;
      if (r.found) ++n;
    }
    if (!first_error.empty()) return resp::error(out, "ERR " + first_error);
    resp::integer(out, n);
  }

  // A delete with the causal context of a get: it supersedes what the get saw; the count is
  // of the keys the gets found.
  void del(Args& a, std::string& out) {
    std::vector<std::string> keys(a.begin() + 1, a.end());
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    const std::vector<Answer> found =
        keys.size() == 1 ? std::vector<Answer>{get_key(keys[0])} : get_keys(keys);
    std::string first_error;
    for (const Answer& r : found) {
      if (!r.ok && first_error.empty()) first_error = r.error;
    }
    if (!first_error.empty()) return resp::error(out, "ERR " + first_error);
    long long n = 0;
    if (keys.size() == 1) {
      if (found[0].found) first_error = delete_key(keys[0], found[0].context);
      n = found[0].found ? 1 : 0;
    } else {  // the deletes at once (kv::Client::multi_del), each straight to its key's vnode
      std::vector<std::string> gone, contexts;
      for (std::size_t i = 0; i < keys.size(); ++i) {
        if (!found[i].found) continue;
        gone.push_back(keys[i]);
        contexts.push_back(found[i].context);
      }
      for (std::size_t at = 0; at < gone.size(); at += kv::Client::kMaxMultiKeys) {
        const auto from = static_cast<std::ptrdiff_t>(at);
        const auto to =
            static_cast<std::ptrdiff_t>(std::min(gone.size(), at + kv::Client::kMaxMultiKeys));
        for (auto& r : client_.multi_del({gone.begin() + from, gone.begin() + to},
                                         {contexts.begin() + from, contexts.begin() + to},
                                         request_options())) {
          if (!r && first_error.empty()) first_error = error_text(r.error());
        }
      }
      n = static_cast<long long>(gone.size());
    }
    if (!first_error.empty()) return resp::error(out, "ERR " + first_error);
    resp::integer(out, n);
  }

  void keys(Args& a, std::string& out) {
    std::vector<std::string> all;
    std::string cursor, error;
    std::size_t bytes = 0;
    for (;;) {
      std::vector<std::string> page;
      std::string next;
      if (!keys_page(a[1], cursor, kKeysPage, page, next, error)) {
        return resp::error(out, "ERR " + error);
      }
      for (std::string& k : page) {
        bytes += k.size() + 16;
        all.push_back(std::move(k));
      }
      if (bytes > sh_->options.max_output) {
        return resp::error(out, "ERR KEYS would answer more than " +
                                    std::to_string(sh_->options.max_output) + " bytes: use SCAN");
      }
      if (next.empty()) break;
      cursor = std::move(next);
    }
    resp::array(out, all.size());
    for (const std::string& k : all) resp::bulk(out, k);
  }

  // SCAN cursor [MATCH pattern] [COUNT n] [TYPE string]: the store's keys query, its opaque
  // cursors kept here under the numbers the client sees (Redis clients want a number).
  void scan(Args& a, std::string& out) {
    long long n = 0;
    if (!to_ll(a[1], n) || n < 0) return resp::error(out, "ERR invalid cursor");
    std::string cursor;
    if (n != 0) {
      auto it = cursors_.find(static_cast<std::uint64_t>(n));
      if (it == cursors_.end()) return resp::error(out, "ERR invalid cursor");
      cursor = it->second;
    }
    std::string pattern = "*";
    long long count = 10;
    bool other_type = false;
    for (std::size_t i = 2; i < a.size(); i += 2) {
      const std::string opt = lower(a[i]);
      if (i + 1 >= a.size()) return resp::error(out, "ERR syntax error");
      if (opt == "match") {
        pattern = a[i + 1];
      } else if (opt == "count") {
        if (!to_ll(a[i + 1], count)) {
          return resp::error(out, "ERR value is not an integer or out of range");
        }
        if (count < 1) return resp::error(out, "ERR syntax error");
      } else if (opt == "type") {
        other_type = lower(a[i + 1]) != "string";  // every key is a string here
      } else {
        return resp::error(out, "ERR syntax error");
      }
    }
    std::vector<std::string> page;
    std::string next, error;
    if (!other_type && !keys_page(pattern, cursor,
                                  static_cast<std::uint32_t>(std::min<long long>(count, kKeysPage)),
                                  page, next, error)) {
      return resp::error(out, "ERR " + error);
    }
    std::uint64_t id = 0;
    if (!next.empty()) {
      id = next_cursor_++;
      if (cursors_.size() >= kMaxCursors) cursors_.erase(cursors_.begin());
      cursors_.emplace(id, std::move(next));
    }
    resp::array(out, 2);
    resp::bulk(out, std::to_string(id));
    resp::array(out, page.size());
    for (const std::string& k : page) resp::bulk(out, k);
  }

  void dbsize(Args&, std::string& out) {
    long long n = 0;
    std::string cursor, error;
    for (;;) {
      std::vector<std::string> page;
      std::string next;
      if (!keys_page("*", cursor, kKeysPage, page, next, error)) {
        return resp::error(out, "ERR " + error);
      }
      n += static_cast<long long>(page.size());
      if (next.empty()) break;
      cursor = std::move(next);
    }
    resp::integer(out, n);
  }

  void info(Args& a, std::string& out) {
    std::string want = a.size() > 1 ? lower(a[1]) : "default";
    auto wanted = [&](const char* s) {
      return want == "default" || want == "all" || want == "everything" || want == s;
    };
    const auto uptime =
        std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - sh_->started).count();
    const Counters& c = sh_->counters;
    std::string text;
    auto line = [&](const std::string& k, const std::string& v) { text += k + ":" + v + "\r\n"; };
    auto num = [](std::uint64_t v) { return std::to_string(v); };
    if (wanted("server")) {
      text += "# Server\r\n";
      line("redis_version", kRedisVersion);
      line("redis_mode", "standalone");
      line("nodus_node", std::string(sh_->node->name().name()));
      line("os", "Linux");
      line("process_id", std::to_string(::getpid()));
      line("tcp_port", sh_->options.listen.substr(sh_->options.listen.rfind(':') + 1));
      line("uptime_in_seconds", std::to_string(uptime));
      line("uptime_in_days", std::to_string(uptime / 86400));
      text += "\r\n";
    }
    if (wanted("clients")) {
      text += "# Clients\r\n";
      line("connected_clients", num(c.clients.load()));
      line("maxclients", num(sh_->options.max_clients));
      text += "\r\n";
    }
    auto st = kv::stats(*sh_->node);
    if (wanted("stats")) {
      text += "# Stats\r\n";
      line("total_connections_received", num(c.connections.load()));
      line("total_commands_processed", num(c.commands.load()));
      line("rejected_connections", num(c.rejected.load()));
      line("client_protocol_errors", num(c.protocol_errors.load()));
      line("client_output_buffer_limit_disconnections", num(c.output_overflows.load()));
      line("client_input_pauses", num(c.input_pauses.load()));
      line("pubsub_lost_disconnections", num(c.pubsub_lost.load()));
      if (st.ok()) {
        line("keyspace_hits", num(st->hits));
        line("keyspace_misses", num(st->misses));
        line("evicted_keys", "0");
        line("expired_keys", num(st->expired));
      }
      text += "\r\n";
    }
    if (st.ok() && wanted("nodus")) {
      text += "# Nodus\r\n";
      line("kv_partitions", num(st->partitions));
      line("kv_replicas", num(st->replicas));
      line("kv_ring_epoch", num(st->ring_epoch));
      line("kv_node_objects", num(st->keys));
      line("kv_data_bytes", num(st->data_bytes));
      line("kv_memory_bytes", num(st->memory_bytes));
      line("kv_gets", num(st->gets));
      line("kv_puts", num(st->puts));
      line("kv_deletes", num(st->deletes));
      line("kv_errors", num(st->errors));
      line("kv_overloaded", num(st->overloaded));
      line("kv_read_repairs", num(st->read_repairs));
      line("kv_hints_pending", num(st->hints_pending));
      line("kv_siblings_max", num(st->siblings_max));
      text += "\r\n";
    }
    if (st.ok() && wanted("keyspace")) {
      // This node's objects (its replicas of the keys, tombstones included): DBSIZE counts
      // the cluster's live keys.
      text += "# Keyspace\r\n";
      line("db0", "keys=" + num(st->keys) + ",expires=0,avg_ttl=0");
      text += "\r\n";
    }
    resp::bulk(out, text);
  }

  void command(Args& a, std::string& out) {
    auto entry = [&](const Command& c) {
      resp::array(out, 6);
      resp::bulk(out, c.name);
      resp::integer(out, c.arity);
      std::vector<std::string> flags;
      std::string f = c.flags;
      for (std::size_t p = 0; p < f.size();) {
        std::size_t sp = f.find(' ', p);
        if (sp == std::string::npos) sp = f.size();
        flags.push_back(f.substr(p, sp - p));
        p = sp + 1;
      }
      resp::array(out, flags.size());
      for (const std::string& s : flags) resp::simple(out, s);
      resp::integer(out, c.first_key);
      resp::integer(out, c.last_key);
      resp::integer(out, c.step);
    };
    if (a.size() == 1) {
      resp::array(out, commands().size());
      for (const Command& c : commands()) entry(c);
      return;
    }
    const std::string sub = lower(a[1]);
    if (sub == "count" && a.size() == 2)
      return resp::integer(out, static_cast<long long>(commands().size()));
    if (sub == "docs") return resp::array(out, 0);  // no docs: clients do without
    if (sub == "info") {
      resp::array(out, a.size() - 2);
      for (std::size_t i = 2; i < a.size(); ++i) {
        const std::string want = lower(a[i]);
        auto it = std::find_if(commands().begin(), commands().end(),
                               [&](const Command& c) { return want == c.name; });
        if (it == commands().end()) {
          out += "*-1\r\n";  // a null array, as Redis 7
        } else {
          entry(*it);
        }
      }
      return;
    }
    resp::error(out, "ERR unknown subcommand '" + a[1].substr(0, 128) + "'. Try COMMAND HELP.");
  }

  static bool valid_client_name(const std::string& n) {
    return std::all_of(n.begin(), n.end(), [](char ch) { return ch > ' ' && ch <= '~'; });
  }

  void client(Args& a, std::string& out) {
    const std::string sub = lower(a[1]);
    if (sub == "id" && a.size() == 2) return resp::integer(out, static_cast<long long>(conn_->id));
    if (sub == "setname" && a.size() == 3) {
      if (!valid_client_name(a[2])) {
        return resp::error(
            out, "ERR Client names cannot contain spaces, newlines or special characters.");
      }
      detail::MutexLock lock(conn_->mu);
      conn_->name = a[2];
      return resp::simple(out, "OK");
    }
    if (sub == "getname" && a.size() == 2) {
      std::string name;
      {
        detail::MutexLock lock(conn_->mu);
        name = conn_->name;
      }
      if (name.empty()) return resp::null(out);
      return resp::bulk(out, name);
    }
    if (sub == "setinfo" && a.size() == 4) return resp::simple(out, "OK");
    if (sub == "info" && a.size() == 2) {
      std::string name;
      {
        detail::MutexLock lock(conn_->mu);
        name = conn_->name;
      }
      const auto age =
          std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - conn_->since).count();
      return resp::bulk(
          out, "id=" + std::to_string(conn_->id) + " addr=" + conn_->addr +
                   " laddr=" + conn_->laddr + " fd=" + std::to_string(conn_->fd) + " name=" + name +
                   " age=" + std::to_string(age) + " idle=0 flags=" + (subscribed() ? "P" : "N") +
                   " db=0 sub=" + std::to_string(channels_.size()) + " psub=" +
                   std::to_string(patterns_.size()) + " multi=-1 resp=2 cmd=client|info\n");
    }
    resp::error(out, "ERR unknown subcommand '" + a[1].substr(0, 128) + "'. Try CLIENT HELP.");
  }

  void hello(Args& a, std::string& out) {
    std::size_t i = 1;
    if (a.size() > 1) {
      long long proto = 0;
      if (!to_ll(a[1], proto)) {
        return resp::error(out, "ERR Protocol version is not an integer or out of range");
      }
      if (proto != 2) return resp::error(out, "NOPROTO unsupported protocol version");
      i = 2;
    }
    for (; i < a.size(); ++i) {
      const std::string opt = lower(a[i]);
      if (opt == "setname" && i + 1 < a.size()) {
        if (!valid_client_name(a[i + 1])) {
          return resp::error(
              out, "ERR Client names cannot contain spaces, newlines or special characters.");
        }
        detail::MutexLock lock(conn_->mu);
        conn_->name = a[++i];
      } else if (opt == "auth") {
        return resp::error(out, "ERR AUTH is not supported: this server has no passwords");
      } else {
        return resp::error(out, "ERR Syntax error in HELLO option '" + a[i].substr(0, 128) + "'");
      }
    }
    resp::array(out, 14);
    resp::bulk(out, "server");
    resp::bulk(out, "redis");
    resp::bulk(out, "version");
    resp::bulk(out, kRedisVersion);
    resp::bulk(out, "proto");
    resp::integer(out, 2);
    resp::bulk(out, "id");
    resp::integer(out, static_cast<long long>(conn_->id));
    resp::bulk(out, "mode");
    resp::bulk(out, "standalone");
    resp::bulk(out, "role");
    resp::bulk(out, "master");
    resp::bulk(out, "modules");
    resp::array(out, 0);
  }

  // CONFIG GET answers the few parameters clients ask for (redis-benchmark: save and
  // appendonly) as a Redis without persistence would, and no others (as Redis does for
  // unknown ones). CONFIG SET is refused.
  void config(Args& a, std::string& out) {
    if (lower(a[1]) == "get" && a.size() == 3) {
      static const std::pair<const char*, const char*> kKnown[] = {
          {"save", ""},
          {"appendonly", "no"},
          {"databases", "1"},
          {"notify-keyspace-events", "KEg$x"}};
      for (const auto& [k, v] : kKnown) {
        if (lower(a[2]) == k) {
          resp::array(out, 2);
          resp::bulk(out, k);
          return resp::bulk(out, v);
        }
      }
      return resp::array(out, 0);
    }
    resp::error(out, "ERR unknown subcommand '" + a[1].substr(0, 128) + "'. Try CONFIG HELP.");
  }

  std::shared_ptr<Shared> sh_;
  std::shared_ptr<Conn> conn_;
  kv::Client client_{*sh_->node};  // this node's store; routes a key's requests to its vnode
  bool quit_ = false;
  std::map<std::uint64_t, std::string> cursors_;  // SCAN's numbers -> the store's cursors
  std::uint64_t next_cursor_ = 1;
  // MULTI / WATCH: the commands queued, whether one was refused (EXEC aborts), and the
  // watched keys with their contexts when watched.
  bool in_multi_ = false, multi_dirty_ = false;
  std::vector<Args> queued_;
  std::map<std::string, std::string> watched_;
  std::minstd_rand rng_{static_cast<unsigned>(Clock::now().time_since_epoch().count())};
  // Pub/sub: the channels and patterns subscribed, the store watch that feeds them, and the
  // notifications not yet handed to the socket.
  std::set<std::string> channels_, patterns_;
  std::optional<Ref> watch_;
  std::string events_;
};

// The connection's process: runs its commands as "work" arrives, until the socket is done.
void connection_body(std::shared_ptr<Shared> shared, std::shared_ptr<Conn> conn) {
  struct Done {
    Conn* c;
    ~Done() {
      detail::MutexLock lock(c->mu);
      c->proc_done = true;
      if (c->loop_done) {
        ::close(c->fd);
      } else if (!c->closed) {
        c->closed = true;
        ::shutdown(c->fd, SHUT_RDWR);  // the loop sees it and lets go
      }
    }
  } done{conn.get()};
  Session session(shared, conn);
  for (;;) {
    // Keyspace notifications are gathered, up to 256 messages a turn, and written together;
    // anything else ("work", "closed") runs the commands, after the notifications before it.
    Message msg = receive();
    for (int i = 0; i < 256; ++i) {
      if (!session.watch_message(msg)) {
        if (!session.flush_events() || !session.step()) return;
      }
      auto next = receive(std::chrono::milliseconds(0));
      if (!next) break;
      msg = std::move(*next);
    }
    if (!session.flush_events()) return;
  }
}

}  // namespace

class RespServer::Impl {
 public:
  Impl(Node& node, RespOptions options) {
    sh_ = std::make_shared<Shared>();
    sh_->node = &node;
    sh_->options = std::move(options);
    limits_.max_bulk = sh_->options.max_bulk;
    limits_.max_command_bytes = std::max<std::size_t>(64 << 20, 2 * sh_->options.max_bulk);
  }
  ~Impl() { close(); }

  Status listen() {
    const std::string& hp = sh_->options.listen;
    const auto colon = hp.rfind(':');
    std::string host = hp.substr(0, colon), port = hp.substr(colon + 1);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* res = nullptr;
    const char* h = (host == "*" || host.empty()) ? nullptr : host.c_str();
    if (int rc = ::getaddrinfo(h, port.c_str(), &hints, &res); rc != 0) {
      return Status(ErrorCode::kBadConfig, "cannot resolve " + hp + ": " + gai_strerror(rc));
    }
    std::string why = "no address";
    for (addrinfo* a = res; a && listen_fd_ < 0; a = a->ai_next) {
      int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0) {
        listen_fd_ = fd;
      } else {
        why = std::strerror(errno);
        ::close(fd);
      }
    }
    ::freeaddrinfo(res);
    if (listen_fd_ < 0) {
      return Status(ErrorCode::kBadConfig, "cannot listen on " + hp + " (" + why +
                                               "); pick a free port, or stop the process using it");
    }
    sh_->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kListenId;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
    ev.data.u64 = kWakeId;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, sh_->wake_fd, &ev);
    thread_ = std::thread([this] { loop(); });
    return Status();
  }

  void close() {
    if (!thread_.joinable()) return;
    stop_.store(true);
    const std::uint64_t one = 1;
    (void)!::write(sh_->wake_fd, &one, sizeof(one));
    thread_.join();
    for (auto& [id, c] : conns_) drop(*c);
    conns_.clear();
    ::close(listen_fd_);
    ::close(epoll_fd_);
    // wake_fd stays open: processes still running may write to it until they end; Shared
    // closes it with the last of them.
  }

 private:
  static constexpr std::uint64_t kListenId = 0, kWakeId = 1;

  void loop() {
    epoll_event events[128];
    while (!stop_.load()) {
      const int n = ::epoll_wait(epoll_fd_, events, 128, 1000);
      for (int i = 0; i < n; ++i) {
        const std::uint64_t id = events[i].data.u64;
        if (id == kListenId) {
          accept_all();
        } else if (id == kWakeId) {
          std::uint64_t v;
          (void)!::read(sh_->wake_fd, &v, sizeof(v));
          serve_requests();
        } else {
          auto it = conns_.find(id);
          if (it == conns_.end()) continue;
          std::shared_ptr<Conn> c = it->second;
          if (events[i].events & EPOLLOUT) writable(*c);
          if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) readable(c);
        }
      }
    }
  }

  void accept_all() {
    for (int k = 0; k < 256; ++k) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      sh_->counters.connections.fetch_add(1);
      if (conns_.size() >= sh_->options.max_clients) {
        sh_->counters.rejected.fetch_add(1);
        static const char kFull[] = "-ERR max number of clients reached\r\n";
        (void)!::send(fd, kFull, sizeof(kFull) - 1, MSG_NOSIGNAL);
        ::close(fd);
        continue;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      auto c = std::make_shared<Conn>(limits_);
      c->id = next_id_++;
      c->fd = fd;
      c->addr = address_of(fd, true);
      c->laddr = address_of(fd, false);
      c->pid = spawn(*sh_->node, [sh = sh_, c] { connection_body(sh, c); });
      if (!c->pid.valid()) {
        ::close(fd);
        continue;
      }
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.u64 = c->id;
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
      conns_.emplace(c->id, c);
      sh_->counters.clients.fetch_add(1);
    }
  }

  void rearm(Conn& c) {
    epoll_event ev{};
    ev.events = (c.reading ? EPOLLIN | EPOLLRDHUP : 0u) | (c.writing ? EPOLLOUT : 0u);
    ev.data.u64 = c.id;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void readable(const std::shared_ptr<Conn>& cp) {
    Conn& c = *cp;
    char buf[kReadChunk];
    ssize_t n = 0;
    if (c.reading) {
      n = ::recv(c.fd, buf, sizeof(buf), 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    }
    if (n <= 0) {  // closed by the client, or by its process (shutdown), or failed
      drop(c);
      conns_.erase(c.id);
      return;
    }
    c.parser.feed(std::string_view(buf, static_cast<std::size_t>(n)));
    std::deque<Args> parsed;
    std::size_t bytes = 0;
    Args args;
    RespParser::Next r;
    while ((r = c.parser.next(args)) == RespParser::Next::kCommand) {
      for (const std::string& s : args) bytes += s.size() + 16;
      parsed.push_back(std::move(args));
      args = Args();
    }
    bool notify = false;
    {
      detail::MutexLock lock(c.mu);
      if (c.closed) return;
      for (Args& p : parsed) c.pending.push_back(std::move(p));
      c.pending_bytes += bytes;
      if (r == RespParser::Next::kError) {
        sh_->counters.protocol_errors.fetch_add(1);
        c.protocol_error = c.parser.error();
        c.reading = false;
      } else if (c.pending_bytes > sh_->options.max_pending_input) {
        sh_->counters.input_pauses.fetch_add(1);
        c.paused = true;
        c.reading = false;
      }
      if ((!parsed.empty() || r == RespParser::Next::kError) && !c.scheduled) {
        c.scheduled = true;
        notify = true;
      }
    }
    if (!c.reading) rearm(c);
    if (notify) send(c.pid, Term("work"));
  }

  void writable(Conn& c) {
    bool done;
    {
      detail::MutexLock lock(c.mu);
      c.flush();
      done = c.unsent() == 0;
    }
    if (done && c.writing) {
      c.writing = false;
      rearm(c);
    }
  }

  void serve_requests() {
    std::vector<std::pair<std::uint64_t, bool>> reqs;
    {
      detail::MutexLock lock(sh_->mu);
      reqs.swap(sh_->requests);
    }
    for (const auto& [id, resume] : reqs) {
      auto it = conns_.find(id);
      if (it == conns_.end()) continue;
      Conn& c = *it->second;
      if (resume) {
        bool ok;
        {
          detail::MutexLock lock(c.mu);
          ok = c.protocol_error.empty() && !c.closed;
        }
        if (ok) c.reading = true;
      } else {
        c.writing = true;
      }
      rearm(c);
      if (!resume) writable(c);
    }
  }

  // The loop lets go of `c`: its process is told, and the last of the two closes the socket.
  void drop(Conn& c) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c.fd, nullptr);
    {
      detail::MutexLock lock(c.mu);
      c.loop_done = true;
      if (!c.closed) {
        c.closed = true;
        ::shutdown(c.fd, SHUT_RDWR);
      }
      if (c.proc_done) ::close(c.fd);
    }
    send(c.pid, Term("closed"));
    sh_->counters.clients.fetch_sub(1);
  }

  std::shared_ptr<Shared> sh_;
  RespParser::Limits limits_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::unordered_map<std::uint64_t, std::shared_ptr<Conn>> conns_;  // the loop thread's
  std::uint64_t next_id_ = 2;
};

Result<std::unique_ptr<RespServer>> RespServer::start(Node& node, RespOptions options) {
  auto impl = std::make_unique<Impl>(node, std::move(options));
  if (Status s = impl->listen(); !s.ok()) return s;
  return std::unique_ptr<RespServer>(new RespServer(std::move(impl)));
}

RespServer::RespServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RespServer::~RespServer() { close(); }
void RespServer::close() {
  if (impl_) impl_->close();
}

}  // namespace nodus::tools
