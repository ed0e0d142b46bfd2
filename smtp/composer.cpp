#include "smtp/composer.h"

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <random>

#include "core/address.h"
#include "core/ascii.h"
#include "core/base64.h"
#include "core/domain.h"
#include "core/hex.h"
#include "core/utf8.h"
#include "smtp/body_encoder.h"
#include "smtp/line_walker.h"

namespace deliverd::smtp {
namespace {

constexpr size_t kMaxLine = 998;      // RFC 5322 2.1.1: MUST
constexpr size_t kFoldAt = 78;        // RFC 5322 2.1.1: SHOULD
constexpr size_t kWordBytes = 42;     // raw bytes per encoded word: "=?UTF-8?B?" + 56 + "?=" = 68 chars

bool has_crlf(std::string_view s) {
  return std::memchr(s.data(), '\r', s.size()) != nullptr || std::memchr(s.data(), '\n', s.size()) != nullptr;
}

bool has_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
  });
}

bool is_atext(char c) {
  if (core::ascii_is_alnum(c)) return true;
  return std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
}

// The address module's verdict, with the field named: "to_email: the domain is empty".
core::Result<core::Address, std::string> check_address(std::string_view field, std::string_view a) {
  auto parsed = core::parse_address(a);
  if (!parsed) return core::Err{std::string(field) + ": " + parsed.error()};
  return parsed;
}

core::Result<core::Ok, std::string> check_text(std::string_view field, std::string_view v) {
  if (has_crlf(v)) return core::Err{std::string(field) + ": contains CR or LF"};
  if (has_control(v)) return core::Err{std::string(field) + ": contains a control character"};
  if (!core::is_valid_utf8(v)) return core::Err{std::string(field) + ": not valid UTF-8"};
  return core::Ok{};
}

// Header "Name: value", folded at spaces so lines stay near 78 where the words allow.
core::Result<std::string, std::string> folded_header(std::string_view name, std::string_view value,
                                                     std::string_view field) {
  std::string out(name);
  out += ":";
  size_t line_len = out.size();
  size_t i = 0;
  bool first = true;
  // Spaces and tabs are both folding white space: a fold before a token that is white space only
  // would leave a continuation line of nothing but white space, which RFC 5322 3.2.2 forbids.
  constexpr std::string_view kWsp = " \t";
  auto is_wsp = [](char c) { return c == ' ' || c == '\t'; };
  while (i < value.size() || first) {
    // A token is its leading white space plus the following word, so a break lands before it.
    size_t start = i;
    while (i < value.size() && is_wsp(value[i])) ++i;
    while (i < value.size() && !is_wsp(value[i])) ++i;
    std::string_view tok = value.substr(start, i - start);
    if (first) {
      out += ' ';
      ++line_len;
      size_t word = tok.find_first_not_of(kWsp);
      tok.remove_prefix(word == std::string_view::npos ? tok.size() : word);
      first = false;
    } else if (line_len + tok.size() > kFoldAt && tok.find_first_not_of(kWsp) != std::string_view::npos) {
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
  std::string phrase = core::is_ascii(name) ? quote_display_name(name) : encode_words(name);
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
    if (core::iequals(name, r)) return true;
  return core::istarts_with(name, "content-");
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
  return core::to_hex(raw);
}

std::string normalize_crlf(std::string_view text) {
  std::string out;
  append_crlf(out, text, nullptr);
  return out;
}

}  // namespace

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
      size_t n = core::utf8_sequence_length(static_cast<unsigned char>(utf8[end]));
      if (end + n - i > kWordBytes || end + n > utf8.size()) break;
      end += n;
    }
    if (end == i) end = std::min(utf8.size(), i + 1);
    if (!out.empty()) out += "\r\n ";
    out += "=?UTF-8?B?";
    out += core::base64_encode(utf8.substr(i, end - i));
    out += "?=";
    i = end;
  }
  return out;
}

std::string quoted_printable(std::string_view text) {
  std::string out;
  append_quoted_printable(out, text, nullptr);
  return out;
}

