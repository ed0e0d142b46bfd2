#include "admin/unsubscribe_routes.h"

#include <chrono>
#include <memory>
#include <string_view>
#include <unordered_map>

#include "core/ascii.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/percent.h"

namespace deliverd::admin {
namespace {

constexpr core::PercentDecoding kForm{.plus_is_space = true};

bool urlencoded_one_click(std::string_view body) {
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.remove_suffix(1);
  size_t pos = 0;
  while (pos <= body.size()) {
    size_t amp = body.find('&', pos);
    std::string_view pair = body.substr(pos, amp == std::string_view::npos ? std::string_view::npos : amp - pos);
    size_t eq = pair.find('=');
    if (eq != std::string_view::npos && core::percent_decode(pair.substr(0, eq), kForm) == "List-Unsubscribe" &&
        core::percent_decode(pair.substr(eq + 1), kForm) == "One-Click")
      return true;
    if (amp == std::string_view::npos) break;
    pos = amp + 1;
  }
  return false;
}

// The boundary parameter of a multipart Content-Type, unquoted; "" if absent.
std::string boundary_of(std::string_view content_type) {
  std::string lc = core::ascii_lowercase(content_type);
  size_t at = lc.find("boundary=");
  if (at == std::string::npos) return "";
  std::string_view v = content_type.substr(at + 9);
  if (!v.empty() && v.front() == '"') {
    v.remove_prefix(1);
    return std::string(v.substr(0, v.find('"')));
  }
  return std::string(v.substr(0, v.find_first_of("; \t")));
}

bool multipart_one_click(std::string_view content_type, std::string_view body) {
  std::string boundary = boundary_of(content_type);
  if (boundary.empty() || boundary.size() > 200) return false;
  std::string delim = "--" + boundary;
  size_t pos = body.find(delim);
  while (pos != std::string_view::npos) {
    size_t start = pos + delim.size();
    if (body.substr(start, 2) == "--") break;  // closing delimiter
    size_t next = body.find(delim, start);
    if (next == std::string_view::npos) break;
    std::string_view part = body.substr(start, next - start);
    size_t hdr_end = part.find("\r\n\r\n");
    if (hdr_end != std::string_view::npos) {
      std::string headers = core::ascii_lowercase(part.substr(0, hdr_end));
      std::string_view value = part.substr(hdr_end + 4);
      while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.remove_suffix(1);
      bool named = headers.find("name=\"list-unsubscribe\"") != std::string::npos ||
                   headers.find("name=list-unsubscribe") != std::string::npos;
      if (named && value == "One-Click") return true;
    }
    pos = next;
  }
  return false;
}

Response page(int status, std::string_view title, std::string_view body_html) {
  Response r;
  r.status = status;
  r.content_type = "text/html; charset=utf-8";
  r.body = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
           "content=\"width=device-width\"><title>" +
           std::string(title) + "</title></head>\n<body style=\"font-family:sans-serif;max-width:32em;margin:3em auto\">" +
           std::string(body_html) + "</body></html>\n";
  // No cookies, no caching, no referrer leaking the token, nothing loaded from elsewhere.
  r.headers = {{"Cache-Control", "no-store"},
               {"Referrer-Policy", "no-referrer"},
               {"X-Content-Type-Options", "nosniff"},
               {"Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"}};
  return r;
}

Response not_found() { return page(404, "Not found", "<p>This unsubscribe link is not valid.</p>"); }

class RateLimiter {
 public:
  explicit RateLimiter(UnsubscribeLimits l) : limits_(l) {}
  bool allow(const std::string& client) {
    auto minute = std::chrono::duration_cast<std::chrono::minutes>(std::chrono::steady_clock::now().time_since_epoch())
                      .count();
    if (minute != window_) {
      window_ = minute;
      counts_.clear();
    }
    auto it = counts_.find(client);
    if (it == counts_.end()) {
      if (counts_.size() >= limits_.max_tracked_clients) return false;
      it = counts_.emplace(client, 0).first;
    }
    return ++it->second <= limits_.requests_per_minute_per_client;
  }

