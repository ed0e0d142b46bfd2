#include "core/https_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "core/ascii.h"
#include "core/http_response_reader.h"
#include "core/tcp_stream.h"
#include "core/timer.h"

namespace deliverd::core {

namespace {

bool is_token_char(char c) {
  return ascii_is_alnum(c) || std::strchr("!#$%&'*+-.^_`|~", c);
}
bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c != '\0' && is_token_char(c); });
}
// Field values: visible ASCII, spaces and tabs, and obs-text; never CR, LF or NUL.
bool is_field_value(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

std::string ip_text(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, buf, sizeof buf);
  else if (ss.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, buf, sizeof buf);
  return buf;
}

uint64_t now_ms(uv_loop_t* loop) { return uv_now(loop); }

}  // namespace

const std::string* HttpsResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return &v;
  return nullptr;
}

Result<HttpsUrl, std::string> parse_https_url(std::string_view url) {
  constexpr std::string_view kScheme = "https://";
  if (url.size() < kScheme.size() || ascii_lowercase(url.substr(0, kScheme.size())) != kScheme)
    return Err(std::string("not an https URL"));
  if (std::any_of(url.begin(), url.end(), [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; }))
    return Err(std::string("control character or space in URL"));
  std::string_view rest = url.substr(kScheme.size());
  size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view tail = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  if (size_t hash = tail.find('#'); hash != std::string_view::npos) tail = tail.substr(0, hash);
  if (authority.find('@') != std::string_view::npos) return Err(std::string("user information in URL"));
  HttpsUrl out;
  std::string_view host = authority, port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return Err(std::string("unterminated IPv6 literal"));
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Err(std::string("bad authority"));
      port = after.substr(1);
    }
    in6_addr a6;
    if (inet_pton(AF_INET6, std::string(host).c_str(), &a6) != 1) return Err(std::string("bad IPv6 literal"));
    out.host_is_literal = true;
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return Err(std::string("no host in URL"));
  if (!out.host_is_literal) {
    for (char c : host)
      if (!(ascii_is_alnum(c) || c == '-' || c == '.'))
        return Err(std::string("bad character in host"));
    in_addr a4;
    out.host_is_literal = inet_pton(AF_INET, std::string(host).c_str(), &a4) == 1;
  }
  if (!port.empty() || authority.back() == ':') {
    if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ascii_is_digit))
      return Err(std::string("bad port"));
    out.port = std::stoi(std::string(port));
    if (out.port < 1 || out.port > 65535) return Err(std::string("bad port"));
  }
  out.host = ascii_lowercase(host);
  while (!out.host_is_literal && !out.host.empty() && out.host.back() == '.') out.host.pop_back();
  if (out.host.empty()) return Err(std::string("no host in URL"));
  out.target = tail.empty() || tail.front() != '/' ? "/" + std::string(tail) : std::string(tail);
  return out;
}

// One request: lookup → connect (each vetted address in turn) → TLS → send → read the answer.
class HttpsClient::Exchange final : public StreamHandler {
 public:
  Exchange(HttpsClient* client, RequestId id, HttpsRequest req, Callback cb)
      : client_(client), id_(id), req_(std::move(req)), cb_(std::move(cb)), timer_(client->loop_) {
    opts_ = client->opts_;
    deadline_ = now_ms(client->loop_) + static_cast<uint64_t>(std::max(opts_.total_timeout_ms, 1));
    reader_.emplace(HttpResponseReader::Limits{opts_.max_header_bytes, opts_.max_response_bytes}, req_.method == "HEAD");
  }

  void start() {
    auto url = parse_https_url(req_.url);
    if (!url) return later(HttpsPhase::Request, HttpsErrorKind::BadUrl, url.error());
    url_ = std::move(url.value());
    if (!is_token(req_.method)) return later(HttpsPhase::Request, HttpsErrorKind::BadRequest, "bad method");
    for (const auto& [k, v] : req_.headers)
      if (!is_token(k) || !is_field_value(v))
        return later(HttpsPhase::Request, HttpsErrorKind::BadRequest, "bad header " + k);
    if (std::find(opts_.allowed_ports.begin(), opts_.allowed_ports.end(), url_.port) == opts_.allowed_ports.end())
      return later(HttpsPhase::Request, HttpsErrorKind::PortRefused, "port " + std::to_string(url_.port) + " is not allowed");
    phase_ = HttpsPhase::Resolve;
    arm(opts_.resolve_timeout_ms);
    looking_up_ = true;
    lookup_id_ = client_->lookup_->lookup(url_.host, [this](const HostLookup::Answer& a) {
      looking_up_ = false;
      on_lookup(a);
    });
  }

