// Client: nodusctl's connection to one node. It starts a small hidden Node of its own on an
// ephemeral loopback port (docs/protocol.md section 11), so it authenticates like a peer (the
// cookie, and CURVE keys when the cluster uses them) and is refused like one, without ever
// counting as a cluster member. Requests go to the node's admin server (tools/src/admin.hpp).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "ctl.hpp"
#include "nodus/node/node.hpp"

namespace nodus::ctl {

class Client {
 public:
  /// Links to the node (--node or --config) and waits until the link is up. Throws
  /// CtlError, exit status 2: no cookie, a bad config, authentication refused, no answer in time.
  static std::unique_ptr<Client> connect(const GlobalOptions& o);
  ~Client();

  /// The name of the node we are linked to.
  const std::string& target() const { return target_; }
  /// Asks the target's admin server; the value of its {ok, Value}. Throws CtlError with the
  /// code of its {error, Code, Name, Message}; with the call's code when the node does not
  /// answer (exit status 2, but 1 for a timeout).
  Term ask(const Term& request, std::chrono::milliseconds timeout);
  Term ask(const Term& request) { return ask(request, timeout_); }
  /// Asks `node`'s admin server (relayed by the target when it is another node).
  Term ask_node(const std::string& node, const Term& request);
  /// Sends a term request to the target's store (`nodus_kv`, docs/protocol.md 12.3) and returns
  /// its reply as is ({ok, ...} or {error, ...}), waiting `timeout` plus a margin (the request
  /// carries `timeout` as its own deadline). Throws CtlError when the store does not answer:
  /// exit status 2 when the node runs none or went away, 1 for a timeout.
  Term kv(const Term& request, std::chrono::milliseconds timeout);
  /// The configured timeout (--timeout).
  std::chrono::milliseconds timeout() const { return timeout_; }
  /// nodusctl's own hidden node (for a command that receives messages, as kv watch: it makes
  /// an Inbox on it). Owned by this Client.
  Node& node() { return *node_; }

 private:
  Client() = default;
  std::unique_ptr<Node> node_;
  std::string target_;
  std::string endpoint_;
  std::chrono::milliseconds timeout_{5000};
};

}  // namespace nodus::ctl
