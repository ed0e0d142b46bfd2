#pragma once
// When a deferred job is tried again, and when it stops being tried (DESIGN.md "Outcomes"). Pure
// arithmetic, so the schedule can be tested without a clock or a Redis.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/names.h"
#include "core/result.h"

namespace deliverd::queue {

struct RetryPolicy {
  // Delay after the 1st, 2nd, … deferred attempt; the last one repeats.
  std::vector<int64_t> schedule_ms = {60'000, 300'000, 900'000, 3'600'000, 10'800'000, 21'600'000};
  int64_t max_age_ms = 72 * 3'600'000LL;  // from the first time the job was seen
  double jitter = 0.1;                    // ± this fraction of the delay, so retries do not arrive in herds
};

// Why a deferred job stops being retried.
enum class GiveUp : uint8_t { None, ExpiresAt, MaxAge };
inline constexpr core::Named<GiveUp> kGiveUpNames[] = {
    {GiveUp::None, ""}, {GiveUp::ExpiresAt, "expires_at"}, {GiveUp::MaxAge, "max_age"}};
static_assert(core::in_order(kGiveUpNames));
constexpr std::string_view to_string(GiveUp g) { return core::name_in(kGiveUpNames, g); }
constexpr std::optional<GiveUp> give_up_from_name(std::string_view n) { return core::value_in(kGiveUpNames, n); }

struct RetryDecision {
  bool give_up = false;  // true: the job ends "expired" instead of being retried
  int64_t due_ms = 0;    // when the next attempt may start (when !give_up)
  GiveUp why = GiveUp::None;  // when give_up: the job's expires_at or [retry] max_age
};

// `attempt` is the attempt that just ended deferred (1-based); `unit_random` is uniform in [0, 1).
// expires_at_ms = 0 means the job has no expiry of its own.
RetryDecision next_retry(const RetryPolicy& p, int attempt, int64_t now_ms, int64_t first_seen_ms,
                         int64_t expires_at_ms, double unit_random);

// "90s", "5m", "1h", "3d", "250ms" → milliseconds; an error names what is wrong.
core::Result<int64_t, std::string> parse_duration_ms(std::string_view text);

// The millisecond time part of a stream entry id ("1764412345678-0" → 1764412345678); 0 if malformed.
int64_t entry_id_ms(std::string_view entry_id);

}  // namespace deliverd::queue
