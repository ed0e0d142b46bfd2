#include "smtp/ehlo.h"

#include <algorithm>

#include "core/ascii.h"

namespace deliverd::smtp {
namespace {

// ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
bool valid_keyword(std::string_view k) {
  if (k.empty() || !core::ascii_is_alnum(k[0])) return false;
  return std::all_of(k.begin(), k.end(), [](char c) { return core::ascii_is_alnum(c) || c == '-'; });
}

std::vector<std::string_view> split_words(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    size_t start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t') ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

bool parse_u64(std::string_view s, uint64_t& out) {
  if (s.empty() || s.size() > 19) return false;  // 19 digits always fit in 64 bits
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  out = v;
  return true;
}

void add_mechanisms(EhloCapabilities& caps, const std::vector<std::string_view>& words, size_t from) {
  for (size_t i = from; i < words.size() && caps.auth_mechanisms.size() < kMaxEhloKeywords; ++i) {
    std::string m = core::ascii_uppercase(words[i]);
    if (std::find(caps.auth_mechanisms.begin(), caps.auth_mechanisms.end(), m) == caps.auth_mechanisms.end())
      caps.auth_mechanisms.push_back(std::move(m));
  }
}

}  // namespace

bool EhloCapabilities::has(std::string_view keyword) const {
  return std::any_of(keywords.begin(), keywords.end(), [&](const std::string& k) { return core::iequals(k, keyword); });
}

bool EhloCapabilities::supports_auth(std::string_view mechanism) const {
  return std::any_of(auth_mechanisms.begin(), auth_mechanisms.end(),
                     [&](const std::string& m) { return core::iequals(m, mechanism); });
}

EhloCapabilities parse_ehlo(const core::Reply& reply) {
  EhloCapabilities caps;
  std::string_view text = reply.text;
  size_t nl = text.find('\n');
  caps.greeting.assign(text.substr(0, nl));
  if (nl == std::string_view::npos) return caps;
  text.remove_prefix(nl + 1);

  while (!text.empty()) {
    nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);

    auto words = split_words(line);
    if (words.empty()) continue;
    std::string_view kw = words[0];
    // Old servers announce "AUTH=LOGIN PLAIN" for clients that predate RFC 2554.
    bool legacy_auth = kw.size() > 5 && core::istarts_with(kw, "AUTH=");
    if (legacy_auth) {
      std::vector<std::string_view> mechs{kw.substr(5)};
      mechs.insert(mechs.end(), words.begin() + 1, words.end());
      add_mechanisms(caps, mechs, 0);
      continue;
    }
    if (!valid_keyword(kw)) continue;
    std::string key = core::ascii_uppercase(kw);
    if (caps.keywords.size() < kMaxEhloKeywords && !caps.has(key)) caps.keywords.push_back(key);

    if (key == "PIPELINING") caps.pipelining = true;
    else if (key == "8BITMIME") caps.eightbitmime = true;
    else if (key == "SMTPUTF8") caps.smtputf8 = true;
    else if (key == "STARTTLS") caps.starttls = true;
    else if (key == "ENHANCEDSTATUSCODES") caps.enhanced_status_codes = true;
    else if (key == "CHUNKING") caps.chunking = true;
    else if (key == "DSN") caps.dsn = true;
    else if (key == "AUTH") add_mechanisms(caps, words, 1);
    else if (key == "SIZE") {
      caps.size_advertised = true;
      uint64_t limit = 0;
      if (words.size() > 1 && parse_u64(words[1], limit)) caps.size_limit = limit;
    }
  }
  return caps;
}

}  // namespace deliverd::smtp
