// Fuzz target: header encoding and folding in the composer. Hostile subjects, display names,
// extra header values and bodies must either be refused with an error or produce a message that
// passes validate_message (CRLF only, lines ≤ 998, well-formed fields), whose encoded words decode
// back to the input, and whose relaxed DKIM canonicalization does not trip over it.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "core/base64.h"
#include "core/utf8.h"
#include "smtp/composer.h"
#include "smtp/dkim.h"

namespace {

// Decodes "=?UTF-8?B?…?=" words joined by CRLF SP; aborts on anything else.
std::string decode_words(std::string_view s) {
  std::string out;
  while (!s.empty()) {
    if (s.substr(0, 10) != "=?UTF-8?B?") std::abort();
    size_t end = s.find("?=", 10);
    if (end == std::string_view::npos || end + 2 > 10 + 75) std::abort();  // RFC 2047 2: ≤ 75 chars
    // Strict decoding also proves each word is canonical base64.
    auto bytes = deliverd::core::base64_decode(s.substr(10, end - 10));
    if (!bytes) std::abort();
    out += *bytes;
    s.remove_prefix(end + 2);
    if (s.empty()) break;
    if (s.substr(0, 3) != "\r\n ") std::abort();
    s.remove_prefix(3);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  using namespace deliverd::smtp;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  uint8_t mode = data[0];

  // Fields separated by NUL so one input sets several of them.
  std::vector<std::string> f;
  size_t pos = 0;
  while (f.size() < 5) {
    size_t nul = in.find('\0', pos);
    f.emplace_back(in.substr(pos, nul == std::string_view::npos ? std::string_view::npos : nul - pos));
    if (nul == std::string_view::npos) break;
    pos = nul + 1;
  }
  f.resize(5);

  if (deliverd::core::is_valid_utf8(f[0]) && !f[0].empty()) {
    std::string words = encode_words(f[0]);
    if (decode_words(words) != f[0]) std::abort();
  }
  if (auto h = header_field("X-Fuzz", f[0], "x"); h) {
    std::string msg = "From: a@b.example\r\nDate: x\r\n" + *h + "\r\n";
    if (auto v = validate_message(msg); !v) std::abort();
  }

  MessageSpec m;
  m.from_email = "alice@acme.example";
  m.to_email = "bob@example.org";
  m.subject = f[0];
  m.from_name = f[1];
  m.to_name = mode & 1 ? f[1] : "";
  m.headers = {{"X-Fuzz", f[2]}};
  m.text = f[3];
  if (mode & 2) m.html = f[4];
  if (mode & 4) {
    m.campaign = "cmp";
    m.unsubscribe_url = "https://u.example/u/t";
    m.postal_address = f[4];
  }
  if (mode & 8) m.raw = f[3];
  auto msg = compose(m, 1700000000);
  if (!msg) return 0;
  if (auto v = validate_message(*msg); !v) std::abort();
  size_t split = msg->find("\r\n\r\n");
  if (split == std::string::npos) std::abort();
  (void)dkim_relaxed_body(std::string_view(*msg).substr(split + 4));
  std::string stuffed = dot_stuff(*msg);
  if (stuffed.size() < 5 || stuffed.compare(stuffed.size() - 5, 5, "\r\n.\r\n") != 0) std::abort();
  return 0;
}
