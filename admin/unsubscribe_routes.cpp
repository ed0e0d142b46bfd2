#include "admin/unsubscribe_routes.h"

#include <algorithm>
#include <chrono>
#include <list>
#include <memory>
#include <string_view>
#include <unordered_map>

#include "admin/failure_limiter.h"
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

Response unsubscribed() {
  return page(200, "Unsubscribed", "<p>You have been unsubscribed. You will not receive these emails again.</p>");
}

// Tokens whose suppression was stored in the last few minutes, most recent first, bounded. Only
// a short while: after an operator lifts a suppression, a new click must store it again.
class RecentTokens {
 public:
  static constexpr uint64_t kRememberMs = 5 * 60 * 1000;
  explicit RecentTokens(size_t max) : max_(std::max<size_t>(1, max)) {}
  bool contains(const std::string& token, uint64_t now_ms) const {
    auto it = index_.find(token);
    return it != index_.end() && now_ms - it->second->second < kRememberMs;
  }
  void add(const std::string& token, uint64_t now_ms) {
    if (auto it = index_.find(token); it != index_.end()) {
      order_.erase(it->second);
      index_.erase(it);
    }
    if (index_.size() >= max_) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
    order_.emplace_front(token, now_ms);
    index_.emplace(token, order_.begin());
  }

 private:
  using List = std::list<std::pair<std::string, uint64_t>>;
  size_t max_;
  List order_;
  std::unordered_map<std::string, List::iterator> index_;
};

Response too_many(int retry_after_s) {
  auto r = page(429, "Too many requests", "<p>Too many requests. Please try again in a minute.</p>");
  r.headers.emplace_back("Retry-After", std::to_string(retry_after_s));
  return r;
}

uint64_t now_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

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
  const double rpm = static_cast<double>(std::max<size_t>(1, limits.requests_per_minute_per_client));
  auto limiter = std::make_shared<FailureLimiter>(rpm, rpm / 60.0, limits.max_tracked_clients);
  auto recent = std::make_shared<RecentTokens>(limits.max_remembered_tokens);
  auto count = [](const char* method, const char* result) {
    Metrics::get().requests.with({method, result}).inc();
  };

  router.add("GET", "/u/{token}", [tokens, limiter, count](const Request& req, Respond respond) {
    const std::string client = limiter_key_for_address(req.peer_ip);
    if (int after = limiter->retry_after_s(client, now_ms())) {
      count("GET", "rate_limited");
      return respond(too_many(after));
    }
    limiter->record_failure(client, now_ms());  // every page view draws
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

  router.add("POST", "/u/{token}", [tokens, limiter, recent, count, suppress](const Request& req, Respond respond) {
    const std::string client = limiter_key_for_address(req.peer_ip);
    // A refusal draws from the client's bucket; a client out of tokens learns nothing more
    // about its tokens. The token is checked first: a valid one-click POST is never refused.
    auto refused = [&](const char* result, Response r) {
      if (int after = limiter->retry_after_s(client, now_ms())) {
        count("POST", "rate_limited");
        return respond(too_many(after));
      }
      limiter->record_failure(client, now_ms());
      count("POST", result);
      respond(std::move(r));
    };
    const std::string* token = req.param("token");
    auto claims = token ? tokens.verify(*token) : core::Result<smtp::UnsubscribeClaims, std::string>(
                                                      core::Err{std::string("no token")});
    if (!claims) {
      core::log_info("unsubscribe_refused", {{"peer", req.peer_ip}, {"why", claims.error()}});
      return refused("invalid", not_found());
    }
    if (!is_one_click_body(req.header("Content-Type"), req.body))
      return refused("bad_body", page(400, "Bad request", "<p>Expected List-Unsubscribe=One-Click.</p>"));
    if (recent->contains(*token, now_ms())) {
      count("POST", "ok");
      return respond(unsubscribed());
    }
    suppress(*claims, [respond, count, recent, t = *token](bool ok) {
      if (!ok) {
        count("POST", "store_error");
        auto r = page(503, "Try again", "<p>Please try again in a minute.</p>");
        r.headers.emplace_back("Retry-After", "60");
        return respond(std::move(r));
      }
      recent->add(t, now_ms());
      count("POST", "ok");
      respond(unsubscribed());
    });
  });
}

}  // namespace deliverd::admin
