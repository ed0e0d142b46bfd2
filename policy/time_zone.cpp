#include "policy/time_zone.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "policy/ramp.h"

namespace deliverd::policy {
namespace {


using Seconds = cctz::time_point<cctz::seconds>;

Seconds from_unix(int64_t s) { return Seconds(cctz::seconds(s)); }
int64_t to_unix(const Seconds& t) { return t.time_since_epoch().count(); }

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

const cctz::civil_day kEpochDay(1970, 1, 1);

// The UTC instant of a local wall-clock time on `day`: where the offset changes skip that time
// (clocks forward), the instant of the change, which is the first local time after it; where
// they repeat it (clocks back), its first occurrence.
int64_t local_instant_ms(const TimeZone& tz, int64_t day, int hour) {
  const cctz::civil_second cs = cctz::civil_second(kEpochDay + day) + int64_t{hour} * 3600;
  const cctz::time_zone::civil_lookup cl = tz.zone().lookup(cs);
  const Seconds t = cl.kind == cctz::time_zone::civil_lookup::SKIPPED ? cl.trans : cl.pre;
  return to_unix(t) * 1000;
}

bool is_tzif(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string_view(magic, 4) == "TZif";
}

}  // namespace

TimeZone::TimeZone() : tz_(cctz::utc_time_zone()) {}

TimeZone TimeZone::fixed(int32_t offset_s) {
  TimeZone z;
  z.name_ = "fixed";
  z.tz_ = cctz::fixed_time_zone(cctz::seconds(offset_s));
  return z;
}

core::Result<TimeZone, std::string> TimeZone::load(const std::string& dir, const std::string& name) {
  if (name.empty() || name == "UTC" || name == "Etc/UTC") return utc();
  if (name.front() == '/' || name.find("..") != std::string::npos || name.size() > 64)
    return core::Err("time zone '" + name + "': not a zone name");
  const std::string path = dir + "/" + name;
  if (!std::filesystem::is_regular_file(path)) return core::Err("time zone '" + name + "': not found in " + dir);
  TimeZone z;
  z.name_ = name;
  // "file:" makes cctz read exactly this path rather than prefixing its own TZDIR.
  if (!cctz::load_time_zone("file:" + path, &z.tz_)) return core::Err("time zone '" + name + "': not a TZif file");
  return z;
}

int32_t TimeZone::offset_at(int64_t utc_s) const { return tz_.lookup(from_unix(utc_s)).offset; }

std::shared_ptr<const ZoneTable> ZoneTable::load(const std::string& dir) {
  auto table = std::make_shared<ZoneTable>();
  table->dir_ = dir;
  table->zones_.emplace("", TimeZone::utc());
  table->zones_.emplace("UTC", TimeZone::utc());
  table->zones_.emplace("Etc/UTC", TimeZone::utc());
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::path& p = it->path();
    const std::string rel = p.lexically_relative(dir).generic_string();
    if (it->is_directory(ec)) {
      // The same zones again, as POSIX-only and leap-second variants.
      if (rel == "posix" || rel == "right") it.disable_recursion_pending();
      continue;
    }
    if (table->zones_.count(rel) || !it->is_regular_file(ec) || !is_tzif(p)) continue;
    if (auto z = TimeZone::load(dir, rel)) table->zones_.emplace(rel, std::move(*z));
  }
  return table;
}

const TimeZone* ZoneTable::find(const std::string& name) const {
  auto it = zones_.find(name);
  return it == zones_.end() ? nullptr : &it->second;
}

int64_t local_day_start_ms(const TimeZone& tz, int64_t day) { return local_instant_ms(tz, day, 0); }

LocalDay local_day(const TimeZone& tz, int64_t utc_ms) {
  LocalDay d;
  const int64_t s = floor_div(utc_ms, 1000);
  const cctz::civil_second cs = cctz::convert(from_unix(s), tz.zone());
  d.day = cctz::civil_day(cs) - kEpochDay;
  d.local_ms = (cs - cctz::civil_second(kEpochDay)) * 1000 + (utc_ms - s * 1000);
  d.weekday = weekday_from_days(d.day);
  d.start_ms = local_day_start_ms(tz, d.day);
  d.end_ms = local_day_start_ms(tz, d.day + 1);
  return d;
}

int64_t next_window_open_ms(const TimeZone& tz, const SendWindow& w, int64_t now_ms) {
  if (w.always()) return now_ms;
  int start_h = std::clamp(w.start_hour, 0, 24), end_h = std::clamp(w.end_hour, 0, 24);
  if ((w.days & 127) == 0 || start_h >= end_h) return -1;
  LocalDay today = local_day(tz, now_ms);
  for (int64_t k = 0; k <= 7; ++k) {
    int64_t day = today.day + k;
    if (!(w.days & (1 << weekday_from_days(day)))) continue;
    int64_t open = local_instant_ms(tz, day, start_h), close = local_instant_ms(tz, day, end_h);
    if (now_ms < close) return std::max(open, now_ms);
  }
  return -1;
}

}  // namespace deliverd::policy
