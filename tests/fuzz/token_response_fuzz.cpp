// parse_token_answer on hostile bodies: a grant or a named error, never a crash; whatever is
// accepted is safe to put into a SASL exchange.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "oauth/token_response.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  // The first byte picks the HTTP status, so error answers are explored as well as grants.
  static constexpr int kStatuses[] = {200, 400, 401, 429, 503};
  int status = size ? kStatuses[data[0] % 5] : 200;
  if (size) input.remove_prefix(1);
  auto r = deliverd::oauth::parse_token_answer(status, input);
  auto printable = [](std::string_view s) {
    for (char c : s)
      if (c <= 0x20 || c >= 0x7f) return false;
    return true;
  };
  if (r.ok()) {
    if (status != 200 || r->access_token.empty() || !printable(r->access_token) || !printable(r->refresh_token) ||
        r->expires_in_s < 1 || r->access_token.size() > deliverd::oauth::kMaxTokenBytes)
      std::abort();
  } else {
    if (r.error().code.empty()) std::abort();  // every error is named
    if (r.error().description.find_first_of("\r\n") != std::string::npos) std::abort();
  }
  return 0;
}
