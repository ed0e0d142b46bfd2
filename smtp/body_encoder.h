#pragma once
// A body part's content-transfer-encoding, decided by one scan of the text as the producer gave
// it (any line endings), and the encoders that write the CRLF form straight into the message.
// The text is never normalised into a copy first: the scan knows what the CRLF form would be.
#include <cstddef>
#include <string>
#include <string_view>

#include "smtp/composer.h"

namespace deliverd::smtp {

enum class Cte { SevenBit, QuotedPrintable, Base64 };

struct BodyScan {
  size_t crlf_size = 0;    // the size of the text with every line ended by CRLF
  size_t high = 0;         // bytes ≥ 0x80
  bool nul = false;
  bool long_line = false;  // a line over 998 octets
  bool crlf_already = true;  // the text is its own CRLF form (every line ends in CRLF, or it is empty)
};

BodyScan scan_body(std::string_view text, ComposeStats* stats);

// 7bit when it is already safe; otherwise the smaller of the two encodings: text that is mostly
// non-Latin (CJK, Cyrillic…) triples in quoted-printable, while base64 always costs a third.
Cte choose_encoding(const BodyScan& s);

// Each appends the encoded CRLF form of `text` to `out`.
void append_crlf(std::string& out, std::string_view text, ComposeStats* stats);
void append_quoted_printable(std::string& out, std::string_view text, ComposeStats* stats);
void append_base64_lines(std::string& out, std::string_view bytes, ComposeStats* stats);
void append_encoded(std::string& out, std::string_view text, const BodyScan& s, Cte cte, ComposeStats* stats);

}  // namespace deliverd::smtp
