// The Redis protocol (RESP2) in front of the store: nodusd's `[resp] listen`.
//
// RespParser turns the bytes a client sends into commands, as Redis's own processMultibulkBuffer
// and processInlineBuffer do: multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline
// (`GET k\r\n`, quotes and \xNN as redis-cli writes them) requests, any number per read and
// any split across reads (pipelining), with Redis's error texts ("Protocol error: invalid bulk
// length") for input past its bounds: a bulk longer than max_bulk, more than max_args
// arguments, an inline or header line over 64 KiB, a command over max_command_bytes.
//
// RespServer serves the protocol on one TCP address. One event-loop thread accepts, reads and
// parses (epoll, non-blocking sockets); each connection has a nodus process that runs its
// commands in order against the node's store (a key's gets and puts through kv::Client, which
// calls the vnode of the key's partition directly when this node is a primary of it; the rest
// as term requests to `nodus_kv`, docs/protocol.md 12.3; every wait parks that process only)
// and writes the replies to the
// socket itself; only a reply the socket cannot take at once goes back to the loop, which
// finishes it when the socket is writable. So a slow store request, or a client that does not
// read, holds its own connection only. Bounds: at most max_clients connections (more get
// Redis's "max number of clients reached" and are closed), max_pending_input bytes of parsed
// commands waiting per connection (beyond that the loop stops reading it: TCP back-pressure),
// max_output bytes of replies not yet taken by the client (beyond that it is disconnected, as
// Redis's client-output-buffer-limit; max_pubsub_output for a subscribed connection). A protocol
// error is answered and that connection closed; the others are not touched.
//
// Pub/sub: a connection that (P)SUBSCRIBEs has its process watch every key of the store (one
// watch, docs/protocol.md 12.7) and turns each change into Redis's keyspace notifications
// (`__keyspace@0__:KEY` / `__keyevent@0__:EVENT`, EVENT set, del or expired) for the channels
// and patterns it holds. A subscriber past max_pubsub_output, or whose watch the store ends
// (kv_watch_lost), is disconnected: it never misses a notification silently.
//
// Thread-safety: RespParser is a plain value (one thread at a time). RespServer: start() and
// close() from one thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "nodus/node/node.hpp"
#include "nodus/transport/status.hpp"

namespace nodus::tools {

class RespParser {
 public:
  struct Limits {
    std::size_t max_bulk = 1 << 20;                    ///< bytes of one argument ($N)
    std::size_t max_args = 1024 * 1024;                ///< arguments of one command (*N)
    std::size_t max_inline = 64 * 1024;                ///< bytes of an inline or header line
    std::size_t max_command_bytes = 64 * 1024 * 1024;  ///< one command's arguments together
  };
  enum class Next {
    kCommand,   ///< `args` holds the next command (never empty)
    kNeedMore,  ///< no whole command buffered: feed more
    kError,     ///< the input broke the protocol: error() says how; feed no more
  };

  explicit RespParser(Limits limits);
  RespParser() : RespParser(Limits{}) {}

  /// Buffers bytes read from the client.
  void feed(std::string_view bytes);
  /// Takes the next whole command off the buffer into `args`.
  Next next(std::vector<std::string>& args);
  /// Redis's text of the protocol error ("Protocol error: invalid bulk length").
  const std::string& error() const { return error_; }
  /// Bytes buffered and not yet returned as commands.
  std::size_t buffered() const { return buf_.size() - pos_; }

 private:
  Next fail(std::string why);
  Next inline_command(std::vector<std::string>& args);
  // A line from pos_ ending in "\n" (the "\r" before it dropped): its length, or npos when
  // the line is not whole yet.
  std::size_t line_end() const;

  Limits limits_;
  std::string buf_;
  std::size_t pos_ = 0;       // first byte not yet consumed
  long long args_left_ = -1;  // arguments still to read of the current multibulk; -1: none
  long long bulk_len_ = -1;   // length of the bulk being read; -1: expecting its $ line
  std::size_t command_bytes_ = 0;
  std::vector<std::string> args_;
  std::string error_;
};

/// Appends RESP2 replies.
namespace resp {
void simple(std::string& out, std::string_view s);  ///< +s (no \r or \n in s)
void error(std::string& out, std::string_view s);   ///< -s (\r and \n become spaces)
void integer(std::string& out, long long n);        ///< :n
void bulk(std::string& out, std::string_view s);    ///< $len s
void null(std::string& out);                        ///< $-1
void array(std::string& out, std::size_t n);        ///< *n, then n replies
}  // namespace resp

struct RespOptions {
  std::string listen;                            ///< "host:port"
  std::size_t max_clients = 1000;                ///< connections at once
  std::size_t max_bulk = (1 << 20) + 64 * 1024;  ///< kv.max_value_bytes plus room for a key
  std::size_t max_pending_input = 1 << 20;       ///< parsed, not yet run, per connection
  std::size_t max_output = 64 << 20;             ///< unsent replies per connection
  /// Unsent replies and keyspace notifications of a subscribed connection (Redis's
  /// client-output-buffer-limit for pubsub: 32 MiB); beyond it the subscriber is disconnected.
  std::size_t max_pubsub_output = 32 << 20;
  std::chrono::milliseconds request_timeout{5000};  ///< kv.request_timeout
};

class RespServer {
 public:
  /// Binds `options.listen` and starts serving the store of `node` (which must outlive the
  /// server). Errors: kBadConfig naming the address when it cannot be bound.
  static Result<std::unique_ptr<RespServer>> start(Node& node, RespOptions options);
  ~RespServer();
  RespServer(const RespServer&) = delete;
  RespServer& operator=(const RespServer&) = delete;

  /// Stops listening, closes every connection (their processes end after the command they
  /// run) and joins the loop thread. Idempotent.
  void close();

 private:
  class Impl;
  explicit RespServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace nodus::tools