  void later_overloaded() { later(HttpsPhase::Request, HttpsErrorKind::Overloaded, "too many requests in flight"); }

  // The client is closing: no callback.
  void abandon() {
    cb_ = nullptr;
    teardown();
    delete this;
  }

 private:
  void on_lookup(const HostLookup::Answer& a) {
    if (a.allowed.empty()) {
      if (a.refused_by_policy) return fail(HttpsErrorKind::RefusedByPolicy, url_.host + ": " + a.error);
      return fail(HttpsErrorKind::ResolveFailed, url_.host + ": " + (a.error.empty() ? "no address" : a.error));
    }
    addrs_ = a.allowed;
    next_addr_ = 0;
    connect_next();
  }

  void connect_next() {
    if (stream_) {
      stream_->close();
      stream_ = nullptr;
    }
    phase_ = HttpsPhase::Connect;
    while (next_addr_ < addrs_.size()) {
      sockaddr_storage ss = addrs_[next_addr_++];
      if (ss.ss_family == AF_INET)
        reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(static_cast<uint16_t>(url_.port));
      else
        reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(static_cast<uint16_t>(url_.port));
      ip_ = ip_text(ss);
      stream_ = TcpStream::create(client_->loop_, this);
      int rc = stream_->connect(reinterpret_cast<const sockaddr*>(&ss));
      if (rc == 0) {
        arm(opts_.connect_timeout_ms);
        return;
      }
      last_error_ = ip_ + ": " + uv_strerror(rc);
      stream_->close();
      stream_ = nullptr;
    }
    fail(HttpsErrorKind::ConnectFailed, last_error_);
  }

  void on_connected(int status) override {
    if (status != 0) {
      last_error_ = ip_ + ": " + uv_strerror(status);
      return connect_next();
    }
    phase_ = HttpsPhase::Tls;
    arm(opts_.tls_timeout_ms);
    TlsClientParams p;
    p.ctx = opts_.tls;
    p.server_name = url_.host;
    p.verify = true;
    p.session_key = url_.host + ":" + std::to_string(url_.port);
    if (!opts_.tls) return fail(HttpsErrorKind::TlsFailed, "no TLS context");
    if (int rc = stream_->start_tls_client(p); rc != 0) return fail(HttpsErrorKind::TlsFailed, uv_strerror(rc));
  }

  void on_tls_handshake(bool ok, const std::string& error) override {
    if (!ok) return fail(HttpsErrorKind::TlsFailed, error.empty() ? stream_->tls_error() : error);
    phase_ = HttpsPhase::Send;
    arm_total();
    tls_version_ = stream_->tls_info().version;
    std::string head = req_.method + " " + url_.target + " HTTP/1.1\r\nHost: ";
    bool v6 = url_.host.find(':') != std::string::npos;
    head += v6 ? "[" + url_.host + "]" : url_.host;
    if (url_.port != 443) head += ":" + std::to_string(url_.port);
    head += "\r\nConnection: close\r\n";
    bool has_ua = false;
    for (const auto& [k, v] : req_.headers) {
      std::string lk = ascii_lowercase(k);
      if (lk == "host" || lk == "connection" || lk == "content-length" || lk == "transfer-encoding") continue;
      has_ua = has_ua || lk == "user-agent";
      head += k + ": " + v + "\r\n";
    }
    if (!has_ua) head += "User-Agent: deliverd\r\n";
    if (!req_.body.empty() || (req_.method != "GET" && req_.method != "HEAD"))
      head += "Content-Length: " + std::to_string(req_.body.size()) + "\r\n";
    head += "\r\n";
    head += req_.body;
    if (int rc = stream_->write(std::move(head)); rc != 0) return fail(HttpsErrorKind::Closed, uv_strerror(rc));
    phase_ = HttpsPhase::Response;
  }

  void on_data(std::string_view bytes) override {
    if (phase_ != HttpsPhase::Response && phase_ != HttpsPhase::Send) return;
    phase_ = HttpsPhase::Response;
    answered(reader_->feed(bytes));
  }

