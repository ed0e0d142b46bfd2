#include "oauth/token_response.h"

#include <simdjson.h>

#include <algorithm>
#include <cmath>
#include <optional>

#include "core/ascii.h"
#include "core/utf8.h"

namespace deliverd::oauth {

namespace od = simdjson::ondemand;

namespace {

core::Err<TokenError> malformed(std::string code, std::string description = {}) {
  return core::Err(TokenError{TokenErrorKind::Malformed, std::move(code), std::move(description)});
}

// RFC 6749 Appendix A: tokens are VSCHAR (0x20-0x7E); a space would split a SASL field, so not
// even that is accepted.
bool is_token_text(std::string_view s) {
  return !s.empty() && s.size() <= kMaxTokenBytes &&
         std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

std::string short_text(std::string_view s) {
  std::string out = core::escape_utf8_lossless(s.substr(0, 200));
  std::replace_if(out.begin(), out.end(), [](char c) { return c == '\r' || c == '\n' || c == '\t'; }, ' ');
  return out;
}

struct Fields {
  std::optional<std::string> access_token, refresh_token, token_type, scope, error, error_description;
  std::optional<double> expires_in;
  bool expires_in_bad = false;
};

// Strings only; a field of another type makes it bad (nullopt plus bad=true).
bool read_string(od::value v, std::optional<std::string>& out) {
  std::string_view s;
  if (v.get_string().get(s) != simdjson::SUCCESS) return false;
  out = std::string(s);
  return true;
}

}  // namespace

core::Result<TokenGrant, TokenError> parse_token_answer(int status, std::string_view body) {
  Fields f;
  bool json_ok = false;
  std::string bad_field;
  if (body.size() <= 64 * 1024 && core::is_valid_utf8(body)) {
    simdjson::padded_string padded(body);
    od::parser parser;
    od::document doc;
    od::object obj;
    if (parser.iterate(padded).get(doc) == simdjson::SUCCESS && doc.get_object().get(obj) == simdjson::SUCCESS) {
      json_ok = true;
      for (auto member : obj) {
        od::field field;
        if (std::move(member).get(field) != simdjson::SUCCESS) {
          json_ok = false;
          break;
        }
        std::string_view key;
        if (field.unescaped_key().get(key) != simdjson::SUCCESS) {
          json_ok = false;
          break;
        }
        od::value v = field.value();
        bool ok = true;
        if (key == "access_token") ok = read_string(v, f.access_token);
        else if (key == "refresh_token") ok = read_string(v, f.refresh_token);
        else if (key == "token_type") ok = read_string(v, f.token_type);
        else if (key == "scope") ok = read_string(v, f.scope);
        else if (key == "error") ok = read_string(v, f.error);
        else if (key == "error_description") ok = read_string(v, f.error_description);
        else if (key == "expires_in") {
          // A number, or (some providers) a number in a string.
          double d;
          std::string_view s;
          if (v.get_double().get(d) == simdjson::SUCCESS) {
            f.expires_in = d;
          } else if (v.get_string().get(s) == simdjson::SUCCESS && !s.empty() && s.size() < 12 &&
                     std::all_of(s.begin(), s.end(), core::ascii_is_digit)) {
            f.expires_in = std::stod(std::string(s));
          } else {
            f.expires_in_bad = true;
          }
        }
        if (!ok && bad_field.empty()) bad_field = std::string(key);
      }
      // The document must end after the object (trailing garbage is not JSON); current_location()
      // succeeds only while input is left.
      const char* rest = nullptr;
      if (json_ok && doc.current_location().get(rest) == simdjson::SUCCESS) json_ok = false;
    }
  }

  if (status != 200) {
    if (json_ok && f.error && (status == 400 || status == 401)) {
      const std::string& e = *f.error;
      if (!is_token_text(e) || e.size() > 100) return malformed("bad_error");
      std::string desc = f.error_description ? short_text(*f.error_description) : "";
      TokenErrorKind kind = e == "invalid_grant"                                   ? TokenErrorKind::Revoked
                            : e == "invalid_client" || e == "unauthorized_client" ||
                                      e == "invalid_scope" || e == "unsupported_grant_type" ||
                                      e == "invalid_request"
                                ? TokenErrorKind::ClientRejected
                                : TokenErrorKind::Unavailable;
      return core::Err(TokenError{kind, e, std::move(desc)});
    }
    std::string desc;
    if (json_ok && f.error_description) desc = short_text(*f.error_description);
    if (status == 400 || status == 401) return malformed("bad_error", desc);
    return core::Err(TokenError{TokenErrorKind::Unavailable, "http_" + std::to_string(status), desc});
  }

  if (!json_ok) return malformed("not_json");
  if (f.error) {
    // A 200 carrying an error is not a grant; an invalid_grant there still means revoked.
    if (*f.error == "invalid_grant") return core::Err(TokenError{TokenErrorKind::Revoked, "invalid_grant", ""});
    return malformed("bad_error");
  }
  if (bad_field == "access_token" || (f.access_token && !is_token_text(*f.access_token))) return malformed("bad_access_token");
  if (!f.access_token) return malformed("no_access_token");
  if (bad_field == "refresh_token" || (f.refresh_token && !is_token_text(*f.refresh_token))) return malformed("bad_refresh_token");
  if (bad_field == "token_type" || !f.token_type || !core::iequals(*f.token_type, "bearer")) return malformed("bad_token_type");
  TokenGrant g;
  g.access_token = *f.access_token;
  if (f.refresh_token) g.refresh_token = *f.refresh_token;
  if (f.scope && bad_field != "scope") g.scope = short_text(*f.scope);
  if (f.expires_in_bad) return malformed("bad_expires_in");
  if (f.expires_in) {
    double d = *f.expires_in;
    if (!std::isfinite(d) || d < 1 || d > 366.0 * 86400) return malformed("bad_expires_in");
    g.expires_in_s = static_cast<int64_t>(d);
  } else {
    g.expires_in_s = kDefaultExpiresInS;
  }
  return g;
}

}  // namespace deliverd::oauth