namespace {

std::string part_headers(std::string_view content_type, Cte cte) {
  std::string out = "Content-Type: " + std::string(content_type) + "; charset=utf-8\r\n";
  out += cte == Cte::SevenBit          ? "Content-Transfer-Encoding: 7bit\r\n"
         : cte == Cte::QuotedPrintable ? "Content-Transfer-Encoding: quoted-printable\r\n"
                                       : "Content-Transfer-Encoding: base64\r\n";
  return out;
}

std::string html_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

core::Result<core::Ok, std::string> check_url(std::string_view field, std::string_view url) {
  auto err = [&](std::string_view why) { return core::Err{std::string(field) + ": " + std::string(why)}; };
  std::string_view rest;
  if (url.substr(0, 8) == "https://") rest = url.substr(8);
  else if (url.substr(0, 7) == "http://") rest = url.substr(7);
  else return err("must be an http or https URL");
  if (url.size() > 2048) return err("longer than 2048 characters");
  if (rest.empty() || rest.front() == '/') return err("missing host");
  for (char c : url) {
    auto u = static_cast<unsigned char>(c);
    // Inside <…> in a header (RFC 2369): no spaces, controls, angle brackets or quotes.
    if (u <= 0x20 || u >= 0x7f || c == '<' || c == '>' || c == '"' || c == '\\')
      return err("contains a character that must be percent-encoded");
  }
  return core::Ok{};
}

std::string mailto_uri(std::string_view address) { return "mailto:" + std::string(address) + "?subject=unsubscribe"; }

std::string list_unsubscribe_value(const MessageSpec& m) {
  std::string v;
  if (!m.unsubscribe_mailto.empty()) v += "<" + mailto_uri(m.unsubscribe_mailto) + ">";
  if (!m.unsubscribe_url.empty()) v += (v.empty() ? "<" : ", <") + m.unsubscribe_url + ">";
  return v;
}

bool contains(std::string_view hay, std::string_view needle) {
  return !needle.empty() && hay.find(needle) != std::string_view::npos;
}

// The visible way out and the postal address, appended unless the producer's body has them.
std::string text_footer(const MessageSpec& m, std::string_view text) {
  std::string f;
  if (!m.unsubscribe_url.empty()) {
    if (!contains(text, m.unsubscribe_url)) f += "Unsubscribe: " + m.unsubscribe_url + "\n";
  } else if (!contains(text, m.unsubscribe_mailto)) {
    f += "To unsubscribe, write to " + m.unsubscribe_mailto + " with the subject \"unsubscribe\".\n";
  }
  if (!m.postal_address.empty() && !contains(text, m.postal_address)) f += m.postal_address + "\n";
  if (f.empty()) return f;
  std::string sep = text.empty() || text.back() == '\n' || text.back() == '\r' ? "\n" : "\n\n";
  return sep + f;
}

std::string with_html_footer(const MessageSpec& m, std::string_view html) {
  std::string f;
  if (!m.unsubscribe_url.empty()) {
    if (!contains(html, m.unsubscribe_url) && !contains(html, html_escape(m.unsubscribe_url)))
      f += "<a href=\"" + html_escape(m.unsubscribe_url) + "\">Unsubscribe</a>";
  } else if (!contains(html, m.unsubscribe_mailto)) {
    f += "<a href=\"" + html_escape(mailto_uri(m.unsubscribe_mailto)) + "\">Unsubscribe</a>";
  }
  if (!m.postal_address.empty() && !contains(html, html_escape(m.postal_address)) &&
      !contains(html, m.postal_address)) {
    if (!f.empty()) f += "<br>\n";
    std::string addr = html_escape(m.postal_address);
    for (size_t p; (p = addr.find('\n')) != std::string::npos;) addr.replace(p, 1, "<br>");
    f += addr;
  }
  std::string out(html);
  if (f.empty()) return out;
  f = "\n<div style=\"margin-top:24px;font-size:12px;color:#666\">" + f + "</div>\n";
  size_t body_end = core::irfind(out, "</body>");
  if (body_end == std::string::npos) out += f;
  else out.insert(body_end, f);
  return out;
}

bool is_reserved_extra(std::string_view name, bool campaign) {
  static constexpr std::string_view kAlso[] = {"cc", "bcc", "sender", "return-path", "dkim-signature", "received"};
  for (auto r : kAlso)
    if (core::iequals(name, r)) return true;
  if (campaign && (core::iequals(name, "list-unsubscribe") || core::iequals(name, "list-unsubscribe-post"))) return true;
  return is_structural(name);
}

core::Result<core::Ok, std::string> check_unsubscribe(const MessageSpec& m) {
  if (m.campaign.empty()) return core::Ok{};
  if (auto r = check_text("campaign", m.campaign); !r) return core::Err{r.error()};
  if (m.unsubscribe_url.empty() && m.unsubscribe_mailto.empty())
    return core::Err{std::string("unsubscribe: campaign mail needs an unsubscribe URL or mailto address")};
  if (!m.unsubscribe_url.empty())
    if (auto r = check_url("unsubscribe.url", m.unsubscribe_url); !r) return core::Err{r.error()};
  if (!m.unsubscribe_mailto.empty()) {
    auto r = check_address("unsubscribe.mailto", m.unsubscribe_mailto);
    if (!r) return core::Err{r.error()};
    // A mailto URI in a header field: RFC 6068 wants it ASCII, and it must not force SMTPUTF8.
    if (r->smtputf8 || !core::is_ascii(m.unsubscribe_mailto))
      return core::Err{std::string("unsubscribe.mailto: must be ASCII (an internationalised domain as A-labels)")};
  }
  if (!m.postal_address.empty() && !core::is_valid_utf8(m.postal_address))
    return core::Err{std::string("postal_address: not valid UTF-8")};
  return core::Ok{};
}

core::Result<std::string, std::string> unsubscribe_headers(const MessageSpec& m) {
  if (m.campaign.empty()) return std::string();
  auto h = header_field("List-Unsubscribe", list_unsubscribe_value(m), "unsubscribe");
  if (!h) return core::Err{h.error()};
  std::string out = *h;
  // RFC 8058 3.1: the POST header only makes sense next to an http(s) URI.
  if (!m.unsubscribe_url.empty()) out += "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n";
  return out;
}

// The addresses as they go into the header: normalised (A-label domains), and whether one of
// them has a UTF-8 local part, which makes this an RFC 6532 message that needs SMTPUTF8 end to
// end (encoded words are not allowed in an addr-spec, RFC 2047 5).
struct Addresses {
  std::string from, to, reply_to, id_domain;
  bool utf8 = false;
};

core::Result<Addresses, std::string> check_addresses(const MessageSpec& m) {
  Addresses out;
  auto take = [&out](const char* field, const std::string& given, std::string& dest) -> std::optional<std::string> {
    auto a = check_address(field, given);
    if (!a) return a.error();
    dest = a->str();
    out.utf8 |= a->smtputf8;
    return std::nullopt;
  };
  if (auto e = take("from_email", m.from_email, out.from)) return core::Err{*e};
  if (auto e = take("to_email", m.to_email, out.to)) return core::Err{*e};
  if (!m.reply_to.empty())
    if (auto e = take("reply_to", m.reply_to, out.reply_to)) return core::Err{*e};
  out.id_domain = out.from.substr(out.from.rfind('@') + 1);
  if (!m.message_id_domain.empty()) {
    auto d = core::normalize_domain(m.message_id_domain);
    if (!d) return core::Err{"message_id_domain: " + d.error()};
    out.id_domain = std::move(*d);
  }
  return out;
}

// The one address of a raw message's From field ("Name <a@b>" or "a@b", unfolded), or nullopt
// when the field names none or several: a list, a group, or more than one angle address.
std::optional<std::string> single_from_address(std::string_view value) {
  auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  };
  value = trim(value);
  const size_t open = value.find('<');
  if (open == std::string_view::npos) {
    if (value.empty() || value.find_first_of(",;:<>()\"") != std::string_view::npos) return std::nullopt;
    return std::string(value);
  }
  // A comma or semicolon outside a quoted display name separates addresses or ends a group.
  bool quoted = false;
  for (char c : value.substr(0, open)) {
    if (c == '"') quoted = !quoted;
    else if (!quoted && (c == ',' || c == ';')) return std::nullopt;
  }
  const size_t close = value.find('>', open);
  if (close == std::string_view::npos || value.find('<', open + 1) != std::string_view::npos ||
      value.find('>', close + 1) != std::string_view::npos || !trim(value.substr(close + 1)).empty())
    return std::nullopt;
  return std::string(value.substr(open + 1, close - open - 1));
}