  void on_end(int status) override {
    if (phase_ == HttpsPhase::Tls) return fail(HttpsErrorKind::TlsFailed, stream_->tls_error().empty() ? uv_strerror(status) : stream_->tls_error());
    // An answer without a length ends with the connection.
    if (phase_ == HttpsPhase::Response && status == UV_EOF && reader_->end() != HttpResponseReader::State::More)
      return answered(reader_->state());
    fail(HttpsErrorKind::Closed, status == UV_EOF ? "connection closed before the answer was complete" : uv_strerror(status));
  }

  void answered(HttpResponseReader::State st) {
    if (st == HttpResponseReader::State::Failed) return fail(reader_->error_kind(), reader_->error());
    if (st == HttpResponseReader::State::Complete) done();
  }

  // Re-arms the phase timer, never beyond the request's total deadline.
  void arm(int phase_ms) {
    uint64_t now = now_ms(client_->loop_);
    uint64_t until = std::min(deadline_, now + static_cast<uint64_t>(std::max(phase_ms, 1)));
    phase_deadline_is_total_ = until == deadline_;
    timer_->start(until > now ? until - now : 0, [this] {
      fail(HttpsErrorKind::Timeout, std::string(to_string(phase_)) +
                                        (phase_deadline_is_total_ ? " (total timeout)" : " timed out"));
    });
  }
  void arm_total() { arm(opts_.total_timeout_ms); }

  // Errors found before any I/O still answer asynchronously.
  void later(HttpsPhase phase, HttpsErrorKind kind, std::string detail) {
    phase_ = phase;
    timer_->start(0, [this, kind, detail = std::move(detail)] { fail(kind, detail); });
  }

  void teardown() {
    if (looking_up_) client_->lookup_->cancel(lookup_id_);
    looking_up_ = false;
    if (stream_) stream_->close();
    stream_ = nullptr;
    timer_.reset();
  }

  void fail(HttpsErrorKind kind, std::string detail) {
    finish(Err(HttpsError{phase_, kind, std::move(detail)}));
  }
  void done() {
    HttpsResponse resp = reader_->take();
    resp.ip = ip_;
    resp.tls_version = tls_version_;
    finish(std::move(resp));
  }
  void finish(Result<HttpsResponse, HttpsError> r) {
    auto cb = std::move(cb_);
    client_->exchanges_.erase(id_);
    teardown();
    delete this;  // nothing of this object is touched below
    if (cb) cb(std::move(r));
  }

  HttpsClient* client_;
  RequestId id_;
  HttpsRequest req_;
  Callback cb_;
  HttpsClientOptions opts_;
  HttpsUrl url_;
  TimerHandle timer_;
  uint64_t deadline_ = 0;
  bool phase_deadline_is_total_ = false;
  HttpsPhase phase_ = HttpsPhase::Request;
  bool looking_up_ = false;
  uint64_t lookup_id_ = 0;
  std::vector<sockaddr_storage> addrs_;
  size_t next_addr_ = 0;
  std::string ip_, last_error_ = "no address", tls_version_;
  TcpStream* stream_ = nullptr;
  std::optional<HttpResponseReader> reader_;  // not movable (the parser points at it): built in place
};

HttpsClient* HttpsClient::create(uv_loop_t* loop, HostLookup* lookup, HttpsClientOptions opts) {
  return new HttpsClient(loop, lookup, std::move(opts));
}

HttpsClient::RequestId HttpsClient::request(HttpsRequest req, Callback cb) {
  RequestId id = next_id_++;
  auto* ex = new Exchange(this, id, std::move(req), std::move(cb));
  exchanges_.emplace(id, ex);
  if (exchanges_.size() > opts_.max_in_flight) {
    ex->later_overloaded();
    return id;
  }
  ex->start();
  return id;
}

void HttpsClient::cancel(RequestId id) {
  auto it = exchanges_.find(id);
  if (it == exchanges_.end()) return;
  Exchange* ex = it->second;
  exchanges_.erase(it);
  ex->abandon();
}

void HttpsClient::close() {
  auto all = std::move(exchanges_);
  exchanges_.clear();
  for (auto& [id, ex] : all) ex->abandon();
  delete this;
}

}  // namespace deliverd::core
