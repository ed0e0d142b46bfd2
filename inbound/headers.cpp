#include "inbound/headers.h"

#include "core/ascii.h"
#include "core/base64.h"
#include "core/hex.h"
#include "core/utf8.h"

namespace deliverd::inbound {

namespace {

bool is_wsp(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (is_wsp(s.front()) || s.front() == '\r' || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (is_wsp(s.back()) || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

// A field name is printable ASCII without ':' or space (RFC 5322 2.2).
bool valid_name(std::string_view n) {
  if (n.empty() || n.size() > 256) return false;
  for (char c : n) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 32 || u >= 127 || c == ':') return false;
  }
  return true;
}

std::string latin1_to_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() * 2);
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x80) {
      out += c;
    } else {
      out += static_cast<char>(0xC0 | (u >> 6));
      out += static_cast<char>(0x80 | (u & 0x3F));
    }
  }
  return out;
}

// One encoded word's text, decoded; false when it does not decode.
bool decode_word_text(char encoding, std::string_view text, std::string& out) {
  if (encoding == 'B' || encoding == 'b') {
    // Some senders drop the padding; put it back so the strict decoder still takes it.
    std::string padded(text);
    while (padded.size() % 4 != 0) padded += '=';
    auto d = core::base64_decode(padded);
    if (!d) return false;
    out = std::move(*d);
    return true;
  }
  if (encoding == 'Q' || encoding == 'q') {
    auto d = decode_quoted_printable(text, true);
    if (!d) return false;
    out = std::move(*d);
    return true;
  }
  return false;
}

// Parses "=?charset?e?text?=" at s[i]; on success sets end (one past "?=") and the UTF-8 text.
bool encoded_word_at(std::string_view s, size_t i, size_t& end, std::string& utf8) {
  if (s.compare(i, 2, "=?") != 0) return false;
  size_t q1 = s.find('?', i + 2);
  if (q1 == std::string_view::npos || q1 + 2 >= s.size() || s[q1 + 2] != '?') return false;
  size_t close = s.find("?=", q1 + 3);
  if (close == std::string_view::npos || close - i > 200) return false;  // 75 per RFC; be lenient
  std::string_view charset = s.substr(i + 2, q1 - i - 2);
  if (size_t star = charset.find('*'); star != std::string_view::npos) charset = charset.substr(0, star);  // RFC 2231 language
  std::string bytes;
  if (!decode_word_text(s[q1 + 1], s.substr(q1 + 3, close - q1 - 3), bytes)) return false;
  if (core::iequals(charset, "utf-8") || core::iequals(charset, "us-ascii")) {
    utf8 = std::move(bytes);
  } else if (core::iequals(charset, "iso-8859-1") || core::iequals(charset, "latin1") ||
             core::iequals(charset, "windows-1252") || core::iequals(charset, "iso-8859-15")) {
    utf8 = latin1_to_utf8(bytes);
  } else {
    return false;
  }
  end = close + 2;
  return true;
}

}  // namespace

