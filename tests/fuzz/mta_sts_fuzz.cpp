// The MTA-STS TXT record and policy parsers on hostile input: a value or a named error, never a
// crash; whatever is accepted obeys the RFC 8461 bounds the rest of deliverd relies on.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tlspolicy/mta_sts_policy.h"
#include "tlspolicy/mta_sts_record.h"

using namespace deliverd::tlspolicy;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  // As a policy body.
  auto p = parse_mta_sts_policy(input);
  if (p.ok()) {
    if (p->max_age_s < 0 || p->max_age_s > kMaxStsMaxAge) std::abort();
    if (p->mode != StsMode::None && p->mx.empty()) std::abort();
    for (const auto& mx : p->mx) {
      if (mx.empty() || mx.size() > 255 || mx.back() == '.') std::abort();
      for (char c : mx)
        if (c >= 'A' && c <= 'Z') std::abort();
      matches_mx(*p, mx);
    }
    matches_mx(*p, input.substr(0, 300));
  } else if (p.error().empty()) {
    std::abort();
  }
  // As TXT answers, one per line.
  std::vector<std::string> answers;
  size_t at = 0;
  while (at <= input.size() && answers.size() < 64) {
    size_t nl = input.find('\n', at);
    answers.emplace_back(input.substr(at, nl == std::string_view::npos ? std::string_view::npos : nl - at));
    if (nl == std::string_view::npos) break;
    at = nl + 1;
  }
  auto r = parse_mta_sts_record(answers);
  if (r.ok()) {
    if (r.value()) {
      const std::string& id = r.value()->id;
      if (id.empty() || id.size() > kMaxStsIdLength) std::abort();
      for (char c : id)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))) std::abort();
    }
  } else if (r.error().empty()) {
    std::abort();
  }
  return 0;
}
