// NOTIFY payloads come from the database; a malformed one must be refused, never crash.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "policy/suppression_set.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view p(reinterpret_cast<const char*>(data), size);
  deliverd::policy::SuppressionSet set;
  deliverd::policy::SuppressionSet::Change c;
  if (deliverd::policy::SuppressionSet::parse_notification(p, c)) {
    set.apply(c);
    (void)set.contains_hash(c.account, c.sha256);
  }
  return 0;
}
