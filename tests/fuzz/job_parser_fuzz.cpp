// parse_job on hostile input: it must return a Job or a JobError, never crash, and whatever it
// accepts must uphold the guarantees the composer relies on (no CR/LF in header material).
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "queue/job.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto result = deliverd::queue::parse_job(input, 64 * 1024);
  if (result.ok()) {
    const auto& job = result.value();
    auto clean = [](std::string_view s) { return s.find_first_of("\r\n") == std::string_view::npos; };
    if (!clean(job.subject) || !clean(job.to_name) || !clean(job.from_name) || !clean(job.reply_to) ||
        !clean(job.to_email) || job.id.empty() || job.id.size() > 200 || job.v != 1)
      std::abort();
    for (const auto& [name, value] : job.headers)
      if (!clean(name) || !clean(value) || name.empty()) std::abort();
    if (job.text.size() + job.html.size() + job.raw.size() > 64 * 1024) std::abort();
  } else if (result.error().field.empty()) {
    std::abort();  // every rejection names what was wrong
  }
  return 0;
}
