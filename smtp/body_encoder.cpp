#include "smtp/body_encoder.h"

#include <array>
#include <cstdint>

#include "core/base64.h"
#include "smtp/line_walker.h"

namespace deliverd::smtp {
namespace {

constexpr size_t kMaxLine = 998;  // RFC 5322 2.1.1: MUST

void count(ComposeStats* stats, size_t bytes) {
  if (stats) stats->bytes_examined += bytes;
}

// What quoted-printable does with a byte: keep it, keep it unless it ends the line (space and
// tab, RFC 2045 6.7 rule 3), or write it as =XX.
enum QpClass : uint8_t { kKeep, kKeepInside, kEscape };

constexpr std::array<uint8_t, 256> qp_classes() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = (c >= 33 && c <= 126 && c != '=') ? kKeep : kEscape;
  t[' '] = t['\t'] = kKeepInside;
  return t;
}
constexpr auto kQpClass = qp_classes();

// Output goes through a stack buffer so the per-byte loop only stores; the string is appended
// to once per few kilobytes.
class ChunkWriter {
 public:
  explicit ChunkWriter(std::string& out) : out_(out) {}
  ~ChunkWriter() { flush(); }
  // Makes room for `n` more put()s.
  void room(size_t n) {
    if (len_ + n > sizeof buf_) flush();
  }
  void put(char c) { buf_[len_++] = c; }
  void flush() {
    out_.append(buf_, len_);
    len_ = 0;
  }

 private:
  std::string& out_;
  char buf_[8192];
  size_t len_ = 0;
};

}  // namespace

BodyScan scan_body(std::string_view text, ComposeStats* stats) {
  BodyScan s;
  // Branch-free, so the compiler vectorises it.
  size_t high = 0;
  unsigned nul = 0;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    high += u >> 7;
    nul |= u == 0;
  }
  s.high = high;
  s.nul = nul != 0;
  LineWalker walk(text);
  for (Line l; walk.next(l);) {
    s.crlf_size += l.size() + 2;
    s.long_line |= l.size() > kMaxLine;
    s.crlf_already &= l.ending == LineEnd::Crlf;
  }
  count(stats, 3 * text.size());  // the count above and one memchr each for CR and LF
  return s;
}

Cte choose_encoding(const BodyScan& s) {
  if (s.high == 0 && !s.long_line && !s.nul) return Cte::SevenBit;
  return s.high * 4 > s.crlf_size ? Cte::Base64 : Cte::QuotedPrintable;
}

void append_crlf(std::string& out, std::string_view text, ComposeStats* stats) {
  out.reserve(out.size() + text.size() + text.size() / 32 + 2);
  // Lines that already end in CRLF are copied as one run with their neighbours.
  size_t run = 0;
  LineWalker walk(text);
  for (Line l; walk.next(l);) {
    if (l.ending == LineEnd::Crlf) continue;
    out.append(text.data() + run, l.end - run);
    out += "\r\n";
    run = l.next;
  }
  out.append(text.data() + run, text.size() - run);
  count(stats, 3 * text.size());  // two memchrs and the copy
}

void append_quoted_printable(std::string& out, std::string_view text, ComposeStats* stats) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out.reserve(out.size() + text.size() + text.size() / 8);
  ChunkWriter w(out);
  LineWalker walk(text);
  for (Line l; walk.next(l);) {
    size_t col = 0;
    for (size_t i = l.begin; i < l.end; ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      const uint8_t cls = kQpClass[c];
      const bool literal = cls == kKeep || (cls == kKeepInside && i + 1 != l.end);
      const size_t len = literal ? 1 : 3;
      w.room(6);
      // 76 characters per line including the "=" of a soft break (RFC 2045 6.7 rule 5).
      if (col + len > 75) {
        w.put('=');
        w.put('\r');
        w.put('\n');
        col = 0;
      }
      if (literal) {
        w.put(static_cast<char>(c));
      } else {
        w.put('=');
        w.put(kHex[c >> 4]);
        w.put(kHex[c & 15]);
      }
      col += len;
    }
    w.room(2);
    w.put('\r');
    w.put('\n');
  }
  count(stats, 3 * text.size());  // two memchrs and the encoding loop
}

void append_base64_lines(std::string& out, std::string_view bytes, ComposeStats* stats) {
  // 57 bytes make exactly one 76-character line, so chunks of whole lines encode alike.
  constexpr size_t kLineBytes = 57, kChunk = kLineBytes * 128;
  out.reserve(out.size() + (bytes.size() + 2) / 3 * 4 + bytes.size() / kLineBytes * 2 + 2);
  for (size_t i = 0; i < bytes.size(); i += kChunk) {
    const std::string b = core::base64_encode(bytes.substr(i, kChunk));
    for (size_t j = 0; j < b.size(); j += 76) {
      out.append(b, j, 76);
      out += "\r\n";
    }
  }
  count(stats, bytes.size());
}

void append_encoded(std::string& out, std::string_view text, const BodyScan& s, Cte cte, ComposeStats* stats) {
  switch (cte) {
    case Cte::SevenBit:
      if (s.crlf_already) {
        out.append(text);
        count(stats, text.size());
      } else {
        append_crlf(out, text, stats);
      }
      return;
    case Cte::QuotedPrintable: append_quoted_printable(out, text, stats); return;
    case Cte::Base64:
      if (s.crlf_already) {
        append_base64_lines(out, text, stats);
      } else {
        std::string crlf;
        append_crlf(crlf, text, stats);
        append_base64_lines(out, crlf, stats);
      }
      return;
  }
}

}  // namespace deliverd::smtp
