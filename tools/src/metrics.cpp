#include "metrics.hpp"

#include <algorithm>
#include <charconv>
#include <sstream>
#include <string_view>
#include <vector>

#include "admin.hpp"
#include "http_server.hpp"
#include "nodus/kv/kv.hpp"
#include "nodus/kv/watch.hpp"
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

// A histogram of microsecond buckets (per bucket, not cumulative; the last above all bounds) as
// the text format wants it: cumulative, in seconds, with +Inf, _sum and _count.
template <std::size_t N>
void histogram(std::ostringstream& o, const char* name, const std::string& labels,
               const std::uint64_t (&bounds_us)[N], const std::uint64_t* counts,
               std::uint64_t sum_us, std::uint64_t count) {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= N; ++i) {
    cumulative += counts[i];
    o << name << "_bucket{" << labels << ",le=\"";
    if (i < N) {
      o << static_cast<double>(bounds_us[i]) / 1e6;
    } else {
      o << "+Inf";
    }
    o << "\"} " << cumulative << '\n';
  }
  o << name << "_sum{" << labels << "} " << static_cast<double>(sum_us) / 1e6 << '\n';
  o << name << "_count{" << labels << "} " << count << '\n';
}

// The store's figures (kv::stats), when it runs on the node.
void render_kv(std::ostringstream& o, Node& node, const std::string& nl) {
  auto st = kv::stats(node);
  if (!st) return;
  const kv::Stats& s = *st;
  const std::pair<const char*, const kv::Latency*> ops[] = {
      {"get", &s.get_latency}, {"put", &s.put_latency}, {"delete", &s.delete_latency}};
  head(o, "nodus_kv_requests_total", "counter",
       "Store requests coordinated on this node, per operation.");
  for (const auto& [op, lat] : ops) {
    o << "nodus_kv_requests_total{" << nl << ",op=\"" << op << "\"} "
      << (std::string_view(op) == "get"   ? s.gets
          : std::string_view(op) == "put" ? s.puts
                                          : s.deletes)
      << '\n';
  }
  head(o, "nodus_kv_request_duration_seconds", "histogram",
       "Time from a request reaching its coordinating vnode to its answer, per operation.");
  for (const auto& [op, lat] : ops) {
    histogram(o, "nodus_kv_request_duration_seconds", nl + ",op=\"" + op + "\"",
              kv::Latency::kBoundsUs, lat->counts, lat->sum_us, lat->count);
  }
  // One sample each: name, type, help, field.
  struct Figure {
    const char* name;
    const char* type;
    const char* help;
    std::uint64_t kv::Stats::*field;
  };
  static constexpr Figure kFigures[] = {
      {"nodus_kv_request_errors_total", "counter",
       "Coordinated requests that failed (no_quorum, timeout, refused ...).", &kv::Stats::errors},
      {"nodus_kv_overloaded_total", "counter",
       "Requests refused with overloaded: a vnode's queue was full.", &kv::Stats::overloaded},
      {"nodus_kv_forwarded_total", "counter", "Requests sent on to a primary on another node.",
       &kv::Stats::forwarded},
      {"nodus_kv_hits_total", "counter", "Gets that found the key.", &kv::Stats::hits},
      {"nodus_kv_misses_total", "counter", "Gets that did not find the key.", &kv::Stats::misses},
      {"nodus_kv_replica_writes_total", "counter", "Writes stored here for other coordinators.",
       &kv::Stats::replica_writes},
      {"nodus_kv_expired_skipped_total", "counter",
       "Replica work skipped because its caller had given up.", &kv::Stats::expired_skipped},
      {"nodus_kv_read_repairs_total", "counter", "Read repairs sent.", &kv::Stats::read_repairs},
      {"nodus_kv_read_repairs_skipped_total", "counter",
       "Read repairs left out over kv.read_repair_per_s.", &kv::Stats::read_repairs_skipped},
      {"nodus_kv_hints_total", "counter",
       "Writes kept here as a fallback for a primary that was down.", &kv::Stats::hints},
      {"nodus_kv_handoffs_total", "counter", "Hinted keys handed back to their primary.",
       &kv::Stats::handoffs},
      {"nodus_kv_hints_pending", "gauge", "Keys with hints not yet handed back.",
       &kv::Stats::hints_pending},
      {"nodus_kv_tombstones_reaped_total", "counter", "Tombstones dropped.",
       &kv::Stats::tombstones_reaped},
      {"nodus_kv_expired_total", "counter",
       "Keys whose expired values (TTL) the sweep turned into tombstones.", &kv::Stats::expired},
      {"nodus_kv_siblings_max", "gauge", "Most siblings seen on one key.",
       &kv::Stats::siblings_max},
      {"nodus_kv_evictions_total", "counter",
       "Keys this node deleted cluster-wide as least recently used (kv.max_keys, "
       "kv.max_memory).",
       &kv::Stats::evictions},
      {"nodus_kv_live_keys", "gauge",
       "Keys with a live value, as LRU eviction counts them (0 when it is off).",
       &kv::Stats::live_keys},
      {"nodus_kv_keys", "gauge", "Objects in this node's engine, all partitions.",
       &kv::Stats::keys},
      {"nodus_kv_data_bytes", "gauge", "Their key and value bytes.", &kv::Stats::data_bytes},
      {"nodus_kv_memory_bytes", "gauge", "The engine's estimate of its memory.",
       &kv::Stats::memory_bytes},
      {"nodus_kv_ring_epoch", "gauge", "The epoch of the ring this node holds (0: none).",
       &kv::Stats::ring_epoch},
      {"nodus_kv_bad_messages_total", "counter",
       "Messages from peers refused: malformed, from outside the ring, for another partition.",
       &kv::Stats::bad_messages},
      {"nodus_kv_merge_errors_total", "counter",
       "Merge functions that threw (the siblings were kept).", &kv::Stats::merge_errors},
  };
  for (const Figure& f : kFigures) sample(o, f.name, f.type, f.help, nl, s.*f.field);
  sample(o, "nodus_kv_replicas", "gauge", "Copies of each key (N, kv.replicas).", nl, s.replicas);
  head(o, "nodus_kv_partition_keys", "gauge", "Objects in this node's engine, per partition.");
  for (std::size_t p = 0; p < s.partition_keys.size(); ++p) {
    o << "nodus_kv_partition_keys{" << nl << ",partition=\"" << p << "\"} " << s.partition_keys[p]
      << '\n';
  }
  head(o, "nodus_kv_partition_bytes", "gauge",
       "Their key and value bytes in this node's engine, per partition.");
  for (std::size_t p = 0; p < s.partition_bytes.size(); ++p) {
    o << "nodus_kv_partition_bytes{" << nl << ",partition=\"" << p << "\"} " << s.partition_bytes[p]
      << '\n';
  }
  // Active anti-entropy (kv.aae): exchanges, what they found and repaired, the time they took.
  static constexpr Figure kAae[] = {
      {"nodus_kv_aae_exchanges_total", "counter",
       "Anti-entropy exchanges of a partition's tree with another replica's, finished.",
       &kv::Stats::aae_exchanges},
      {"nodus_kv_aae_exchanges_failed_total", "counter",
       "Anti-entropy exchanges ended early: peer down, timeout, tree not built yet.",
       &kv::Stats::aae_exchanges_failed},
      {"nodus_kv_aae_segments_differing_total", "counter",
       "Tree segments anti-entropy found differing between two replicas.",
       &kv::Stats::aae_segments_differing},
      {"nodus_kv_aae_keys_repaired_total", "counter",
       "Keys anti-entropy found differing and repaired (kv.aae_repairs_per_second bounds it).",
       &kv::Stats::aae_keys_repaired},
  };
  for (const Figure& f : kAae) sample(o, f.name, f.type, f.help, nl, s.*f.field);
  sample(o, "nodus_kv_aae_seconds_total", "counter",
         "Time the node's anti-entropy work took (tree rebuilds, key listings, comparisons, "
         "repairs; kv.aae_cpu_percent bounds it).",
         nl, static_cast<double>(s.aae_busy_us) / 1e6);
  sample(o, "nodus_kv_aae_throttled_total", "counter",
         "Times anti-entropy work waited because it had used its kv.aae_cpu_percent.", nl,
         s.aae_throttled);
  sample(o, "nodus_kv_aae_index_bytes", "gauge",
         "Bytes of the anti-entropy trees' key indexes (counted in the engine's memory).", nl,
         s.aae_index_bytes);
  if (auto w = kv::watch_stats(node)) {
    sample(o, "nodus_kv_watchers", "gauge", "Watches this node holds.", nl, w->watchers);
    sample(o, "nodus_kv_watch_events_total", "counter", "Events sent to this node's watchers.", nl,
           w->events);
    sample(o, "nodus_kv_watch_lost_total", "counter",
           "Watches ended with kv_watch_lost (a watcher too slow, or an event out of order).", nl,
           w->lost);
    sample(o, "nodus_kv_watch_duplicates_total", "counter",
           "Expire events dropped: the same expiry had gone out already (a split swept it twice).",
           nl, w->duplicates);
  }
  std::uint32_t owned = 0;
  if (auto r = kv::ring(node); r && !r->empty()) {
    const int me = r->member_index(node.name().name());
    if (me >= 0) owned = r->owned_counts()[static_cast<std::size_t>(me)];
  }
  sample(o, "nodus_kv_partitions_owned", "gauge", "Partitions this node owns in the ring.", nl,
         owned);
  head(o, "nodus_kv_vnode_queue", "gauge",
       "Requests routed to each vnode that it has not taken yet (kv.vnode_queue bounds it).");
  for (std::size_t p = 0; p < s.vnode_queue.size(); ++p) {
    o << "nodus_kv_vnode_queue{" << nl << ",partition=\"" << p << "\"} " << s.vnode_queue[p]
      << '\n';
  }
  head(o, "nodus_kv_vnode_mailbox_messages", "gauge",
       "Messages waiting in each vnode's mailbox (requests, replica traffic, hand-off).");
  const std::string prefix = "nodus_kv_vnode_";
  std::vector<std::pair<unsigned long, std::size_t>> boxes;
  for (const ProcessInfo& p : node.processes()) {
    const std::string& name = p.registered_name;
    unsigned long partition = 0;
    if (name.rfind(prefix, 0) != 0) continue;
    auto [end, ec] =
        std::from_chars(name.data() + prefix.size(), name.data() + name.size(), partition);
    if (ec != std::errc() || end != name.data() + name.size()) continue;  // not a vnode's name
    boxes.emplace_back(partition, p.mailbox_length);
  }
  std::sort(boxes.begin(), boxes.end());
  for (const auto& [p, len] : boxes) {
    o << "nodus_kv_vnode_mailbox_messages{" << nl << ",partition=\"" << p << "\"} " << len << '\n';
  }
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
  histogram(o, "nodus_remote_call_duration_seconds", nl, CallLatency::kBoundsUs, lat.counts,
            lat.sum_us, lat.count);

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
  sample(o, "nodus_hidden_node_up_events_total", "counter",
         "Hidden peers (nodusctl, clients) that came up.", nl, s.hidden_up_events);
  sample(o, "nodus_hidden_node_down_events_total", "counter", "Hidden peers that went down.", nl,
         s.hidden_down_events);
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
  render_kv(o, node, nl);
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
