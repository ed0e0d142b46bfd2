// What composing one message costs, as the delivery path pays it: compose() and then dot_stuff()
// of the result, for a 2 KB and a 100 KB text body (plain ASCII prose, which goes out 7bit, and
// mixed-language prose, which goes out quoted-printable) and a 10 MiB body on a single line (too
// long for 7bit, so quoted-printable with soft breaks). Bytes/s counts the body given; the DKIM
// body canonicalisation of the composed message is measured on its own.
#include <benchmark/benchmark.h>

#include <cstddef>
#include <string>

#include "smtp/composer.h"
#include "smtp/dkim.h"

namespace {

using deliverd::smtp::MessageSpec;

// Prose of `size` bytes in lines of about 70 characters, LF-ended as a producer's JSON gives it.
std::string prose(size_t size, bool mixed) {
  const std::string ascii = "The quick brown fox jumps over the lazy dog, again and again. ";
  const std::string other = "Grüße aus Köln, naïve café — 東京 ";
  std::string out;
  size_t col = 0;
  while (out.size() < size) {
    const std::string& piece = (mixed && out.size() % 3 == 0) ? other : ascii;
    out += piece;
    col += piece.size();
    if (col > 70) {
      out += '\n';
      col = 0;
    }
  }
  return out;
}

MessageSpec spec_with(std::string text) {
  MessageSpec m;
  m.from_email = "alice@acme.example";
  m.from_name = "Alice from Acme";
  m.to_email = "bob@example.org";
  m.to_name = "Bob";
  m.subject = "Quick question about your order";
  m.headers = {{"X-Campaign-Id", "cmp_1"}};
  m.text = std::move(text);
  return m;
}

void compose_and_stuff(benchmark::State& state, const MessageSpec& m) {
  for (auto _ : state) {
    auto msg = deliverd::smtp::compose(m, 1700000000);
    if (!msg) {
      state.SkipWithError(msg.error().c_str());
      return;
    }
    std::string payload = deliverd::smtp::dot_stuff(*msg);
    benchmark::DoNotOptimize(payload.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(m.text.size()));
}

void BM_Compose2KAscii(benchmark::State& state) { compose_and_stuff(state, spec_with(prose(2048, false))); }
void BM_Compose2KMixed(benchmark::State& state) { compose_and_stuff(state, spec_with(prose(2048, true))); }
void BM_Compose100KAscii(benchmark::State& state) { compose_and_stuff(state, spec_with(prose(100 * 1024, false))); }
void BM_Compose100KMixed(benchmark::State& state) { compose_and_stuff(state, spec_with(prose(100 * 1024, true))); }
void BM_Compose10MiBOneLine(benchmark::State& state) {
  compose_and_stuff(state, spec_with(std::string(10 << 20, 'a')));
}

void BM_DkimRelaxedBody100K(benchmark::State& state) {
  const std::string body = *deliverd::smtp::compose(spec_with(prose(100 * 1024, true)), 1700000000);
  for (auto _ : state) {
    std::string c = deliverd::smtp::dkim_relaxed_body(body);
    benchmark::DoNotOptimize(c.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(body.size()));
}

}  // namespace

BENCHMARK(BM_Compose2KAscii);
BENCHMARK(BM_Compose2KMixed);
BENCHMARK(BM_Compose100KAscii);
BENCHMARK(BM_Compose100KMixed);
BENCHMARK(BM_Compose10MiBOneLine)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DkimRelaxedBody100K);
