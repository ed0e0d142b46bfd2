#include "smtp/composer.h"

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <random>

namespace deliverd::smtp {
namespace {

constexpr size_t kMaxLine = 998;      // RFC 5322 2.1.1: MUST
constexpr size_t kFoldAt = 78;        // RFC 5322 2.1.1: SHOULD
constexpr size_t kWordBytes = 42;     // raw bytes per encoded word: "=?UTF-8?B?" + 56 + "?=" = 68 chars

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return lower(x) == lower(y); });
}

bool is_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

bool has_crlf(std::string_view s) { return s.find_first_of("\r\n") != std::string_view::npos; }

bool has_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

bool is_atext(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
}

bool valid_domain(std::string_view d) {
  if (d.empty() || d.size() > 253 || d.front() == '.' || d.back() == '.' || d.front() == '-') return false;
  if (d.find("..") != std::string_view::npos) return false;
  return std::all_of(d.begin(), d.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

// Conservative addr-spec check: enough to keep the address from breaking the header or the
// SMTP command it later goes into. Quoted local parts and address literals are not accepted.
core::Result<core::Ok, std::string> check_address(std::string_view field, std::string_view a) {
  auto err = [&](std::string_view why) { return core::Err{std::string(field) + ": " + std::string(why)}; };
  if (a.empty()) return err("missing");
  if (has_crlf(a)) return err("contains CR or LF");
  if (!is_ascii(a)) return err("non-ASCII address needs SMTPUTF8 (not supported)");
  if (a.size() > 254) return err("longer than 254 characters");
  size_t at = a.rfind('@');
  if (at == std::string_view::npos) return err("missing '@'");
  std::string_view local = a.substr(0, at), domain = a.substr(at + 1);
  if (local.empty() || local.size() > 64) return err("bad local part");
  for (char c : local)
    if (!is_atext(c) && c != '.') return err("invalid character in local part");
  if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos)
    return err("bad dots in local part");
  if (!valid_domain(domain)) return err("invalid domain");
  return core::Ok{};
}

core::Result<core::Ok, std::string> check_text(std::string_view field, std::string_view v) {
  if (has_crlf(v)) return core::Err{std::string(field) + ": contains CR or LF"};
  if (has_control(v)) return core::Err{std::string(field) + ": contains a control character"};
  if (!is_valid_utf8(v)) return core::Err{std::string(field) + ": not valid UTF-8"};
  return core::Ok{};
}

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint32_t(uint8_t(in[i])) << 16) | (uint32_t(uint8_t(in[i + 1])) << 8) | uint8_t(in[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (size_t rest = in.size() - i; rest > 0) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;  // invalid; callers validate first
}

// Header "Name: value", folded at spaces so lines stay near 78 where the words allow.
core::Result<std::string, std::string> folded_header(std::string_view name, std::string_view value,
                                                     std::string_view field) {
  std::string out(name);
  out += ":";
  size_t line_len = out.size();
  size_t i = 0;
  bool first = true;
  while (i < value.size() || first) {
    // A token is its leading spaces plus the following word, so a break lands before a space.
    size_t start = i;
    while (i < value.size() && value[i] == ' ') ++i;
    while (i < value.size() && value[i] != ' ') ++i;
    std::string_view tok = value.substr(start, i - start);
    if (first) {
      out += ' ';
      ++line_len;
      if (!tok.empty() && tok.front() == ' ') tok.remove_prefix(tok.find_first_not_of(' ') == std::string_view::npos ? tok.size() : tok.find_first_not_of(' '));
      first = false;
    } else if (line_len + tok.size() > kFoldAt && tok.find_first_not_of(' ') != std::string_view::npos) {
      out += "\r\n";
      line_len = 0;
    }
    out += tok;
    line_len += tok.size();
    if (line_len > kMaxLine) return core::Err{std::string(field) + ": a word is too long for one header line"};
  }
  out += "\r\n";
  return out;
}

std::string quote_display_name(std::string_view name) {
  bool plain = std::all_of(name.begin(), name.end(), [](char c) { return is_atext(c) || c == ' '; }) &&
               name.front() != ' ' && name.back() != ' ';
  if (plain) return std::string(name);
  std::string q = "\"";
  for (char c : name) {
    if (c == '"' || c == '\\') q += '\\';
    q += c;
  }
  q += '"';
  return q;
}

core::Result<std::string, std::string> mailbox_header(std::string_view header, std::string_view name_field,
                                                      std::string_view name, std::string_view email) {
  if (name.empty()) return std::string(header) + ": " + std::string(email) + "\r\n";
  if (auto r = check_text(name_field, name); !r) return core::Err{r.error()};
  std::string phrase = is_ascii(name) ? quote_display_name(name) : encode_words(name);
  std::string out = std::string(header) + ": " + phrase;
  // The address goes on its own folded line when the phrase is long, keeping lines short.
  out += (out.size() - out.rfind('\n') + email.size() + 3 > kFoldAt) ? "\r\n <" : " <";
  out += email;
  out += ">\r\n";
  if (out.find("\r\n") > kMaxLine) return core::Err{std::string(name_field) + ": too long"};
  return out;
}

bool is_structural(std::string_view name) {
  static constexpr std::string_view kReserved[] = {"from", "to", "subject", "date", "message-id", "mime-version",
                                                   "reply-to"};
  for (auto r : kReserved)
    if (iequals(name, r)) return true;
  return name.size() >= 8 && iequals(name.substr(0, 8), "content-");
}

std::string random_hex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got < bytes) {  // getrandom unavailable: still unique enough for a Message-ID
    std::random_device rd;
    for (size_t i = got; i < bytes; ++i) raw[i] = static_cast<char>(rd());
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : raw) {
    out += kHex[(static_cast<unsigned char>(c) >> 4) & 15];
    out += kHex[static_cast<unsigned char>(c) & 15];
  }
  return out;
}

