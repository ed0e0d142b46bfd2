#include "inbound/mime.h"

#include <algorithm>

#include "core/ascii.h"
#include "core/base64.h"

namespace deliverd::inbound {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Skips white space and RFC 5322 comments from i.
size_t skip_cfws(std::string_view s, size_t i) {
  while (i < s.size()) {
    if (is_space(s[i])) {
      ++i;
    } else if (s[i] == '(') {
      int depth = 0;
      for (; i < s.size(); ++i) {
        if (s[i] == '\\') {
          ++i;
          continue;
        }
        if (s[i] == '(') ++depth;
        if (s[i] == ')' && --depth == 0) break;
      }
      if (i < s.size()) ++i;
    } else {
      break;
    }
  }
  return std::min(i, s.size());
}

bool token_char(char c) {
  auto u = static_cast<unsigned char>(c);
  return u > 32 && u < 127 && std::string_view("()<>@,;:\\\"/[]?=").find(c) == std::string_view::npos;
}

size_t read_token(std::string_view s, size_t i, std::string& out) {
  size_t start = i;
  while (i < s.size() && token_char(s[i])) ++i;
  out = core::ascii_lowercase(s.substr(start, i - start));
  return i;
}

struct Walker {
  const MimeLimits& limits;
  Message& msg;

  void walk(std::string_view entity, int depth, const ContentType& default_type, bool top) {
    size_t body_at = 0;
    Headers h = parse_headers(entity, &body_at);
    if (h.truncated) msg.truncated = true;
    std::string_view body = entity.substr(body_at);
    const std::string* ct_value = h.get("Content-Type");
    ContentType ct = ct_value ? parse_content_type(*ct_value) : default_type;
    if (top) msg.headers = h;
    if (ct.type == "multipart" && !ct.param("boundary").empty()) {
      if (depth >= limits.max_depth) {
        msg.truncated = true;
        return;
      }
      ContentType inner;
      if (ct.subtype == "digest") inner = parse_content_type("message/rfc822");
      split(body, ct.param("boundary"), [&](std::string_view part) { walk(part, depth + 1, inner, false); });
      return;
    }
    if (msg.parts.size() >= limits.max_parts) {
      msg.truncated = true;
      return;
    }
    Part p;
    p.type = std::move(ct);
    // Base64 is 4/3 of its bytes (plus line breaks): read a little more than the bound.
    size_t raw_bound = limits.max_part_bytes + limits.max_part_bytes / 2 + 1024;
    if (body.size() > raw_bound) {
      body = body.substr(0, raw_bound);
      p.truncated = true;
    }
    p.body = decode_transfer(body, h.value("Content-Transfer-Encoding"));
    if (p.body.size() > limits.max_part_bytes) {
      p.body.resize(limits.max_part_bytes);
      p.truncated = true;
    }
    if (p.truncated) msg.truncated = true;
    p.headers = std::move(h);
    msg.parts.push_back(std::move(p));
  }

  // Calls f with each body part between "--boundary" delimiter lines (RFC 2046 5.1.1); the
  // preamble and epilogue are dropped.
  template <typename F>
  void split(std::string_view body, std::string_view boundary, F&& f) {
    std::string delim = "--" + std::string(boundary);
    size_t pos = 0;
    size_t part_start = std::string_view::npos;
    while (pos <= body.size()) {
      size_t at = body.find(delim, pos);
      if (at == std::string_view::npos) break;
      bool line_start = at == 0 || body[at - 1] == '\n';
      size_t after = at + delim.size();
      bool closing = body.compare(after, 2, "--") == 0;
      size_t eol = body.find('\n', after);
      std::string_view rest = body.substr(closing ? after + 2 : after,
                                          (eol == std::string_view::npos ? body.size() : eol) - (closing ? after + 2 : after));
      if (!line_start || !trim(rest).empty()) {  // "--boundary-more" is not the delimiter
        pos = at + 1;
        continue;
      }
      if (part_start != std::string_view::npos) {
        size_t end = at;  // the CRLF before the delimiter belongs to it
        if (end > part_start && body[end - 1] == '\n') --end;
        if (end > part_start && body[end - 1] == '\r') --end;
        f(body.substr(part_start, end - part_start));
      }
      if (closing) return;
      part_start = eol == std::string_view::npos ? body.size() : eol + 1;
      pos = part_start;
    }
    if (part_start != std::string_view::npos && part_start < body.size()) {
      msg.truncated = true;  // no closing delimiter: the last part runs to the end
      f(body.substr(part_start));
    }
  }
};

}  // namespace

bool ContentType::is(std::string_view t, std::string_view s) const { return type == t && subtype == s; }

std::string_view ContentType::param(std::string_view name) const {
  for (const auto& [k, v] : params)
    if (k == name) return v;
  return {};
}

ContentType parse_content_type(std::string_view value) {
  ContentType ct;
  size_t i = skip_cfws(value, 0);
  std::string type, subtype;
  i = read_token(value, i, type);
  i = skip_cfws(value, i);
  if (i >= value.size() || value[i] != '/') return ct;
  i = skip_cfws(value, i + 1);
  i = read_token(value, i, subtype);
  if (type.empty() || subtype.empty()) return ct;
  ct.type = std::move(type);
  ct.subtype = std::move(subtype);
  while (ct.params.size() < 32) {
    i = skip_cfws(value, i);
    if (i >= value.size() || value[i] != ';') break;
    i = skip_cfws(value, i + 1);
    std::string name;
    i = read_token(value, i, name);
    i = skip_cfws(value, i);
    if (name.empty() || i >= value.size() || value[i] != '=') break;
    i = skip_cfws(value, i + 1);
    std::string v;
    if (i < value.size() && value[i] == '"') {
      for (++i; i < value.size() && value[i] != '"'; ++i) {
        if (value[i] == '\\' && i + 1 < value.size()) ++i;
        v += value[i];
      }
      if (i < value.size()) ++i;
    } else {
      size_t start = i;
      while (i < value.size() && token_char(value[i])) ++i;
      v = std::string(value.substr(start, i - start));
    }
    ct.params.emplace_back(std::move(name), std::move(v));
  }
  return ct;
}

std::string decode_transfer(std::string_view body, std::string_view encoding) {
  encoding = trim(encoding);
  if (core::iequals(encoding, "base64")) {
    std::string compact;
    compact.reserve(body.size());
    for (char c : body)
      if (!is_space(c)) compact += c;
    // Padding is put back where a sender (or a bound) cut it; anything after it is dropped.
    if (size_t eq = compact.find('='); eq != std::string::npos) compact.resize(eq);
    if (compact.size() % 4 == 1) compact.pop_back();
    if (compact.size() % 4 != 0) compact.append(4 - compact.size() % 4, '=');
    if (auto d = core::base64_decode(compact)) return std::move(*d);
    return std::string(body);
  }
  if (core::iequals(encoding, "quoted-printable")) return *decode_quoted_printable(body, false);
  return std::string(body);
}

Message parse_message(std::string_view raw, const MimeLimits& limits) {
  Message m;
  Walker w{limits, m};
  w.walk(raw, 0, ContentType{}, true);
  return m;
}

}  // namespace deliverd::inbound
