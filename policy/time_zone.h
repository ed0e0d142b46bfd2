#pragma once
// Local time of a mailbox: its IANA zone read from the system's TZif files (g++ 12's libstdc++
// has no std::chrono::tzdb, and TZ= with localtime_r would change the whole process). Zones are
// loaded once, at start-up or on first use, never per send. Debian installs "fat" TZif files
// (explicit transitions until 2037); after the last transition the last offset holds.
#include <cstdint>
#include <string>
#include <vector>

#include "core/result.h"

namespace deliverd::policy {

class TimeZone {
 public:
  TimeZone() = default;  // UTC
  static TimeZone utc() { return {}; }
  // dir is normally /usr/share/zoneinfo; name is checked (no "..", no leading '/').
  static core::Result<TimeZone, std::string> load(const std::string& dir, const std::string& name);
  // For tests and the fixed-offset zones: one offset, no transitions.
  static TimeZone fixed(int32_t offset_s);

  // Seconds east of UTC in effect at a UTC instant.
  int32_t offset_at(int64_t utc_s) const;
  const std::string& name() const { return name_; }

 private:
  std::string name_ = "UTC";
  std::vector<int64_t> transitions_;    // UTC seconds, ascending
  std::vector<int32_t> offsets_after_;  // offset from transitions_[i] on
  int32_t initial_offset_ = 0;          // before the first transition
};

struct LocalDay {
  int64_t day = 0;       // local calendar day, days since 1970-01-01
  int weekday = 0;       // 0 = Monday
  int64_t start_ms = 0;  // UTC instant the local day begins
  int64_t end_ms = 0;    // … and the next one begins
  int64_t local_ms = 0;  // the instant in local wall-clock ms since the epoch
};

LocalDay local_day(const TimeZone& tz, int64_t utc_ms);
// UTC instant of local midnight starting `day`.
int64_t local_day_start_ms(const TimeZone& tz, int64_t day);

struct SendWindow {
  int days = 127;                     // bit 0 = Monday … bit 6 = Sunday
  int start_hour = 0, end_hour = 24;  // [start, end), local
  bool always() const { return (days & 127) == 127 && start_hour <= 0 && end_hour >= 24; }
};

// now_ms when inside the window, else the UTC instant it next opens (within the coming 8 days);
// -1 when the window never opens (no day selected, or an empty range of hours).
int64_t next_window_open_ms(const TimeZone& tz, const SendWindow& w, int64_t now_ms);

}  // namespace deliverd::policy