// Splits on CRLF, bare LF and bare CR alike so the output has one line-ending convention.
template <class F>
void for_each_line(std::string_view text, F&& f) {
  size_t i = 0;
  while (i < text.size()) {
    size_t e = text.find_first_of("\r\n", i);
    if (e == std::string_view::npos) {
      f(text.substr(i));
      return;
    }
    f(text.substr(i, e - i));
    i = e + 1;
    if (text[e] == '\r' && i < text.size() && text[i] == '\n') ++i;
  }
}

std::string normalize_crlf(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 32 + 2);
  for_each_line(text, [&](std::string_view line) {
    out += line;
    out += "\r\n";
  });
  return out;
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = utf8_sequence_length(c);
    if (n == 1 || i + n > s.size()) return false;
    uint32_t cp = c & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
    for (size_t k = 1; k < n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n;
  }
  return true;
}

std::string rfc5322_date(std::time_t t) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d +0000", kDays[tm.tm_wday], tm.tm_mday,
                kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::string encode_words(std::string_view utf8) {
  std::string out;
  size_t i = 0;
  while (i < utf8.size()) {
    // Whole characters only: RFC 2047 5 forbids splitting a character across encoded words.
    size_t end = i;
    while (end < utf8.size()) {
      size_t n = utf8_sequence_length(static_cast<unsigned char>(utf8[end]));
      if (end + n - i > kWordBytes || end + n > utf8.size()) break;
      end += n;
    }
    if (end == i) end = std::min(utf8.size(), i + 1);
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?";
    out += base64(utf8.substr(i, end - i));
    out += "?=";
    i = end;
  }
  return out;
}

