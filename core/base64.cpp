#include "core/base64.h"

#include <openssl/evp.h>

namespace deliverd::core {
namespace {

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::string evp_encode(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');  // EVP_EncodeBlock writes a NUL too
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// `text` is padded standard base64; `name` is what the errors call it.
Result<std::string, std::string> strict_decode(std::string_view text, std::string_view name) {
  auto err = [&](std::string why) { return Err{std::string(name) + ": " + why}; };
  if (text.size() % 4 != 0) return err("length is not a multiple of 4");
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad = text[text.size() - 2] == '=' ? 2 : 1;
  for (size_t i = 0; i < text.size() - pad; ++i)
    if (sextet(text[i]) < 0)
      return err(text[i] == '=' ? "padding before the end at offset " + std::to_string(i)
                                : "invalid character at offset " + std::to_string(i));
  if (pad > 0) {
    // The character before the padding carries 4 (one '=') or 2 (two) bits that must be zero.
    const int last = sextet(text[text.size() - pad - 1]);
    if ((last & (pad == 2 ? 0x0f : 0x03)) != 0) return err("non-canonical encoding (unused bits are set)");
  }
  if (text.empty()) return std::string();
  std::string out(text.size() / 4 * 3, '\0');
  // Validated above, so EVP_DecodeBlock's leniencies (white space, trimming) never apply; it
  // counts the padding as zero bytes, which are dropped here.
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0 || static_cast<size_t>(n) != out.size()) return err("cannot be decoded");
  out.resize(out.size() - pad);
  return out;
}

}  // namespace

std::string base64_encode(std::string_view bytes) { return evp_encode(bytes); }

Result<std::string, std::string> base64_decode(std::string_view text) { return strict_decode(text, "base64"); }

std::string base64url_encode(std::string_view bytes) {
  std::string out = evp_encode(bytes);
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

Result<std::string, std::string> base64url_decode(std::string_view text) {
  if (text.size() % 4 == 1) return Err{std::string("base64url: length cannot be an encoding")};
  std::string std_text(text);
  for (size_t i = 0; i < std_text.size(); ++i) {
    char& c = std_text[i];
    // The standard alphabet's "+", "/" and "=" are foreign here.
    if (c == '+' || c == '/' || c == '=') return Err{"base64url: invalid character at offset " + std::to_string(i)};
    c = c == '-' ? '+' : c == '_' ? '/' : c;
  }
  std_text.append((4 - std_text.size() % 4) % 4, '=');
  return strict_decode(std_text, "base64url");
}

}  // namespace deliverd::core
