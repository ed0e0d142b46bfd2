#include "core/log.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

#include "core/json_writer.h"
#include "core/metrics.h"

namespace deliverd::core {
namespace {

constexpr std::string_view kNames[] = {"debug", "info", "warn", "error"};
// Distinct (event, level) keys tracked for rate limiting; events are compile-time names, so this
// is far above what the code can produce, and a full table only stops limiting new keys.
constexpr size_t kMaxTrackedEvents = 4096;
constexpr int64_t kWindowMs = 1000;

int64_t real_monotonic_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
int64_t real_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// stderr, written without ever waiting for it: a stalled journald or a full pipe must not hold
// the event loop. Lines wait in a bounded buffer; when it is full, new lines are dropped and
// counted, and one log_lines_dropped line tells how many once the reader keeps up again.
class Sink {
 public:
  // The counter is on /metrics from the start, at 0, not only after the first drop.
  Sink() { dropped_counter(); }
  ~Sink() {
    if (own_fd_ >= 0) ::close(own_fd_);
  }

  // Caller holds the log mutex.
  void emit(const std::string& line) {
    follow_stderr();
    if (pending_.size() - head_ + line.size() > kLogBufferBytes) {
      ++dropped_;
      ++unreported_;
      dropped_counter().inc();
      return;
    }
    pending_.append(line);
    flush();
  }

  // Writes what the destination takes now. Returns true when nothing is left waiting.
  bool flush() {
    while (head_ < pending_.size()) {
      ssize_t n = write_some(pending_.data() + head_, pending_.size() - head_);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      head_ += static_cast<size_t>(n);
    }
    if (head_ == pending_.size()) {
      pending_.clear();
      head_ = 0;
    } else if (head_ > kLogBufferBytes / 2) {
      pending_.erase(0, head_);
      head_ = 0;
    }
    return pending_.empty();
  }

  // For the end of the process: waits up to timeout_ms for the destination to take the rest.
  void drain(int timeout_ms) {
    const int64_t until = real_monotonic_ms() + timeout_ms;
    while (!flush()) {
      const int64_t left = until - real_monotonic_ms();
      if (left <= 0) return;
      pollfd p{fd(), POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) return;
    }
  }

  uint64_t dropped() const { return dropped_; }
  // How many were dropped since the last report, and forgets them: the caller reports them.
  uint64_t take_unreported() {
    if (!pending_.empty()) return 0;
    return std::exchange(unreported_, 0);
  }

 private:
  enum class Kind { Socket, Reopened, Plain };

  static Counter& dropped_counter() {
    static Counter& c = Registry::global()
                            .counter("deliverd_log_lines_dropped_total",
                                     "Log lines dropped because stderr did not take them in time")
                            .get();
    return c;
  }

  int fd() const { return kind_ == Kind::Reopened ? own_fd_ : 2; }

  ssize_t write_some(const char* p, size_t n) {
    if (kind_ == Kind::Socket) return ::send(2, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    return ::write(fd(), p, n);
  }

  // Decides how to write without blocking whenever fd 2 is (again) a different file: the
  // journal's socket takes MSG_DONTWAIT per call; a pipe or terminal is reopened through /proc
  // with O_NONBLOCK, so the flag is ours and not set on a description shared with the parent;
  // a regular file never makes a writer wait.
  void follow_stderr() {
    struct stat st {};
    if (::fstat(2, &st) != 0) return;
    if (known_ && st.st_dev == dev_ && st.st_ino == ino_ && st.st_mode == mode_) return;
    known_ = true;
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    mode_ = st.st_mode;
    if (own_fd_ >= 0) ::close(own_fd_);
    own_fd_ = -1;
    kind_ = Kind::Plain;
    if (S_ISSOCK(st.st_mode)) {
      kind_ = Kind::Socket;
    } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
      own_fd_ = ::open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
      if (own_fd_ >= 0) kind_ = Kind::Reopened;
    }
  }

