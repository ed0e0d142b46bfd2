#pragma once
// ASCII case folding and case-insensitive comparison, for protocol tokens: SMTP keywords, HTTP
// and MIME header names, DNS names, reply texts. Only 'A'-'Z' and 'a'-'z' fold; every other byte
// (UTF-8 included) compares as itself, so no locale can change what a keyword means (the Turkish
// dotless i is the classic trap of std::tolower).
#include <string>
#include <string_view>

namespace deliverd::core {

constexpr char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
constexpr char ascii_upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }
constexpr bool ascii_is_digit(char c) { return c >= '0' && c <= '9'; }
constexpr bool ascii_is_alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
constexpr bool ascii_is_alnum(char c) { return ascii_is_alpha(c) || ascii_is_digit(c); }

std::string ascii_lowercase(std::string_view s);
std::string ascii_uppercase(std::string_view s);

bool iequals(std::string_view a, std::string_view b);
bool istarts_with(std::string_view s, std::string_view prefix);
bool icontains(std::string_view haystack, std::string_view needle);  // an empty needle is contained
// Position of the last case-insensitive occurrence of needle, or npos.
size_t irfind(std::string_view haystack, std::string_view needle);

}  // namespace deliverd::core
