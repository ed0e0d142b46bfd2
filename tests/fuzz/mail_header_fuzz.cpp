// Fuzz target: the mail header parser, RFC 2047 decoding, Message-ID and address extraction and
// the Content-Type parser, on hostile header blocks (folding, 8-bit bytes, broken words).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/utf8.h"
#include "inbound/headers.h"
#include "inbound/mime.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  deliverd::inbound::HeaderLimits limits;
  limits.max_fields = 64;
  limits.max_bytes = 8192;
  size_t body = 0;
  auto h = deliverd::inbound::parse_headers(in, &body, limits);
  if (body > in.size() || h.fields.size() > limits.max_fields) std::abort();
  for (const auto& f : h.fields) {
    if (f.value.size() > in.size()) std::abort();
    std::string text = deliverd::inbound::decode_words(f.value);
    if (!deliverd::core::is_valid_utf8(text) || text.find('\0') != std::string::npos) std::abort();
    if (deliverd::inbound::message_ids(f.value, 8).size() > 8) std::abort();
    (void)deliverd::inbound::address_in(f.value);
    auto ct = deliverd::inbound::parse_content_type(f.value);
    if (ct.type.empty() || ct.subtype.empty() || ct.params.size() > 32) std::abort();
  }
  (void)deliverd::inbound::decode_quoted_printable(in, true);
  (void)deliverd::inbound::decode_quoted_printable(in, false);
  return 0;
}