std::string quoted_printable(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for_each_line(text, [&](std::string_view line) {
    size_t col = 0;
    for (size_t i = 0; i < line.size(); ++i) {
      auto c = static_cast<unsigned char>(line[i]);
      bool last = i + 1 == line.size();
      char tok[3];
      size_t len = 1;
      if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !last)) {
        tok[0] = static_cast<char>(c);
      } else {
        tok[0] = '=';
        tok[1] = kHex[c >> 4];
        tok[2] = kHex[c & 15];
        len = 3;
      }
      // 76 characters per line including the "=" of a soft break (RFC 2045 6.7 rule 5).
      if (col + len > 75) {
        out += "=\r\n";
        col = 0;
      }
      out.append(tok, len);
      col += len;
    }
    out += "\r\n";
  });
  return out;
}

core::Result<std::string, std::string> compose(const MessageSpec& m, std::time_t now) {
  if (auto r = check_address("from_email", m.from_email); !r) return core::Err{r.error()};
  if (auto r = check_address("to_email", m.to_email); !r) return core::Err{r.error()};
  if (!m.reply_to.empty())
    if (auto r = check_address("reply_to", m.reply_to); !r) return core::Err{r.error()};
  if (auto r = check_text("subject", m.subject); !r) return core::Err{r.error()};
  if (!is_valid_utf8(m.text)) return core::Err{std::string("text: not valid UTF-8")};
  std::string id_domain = m.message_id_domain.empty() ? m.from_email.substr(m.from_email.rfind('@') + 1)
                                                      : m.message_id_domain;
  if (!valid_domain(id_domain)) return core::Err{std::string("message_id_domain: invalid domain")};

  std::string out;
  out += "Date: " + rfc5322_date(now) + "\r\n";
  auto from = mailbox_header("From", "from_name", m.from_name, m.from_email);
  if (!from) return core::Err{from.error()};
  out += *from;
  auto to = mailbox_header("To", "to_name", m.to_name, m.to_email);
  if (!to) return core::Err{to.error()};
  out += *to;
  if (!m.reply_to.empty()) out += "Reply-To: " + m.reply_to + "\r\n";
  if (is_ascii(m.subject)) {
    auto s = folded_header("Subject", m.subject, "subject");
    if (!s) return core::Err{s.error()};
    out += *s;
  } else {
    out += "Subject: " + encode_words(m.subject) + "\r\n";
  }
  out += "Message-ID: <" + random_hex(16) + "@" + id_domain + ">\r\n";

  for (const auto& [name, value] : m.headers) {
    std::string field = "header \"" + name + "\"";
    bool name_ok = !name.empty() && name.size() <= 76 && std::all_of(name.begin(), name.end(), [](char c) {
      return c >= 33 && c <= 126 && c != ':';  // RFC 5322 ftext
    });
    if (!name_ok) return core::Err{field + ": invalid name"};
    if (is_structural(name)) return core::Err{field + ": set by deliverd, may not be given"};
    if (auto r = check_text(field, value); !r) return core::Err{r.error()};
    if (is_ascii(value)) {
      auto h = folded_header(name, value, field);
      if (!h) return core::Err{h.error()};
      out += *h;
    } else {
      out += name + ": " + encode_words(value) + "\r\n";
    }
  }

  std::string body = normalize_crlf(m.text);
  bool seven_bit = true;
  for_each_line(body, [&](std::string_view line) {
    if (line.size() > kMaxLine || !is_ascii(line) || line.find('\0') != std::string_view::npos) seven_bit = false;
  });
  out += "MIME-Version: 1.0\r\n";
  out += "Content-Type: text/plain; charset=utf-8\r\n";
  out += seven_bit ? "Content-Transfer-Encoding: 7bit\r\n" : "Content-Transfer-Encoding: quoted-printable\r\n";
  out += "\r\n";
  out += seven_bit ? body : quoted_printable(body);
  return out;
}

std::string dot_stuff(std::string_view message) {
  std::string out;
  out.reserve(message.size() + message.size() / 64 + 8);
  for_each_line(message, [&](std::string_view line) {
    if (!line.empty() && line.front() == '.') out += '.';
    out += line;
    out += "\r\n";
  });
  out += ".\r\n";
  return out;
}

}  // namespace deliverd::smtp
