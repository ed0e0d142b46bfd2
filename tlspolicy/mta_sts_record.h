#pragma once
// The `_mta-sts.<domain>` TXT record (RFC 8461 3.1): it says that a domain publishes an MTA-STS
// policy and names its current version by `id`, so a sender knows when to fetch it again.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace deliverd::tlspolicy {

inline constexpr size_t kMaxStsIdLength = 32;

struct MtaStsRecord {
  std::string id;  // 1-32 letters and digits, compared as is
};

// The TXT answers of `_mta-sts.<domain>`, each already concatenated from its strings. Answers
// that do not start with "v=STSv1" are someone else's and are skipped. nullopt: no STS record (the
// domain has no policy). An error, whose text names what was wrong, when there is more than one
// STS record or the one there is malformed; RFC 8461 3.1 says to treat that as no policy too, but
// the caller reports it.
core::Result<std::optional<MtaStsRecord>, std::string> parse_mta_sts_record(const std::vector<std::string>& answers);

}  // namespace deliverd::tlspolicy
