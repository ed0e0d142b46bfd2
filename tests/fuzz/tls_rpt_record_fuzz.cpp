// The TLS-RPT TXT record parser on hostile input: a value or a named error, never a crash; what
// is accepted obeys the bounds the report sender relies on.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "tlspolicy/tls_rpt_record.h"

using namespace deliverd::tlspolicy;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  // TXT answers, one per line, a few more than the resolver would give.
  std::vector<std::string> answers;
  size_t at = 0;
  while (at <= input.size() && answers.size() < kMaxTlsRptAnswers + 2) {
    size_t nl = input.find('\n', at);
    answers.emplace_back(input.substr(at, nl == std::string_view::npos ? std::string_view::npos : nl - at));
    if (nl == std::string_view::npos) break;
    at = nl + 1;
  }
  auto r = parse_tls_rpt_record(answers);
  if (r.ok()) {
    if (r.value()) {
      const auto& rec = *r.value();
      if (rec.rua.empty() || rec.rua.size() > kMaxTlsRptUris) std::abort();
      for (const auto& u : rec.rua) {
        if (u.target.empty()) std::abort();
        if (u.scheme == ReportUri::Scheme::Https && u.target.rfind("https:", 0) != 0 &&
            u.target.rfind("HTTPS:", 0) != 0 && u.target.size() < 6)
          std::abort();
        if (u.target.find_first_of("\r\n") != std::string::npos) std::abort();
      }
    }
  } else if (r.error().empty()) {
    std::abort();
  }
  return 0;
}