// A raw message's From, when it has one, must be the sending mailbox's address: the account
// sends as its mailbox and as nothing else (DKIM signs for the mailbox's domain).
std::optional<std::string> foreign_from(std::string_view value, const std::string& mailbox) {
  const std::string why = "raw: From: must be the sending mailbox's address <" + mailbox + "> and only that";
  auto one = single_from_address(value);
  if (!one) return why;
  auto a = core::parse_address(*one);
  if (!a || a->str() != mailbox) return why;
  return std::nullopt;
}

// A producer-built message: we add only what RFC 5322 and the unsubscribe rules require and
// leave everything else (bodies, MIME structure) byte for byte as given, bar line endings.
core::Result<std::string, std::string> compose_raw(const MessageSpec& m, const Addresses& addr, std::time_t now) {
  auto err = [](std::string why) { return core::Err{"raw: " + why}; };
  std::string raw = normalize_crlf(m.raw);
  if (raw.front() == ' ' || raw.front() == '\t') return err("the header starts with a continuation line");
  size_t split = raw.find("\r\n\r\n");
  std::string_view head = std::string_view(raw).substr(0, split == std::string::npos ? raw.size() : split + 2);
  bool have_from = false, have_date = false, have_id = false, have_mime = false, have_ctype = false,
       have_lu = false;
  size_t pos = 0;
  while (pos < head.size()) {
    size_t eol = head.find("\r\n", pos);
    std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.empty() || line.front() == ' ' || line.front() == '\t') continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return err("line \"" + std::string(line.substr(0, 40)) + "\" is not a header field");
    std::string_view name = line.substr(0, colon);
    while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
    if (core::iequals(name, "from")) {
      have_from = true;
      std::string value(line.substr(colon + 1));
      for (size_t next = pos; next < head.size() && (head[next] == ' ' || head[next] == '\t');) {
        const size_t end = std::min(head.find("\r\n", next), head.size());
        value += head.substr(next, end - next);
        next = end + 2;
      }
      if (auto e = foreign_from(value, addr.from)) return core::Err{*e};
    }
    have_date |= core::iequals(name, "date");
    have_id |= core::iequals(name, "message-id");
    have_mime |= core::iequals(name, "mime-version");
    have_ctype |= core::iequals(name, "content-type");
    have_lu |= core::iequals(name, "list-unsubscribe");
  }
  std::string add;
  if (!have_date) add += "Date: " + rfc5322_date(now) + "\r\n";
  if (!have_from) {
    auto from = mailbox_header("From", "from_name", m.from_name, addr.from);
    if (!from) return core::Err{from.error()};
    add += *from;
  }
  if (!have_id) add += "Message-ID: <" + random_hex(16) + "@" + addr.id_domain + ">\r\n";
  if (have_ctype && !have_mime) add += "MIME-Version: 1.0\r\n";
  if (!have_lu) {
    auto lu = unsubscribe_headers(m);
    if (!lu) return core::Err{lu.error()};
    add += *lu;
  }
  std::string out = add + raw;
  if (split == std::string::npos) out += "\r\n";
  if (auto v = validate_message(out, addr.utf8); !v) return err(v.error());
  return out;
}

}  // namespace

