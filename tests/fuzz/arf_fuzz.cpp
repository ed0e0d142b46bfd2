// Fuzz target: the ARF feedback-report parser (RFC 5965).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "inbound/arf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto r = deliverd::inbound::parse_feedback_report(in);
  if (r && r->feedback_type.empty()) std::abort();
  if (!r && r.error().empty()) std::abort();
  return 0;
}
