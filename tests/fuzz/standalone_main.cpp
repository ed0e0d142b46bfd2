// Driver for fuzz targets in builds without libFuzzer (g++, sanitizer builds): replays every
// corpus file, then a fixed number of deterministic mutations of them, through the target.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  long iterations = argc > 1 ? std::atol(argv[1]) : 10000;
  std::vector<std::string> corpus;
  for (int i = 2; i < argc; ++i) {
    std::error_code ec;
    if (!std::filesystem::is_directory(argv[i], ec)) continue;
    for (const auto& entry : std::filesystem::directory_iterator(argv[i])) {
      std::ifstream in(entry.path(), std::ios::binary);
      corpus.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
  }
  if (corpus.empty()) corpus.emplace_back("");
  for (const auto& c : corpus) LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(c.data()), c.size());

  std::mt19937_64 rng(12345);  // fixed seed: a failure here reproduces
  for (long i = 0; i < iterations; ++i) {
    std::string s = corpus[rng() % corpus.size()];
    int edits = 1 + static_cast<int>(rng() % 8);
    for (int e = 0; e < edits; ++e) {
      size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
      switch (rng() % 5) {
        case 0: s.insert(s.begin() + static_cast<long>(pos), static_cast<char>(rng())); break;
        case 1: if (pos < s.size()) s.erase(pos, 1 + rng() % 16); break;
        case 2: if (pos < s.size()) s[pos] = static_cast<char>(rng()); break;
        case 3: if (!s.empty()) s.insert(pos, s.substr(rng() % s.size(), rng() % 64)); break;
        case 4: s.insert(pos, std::string(rng() % 300, static_cast<char>("\r\n -.:0a\xff"[rng() % 9]))); break;
      }
    }
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  }
  std::printf("fuzz replay: %zu corpus inputs, %ld mutations, no crash\n", corpus.size(), iterations);
  return 0;
}
