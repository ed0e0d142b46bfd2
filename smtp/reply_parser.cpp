#include "smtp/reply_parser.h"

namespace deliverd::smtp {

std::string_view to_string(ParseError e) {
  switch (e) {
    case ParseError::LineTooLong: return "line_too_long";
    case ParseError::ReplyTooLarge: return "reply_too_large";
    case ParseError::BadCode: return "bad_code";
    case ParseError::CodeOutOfRange: return "code_out_of_range";
    case ParseError::BadSeparator: return "bad_separator";
    case ParseError::CodeMismatch: return "code_mismatch";
  }
  return "protocol_error";
}

namespace {
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// 1-3 digits starting at text[i]; returns how many, 0 if none or more than three.
size_t digit_run(std::string_view text, size_t i) {
  size_t n = 0;
  while (i + n < text.size() && is_digit(text[i + n])) ++n;
  return n <= 3 ? n : 0;
}
}  // namespace

size_t enhanced_code_length(std::string_view text, char reply_class) {
  if (text.size() < 5 || text[0] != reply_class || text[1] != '.') return 0;
  size_t i = 2;
  size_t n = digit_run(text, i);
  if (n == 0) return 0;
  i += n;
  if (i >= text.size() || text[i] != '.') return 0;
  ++i;
  n = digit_run(text, i);
  if (n == 0) return 0;
  i += n;
  if (i < text.size() && text[i] != ' ') return 0;
  return i;
}

void ReplyParser::feed(std::string_view bytes) {
  if (error_) return;
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(bytes);
}

void ReplyParser::reset() {
  buf_.clear();
  pos_ = 0;
  error_.reset();
  code_ = 0;
  reply_bytes_ = 0;
  enhanced_.clear();
  text_.clear();
  in_reply_ = false;
}

core::Result<std::optional<core::Reply>, ParseError> ReplyParser::fail(ParseError e) {
  error_ = e;
  // Drop what we hold: a failed stream is never read again, so keeping it only costs memory.
  buf_.clear();
  buf_.shrink_to_fit();
  text_.clear();
  pos_ = 0;
  return core::Err{e};
}

core::Result<std::optional<core::Reply>, ParseError> ReplyParser::next() {
  if (error_) return core::Err{*error_};
  while (pos_ < buf_.size()) {
    std::string_view rest(buf_.data() + pos_, buf_.size() - pos_);
    size_t lf = rest.find('\n');
    if (lf == std::string_view::npos) {
      // +1: a CR of a CRLF may be waiting for its LF.
      if (rest.size() > limits_.max_line + 1) return fail(ParseError::LineTooLong);
      break;
    }
    std::string_view line = rest.substr(0, lf);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);  // bare LF accepted too
    if (line.size() > limits_.max_line) return fail(ParseError::LineTooLong);
    pos_ += lf + 1;
    auto r = take_line(line, lf + 1);
    if (!r.ok() || r.value().has_value()) return r;
  }
  return std::optional<core::Reply>{};
}

core::Result<std::optional<core::Reply>, ParseError> ReplyParser::take_line(std::string_view line,
                                                                             size_t raw_size) {
  if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]))
    return fail(ParseError::BadCode);
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (code < 200 || code > 599) return fail(ParseError::CodeOutOfRange);
  bool last = true;
  if (line.size() > 3) {
    if (line[3] == '-')
      last = false;
    else if (line[3] != ' ')
      return fail(ParseError::BadSeparator);
  }
  if (in_reply_ && code != code_) return fail(ParseError::CodeMismatch);
  reply_bytes_ += raw_size;
  if (reply_bytes_ > limits_.max_reply) return fail(ParseError::ReplyTooLarge);

  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view{};
  // RFC 2034: every line carries the enhanced code; keep the first, strip it from each line.
  if (size_t n = enhanced_code_length(text, line[0]); n > 0) {
    if (!in_reply_) enhanced_.assign(text.substr(0, n));
    text.remove_prefix(n);
    if (!text.empty()) text.remove_prefix(1);
  }
  if (in_reply_) text_.push_back('\n');
  text_.append(text);
  in_reply_ = true;
  code_ = code;
  if (!last) return std::optional<core::Reply>{};

  core::Reply reply{code_, std::move(enhanced_), std::move(text_)};
  in_reply_ = false;
  code_ = 0;
  reply_bytes_ = 0;
  enhanced_.clear();
  text_.clear();
  return std::optional<core::Reply>(std::move(reply));
}

}  // namespace deliverd::smtp
