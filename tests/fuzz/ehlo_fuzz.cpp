// Fuzz target: the EHLO capability parser on arbitrary reply text, and the reply classifier on
// whatever reply the parser would hand it. Checks the bounds the session relies on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "smtp/classifier.h"
#include "smtp/ehlo.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  deliverd::core::Reply reply{250, "", text};
  auto caps = deliverd::smtp::parse_ehlo(reply);
  if (caps.keywords.size() > deliverd::smtp::kMaxEhloKeywords) std::abort();
  if (caps.auth_mechanisms.size() > deliverd::smtp::kMaxEhloKeywords) std::abort();
  if (caps.size_limit != 0 && !caps.size_advertised) std::abort();
  (void)caps.supports_auth(text);
  (void)caps.has(text);
  int code = size > 1 ? 400 + (data[0] % 200) : 550;
  std::string enhanced = size > 2 ? std::string(1, static_cast<char>('0' + code / 100)) + "." + text.substr(0, 3) : "";
  using deliverd::core::Phase;
  for (Phase phase : {Phase::Rcpt, Phase::Body, Phase::Auth, Phase::Mail, Phase::Ehlo}) {
    auto c = deliverd::smtp::classify({code, enhanced, text}, phase, size ? (data[size - 1] & 1) != 0 : false);
    if (c.rule.empty()) std::abort();
  }
  return 0;
}