 private:
  UnsubscribeLimits limits_;
  long long window_ = -1;
  std::unordered_map<std::string, size_t> counts_;
};

struct Metrics {
  core::Family<core::Counter>& requests;
  static Metrics& get() {
    static Metrics m{core::Registry::global().counter(
        "deliverd_unsubscribe_requests_total", "Requests to the public unsubscribe endpoint, by method and result",
        {"method", "result"})};
    return m;
  }
};

}  // namespace

bool is_one_click_body(const std::string* content_type, const std::string& body) {
  std::string ct = content_type ? core::ascii_lowercase(*content_type) : "";
  if (ct.rfind("multipart/form-data", 0) == 0) return multipart_one_click(*content_type, body);
  // RFC 8058 mandates the POST body; some senders omit the Content-Type, so urlencoded is the default.
  return urlencoded_one_click(body);
}

HttpServerConfig unsubscribe_server_config(const std::string& listen) {
  HttpServerConfig c;
  c.listen = listen;
  c.max_header_bytes = 8192;
  c.max_body_bytes = 8192;
  c.read_timeout_ms = 10000;
  c.idle_timeout_ms = 15000;
  c.handler_timeout_ms = 15000;
  c.max_connections = 512;
  return c;
}

void add_unsubscribe_routes(Router& router, const smtp::UnsubscribeTokens& tokens, SuppressFn suppress,
                            UnsubscribeLimits limits) {
  auto limiter = std::make_shared<RateLimiter>(limits);
  auto count = [](const char* method, const char* result) {
    Metrics::get().requests.with({method, result}).inc();
  };

  router.add("GET", "/u/{token}", [tokens, limiter, count](const Request& req, Respond respond) {
    if (!limiter->allow(req.peer_ip)) {
      count("GET", "rate_limited");
      auto r = page(429, "Too many requests", "<p>Too many requests. Please try again in a minute.</p>");
      r.headers.emplace_back("Retry-After", "60");
      return respond(std::move(r));
    }
    const std::string* token = req.param("token");
    if (!token || !tokens.verify(*token)) {
      count("GET", "invalid");
      return respond(not_found());
    }
    count("GET", "ok");
    respond(page(200, "Unsubscribe",
                 "<p>Do you want to stop receiving these emails?</p>\n"
                 "<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
                 "<button type=\"submit\">Unsubscribe</button></form>"));
  });

  router.add("POST", "/u/{token}", [tokens, limiter, count, suppress](const Request& req, Respond respond) {
    if (!limiter->allow(req.peer_ip)) {
      count("POST", "rate_limited");
      auto r = page(429, "Too many requests", "<p>Too many requests. Please try again in a minute.</p>");
      r.headers.emplace_back("Retry-After", "60");
      return respond(std::move(r));
    }
    const std::string* token = req.param("token");
    auto claims = token ? tokens.verify(*token) : core::Result<smtp::UnsubscribeClaims, std::string>(
                                                      core::Err{std::string("no token")});
    if (!claims) {
      count("POST", "invalid");
      core::log_info("unsubscribe_refused", {{"peer", req.peer_ip}, {"why", claims.error()}});
      return respond(not_found());
    }
    if (!is_one_click_body(req.header("Content-Type"), req.body)) {
      count("POST", "bad_body");
      return respond(page(400, "Bad request", "<p>Expected List-Unsubscribe=One-Click.</p>"));
    }
    suppress(*claims, [respond, count](bool ok) {
      if (!ok) {
        count("POST", "store_error");
        auto r = page(503, "Try again", "<p>Please try again in a minute.</p>");
        r.headers.emplace_back("Retry-After", "60");
        return respond(std::move(r));
      }
      count("POST", "ok");
      respond(page(200, "Unsubscribed", "<p>You have been unsubscribed. You will not receive these emails again.</p>"));
    });
  });
}

}  // namespace deliverd::admin
