#pragma once
// The MTA-STS policy body (RFC 8461 3.2) and the MX match of 4.1: which MX hosts of a domain may
// receive its mail, and whether a sender must refuse the others (enforce) or only report (testing).
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/names.h"
#include "core/result.h"

namespace deliverd::tlspolicy {

enum class StsMode : uint8_t { Enforce, Testing, None };
inline constexpr core::Named<StsMode> kStsModeNames[] = {
    {StsMode::Enforce, "enforce"}, {StsMode::Testing, "testing"}, {StsMode::None, "none"}};
static_assert(core::in_order(kStsModeNames));
inline constexpr size_t kStsModeCount = std::size(kStsModeNames);
constexpr std::string_view to_string(StsMode m) { return core::name_in(kStsModeNames, m); }
constexpr std::optional<StsMode> sts_mode_from_name(std::string_view n) { return core::value_in(kStsModeNames, n); }

inline constexpr size_t kMaxPolicyBytes = 64 * 1024;
inline constexpr int64_t kMaxStsMaxAge = 31557600;  // one year (RFC 8461 3.2)

struct MtaStsPolicy {
  StsMode mode = StsMode::None;
  int64_t max_age_s = 0;
  std::vector<std::string> mx;  // lower case, no trailing dot; "*.example.com" or "mx.example.com"
  bool operator==(const MtaStsPolicy&) const = default;
};

// "key: value" lines ending in CRLF or LF. version STSv1, mode and max_age are required, mx too
// unless the mode is none; unknown keys are ignored. The error names the line or key at fault.
core::Result<MtaStsPolicy, std::string> parse_mta_sts_policy(std::string_view body);

// Whether an MX host name is one the policy allows (RFC 8461 4.1): compared without case and
// without a trailing dot; "*.example.com" stands for exactly one more label on the left.
bool matches_mx(const MtaStsPolicy& policy, std::string_view host);

}  // namespace deliverd::tlspolicy
