#pragma once
// `deliverd status`: asks a running daemon's admin listener for /readyz and /metrics and prints
// readiness plus a short summary. Blocking on purpose: it is a one-shot command, not the daemon.
#include <map>
#include <ostream>
#include <string>
#include <string_view>

namespace deliverd::daemon {

struct HttpReply {
  int status = 0;
  std::string body;
};

// GET `path` from admin_listen ("127.0.0.1:8025", "[::1]:8025", "localhost:8025") over plain
// HTTP/1.1 with Connection: close. Connect, send and receive are bounded by timeout_ms; bodies
// above 8 MiB are refused. On failure returns status 0 and the reason in body.
HttpReply http_get(const std::string& admin_listen, const std::string& path, int timeout_ms = 5000);

// What `status` shows from a Prometheus text page.
struct MetricsSummary {
  std::map<std::string, double> outcomes_by_status;  // deliverd_outcomes_total summed per status
  std::map<std::string, double> gauges;  // queue depth/lag, in flight, retries, sessions, Redis link
};
MetricsSummary summarize_metrics(std::string_view prometheus_text);

// Prints readiness and the summary; returns 0 when /readyz answered 200, else 1.
int run_status(const std::string& admin_listen, std::ostream& out);

}  // namespace deliverd::daemon