  std::string pending_;
  size_t head_ = 0;
  uint64_t dropped_ = 0, unreported_ = 0;
  bool known_ = false;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  mode_t mode_ = 0;
  int own_fd_ = -1;
  Kind kind_ = Kind::Plain;
};

struct Window {
  int64_t start_ms = 0;
  int count = 0;
  int64_t suppressed = 0;
};

struct State {
  std::mutex mu;
  LogLevel level = LogLevel::Info;
  LogFormat format = LogFormat::KeyValue;
  LogTimestamps ts_mode = LogTimestamps::Auto;
  bool ts_decided = false;
  bool ts_on = true;
  int64_t (*mono)() = real_monotonic_ms;
  int64_t (*wall)() = real_unix_ms;
  // Key: level digit + event name.
  std::unordered_map<std::string, Window> windows;
  int64_t last_sweep_ms = 0;
  int repeat_limit = kLogRepeatLimit;
  std::set<std::string, std::less<>> exempt{"delivery", "job_dead_lettered", "job_already_delivered", "unsubscribed"};
  Sink sink;
};

State& state() {
  static State s;
  return s;
}

// Values with spaces, quotes or control bytes are quoted and escaped so one event stays one line.
void append_value(std::string& out, std::string_view v) {
  bool plain = !v.empty();
  for (unsigned char c : v) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) {
      plain = false;
      break;
    }
  }
  if (plain) {
    out.append(v);
    return;
  }
  out.push_back('"');
  for (unsigned char c : v) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '\r') {
      out.append("\\r");
    } else if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      const char esc[4] = {'\\', 'x', kHex[c >> 4], kHex[c & 15]};
      out.append(esc, 4);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  out.push_back('"');
}

// Two digits, four digits, three digits of a non-negative number, written by hand: a log line is
// formatted for every delivery, and snprintf plus gmtime_r cost more than the rest of the line.
void put_digits(char* p, int64_t v, int n) {
  for (int i = n - 1; i >= 0; --i, v /= 10) p[i] = static_cast<char>('0' + v % 10);
}

// Year, month and day of a count of days since 1970-01-01, in the proleptic Gregorian calendar
// (the era arithmetic of Howard Hinnant's civil_from_days).
void civil_from_days(int64_t z, int64_t& y, int& m, int& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  d = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  m = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  y = yoe + era * 400 + (m <= 2 ? 1 : 0);
}

std::string rfc3339(int64_t unix_ms) {
  if (unix_ms < 0) unix_ms = 0;  // a wall clock before 1970 is a broken clock: say 1970
  const int64_t secs = unix_ms / 1000, days = secs / 86400, in_day = secs % 86400;
  int64_t year = 0;
  int month = 0, day = 0;
  civil_from_days(days, year, month, day);
  if (year > 9999) year = 9999;
  char buf[25] = "0000-00-00T00:00:00.000Z";
  put_digits(buf, year, 4);
  put_digits(buf + 5, month, 2);
  put_digits(buf + 8, day, 2);
  put_digits(buf + 11, in_day / 3600, 2);
  put_digits(buf + 14, in_day / 60 % 60, 2);
  put_digits(buf + 17, in_day % 60, 2);
  put_digits(buf + 20, unix_ms % 1000, 3);
  return std::string(buf, 24);
}

// Caller holds the mutex.
bool timestamps_on(State& s) {
  if (!s.ts_decided) {
    s.ts_on = s.ts_mode == LogTimestamps::Always || (s.ts_mode == LogTimestamps::Auto && !stderr_is_journal());
    s.ts_decided = true;
  }
  return s.ts_on;
}

// Caller holds the mutex.
void write_line(State& s, LogLevel level, std::string_view event, std::initializer_list<LogField> fields,
                std::string_view extra_key = {}, std::string_view extra_value = {}, const int64_t* count = nullptr) {
  std::string line;
  line.reserve(160);
  std::string_view lvl = kNames[static_cast<int>(level)];
  bool ts = timestamps_on(s);
  if (s.format == LogFormat::Json) {
    JsonWriter w;
    w.begin_object();
    if (ts) w.field("ts", std::string_view(rfc3339(s.wall())));
    w.field("level", lvl).field("event", event);
    if (!extra_key.empty()) w.field(extra_key, extra_value);
    if (count) w.field("count", *count);
    for (const auto& [k, v] : fields) w.field(k, v);
    w.end_object();
    line = w.take();
  } else {
    if (ts) line.append("ts=").append(rfc3339(s.wall())).push_back(' ');
    line.append("level=").append(lvl).append(" event=");
    append_value(line, event);
    if (!extra_key.empty()) {
      line.append(" ").append(extra_key).push_back('=');
      append_value(line, extra_value);
    }
    if (count) line.append(" count=").append(std::to_string(*count));
    for (const auto& [k, v] : fields) {
      line.push_back(' ');
      line.append(k).push_back('=');
      append_value(line, v);
    }
  }
  line.push_back('\n');
  s.sink.emit(line);
}

// Caller holds the mutex. Tells, once the buffer has drained, how many lines it had to drop.
void report_dropped(State& s) {
  if (const int64_t n = static_cast<int64_t>(s.sink.take_unreported()); n > 0) {
    write_line(s, LogLevel::Warn, "log_lines_dropped", {}, {}, {}, &n);
  }
}