core::Result<std::string, std::string> header_field(std::string_view name, std::string_view value,
                                                    std::string_view field) {
  if (auto r = check_text(field, value); !r) return core::Err{r.error()};
  if (core::is_ascii(value)) return folded_header(name, value, field);
  return std::string(name) + ": " + encode_words(value) + "\r\n";
}

std::string base64_lines(std::string_view bytes) {
  std::string out;
  append_base64_lines(out, bytes, nullptr);
  return out;
}

core::Result<core::Ok, std::string> validate_message(std::string_view msg, bool utf8_headers) {
  auto err = [](std::string why) { return core::Err{std::move(why)}; };
  // The first bare CR or LF and the first NUL, each found by memchr; whichever comes first is
  // the one named.
  const void* z = std::memchr(msg.data(), '\0', msg.size());
  const size_t nul = z ? static_cast<size_t>(static_cast<const char*>(z) - msg.data()) : msg.size();
  // The same walk notes the first line over 998 octets: past the header block only line lengths
  // are checked, so the body is not walked a second time.
  size_t lines = 0, first_long = 0;
  LineWalker walk(msg);
  for (Line l; walk.next(l) && l.end < nul;) {
    if (l.ending == LineEnd::Lf) return err("bare LF at offset " + std::to_string(l.end));
    if (l.ending == LineEnd::Cr) return err("bare CR at offset " + std::to_string(l.end));
    ++lines;
    if (first_long == 0 && l.size() > kMaxLine) first_long = lines;
  }
  if (nul < msg.size()) return err("NUL byte at offset " + std::to_string(nul));
  if (!msg.empty() && msg.substr(msg.size() - std::min<size_t>(2, msg.size())) != "\r\n")
    return err("does not end with CRLF");
  struct Count { std::string_view name; int n; };
  Count counts[] = {{"from", 0},        {"date", 0},         {"to", 0},          {"cc", 0},
                    {"bcc", 0},         {"subject", 0},      {"message-id", 0},  {"reply-to", 0},
                    {"sender", 0},      {"in-reply-to", 0},  {"references", 0},  {"mime-version", 0},
                    {"content-type", 0}, {"content-transfer-encoding", 0}, {"list-unsubscribe", 0},
                    {"list-unsubscribe-post", 0}};
  bool first = true;
  size_t pos = 0, line_no = 0;
  while (pos < msg.size()) {
    size_t eol = msg.find("\r\n", pos);
    std::string_view line = msg.substr(pos, eol - pos);
    pos = eol + 2;
    ++line_no;
    if (line.size() > kMaxLine) return err("line " + std::to_string(line_no) + " is longer than 998 octets");
    if (line.empty()) break;  // the end of the header block
    const bool text_ok = core::is_ascii(line) || (utf8_headers && core::is_valid_utf8(line));
    if (!text_ok || has_control(line)) return err("header line " + std::to_string(line_no) + " has non-ASCII or control characters");
    if (line.front() == ' ' || line.front() == '\t') {
      if (first) return err("the header starts with a continuation line");
      if (line.find_first_not_of(" \t") == std::string_view::npos)
        return err("header line " + std::to_string(line_no) + " is only white space");
      continue;
    }
    first = false;
    size_t colon = line.find(':');
    std::string_view name = line.substr(0, colon);
    if (colon == std::string_view::npos || name.empty() ||
        !std::all_of(name.begin(), name.end(), [](char c) { return c >= 33 && c <= 126; }))
      return err("header line " + std::to_string(line_no) + " is not a \"Name: value\" field");
    for (auto& c : counts)
      if (core::iequals(name, c.name)) ++c.n;
  }
  if (first_long != 0) return err("line " + std::to_string(first_long) + " is longer than 998 octets");
  for (const auto& c : counts) {
    if (c.n > 1) return err("header field " + std::string(c.name) + " appears " + std::to_string(c.n) + " times");
    if ((c.name == "from" || c.name == "date") && c.n == 0) return err("header field " + std::string(c.name) + " is missing");
  }
  return core::Ok{};
}

