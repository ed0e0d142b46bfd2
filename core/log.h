#pragma once
// One line per event, key=value, to stderr (journald adds its own timestamps).
// Secrets and message bodies are never passed here.
#include <initializer_list>
#include <string_view>
#include <utility>

namespace deliverd::core {

enum class LogLevel { Debug = 0, Info = 1, Warn = 2, Error = 3 };

using LogField = std::pair<std::string_view, std::string_view>;

void set_log_level(LogLevel level);
LogLevel log_level();
bool parse_log_level(std::string_view name, LogLevel& out);

// log(LogLevel::Info, "delivered", {{"job", id}, {"mailbox", mbx}})
//   → "level=info event=delivered job=c0ffee-42 mailbox=mbx_7"
void log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

inline void log_debug(std::string_view e, std::initializer_list<LogField> f = {}) { log(LogLevel::Debug, e, f); }
inline void log_info(std::string_view e, std::initializer_list<LogField> f = {}) { log(LogLevel::Info, e, f); }
inline void log_warn(std::string_view e, std::initializer_list<LogField> f = {}) { log(LogLevel::Warn, e, f); }
inline void log_error(std::string_view e, std::initializer_list<LogField> f = {}) { log(LogLevel::Error, e, f); }

}  // namespace deliverd::core
