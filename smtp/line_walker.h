#pragma once
// Walks a text line by line, taking CRLF, bare LF and bare CR alike as a line break. The breaks
// are found with memchr, once for CR and once for LF, each position remembered until the walk
// passes it: every byte is looked at by one memchr of each kind, never by a call of its own
// (find_first_of with a two-character set calls memchr over the set for every byte).
#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string_view>

namespace deliverd::smtp {

enum class LineEnd { Crlf, Lf, Cr, None };

struct Line {
  size_t begin = 0, end = 0;  // the content, without its break
  size_t next = 0;            // where the following line starts
  LineEnd ending = LineEnd::None;
  size_t size() const { return end - begin; }
};

class LineWalker {
 public:
  explicit LineWalker(std::string_view t) : t_(t), cr_(find(0, '\r')), lf_(find(0, '\n')) {}

  // The next line, or false when the text is used up. A text ending in a break has no empty
  // line after it; the last line without a break has LineEnd::None.
  bool next(Line& l) {
    const size_t i = pos_;
    if (i >= t_.size()) return false;
    if (cr_ < i) cr_ = find(i, '\r');
    if (lf_ < i) lf_ = find(i, '\n');
    const size_t e = std::min(cr_, lf_);
    l.begin = i;
    if (e == std::string_view::npos) {
      l.end = l.next = t_.size();
      l.ending = LineEnd::None;
    } else if (t_[e] == '\n') {
      l.end = e;
      l.next = e + 1;
      l.ending = LineEnd::Lf;
    } else if (e + 1 < t_.size() && t_[e + 1] == '\n') {
      l.end = e;
      l.next = e + 2;
      l.ending = LineEnd::Crlf;
    } else {
      l.end = e;
      l.next = e + 1;
      l.ending = LineEnd::Cr;
    }
    pos_ = l.next;
    return true;
  }

 private:
  size_t find(size_t i, char c) const {
    if (i >= t_.size()) return std::string_view::npos;
    const void* p = std::memchr(t_.data() + i, c, t_.size() - i);
    return p ? static_cast<size_t>(static_cast<const char*>(p) - t_.data()) : std::string_view::npos;
  }
  std::string_view t_;
  size_t pos_ = 0;
  size_t cr_, lf_;
};

}  // namespace deliverd::smtp