core::Result<std::string, std::string> compose(const MessageSpec& m, std::time_t now, ComposeStats* stats) {
  auto addr = check_addresses(m);
  if (!addr) return core::Err{addr.error()};
  if (auto r = check_unsubscribe(m); !r) return core::Err{r.error()};
  if (!m.raw.empty()) return compose_raw(m, *addr, now);
  if (auto r = check_text("subject", m.subject); !r) return core::Err{r.error()};
  if (!core::is_valid_utf8(m.text)) return core::Err{std::string("text: not valid UTF-8")};
  if (!core::is_valid_utf8(m.html)) return core::Err{std::string("html: not valid UTF-8")};
  if (stats) stats->bytes_examined += m.text.size() + m.html.size();

  std::string out;
  out += "Date: " + rfc5322_date(now) + "\r\n";
  auto from = mailbox_header("From", "from_name", m.from_name, addr->from);
  if (!from) return core::Err{from.error()};
  out += *from;
  auto to = mailbox_header("To", "to_name", m.to_name, addr->to);
  if (!to) return core::Err{to.error()};
  out += *to;
  if (!addr->reply_to.empty()) out += "Reply-To: " + addr->reply_to + "\r\n";
  auto subject = header_field("Subject", m.subject, "subject");
  if (!subject) return core::Err{subject.error()};
  out += *subject;
  out += "Message-ID: <" + random_hex(16) + "@" + addr->id_domain + ">\r\n";

  bool campaign = !m.campaign.empty();
  for (const auto& [name, value] : m.headers) {
    std::string field = "header \"" + name + "\"";
    bool name_ok = !name.empty() && name.size() <= 76 && std::all_of(name.begin(), name.end(), [](char c) {
      return c >= 33 && c <= 126 && c != ':';  // RFC 5322 ftext
    });
    if (!name_ok) return core::Err{field + ": invalid name"};
    if (is_reserved_extra(name, campaign)) return core::Err{field + ": set by deliverd, may not be given"};
    auto h = header_field(name, value, field);
    if (!h) return core::Err{h.error()};
    out += *h;
  }
  auto lu = unsubscribe_headers(m);
  if (!lu) return core::Err{lu.error()};
  out += *lu;

  std::string text_buf, html_buf;
  std::string_view text = m.text, html = m.html;
  if (campaign) {
    if (!text.empty() || html.empty()) {
      text_buf = m.text + text_footer(m, m.text);
      text = text_buf;
    }
    if (!html.empty()) {
      html_buf = with_html_footer(m, m.html);
      html = html_buf;
    }
  }
  // The header block is complete before any body is written, so it is validated alone: the
  // encoders' output is valid by construction (CRLF lines of at most 998 octets, no NUL).
  auto check_head = [&]() -> core::Result<core::Ok, std::string> {
    if (auto v = validate_message(out, addr->utf8); !v) return core::Err{"headers: " + v.error()};
    return core::Ok{};
  };
  out += "MIME-Version: 1.0\r\n";
  if (html.empty() || text.empty()) {
    const bool plain = html.empty();
    const std::string_view body = plain ? text : html;
    const BodyScan scan = scan_body(body, stats);
    const Cte cte = choose_encoding(scan);
    if (stats) stats->body_bytes += body.size();
    out += part_headers(plain ? "text/plain" : "text/html", cte);
    out += "\r\n";
    if (auto v = check_head(); !v) return core::Err{v.error()};
    out.reserve(out.size() + scan.crlf_size + scan.crlf_size / 2);
    append_encoded(out, body, scan, cte, stats);
    return out;
  }
  // "=_" cannot occur in quoted-printable or base64 output, so the boundary never collides.
  const std::string boundary = "=_deliverd_" + random_hex(12);
  const std::string delimiter = "--" + boundary;
  out += "Content-Type: multipart/alternative; boundary=\"" + boundary + "\"\r\n\r\n";
  if (auto v = check_head(); !v) return core::Err{v.error()};
  for (auto [type, content] : {std::pair<std::string_view, std::string_view>{"text/plain", text},
                               std::pair<std::string_view, std::string_view>{"text/html", html}}) {
    const BodyScan scan = scan_body(content, stats);
    Cte cte = choose_encoding(scan);
    if (stats) stats->body_bytes += content.size();
    out += delimiter;
    out += "\r\n";
    const size_t part_at = out.size();
    out += part_headers(type, cte);
    out += "\r\n";
    const size_t body_at = out.size();
    append_encoded(out, content, scan, cte, stats);
    // A 7bit part could hold a line equal to the boundary; encode it then.
    if (cte == Cte::SevenBit) {
      if (stats) stats->bytes_examined += out.size() - body_at;
      if (std::string_view(out).substr(body_at).find(delimiter) != std::string_view::npos) {
        out.resize(part_at);
        out += part_headers(type, Cte::QuotedPrintable);
        out += "\r\n";
        append_quoted_printable(out, content, stats);
      }
    }
  }
  out += delimiter;
  out += "--\r\n";
  return out;
}

