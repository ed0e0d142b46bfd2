#pragma once
// Local time of a mailbox: its IANA zone through cctz (g++ 12's libstdc++ has no
// std::chrono::tzdb, and TZ= with localtime_r would change the whole process). cctz reads the
// TZif files including their POSIX footer, so dates after the last explicit transition (2037 in
// "fat" files, much earlier in "slim" ones) follow the zone's rule rather than its last offset.
// Zones are read from disk once, into a ZoneTable at start-up and on reload, never on the loop
// at first use.
#include <cctz/time_zone.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "core/result.h"

namespace deliverd::policy {

class TimeZone {
 public:
  TimeZone();  // UTC
  static TimeZone utc() { return {}; }
  // dir is normally /usr/share/zoneinfo; name is checked (no "..", no leading '/'). Reads the
  // disk: start-up and reload only (ZoneTable).
  static core::Result<TimeZone, std::string> load(const std::string& dir, const std::string& name);
  // For tests and the fixed-offset zones: one offset, no transitions.
  static TimeZone fixed(int32_t offset_s);

  // Seconds east of UTC in effect at a UTC instant.
  int32_t offset_at(int64_t utc_s) const;
  const std::string& name() const { return name_; }
  const cctz::time_zone& zone() const { return tz_; }

 private:
  std::string name_ = "UTC";
  cctz::time_zone tz_;
};

// Every zone under a zoneinfo directory (links included; the posix/ and right/ copies left out),
// loaded at once. Immutable: a reload builds a new table and swaps it in.
class ZoneTable {
 public:
  // Reads the directory; a zone file that cannot be read is left out. Safe to run off the loop
  // (cctz guards its own cache).
  static std::shared_ptr<const ZoneTable> load(const std::string& dir);
  // nullptr for a name the table does not hold. "" and "UTC" are always there.
  const TimeZone* find(const std::string& name) const;
  size_t size() const { return zones_.size(); }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::map<std::string, TimeZone, std::less<>> zones_;
};

struct LocalDay {
  int64_t day = 0;       // local calendar day, days since 1970-01-01
  int weekday = 0;       // 0 = Monday
  int64_t start_ms = 0;  // UTC instant the local day begins
  int64_t end_ms = 0;    // … and the next one begins
  int64_t local_ms = 0;  // the instant in local wall-clock ms since the epoch
};

LocalDay local_day(const TimeZone& tz, int64_t utc_ms);
// UTC instant the local day `day` begins: local midnight, or, where a change of offset skips
// midnight (DST starting at 00:00, as in Santiago or Havana), the first instant that exists.
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
