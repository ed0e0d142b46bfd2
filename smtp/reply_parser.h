#pragma once
// Incremental SMTP reply parser (RFC 5321 4.2, enhanced codes RFC 2034/3463). Bytes may arrive
// split anywhere or several replies per read; the parser never grows past its limits and answers
// hostile input with an error value, after which it stays failed (the stream is out of sync).
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/outcome.h"
#include "core/result.h"

namespace deliverd::smtp {

struct ReplyLimits {
  size_t max_line = 2048;          // one reply line, without its line ending
  size_t max_reply = 64 * 1024;    // one whole (multi-line) reply, line endings included
};

enum class ParseError {
  LineTooLong,     // a line exceeded max_line
  ReplyTooLarge,   // a multi-line reply exceeded max_reply
  BadCode,         // line does not start with three digits
  CodeOutOfRange,  // code outside 200-599
  BadSeparator,    // fourth character is neither ' ', '-' nor the end of the line
  CodeMismatch,    // a continuation line carries a different code
};

std::string_view to_string(ParseError e);

class ReplyParser {
 public:
  explicit ReplyParser(ReplyLimits limits = {}) : limits_(limits) {}

  // Appends received bytes. Call next() until it yields no reply before feeding more, so that
  // the internal buffer only ever holds one read plus one partial line.
  void feed(std::string_view bytes);

  // The next complete reply, std::nullopt when more bytes are needed, or the error that broke
  // the stream (returned again on every later call).
  core::Result<std::optional<core::Reply>, ParseError> next();

  bool failed() const { return error_.has_value(); }
  // Bytes held but not yet part of a returned reply.
  size_t buffered() const { return buf_.size() - pos_; }
  void reset();

 private:
  // Consumes one line (without its terminator); returns a reply when the line completed one.
  core::Result<std::optional<core::Reply>, ParseError> take_line(std::string_view line, size_t raw_size);
  core::Result<std::optional<core::Reply>, ParseError> fail(ParseError e);

  ReplyLimits limits_;
  std::string buf_;
  size_t pos_ = 0;
  std::optional<ParseError> error_;
  // The multi-line reply being assembled.
  int code_ = 0;
  size_t reply_bytes_ = 0;
  std::string enhanced_;
  std::string text_;
  bool in_reply_ = false;
};

// "x.y.z" with x matching the reply class (2, 4 or 5), 1-3 digits for y and z; the length of
// the code at the start of `text` (followed by a space or the end), or 0 if there is none.
size_t enhanced_code_length(std::string_view text, char reply_class);

}  // namespace deliverd::smtp