std::string dot_stuff(std::string_view message, ComposeStats* stats) {
  std::string out;
  out.reserve(message.size() + message.size() / 64 + 8);
  // `run` is where the bytes not yet copied start: a clean CRLF message is one append.
  size_t run = 0;
  LineWalker walk(message);
  for (Line l; walk.next(l);) {
    if (l.size() != 0 && message[l.begin] == '.') {
      out.append(message.data() + run, l.begin - run);
      out += '.';
      run = l.begin;
    }
    if (l.ending != LineEnd::Crlf) {
      out.append(message.data() + run, l.end - run);
      out += "\r\n";
      run = l.next;
    }
  }
  out.append(message.data() + run, message.size() - run);
  out += ".\r\n";
  if (stats) stats->bytes_examined += 3 * message.size();  // two memchrs and the copy
  return out;
}

std::string message_id_of(std::string_view message) {
  size_t pos = 0;
  while (pos < message.size()) {
    size_t eol = message.find('\n', pos);
    if (eol == std::string_view::npos) eol = message.size();
    std::string_view line = message.substr(pos, eol - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // the end of the header block
    pos = eol + 1;
    if (line.size() < 11 || !core::iequals(line.substr(0, 11), "message-id:")) continue;
    std::string value(line.substr(11));
    // A folded value continues on lines that start with white space.
    while (pos < message.size() && (message[pos] == ' ' || message[pos] == '\t')) {
      size_t next = message.find('\n', pos);
      if (next == std::string_view::npos) next = message.size();
      value.append(message.substr(pos, next - pos));
      pos = next + 1;
    }
    const size_t open = value.find('<'), close = value.find('>', open == std::string::npos ? 0 : open);
    if (open == std::string::npos || close == std::string::npos) return "";
    std::string id = value.substr(open + 1, close - open - 1);
    std::erase_if(id, [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; });
    return id;
  }
  return "";
}

}  // namespace deliverd::smtp
