#include "metrics.hpp"

#include <sstream>

#include "admin.hpp"
#include "http_server.hpp"
#include "nodus/registry/global.hpp"

namespace nodus::tools {

namespace {

// A label value, escaped as the text format wants.
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

void head(std::ostringstream& o, const char* name, const char* type, const char* help) {
  o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

// A metric with one sample, labelled with the node (`nl`).
template <class V>
void sample(std::ostringstream& o, const char* name, const char* type, const char* help,
            const std::string& nl, const V& value) {
  head(o, name, type, help);
  o << name << '{' << nl << "} " << value << '\n';
}

}  // namespace

std::string render_metrics(Node& node) {
  std::ostringstream o;
  const std::string n = label(node.name().name());
  const std::string nl = "node=\"" + n + "\"";

  head(o, "nodus_messages_in_total", "counter", "Messages (DATA frames) received, per peer node.");
  auto peers = node.peers();
  for (const PeerStats& p : peers) {
    o << "nodus_messages_in_total{" << nl << ",peer=\"" << label(p.name.name()) << "\"} "
      << p.messages_in << '\n';
  }
  head(o, "nodus_messages_out_total", "counter", "Messages (DATA frames) sent, per peer node.");
  for (const PeerStats& p : peers) {
    o << "nodus_messages_out_total{" << nl << ",peer=\"" << label(p.name.name()) << "\"} "
      << p.messages_out << '\n';
  }
  head(o, "nodus_peer_up", "gauge", "1 if the link to the peer is up (hidden peers included).");
  for (const PeerStats& p : peers) {
    o << "nodus_peer_up{" << nl << ",peer=\"" << label(p.name.name()) << "\",hidden=\""
      << (p.hidden ? "true" : "false") << "\"} " << (p.up ? 1 : 0) << '\n';
  }

  MailboxFigures f = mailbox_figures(node);
  sample(o, "nodus_processes", "gauge", "Live processes on the node.", nl, f.processes);
  sample(o, "nodus_mailbox_messages", "gauge", "Messages waiting in all mailboxes.", nl, f.total);
  sample(o, "nodus_mailbox_max_messages", "gauge", "The longest mailbox.", nl, f.max);

  CallLatency lat = node.call_latency();
  head(o, "nodus_remote_call_duration_seconds", "histogram",
       "Latency of calls from this node to processes on other nodes.");
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < CallLatency::kBuckets; ++i) {
    cumulative += lat.counts[i];
    o << "nodus_remote_call_duration_seconds_bucket{" << nl << ",le=\"";
    if (i + 1 < CallLatency::kBuckets) {
      o << static_cast<double>(CallLatency::kBoundsUs[i]) / 1e6;
    } else {
      o << "+Inf";
    }
    o << "\"} " << cumulative << '\n';
  }
  o << "nodus_remote_call_duration_seconds_sum{" << nl << "} "
    << static_cast<double>(lat.sum_us) / 1e6 << '\n';
  o << "nodus_remote_call_duration_seconds_count{" << nl << "} " << lat.count << '\n';

  NetworkStats s = node.network_stats();
  sample(o, "nodus_frames_rejected_total", "counter",
         "Frames dropped as malformed, oversized or unauthenticated.", nl, s.frames_rejected);
  sample(o, "nodus_messages_rejected_total", "counter",
         "Well-formed frames whose message could not be decoded.", nl, s.messages_rejected);
  sample(o, "nodus_auth_failures_total", "counter", "Handshakes refused, either way.", nl,
         s.auth_failures);
  sample(o, "nodus_curve_refused_total", "counter", "Connections refused by CURVE.", nl,
         s.curve_refused);
  sample(o, "nodus_node_up_events_total", "counter", "Peer nodes that came up.", nl,
         s.node_up_events);
  sample(o, "nodus_node_down_events_total", "counter", "Peer nodes that went down.", nl,
         s.node_down_events);
  sample(o, "nodus_connections_closed_total", "counter",
         "Connections closed before they authenticated (too slow, or too many waiting).", nl,
         s.connections_closed);
  const AtomTableStats atoms = atom_table_stats();
  sample(o, "nodus_atoms", "gauge", "Atoms in the atom table.", nl, atoms.count);
  sample(o, "nodus_atom_limit", "gauge", "The atom table's limit.", nl, atoms.limit);
  sample(o, "nodus_atoms_refused_total", "counter",
         "New atoms refused: the table was full, or held all it takes from other nodes.", nl,
         atoms.refused);

  head(o, "nodus_registry_names", "gauge", "Names registered, per registry.");
  o << "nodus_registry_names{" << nl << ",registry=\"local\"} " << node.registered().size() << '\n';
  o << "nodus_registry_names{" << nl << ",registry=\"global\"} " << global_names(node).size()
    << '\n';
  return o.str();
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(Node& node,
                                                            const std::string& host_port) {
  Node* n = &node;
  std::vector<HttpServer::Route> routes;
  routes.push_back({"/metrics", [n] {
                      return std::make_pair(
                          render_metrics(*n),
                          std::string("text/plain; version=0.0.4; charset=utf-8"));
                    }});
  routes.push_back({"/health", [n] {
                      return std::make_pair(
                          "{\"status\":\"ok\",\"node\":\"" + label(n->name().name()) + "\"}\n",
                          std::string("application/json"));
                    }});
  auto http = HttpServer::start(host_port, std::move(routes));
  if (!http.ok()) return http.error();
  std::unique_ptr<MetricsServer> m(new MetricsServer());
  m->http_ = std::move(http.value());
  return m;
}

MetricsServer::~MetricsServer() { close(); }

void MetricsServer::close() {
  if (http_) http_->close();
}

}  // namespace nodus::tools