std::optional<std::string> decode_quoted_printable(std::string_view text, bool encoded_word) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '_' && encoded_word) {
      out += ' ';
    } else if (c == '=') {
      if (!encoded_word) {  // a soft line break: "=" CRLF, "=" LF, "=" trailing white space
        size_t j = i + 1;
        while (j < text.size() && is_wsp(text[j])) ++j;
        if (j == text.size() || text[j] == '\n' || (text[j] == '\r' && j + 1 < text.size() && text[j + 1] == '\n')) {
          i = j == text.size() ? j : (text[j] == '\r' ? j + 1 : j);
          continue;
        }
      }
      auto byte = i + 2 < text.size() ? core::from_hex(text.substr(i + 1, 2)) : std::nullopt;
      if (!byte) {
        if (encoded_word) return std::nullopt;
        out += c;  // RFC 2045 6.7 note (2): a body keeps a stray '=' as it is
        continue;
      }
      out += *byte;
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

const std::string* Headers::get(std::string_view name) const {
  for (const auto& f : fields)
    if (core::iequals(f.name, name)) return &f.value;
  return nullptr;
}

std::string_view Headers::value(std::string_view name) const {
  const std::string* v = get(name);
  return v ? std::string_view(*v) : std::string_view();
}

Headers parse_headers(std::string_view text, size_t* body_offset, const HeaderLimits& limits) {
  Headers h;
  size_t pos = 0;
  const size_t n = text.size();
  bool have_current = false;
  auto finish_field = [&] {
    if (have_current) {
      auto& v = h.fields.back().value;
      v = std::string(trim(v));
    }
    have_current = false;
  };
  while (pos < n) {
    if (pos >= limits.max_bytes) {
      h.truncated = true;
      break;
    }
    size_t eol = text.find('\n', pos);
    size_t next = eol == std::string_view::npos ? n : eol + 1;
    std::string_view line = text.substr(pos, (eol == std::string_view::npos ? n : eol) - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) {  // end of the header block
      pos = next;
      finish_field();
      if (body_offset) *body_offset = pos;
      return h;
    }
    if (is_wsp(line.front())) {
      if (have_current) {
        auto& v = h.fields.back().value;
        if (v.size() + line.size() <= limits.max_bytes) v += line;  // unfolding keeps the white space
      }
    } else {
      finish_field();
      size_t colon = line.find(':');
      std::string_view name = colon == std::string_view::npos ? std::string_view() : trim(line.substr(0, colon));
      if (valid_name(name)) {
        if (h.fields.size() >= limits.max_fields) {
          h.truncated = true;
          break;
        }
        h.fields.push_back({std::string(name), std::string(line.substr(colon + 1))});
        have_current = true;
      }
      // a line that cannot start a field (mbox "From " line, garbage) is skipped
    }
    pos = next;
  }
  finish_field();
  if (body_offset) *body_offset = h.truncated ? n : pos;
  return h;
}

std::string decode_words(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  size_t i = 0;
  size_t pending_ws_start = std::string_view::npos;  // white space after an encoded word
  bool last_was_word = false;
  while (i < value.size()) {
    size_t end = 0;
    std::string word;
    if (value[i] == '=' && encoded_word_at(value, i, end, word)) {
      if (!(last_was_word && pending_ws_start != std::string_view::npos)) {
        if (pending_ws_start != std::string_view::npos) out += value.substr(pending_ws_start, i - pending_ws_start);
      }
      pending_ws_start = std::string_view::npos;
      out += word;
      i = end;
      last_was_word = true;
      continue;
    }
    if ((is_wsp(value[i]) || value[i] == '\r' || value[i] == '\n') && last_was_word) {
      if (pending_ws_start == std::string_view::npos) pending_ws_start = i;
      ++i;
      continue;
    }
    if (pending_ws_start != std::string_view::npos) {
      out += value.substr(pending_ws_start, i - pending_ws_start);
      pending_ws_start = std::string_view::npos;
    }
    last_was_word = false;
    out += value[i];
    ++i;
  }
  if (pending_ws_start != std::string_view::npos) out += value.substr(pending_ws_start);
  return core::is_valid_utf8(out) && out.find('\0') == std::string::npos ? out : core::escape_utf8_lossless(out);
}

std::vector<std::string> message_ids(std::string_view value, size_t max) {
  std::vector<std::string> ids;
  size_t i = 0;
  while (i < value.size() && ids.size() < max) {
    char c = value[i];
    if (c == '(') {  // comment, possibly nested
      int depth = 0;
      for (; i < value.size(); ++i) {
        if (value[i] == '\\') {
          ++i;
          continue;
        }
        if (value[i] == '(') ++depth;
        if (value[i] == ')' && --depth == 0) break;
      }
      if (i < value.size()) ++i;
      continue;
    }
    if (c == '<') {
      size_t close = value.find('>', i + 1);
      if (close == std::string_view::npos) break;
      std::string_view id = trim(value.substr(i + 1, close - i - 1));
      if (!id.empty() && id.size() <= 998 && id.find('<') == std::string_view::npos) ids.emplace_back(id);
      i = close + 1;
      continue;
    }
    ++i;
  }
  if (ids.empty()) {  // some MTAs drop the brackets: a single bare id
    std::string_view bare = trim(value);
    if (!bare.empty() && bare.size() <= 998 && bare.find('@') != std::string_view::npos &&
        bare.find_first_of(" \t<>()") == std::string_view::npos)
      ids.emplace_back(bare);
  }
  return ids;
}

std::string address_in(std::string_view value) {
  value = trim(value);
  size_t lt = value.rfind('<');
  if (lt != std::string_view::npos) {
    size_t gt = value.find('>', lt);
    std::string_view inside = value.substr(lt + 1, gt == std::string_view::npos ? std::string_view::npos : gt - lt - 1);
    inside = trim(inside);
    return inside.find('@') == std::string_view::npos ? std::string() : std::string(inside);
  }
  // a bare address, possibly followed by a comment: "bob@x (Bob)"
  size_t at = value.find('@');
  if (at == std::string_view::npos) return {};
  size_t start = value.find_last_of(" \t\"(", at);
  start = start == std::string_view::npos ? 0 : start + 1;
  size_t end = value.find_first_of(" \t\"();,", at);
  std::string_view a = value.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
  return std::string(a);
}

}  // namespace deliverd::inbound
