// Fuzz target: the delivery-status parser (RFC 3464 / RFC 6533 bodies) and the status-code
// search used on free-text bounce notices.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "inbound/dsn.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto ds = deliverd::inbound::parse_delivery_status(in);
  if (ds) {
    if (ds->recipients.empty() || ds->recipients.size() > deliverd::inbound::kMaxDsnRecipients) std::abort();
    for (const auto& r : ds->recipients) {
      if (r.final_recipient.empty()) std::abort();
      if (!r.status.empty() && r.status[0] != '2' && r.status[0] != '4' && r.status[0] != '5') std::abort();
    }
  } else if (ds.error().empty()) {
    std::abort();
  }
  std::string s = deliverd::inbound::status_in(in);
  if (!s.empty() && (s.size() < 5 || s.size() > 9 || in.find(s) == std::string_view::npos)) std::abort();
  (void)deliverd::inbound::without_type(in);
  return 0;
}
