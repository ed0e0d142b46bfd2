// core::HttpResponseReader on hostile answers, fed in pieces as a connection delivers them: a
// response, a named failure or a wait for more, never a crash, and never more than the limits
// kept in memory.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/http_response_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using deliverd::core::HttpResponseReader;
  if (size < 2) return 0;
  // The first byte sets the piece size (1-64 bytes), the second picks HEAD or not.
  const size_t piece = 1 + data[0] % 64;
  const bool head = data[1] & 1;
  std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);
  HttpResponseReader::Limits limits{512, 4096};
  HttpResponseReader reader(limits, head);
  HttpResponseReader::State st = HttpResponseReader::State::More;
  for (size_t at = 0; at < input.size() && st == HttpResponseReader::State::More; at += piece)
    st = reader.feed(input.substr(at, piece));
  if (st == HttpResponseReader::State::More) st = reader.end();
  if (st == HttpResponseReader::State::Failed && reader.error().empty()) std::abort();  // every failure is named
  if (st == HttpResponseReader::State::Complete) {
    auto resp = reader.take();
    if (resp.body.size() > limits.max_body_bytes) std::abort();
    if (head && !resp.body.empty()) std::abort();
    size_t header_bytes = 0;
    for (const auto& [k, v] : resp.headers) {
      header_bytes += k.size() + v.size();
      for (char c : k)
        if (c >= 'A' && c <= 'Z') std::abort();  // names are lower-cased
    }
    if (header_bytes > limits.max_header_bytes) std::abort();
    if (resp.status < 100 || resp.status > 999) std::abort();
  }
  return 0;
}
