#include "queue/job.h"

#include <simdjson.h>

#include <array>
#include <cstring>

#include "core/address.h"
#include "core/ascii.h"

namespace deliverd::queue {
namespace {

namespace od = simdjson::ondemand;

JobError fail(std::string field, std::string message) { return JobError{std::move(field), std::move(message)}; }

bool valid_utf8(std::string_view s) { return simdjson::validate_utf8(s.data(), s.size()); }

bool has_cr_or_lf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

// Header-ish text may hold TAB (folding white space) but no other control characters: they
// would either break the header block or be rejected by the receiving server.
bool has_header_controls(std::string_view s) {
  for (unsigned char c : s)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return true;
  return false;
}

// Identifiers (id, account, mailbox, campaign) end up in Redis keys, logs and metrics labels.
bool is_identifier(std::string_view s) {
  if (s.empty() || s.size() > kMaxIdLength) return false;
  for (unsigned char c : s)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

// Headers the composer owns: letting a job set them would add recipients (Cc/Bcc break "one
// recipient per job"), spoof the mailbox's identity or corrupt the MIME structure or signature.
constexpr std::array<std::string_view, 17> kReservedHeaders = {
    "From",         "Sender",       "To",   "Cc",         "Bcc",           "Reply-To",
    "Subject",      "Date",         "Message-ID", "Return-Path", "MIME-Version", "Content-Type",
    "Content-Transfer-Encoding", "DKIM-Signature", "List-Unsubscribe", "List-Unsubscribe-Post", "Received"};

bool is_header_name(std::string_view s) {
  if (s.empty() || s.size() > 76) return false;
  for (unsigned char c : s)
    if (c < 0x21 || c > 0x7e || c == ':') return false;  // RFC 5322 ftext
  return true;
}

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool digits(std::string_view s, size_t pos, size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

enum : uint32_t {
  kV = 1u << 0, kId = 1u << 1, kAccount = 1u << 2, kMailbox = 1u << 3, kTo = 1u << 4, kFromName = 1u << 5,
  kReplyTo = 1u << 6, kSubject = 1u << 7, kText = 1u << 8, kHtml = 1u << 9, kRaw = 1u << 10, kHeaders = 1u << 11,
  kCampaign = 1u << 12, kUnsubscribe = 1u << 13, kNotBefore = 1u << 14, kExpiresAt = 1u << 15,
};

struct KeyInfo {
  std::string_view name;
  uint32_t bit;
};
constexpr KeyInfo kKeys[] = {
    {"v", kV},           {"id", kId},         {"account", kAccount},   {"mailbox", kMailbox},
    {"to", kTo},         {"from_name", kFromName}, {"reply_to", kReplyTo}, {"subject", kSubject},
    {"text", kText},     {"html", kHtml},     {"raw", kRaw},           {"headers", kHeaders},
    {"campaign", kCampaign}, {"unsubscribe", kUnsubscribe}, {"not_before", kNotBefore}, {"expires_at", kExpiresAt},
};

class JobParser {
 public:
  explicit JobParser(size_t max_body) : max_body_(max_body) {}

  core::Result<Job, JobError> parse(std::string_view json) {
    if (json.size() > max_body_ * 3 + 65536) return core::Err{fail("job", "document too large")};
    // Checked on its own so the producer is told which of the two rules the document broke.
    if (!simdjson::validate_utf8(json.data(), json.size())) return core::Err{fail("job", "not valid UTF-8")};
    simdjson::padded_string padded(json);
    // One parser per thread: its buffers are reused across jobs instead of reallocated.
    thread_local od::parser parser;
    od::document doc;
    if (parser.iterate(padded).get(doc) != simdjson::SUCCESS) return core::Err{fail("job", "not valid JSON")};
    od::object obj;
    if (doc.get_object().get(obj) != simdjson::SUCCESS) {
      // ondemand reports a truncated object as "not an object"; say which it was.
      auto first = json.find_first_not_of(" \t\r\n");
      bool looks_like_object = first != std::string_view::npos && json[first] == '{';
      return core::Err{fail("job", looks_like_object ? "not valid JSON (truncated or malformed object)"
                                                      : "must be a JSON object")};
    }
    uint32_t seen = 0;
    for (auto member : obj) {
      od::field f;
      if (std::move(member).get(f) != simdjson::SUCCESS) return core::Err{fail("job", "not valid JSON")};
      std::string_view key;
      if (f.unescaped_key().get(key) != simdjson::SUCCESS) return core::Err{fail("job", "not valid JSON")};
      const KeyInfo* info = nullptr;
      for (const auto& k : kKeys)
        if (k.name == key) info = &k;
      if (!info) continue;  // unknown fields are ignored (forward compatibility)
      if (seen & info->bit) return core::Err{fail(std::string(info->name), "duplicate field")};
      seen |= info->bit;
      if (!field(info->bit, info->name, f.value())) return core::Err{std::move(error_)};
    }
    // current_location() succeeds only while input is left.
    const char* rest = nullptr;
    if (doc.current_location().get(rest) == simdjson::SUCCESS) return core::Err{fail("job", "trailing content after the object")};
    if (!finish(seen)) return core::Err{std::move(error_)};
    return std::move(job_);
  }

 private:
  bool error(std::string field, std::string message) {
    error_ = fail(std::move(field), std::move(message));
    return false;
  }

  bool is_null(od::value& v) {
    od::json_type t;
    return v.type().get(t) == simdjson::SUCCESS && t == od::json_type::null;
  }

  bool get_string(od::value& v, const std::string& name, std::string& out) {
    std::string_view s;
    auto ec = v.get_string().get(s);
    if (ec == simdjson::INCORRECT_TYPE) return error(name, "must be a string");
    if (ec != simdjson::SUCCESS) return error(name, "invalid string");
    if (!valid_utf8(s)) return error(name, "invalid UTF-8");
    out.assign(s);
    return true;
  }

  bool header_text(od::value& v, const std::string& name, std::string& out, size_t max) {
    if (!get_string(v, name, out)) return false;
    if (has_cr_or_lf(out)) return error(name, "must not contain CR or LF");
    if (has_header_controls(out)) return error(name, "must not contain control characters");
    if (out.size() > max) return error(name, "longer than " + std::to_string(max) + " bytes");
    return true;
  }

  bool identifier(od::value& v, const std::string& name, std::string& out) {
    if (!get_string(v, name, out)) return false;
    if (out.empty()) return error(name, "must not be empty");
    if (out.size() > kMaxIdLength) return error(name, "longer than " + std::to_string(kMaxIdLength) + " bytes");
    if (!is_identifier(out)) return error(name, "must be printable ASCII without spaces");
    return true;
  }

  bool email(od::value& v, const std::string& name, std::string& out) {
    if (!get_string(v, name, out)) return false;
    if (has_cr_or_lf(out)) return error(name, "must not contain CR or LF");
    if (out.size() > kMaxEmailLength) return error(name, "longer than " + std::to_string(kMaxEmailLength) + " bytes");
    return address(name, out);
  }

  // Kept normalised (core/address.h), so everything downstream sees one spelling.
  bool address(const std::string& name, std::string& inout) {
    auto a = core::parse_address(inout);
    if (!a) return error(name, a.error());
    inout = a->str();
    return true;
  }

  bool body(od::value& v, const std::string& name, std::string& out) {
    if (!get_string(v, name, out)) return false;
    if (out.find('\0') != std::string::npos) return error(name, "must not contain NUL");
    body_bytes_ += out.size();
    if (body_bytes_ > max_body_)
      return error(name, "text, html and raw together exceed " + std::to_string(max_body_) + " bytes");
    return true;
  }

  bool timestamp(od::value& v, const std::string& name, int64_t& out) {
    std::string s;
    if (!get_string(v, name, s)) return false;
    if (!parse_rfc3339_ms(s, out)) return error(name, "must be an RFC 3339 date-time such as 2026-11-29T10:00:00Z");
    return true;
  }

  bool url(od::value& v, const std::string& name, std::string& out) {
    if (!get_string(v, name, out)) return false;
    if (has_cr_or_lf(out)) return error(name, "must not contain CR or LF");
    if (out.size() > kMaxUrlLength) return error(name, "longer than " + std::to_string(kMaxUrlLength) + " bytes");
    if (out.rfind("https://", 0) != 0 && out.rfind("http://", 0) != 0) return error(name, "must be an http(s) URL");
    for (unsigned char c : out)
      if (c < 0x21 || c > 0x7e || c == '<' || c == '>') return error(name, "must be printable ASCII without spaces");
    return true;
  }

  bool field(uint32_t bit, std::string_view key, od::value& v) {
    std::string name(key);
    // Optional fields may be given as null, which means "not set".
    const bool optional = bit & (kFromName | kReplyTo | kHeaders | kCampaign | kUnsubscribe | kNotBefore | kExpiresAt |
                                 kText | kHtml | kRaw | kSubject);
    if (optional && is_null(v)) {
      null_ |= bit;
      return true;
    }
    switch (bit) {
      case kV: {
        int64_t n = 0;
        auto ec = v.get_int64().get(n);
        if (ec != simdjson::SUCCESS) return error(name, "must be the integer 1");
        if (n != 1) return error(name, "unsupported version " + std::to_string(n) + " (expected 1)");
        job_.v = 1;
        return true;
      }
      case kId: return identifier(v, name, job_.id);
      case kAccount: return identifier(v, name, job_.account);
      case kMailbox: return identifier(v, name, job_.mailbox);
      case kCampaign: return identifier(v, name, job_.campaign);
      case kTo: return to(v);
      case kFromName: return header_text(v, name, job_.from_name, kMaxHeaderLineLength);
      case kReplyTo: return email(v, name, job_.reply_to);
      case kSubject: return header_text(v, name, job_.subject, kMaxHeaderLineLength);
      case kText: return body(v, name, job_.text);
      case kHtml: return body(v, name, job_.html);
      case kRaw: return body(v, name, job_.raw);
      case kHeaders: return headers(v);
      case kUnsubscribe: return unsubscribe(v);
      case kNotBefore: return timestamp(v, name, job_.not_before_ms);
      case kExpiresAt: return timestamp(v, name, job_.expires_at_ms);
    }
    return true;
  }

  bool to(od::value& v) {
    od::object o;
    if (v.get_object().get(o) != simdjson::SUCCESS) return error("to", "must be an object");
    bool have_email = false, have_name = false;
    for (auto member : o) {
      od::field f;
      std::string_view key;
      if (std::move(member).get(f) != simdjson::SUCCESS || f.unescaped_key().get(key) != simdjson::SUCCESS)
        return error("to", "not valid JSON");
      od::value& fv = f.value();
      if (key == "email") {
        if (have_email) return error("to.email", "duplicate field");
        have_email = true;
        if (!email(fv, "to.email", job_.to_email)) return false;
      } else if (key == "name") {
        if (have_name) return error("to.name", "duplicate field");
        have_name = true;
        if (is_null(fv)) continue;
        if (!header_text(fv, "to.name", job_.to_name, kMaxHeaderLineLength)) return false;
      }
    }
    if (!have_email) return error("to.email", "required");
    return true;
  }

  bool headers(od::value& v) {
    od::object o;
    if (v.get_object().get(o) != simdjson::SUCCESS) return error("headers", "must be an object of strings");
    for (auto member : o) {
      od::field f;
      std::string_view key_view;
      if (std::move(member).get(f) != simdjson::SUCCESS || f.unescaped_key().get(key_view) != simdjson::SUCCESS)
        return error("headers", "not valid JSON");
      std::string key(key_view);  // the parser's string buffer is reused by the value below
      const std::string name = "headers." + key.substr(0, 80);
      if (!is_header_name(key)) return error(name, "not a valid header name");
      for (auto reserved : kReservedHeaders)
        if (core::iequals(key, reserved)) return error(name, "header is set by deliverd and may not be given");
      for (const auto& h : job_.headers)
        if (core::iequals(h.first, key)) return error(name, "duplicate header");
      if (job_.headers.size() >= kMaxExtraHeaders)
        return error("headers", "more than " + std::to_string(kMaxExtraHeaders) + " headers");
      od::value& hv = f.value();
      std::string value;
      // "Name: value" must fit one RFC 5322 line before any folding.
      if (!header_text(hv, name, value, kMaxHeaderLineLength - 2 - key.size())) return false;
      job_.headers.emplace_back(std::move(key), std::move(value));
    }
    return true;
  }

  bool unsubscribe(od::value& v) {
    od::object o;
    if (v.get_object().get(o) != simdjson::SUCCESS) return error("unsubscribe", "must be an object");
    bool have_url = false, have_mailto = false;
    for (auto member : o) {
      od::field f;
      std::string_view key;
      if (std::move(member).get(f) != simdjson::SUCCESS || f.unescaped_key().get(key) != simdjson::SUCCESS)
        return error("unsubscribe", "not valid JSON");
      od::value& fv = f.value();
      if (key == "url") {
        if (have_url) return error("unsubscribe.url", "duplicate field");
        have_url = true;
        if (is_null(fv)) continue;
        if (!url(fv, "unsubscribe.url", job_.unsubscribe_url)) return false;
      } else if (key == "mailto") {
        if (have_mailto) return error("unsubscribe.mailto", "duplicate field");
        have_mailto = true;
        if (is_null(fv)) continue;
        std::string s;
        if (!get_string(fv, "unsubscribe.mailto", s)) return false;
        // Producers write both "unsub@x" and "mailto:unsub@x"; we keep the bare address.
        if (core::istarts_with(s, "mailto:")) s.erase(0, 7);
        if (has_cr_or_lf(s)) return error("unsubscribe.mailto", "must not contain CR or LF");
        if (!address("unsubscribe.mailto", s)) return false;
        job_.unsubscribe_mailto = std::move(s);
      }
    }
    return true;
  }

  bool finish(uint32_t seen) {
    const uint32_t given = seen & ~null_;
    if (!(seen & kV)) return error("v", "required");
    if (!(seen & kId)) return error("id", "required");
    if (!(seen & kAccount)) return error("account", "required");
    if (!(seen & kMailbox)) return error("mailbox", "required");
    if (!(seen & kTo)) return error("to", "required");
    if (given & kRaw) {
      if (given & (kText | kHtml)) return error("raw", "raw excludes text and html");
      if (job_.raw.empty()) return error("raw", "must not be empty");
      return true;
    }
    if (!(given & (kText | kHtml))) return error("text", "one of text, html or raw is required");
    if (!(given & kSubject)) return error("subject", "required");
    return true;
  }

  size_t max_body_;
  size_t body_bytes_ = 0;
  uint32_t null_ = 0;
  Job job_;
  JobError error_;
};

}  // namespace

std::string JobError::to_string() const { return field + ": " + message; }

core::Result<Job, JobError> parse_job(std::string_view json, size_t max_bytes) {
  return JobParser(max_bytes).parse(json);
}

bool parse_rfc3339_ms(std::string_view s, int64_t& out_ms) {
  int year, month, day, hour, minute, second;
  if (s.size() < 20 || !digits(s, 0, 4, year) || s[4] != '-' || !digits(s, 5, 2, month) || s[7] != '-' ||
      !digits(s, 8, 2, day) || (s[10] != 'T' && s[10] != 't') || !digits(s, 11, 2, hour) || s[13] != ':' ||
      !digits(s, 14, 2, minute) || s[16] != ':' || !digits(s, 17, 2, second))
    return false;
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month < 1 || month > 12 || day < 1) return false;
  const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (day > kDays[month - 1] + (month == 2 && leap ? 1 : 0)) return false;
  if (hour > 23 || minute > 59 || second > 60) return false;
  if (second == 60) second = 59;  // a leap second is clamped rather than rejected
  size_t pos = 19;
  int millis = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (pos - start < 3) millis = millis * 10 + (s[pos] - '0');
      ++pos;
    }
    const size_t n = pos - start;
    if (n == 0 || n > 9) return false;
    for (size_t i = n; i < 3; ++i) millis *= 10;
  }
  int offset_min = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' || !digits(s, pos + 4, 2, om) ||
        oh > 23 || om > 59)
      return false;
    offset_min = (oh * 60 + om) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return false;
  }
  if (pos != s.size()) return false;
  const int64_t days = days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
  const int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - offset_min * 60;
  out_ms = secs * 1000 + millis;
  return true;
}

}  // namespace deliverd::queue