// Caller holds the mutex. Reports and forgets windows that have ended.
void sweep(State& s, int64_t now, bool force) {
  s.last_sweep_ms = now;
  for (auto it = s.windows.begin(); it != s.windows.end();) {
    if (!force && now - it->second.start_ms < kWindowMs) {
      ++it;
      continue;
    }
    if (it->second.suppressed > 0) {
      int64_t count = it->second.suppressed;
      auto level = static_cast<LogLevel>(it->first[0] - '0');
      write_line(s, level, "log_suppressed", {}, "suppressed_event", std::string_view(it->first).substr(1), &count);
    }
    it = s.windows.erase(it);
  }
}

}  // namespace

void set_log_level(LogLevel level) {
  std::lock_guard lk(state().mu);
  state().level = level;
}
LogLevel log_level() {
  std::lock_guard lk(state().mu);
  return state().level;
}

bool parse_log_level(std::string_view name, LogLevel& out) {
  for (int i = 0; i < 4; ++i) {
    if (name == kNames[i]) {
      out = static_cast<LogLevel>(i);
      return true;
    }
  }
  return false;
}

void set_log_format(LogFormat format) {
  std::lock_guard lk(state().mu);
  state().format = format;
}
LogFormat log_format() {
  std::lock_guard lk(state().mu);
  return state().format;
}
bool parse_log_format(std::string_view name, LogFormat& out) {
  if (name == "kv" || name == "keyvalue" || name == "key=value" || name == "logfmt") {
    out = LogFormat::KeyValue;
    return true;
  }
  if (name == "json") {
    out = LogFormat::Json;
    return true;
  }
  return false;
}

void set_log_timestamps(LogTimestamps mode) {
  std::lock_guard lk(state().mu);
  state().ts_mode = mode;
  state().ts_decided = false;
}

bool stderr_is_journal() {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (!js || !*js) return false;
  uintmax_t dev = 0, ino = 0;
  if (std::sscanf(js, "%" SCNuMAX ":%" SCNuMAX, &dev, &ino) != 2) return false;
  struct stat st {};
  if (::fstat(2, &st) != 0) return false;
  return static_cast<uintmax_t>(st.st_dev) == dev && static_cast<uintmax_t>(st.st_ino) == ino;
}

void set_log_rate_limit_exempt(std::initializer_list<std::string_view> events) {
  std::lock_guard lk(state().mu);
  state().exempt.clear();
  for (auto e : events) state().exempt.emplace(e);
}

void set_log_repeat_limit(int per_second) {
  std::lock_guard lk(state().mu);
  state().repeat_limit = per_second;
}

void flush_log_suppressed(bool force) {
  State& s = state();
  std::lock_guard lk(s.mu);
  sweep(s, s.mono(), force);
}

void log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  State& s = state();
  std::lock_guard lk(s.mu);
  if (level < s.level) return;
  int64_t now = s.mono();
  if (now - s.last_sweep_ms >= kWindowMs) sweep(s, now, false);
  report_dropped(s);

  if (s.repeat_limit <= 0 || s.exempt.count(event)) {
    write_line(s, level, event, fields);
    return;
  }
  std::string key;
  key.reserve(event.size() + 1);
  key.push_back(static_cast<char>('0' + static_cast<int>(level)));
  key.append(event);
  auto it = s.windows.find(key);
  if (it == s.windows.end() && s.windows.size() < kMaxTrackedEvents) it = s.windows.emplace(key, Window{now, 0, 0}).first;
  if (it != s.windows.end()) {
    Window& w = it->second;
    if (now - w.start_ms >= kWindowMs) {
      // This key's window ended between sweeps: report it before starting the next one.
      if (w.suppressed > 0) {
        int64_t count = w.suppressed;
        write_line(s, level, "log_suppressed", {}, "suppressed_event", event, &count);
      }
      w = Window{now, 0, 0};
    }
    if (++w.count > s.repeat_limit) {
      ++w.suppressed;
      return;
    }
  }
  write_line(s, level, event, fields);
}

bool flush_log() {
  State& s = state();
  std::lock_guard lk(s.mu);
  const bool empty = s.sink.flush();
  report_dropped(s);
  return empty && s.sink.flush();
}

void drain_log(int timeout_ms) {
  State& s = state();
  std::lock_guard lk(s.mu);
  s.sink.drain(timeout_ms);
  report_dropped(s);
  s.sink.drain(timeout_ms);
}

uint64_t log_lines_dropped() {
  State& s = state();
  std::lock_guard lk(s.mu);
  return s.sink.dropped();
}

namespace detail {
void set_log_clocks_for_test(int64_t (*monotonic_ms)(), int64_t (*unix_ms)()) {
  State& s = state();
  std::lock_guard lk(s.mu);
  s.mono = monotonic_ms ? monotonic_ms : real_monotonic_ms;
  s.wall = unix_ms ? unix_ms : real_unix_ms;
  s.windows.clear();
  s.last_sweep_ms = 0;
}
}  // namespace detail

}  // namespace deliverd::core
