#pragma once
// One line per event to stderr, key=value (default) or one JSON object per line.
// Under journald (JOURNAL_STREAM names our stderr) no timestamp is written, since the journal
// stamps every line; elsewhere an RFC 3339 UTC timestamp comes first. Repeats of one event at
// one level beyond kLogRepeatLimit per second are dropped and summed up in one log_suppressed line.
// Secrets and message bodies are never passed here.
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <utility>

namespace deliverd::core {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };
enum class LogFormat { KeyValue = 0, Json = 1 };
// Auto: decided from JOURNAL_STREAM versus stderr when set_log_timestamps(Auto) runs (and at
// the first log line).
enum class LogTimestamps { Auto, Always, Never };

using LogField = std::pair<std::string_view, std::string_view>;

// Lines of one (event, level) pair allowed per one-second window before repeats are suppressed.
inline constexpr int kLogRepeatLimit = 100;

void set_log_level(LogLevel level);
LogLevel log_level();
bool parse_log_level(std::string_view name, LogLevel& out);

void set_log_format(LogFormat format);
LogFormat log_format();
// "kv" / "keyvalue" / "key=value" or "json".
bool parse_log_format(std::string_view name, LogFormat& out);

void set_log_timestamps(LogTimestamps mode);
// True when JOURNAL_STREAM is set and names the file stderr is connected to (systemd(1) sets it
// for services whose stderr goes to the journal; a child with redirected stderr inherits the
// variable but not the connection, hence the device:inode check).
bool stderr_is_journal();

// Per-job records must be complete whatever the rate (one "delivery" line per job is the audit
// trail), so these events are never suppressed. Defaults: delivery, job_dead_lettered,
// job_already_delivered, unsubscribed. Replaces the list.
void set_log_rate_limit_exempt(std::initializer_list<std::string_view> events);
// Lines per (event, level) per second before suppression; 0 turns rate limiting off.
void set_log_repeat_limit(int per_second);

// stderr never makes a caller wait: lines it does not take at once wait in a buffer of
// kLogBufferBytes; beyond that they are dropped, counted (log_lines_dropped(), the metric
// deliverd_log_lines_dropped_total) and reported in one log_lines_dropped line once it drains.
inline constexpr size_t kLogBufferBytes = 1 << 20;
// Writes what stderr takes now, without waiting; true when nothing is left. The daemon calls it
// from a timer so lines buffered during a stall do not wait for the next event.
bool flush_log();
// At exit: waits up to timeout_ms for stderr to take the buffered lines.
void drain_log(int timeout_ms);
uint64_t log_lines_dropped();

// Writes the log_suppressed summaries of windows that have ended (and all of them with
// force=true, e.g. at shutdown). log() also does this once per second on its own.
void flush_log_suppressed(bool force = false);

// log(LogLevel::Info, "delivered", {{"job", id}, {"mailbox", mbx}})
//   → "ts=2026-11-29T16:45:57.123Z level=info event=delivered job=c0ffee-42 mailbox=mbx_7"
//   → {"ts":"2026-11-29T16:45:57.123Z","level":"info","event":"delivered","job":"c0ffee-42",...}
void log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

inline void log_debug(std::string_view e, std::initializer_list<LogField> f = {}) { log(LogLevel::Debug, e, f); }
inline void log_info(std::string_view e, std::initializer_list<LogField> f = {}) { log(LogLevel::Info, e, f); }
inline void log_warn(std::string_view e, std::initializer_list<LogField> f = {}) { log(LogLevel::Warn, e, f); }
inline void log_error(std::string_view e, std::initializer_list<LogField> f = {}) { log(LogLevel::Error, e, f); }

namespace detail {
// Tests replace the clock (milliseconds, monotonic) and the wall clock used for ts=; nullptr
// restores the real ones. Also forgets the rate-limit state.
void set_log_clocks_for_test(int64_t (*monotonic_ms)(), int64_t (*unix_ms)());
}  // namespace detail

}  // namespace deliverd::core
