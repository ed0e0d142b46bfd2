// Fuzz target: the SMTP reply parser and the EHLO capability parser, fed hostile server bytes
// split into chunks at input-chosen points, with small limits so the bounds are reached often.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "smtp/ehlo.h"
#include "smtp/reply_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // First byte: chunk size, so the same bytes are also tried split at many places.
  size_t chunk = 1 + data[0] % 64;
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  deliverd::smtp::ReplyLimits limits{256, 2048};
  deliverd::smtp::ReplyParser parser(limits);
  for (size_t off = 0; off < in.size(); off += chunk) {
    parser.feed(in.substr(off, chunk));
    for (;;) {
      auto r = parser.next();
      if (!r || !r.value()) break;
      const auto& reply = *r.value();
      if (reply.code < 200 || reply.code > 599) std::abort();
      if (reply.text.size() > limits.max_reply) std::abort();
      if (reply.code / 100 == 2) (void)deliverd::smtp::parse_ehlo(reply);
    }
    // Bounded: one read plus at most one partial line is ever held.
    if (parser.buffered() > chunk + limits.max_line + 1) std::abort();
  }
  (void)deliverd::smtp::parse_ehlo(deliverd::core::Reply{250, "", std::string(in)});
  return 0;
}
