#include "core/ascii.h"

#include <algorithm>

namespace deliverd::core {
namespace {

bool same(char a, char b) { return ascii_lower(a) == ascii_lower(b); }

}  // namespace

std::string ascii_lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

std::string ascii_uppercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_upper(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), same);
}

bool istarts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

bool icontains(std::string_view haystack, std::string_view needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end(), same) != haystack.end();
}

size_t irfind(std::string_view haystack, std::string_view needle) {
  auto it = std::find_end(haystack.begin(), haystack.end(), needle.begin(), needle.end(), same);
  if (it == haystack.end() && !needle.empty()) return std::string_view::npos;
  return static_cast<size_t>(it - haystack.begin());
}

}  // namespace deliverd::core
