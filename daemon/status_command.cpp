#include "daemon/status_command.h"

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "core/ascii.h"

namespace deliverd::daemon {
namespace {

constexpr size_t kMaxResponse = 8u << 20;

using Clock = std::chrono::steady_clock;

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

bool split_host_port(const std::string& listen, std::string& host, std::string& port) {
  if (!listen.empty() && listen.front() == '[') {
    auto close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':') return false;
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
  } else {
    auto colon = listen.rfind(':');
    if (colon == std::string::npos) return false;
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  }
  // A listener bound to the wildcard is reached on loopback from the same host.
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  return !port.empty();
}

// Non-blocking connect bounded by the deadline; the fd stays non-blocking for poll-driven I/O.
int connect_to(const std::string& host, const std::string& port, Clock::time_point deadline, std::string& err) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int r = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &res); r != 0) {
    err = "cannot resolve " + host + ": " + ::gai_strerror(r);
    return -1;
  }
  int fd = -1;
  err = "cannot connect to " + host + ":" + port;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int soerr = 0;
      socklen_t len = sizeof soerr;
      if (::poll(&p, 1, remaining_ms(deadline)) == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 &&
          soerr == 0)
        break;
      err += soerr ? std::string(": ") + std::strerror(soerr) : std::string(": timed out");
    } else {
      err += std::string(": ") + std::strerror(errno);
    }
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  return fd;
}

// Decodes a chunked body; false if it is malformed.
bool dechunk(std::string_view in, std::string& out) {
  out.clear();
  for (;;) {
    auto eol = in.find("\r\n");
    if (eol == std::string_view::npos) return false;
    std::string size_hex(in.substr(0, eol));
    char* end = nullptr;
    unsigned long n = std::strtoul(size_hex.c_str(), &end, 16);
    if (end == size_hex.c_str()) return false;
    in.remove_prefix(eol + 2);
    if (n == 0) return true;
    if (in.size() < n + 2) return false;
    out.append(in.substr(0, n));
    in.remove_prefix(n + 2);
  }
}

HttpReply failure(std::string why) { return HttpReply{0, std::move(why)}; }

}  // namespace

HttpReply http_get(const std::string& admin_listen, const std::string& path, int timeout_ms) {
  std::string host, port, err;
  if (!split_host_port(admin_listen, host, port)) return failure("admin listen must be HOST:PORT, got " + admin_listen);
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  int fd = connect_to(host, port, deadline, err);
  if (fd < 0) return failure(err);

  std::string host_header = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + host_header + ":" + port +
                    "\r\nUser-Agent: deliverd-status\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  while (sent < req.size()) {
    ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    pollfd p{fd, POLLOUT, 0};
    if ((n < 0 && errno != EAGAIN) || ::poll(&p, 1, remaining_ms(deadline)) != 1) {
      ::close(fd);
      return failure("send to " + admin_listen + " failed or timed out");
    }
  }

  std::string resp;
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      resp.append(buf, static_cast<size_t>(n));
      if (resp.size() > kMaxResponse) {
        ::close(fd);
        return failure("response from " + admin_listen + path + " larger than 8 MiB");
      }
      continue;
    }
    if (n == 0) break;
    if (errno == EINTR) continue;
    pollfd p{fd, POLLIN, 0};
    if (errno != EAGAIN || ::poll(&p, 1, remaining_ms(deadline)) != 1) {
      ::close(fd);
      return failure("no complete answer from " + admin_listen + path + " within " + std::to_string(timeout_ms) +
                     " ms");
    }
  }
  ::close(fd);

  auto head_end = resp.find("\r\n\r\n");
  if (resp.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos || resp.size() < 12)
    return failure("not an HTTP response from " + admin_listen + path);
  HttpReply r;
  r.status = std::atoi(resp.c_str() + 9);
  std::string_view head(resp.data(), head_end);
  std::string_view body(resp.data() + head_end + 4, resp.size() - head_end - 4);
  bool chunked = false;
  size_t line_start = head.find("\r\n");
  while (line_start != std::string_view::npos) {
    line_start += 2;
    size_t line_end = head.find("\r\n", line_start);
    std::string_view line = head.substr(line_start, line_end == std::string_view::npos ? head.npos : line_end - line_start);
    if (core::istarts_with(line, "transfer-encoding:") && line.find("chunked") != std::string_view::npos) chunked = true;
    if (core::istarts_with(line, "content-length:")) {
      size_t len = std::strtoul(std::string(line.substr(15)).c_str(), nullptr, 10);
      if (len < body.size()) body = body.substr(0, len);
    }
    line_start = line_end;
  }
  if (chunked) {
    if (!dechunk(body, r.body)) return failure("malformed chunked body from " + admin_listen + path);
  } else {
    r.body.assign(body);
  }
  return r;
}

MetricsSummary summarize_metrics(std::string_view text) {
  MetricsSummary s;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    auto sp = line.rfind(' ');
    if (sp == std::string_view::npos) continue;
    std::string series(line.substr(0, sp));
    double value = std::strtod(std::string(line.substr(sp + 1)).c_str(), nullptr);
    // Prometheus allows a timestamp after the value; our exporter does not write one.
    std::string name = series.substr(0, series.find('{'));
    if (name == "deliverd_outcomes_total") {
      auto at = series.find("status=\"");
      if (at == std::string::npos) continue;
      at += 8;
      s.outcomes_by_status[series.substr(at, series.find('"', at) - at)] += value;
    } else if (name.rfind("deliverd_queue_", 0) == 0 || name == "deliverd_retry_scheduled" ||
               name == "deliverd_smtp_sessions_active" || name == "deliverd_smtp_pool_queued" ||
               name == "deliverd_mailboxes_loaded" || name == "deliverd_redis_connected" ||
               (name.rfind("deliverd_", 0) == 0 && name.find("lag") != std::string::npos)) {
      // Histogram series of these families would flood the summary; gauges only.
      if (name.size() > 7 && (name.ends_with("_bucket") || name.ends_with("_sum") || name.ends_with("_count"))) continue;
      s.gauges[series] += value;
    }
  }
  return s;
}

int run_status(const std::string& admin_listen, std::ostream& out) {
  HttpReply ready = http_get(admin_listen, "/readyz");
  if (ready.status == 0) {
    out << "deliverd at " << admin_listen << ": not reachable (" << ready.body << ")\n";
    return 1;
  }
  bool ok = ready.status == 200;
  std::string detail = ready.body;
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == '\r')) detail.pop_back();
  out << "deliverd at " << admin_listen << ": " << (ok ? "ready" : "NOT ready") << " (/readyz " << ready.status
      << (detail.empty() ? "" : ": " + detail) << ")\n";

  HttpReply metrics = http_get(admin_listen, "/metrics");
  if (metrics.status != 200) {
    out << "metrics: unavailable (" << (metrics.status ? "HTTP " + std::to_string(metrics.status) : metrics.body)
        << ")\n";
    return ok ? 0 : 1;
  }
  MetricsSummary s = summarize_metrics(metrics.body);
  out << "outcomes:";
  if (s.outcomes_by_status.empty()) out << " none yet";
  for (const auto& [status, n] : s.outcomes_by_status) out << " " << status << "=" << static_cast<long long>(n);
  out << "\n";
  for (const auto& [series, v] : s.gauges) out << series << " " << v << "\n";
  return ok ? 0 : 1;
}

}  // namespace deliverd::daemon
