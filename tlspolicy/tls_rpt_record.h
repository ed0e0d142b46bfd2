#pragma once
// The `_smtp._tls.<domain>` TXT record (RFC 8460 3): a domain asks for TLS-RPT reports and says
// where to send them. Only the two URI schemes of the RFC are kept: mailto: (the report goes by
// mail) and https: (it is POSTed); other schemes are someone else's extension and are skipped.
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"

namespace deliverd::tlspolicy {

// The resolver gives at most this many TXT answers of at most this size each; beyond that the
// answer is refused rather than scanned.
inline constexpr size_t kMaxTlsRptAnswers = 16;
inline constexpr size_t kMaxTlsRptRecordBytes = 4096;
// Report URIs kept from one record; the rest are ignored so a domain cannot make one report
// cost a thousand sends.
inline constexpr size_t kMaxTlsRptUris = 8;

struct ReportUri {
  enum class Scheme : unsigned char { Mailto, Https };
  Scheme scheme = Scheme::Mailto;
  std::string target;  // Mailto: the address, percent-decoded; Https: the whole URL
  bool operator==(const ReportUri&) const = default;
};

struct TlsRptRecord {
  std::vector<ReportUri> rua;  // never empty in a parsed record
  size_t ignored = 0;          // URIs skipped: other schemes, or over kMaxTlsRptUris
};

// The TXT answers of `_smtp._tls.<domain>`, each already concatenated from its strings. Answers
// that do not start with "v=TLSRPTv1" are skipped. nullopt: no TLS-RPT record (no reporting). An
// error naming what was wrong when there are several records, too many or too long answers, or
// the one record is malformed or names no mailto:/https: URI; RFC 8460 3 says no reports are sent
// then either, but the caller logs why.
core::Result<std::optional<TlsRptRecord>, std::string> parse_tls_rpt_record(const std::vector<std::string>& answers);

}  // namespace deliverd::tlspolicy
