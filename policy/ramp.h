#pragma once
// The pure arithmetic of warm-up: ramp-up limits and civil dates. The Redis script repeats the
// limit formula (it must decide atomically); tests keep both in step.
#include <cstdint>
#include <optional>
#include <string_view>

namespace deliverd::policy {

// min(max, start + step·d) for d >= 0; 0 before the warm-up starts (d < 0).
int64_t day_limit(int64_t start, int64_t step, int64_t max, int64_t d);

// Days since 1970-01-01 of a proleptic Gregorian date, and back.
int64_t days_from_civil(int64_t y, unsigned m, unsigned d);
struct CivilDate {
  int64_t year;
  unsigned month, day;
};
CivilDate civil_from_days(int64_t days);
// 0 = Monday … 6 = Sunday.
int weekday_from_days(int64_t days);

// "2026-11-29" → days since epoch; nullopt if malformed or not a real date.
std::optional<int64_t> parse_date(std::string_view s);

}  // namespace deliverd::policy
