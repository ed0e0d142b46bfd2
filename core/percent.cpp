#include "core/percent.h"

#include "core/ascii.h"
#include "core/hex.h"

namespace deliverd::core {

std::optional<std::string> percent_decode(std::string_view s, PercentDecoding how) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+' && how.plus_is_space) {
      out += ' ';
    } else if (s[i] != '%') {
      out += s[i];
    } else {
      auto byte = from_hex(s.substr(i + 1, 2));
      if (!byte || byte->size() != 1) return std::nullopt;
      if ((*byte)[0] == '\0' && !how.allow_nul) return std::nullopt;
      out += (*byte)[0];
      i += 2;
    }
  }
  return out;
}

std::string percent_encode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (ascii_is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += ascii_uppercase(to_hex(std::string_view(&c, 1)));
    }
  }
  return out;
}

}  // namespace deliverd::core
