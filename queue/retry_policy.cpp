#include "queue/retry_policy.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace deliverd::queue {

RetryDecision next_retry(const RetryPolicy& p, int attempt, int64_t now_ms, int64_t first_seen_ms,
                         int64_t expires_at_ms, double unit_random) {
  RetryDecision d;
  if (p.schedule_ms.empty()) {
    d.give_up = true;
    d.why = GiveUp::MaxAge;
    return d;
  }
  size_t index = static_cast<size_t>(std::max(attempt, 1) - 1);
  int64_t delay = p.schedule_ms[std::min(index, p.schedule_ms.size() - 1)];
  double spread = std::clamp(p.jitter, 0.0, 1.0) * (2.0 * unit_random - 1.0);
  delay = std::max<int64_t>(0, delay + static_cast<int64_t>(std::llround(static_cast<double>(delay) * spread)));
  d.due_ms = now_ms + delay;
  if (expires_at_ms && d.due_ms >= expires_at_ms) {
    d.give_up = true;
    d.why = GiveUp::ExpiresAt;
  } else if (d.due_ms - first_seen_ms >= p.max_age_ms) {
    d.give_up = true;
    d.why = GiveUp::MaxAge;
  }
  return d;
}

core::Result<int64_t, std::string> parse_duration_ms(std::string_view text) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data()) return core::Err{"\"" + std::string(text) + "\" is not a duration such as 90s, 5m, 1h or 3d"};
  std::string_view unit(end, static_cast<size_t>(text.data() + text.size() - end));
  int64_t scale = 0;
  if (unit == "ms") scale = 1;
  else if (unit == "s") scale = 1000;
  else if (unit == "m") scale = 60'000;
  else if (unit == "h") scale = 3'600'000;
  else if (unit == "d") scale = 86'400'000;
  else return core::Err{"\"" + std::string(text) + "\": unit must be ms, s, m, h or d"};
  if (value < 0 || value > INT64_MAX / scale) return core::Err{"\"" + std::string(text) + "\" is out of range"};
  return value * scale;
}

int64_t entry_id_ms(std::string_view entry_id) {
  int64_t ms = 0;
  auto [end, ec] = std::from_chars(entry_id.data(), entry_id.data() + entry_id.size(), ms);
  if (ec != std::errc() || end == entry_id.data() || (end != entry_id.data() + entry_id.size() && *end != '-')) return 0;
  return ms;
}

}  // namespace deliverd::queue
