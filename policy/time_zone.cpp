#include "policy/time_zone.h"

#include <algorithm>
#include <fstream>
#include <iterator>

#include "policy/ramp.h"

namespace deliverd::policy {
namespace {

constexpr int64_t kDayMs = 86'400'000;

uint32_t be32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 |
         p[3];
}
int64_t be64(const unsigned char* p) {
  return static_cast<int64_t>(static_cast<uint64_t>(be32(p)) << 32 | be32(p + 4));
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

}  // namespace

TimeZone TimeZone::fixed(int32_t offset_s) {
  TimeZone z;
  z.name_ = "fixed";
  z.initial_offset_ = offset_s;
  return z;
}

core::Result<TimeZone, std::string> TimeZone::load(const std::string& dir, const std::string& name) {
  if (name.empty() || name == "UTC" || name == "Etc/UTC") return utc();
  if (name.front() == '/' || name.find("..") != std::string::npos || name.size() > 64)
    return core::Err("time zone '" + name + "': not a zone name");
  std::ifstream in(dir + "/" + name, std::ios::binary);
  if (!in) return core::Err("time zone '" + name + "': not found in " + dir);
  std::vector<unsigned char> buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto bad = [&] { return core::Err("time zone '" + name + "': not a TZif file"); };
  if (buf.size() < 44 || buf[0] != 'T' || buf[1] != 'Z' || buf[2] != 'i' || buf[3] != 'f') return bad();
  const bool v2 = buf[4] >= '2';
  // Header: magic, version, 15 reserved, then six counts.
  auto counts = [&](size_t at, uint32_t c[6]) {
    for (int i = 0; i < 6; ++i) c[i] = be32(&buf[at + 20 + static_cast<size_t>(i) * 4]);
  };
  uint32_t c[6];  // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
  counts(0, c);
  size_t at = 44;
  size_t time_size = 4;
  if (v2) {
    // Skip the 32-bit block; the 64-bit one after the second header is the one to read.
    at += c[3] * 4 + c[3] + c[4] * 6 + c[5] + c[2] * 8 + c[1] + c[0];
    if (buf.size() < at + 44) return bad();
    counts(at, c);
    at += 44;
    time_size = 8;
  }
  const size_t need = c[3] * time_size + c[3] + c[4] * 6;
  if (c[4] == 0 || buf.size() < at + need) return bad();
  const unsigned char* times = &buf[at];
  const unsigned char* idx = times + c[3] * time_size;
  const unsigned char* types = idx + c[3];
  auto type_offset = [&](size_t t) { return static_cast<int32_t>(be32(types + t * 6)); };
  TimeZone z;
  z.name_ = name;
  z.initial_offset_ = type_offset(0);
  for (uint32_t i = 0; i < c[3]; ++i) {
    int64_t t = time_size == 8 ? be64(times + i * 8) : static_cast<int32_t>(be32(times + i * 4));
    size_t ti = idx[i];
    if (ti >= c[4]) return bad();
    z.transitions_.push_back(t);
    z.offsets_after_.push_back(type_offset(ti));
  }
  if (!std::is_sorted(z.transitions_.begin(), z.transitions_.end())) return bad();
  return z;
}

int32_t TimeZone::offset_at(int64_t utc_s) const {
  auto it = std::upper_bound(transitions_.begin(), transitions_.end(), utc_s);
  if (it == transitions_.begin()) return initial_offset_;
  return offsets_after_[static_cast<size_t>(it - transitions_.begin() - 1)];
}

int64_t local_day_start_ms(const TimeZone& tz, int64_t day) {
  // The offset at local midnight depends on the instant we are looking for: two rounds settle it
  // (DST changes happen at night but not at midnight in practice).
  int64_t guess = day * 86400 - tz.offset_at(day * 86400);
  guess = day * 86400 - tz.offset_at(guess);
  return guess * 1000;
}

LocalDay local_day(const TimeZone& tz, int64_t utc_ms) {
  LocalDay d;
  d.local_ms = utc_ms + static_cast<int64_t>(tz.offset_at(floor_div(utc_ms, 1000))) * 1000;
  d.day = floor_div(d.local_ms, kDayMs);
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
    int64_t base = local_day_start_ms(tz, day);
    int64_t open = base + start_h * 3'600'000LL, close = base + end_h * 3'600'000LL;
    if (now_ms < close) return std::max(open, now_ms);
  }
  return -1;
}

}  // namespace deliverd::policy
