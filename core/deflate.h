#pragma once
// Raw deflate (RFC 1951, through zlib) for what deliverd keeps in memory for a long time: a
// deferred job waits in Redis's retry set for up to [retry] max_age, and its text is most of the
// set's memory.
#include <cstddef>
#include <string>
#include <string_view>

#include "core/result.h"

namespace deliverd::core {

// The compressed bytes, or "" when compressing would not make the input smaller (short or
// already compressed text is kept as it is by the caller).
std::string deflate_raw(std::string_view in);

// The original bytes, or an error naming what was wrong: not raw deflate data, cut short, or
// more than max_bytes once inflated (the limit is applied while inflating, so a small input that
// expands enormously costs at most max_bytes).
Result<std::string, std::string> inflate_raw(std::string_view in, size_t max_bytes);

// The gzip file format (RFC 1952) for what leaves the process compressed: TLS-RPT reports
// (RFC 8460 5.3, application/tlsrpt+gzip). Always the gzip form, even when it is larger.
std::string gzip(std::string_view in);
// Its inverse, bounded like inflate_raw; the error names what was wrong (not gzip, cut short,
// a bad checksum, too large).
Result<std::string, std::string> gunzip(std::string_view in, size_t max_bytes);

}  // namespace deliverd::core
