#include "core/deflate.h"

#include <zlib.h>

#include <algorithm>
#include <memory>

namespace deliverd::core {
namespace {

constexpr int kRawWindowBits = -15;  // negative: no zlib or gzip wrapper, 32 KiB window
constexpr int kGzipWindowBits = 31;  // 15 + 16: the gzip wrapper (header, CRC-32, length)
constexpr int kMemLevel = 8;         // zlib's default

struct DeflateStream {
  z_stream z{};
  bool ok = false;
  explicit DeflateStream(int window_bits = kRawWindowBits) {
    ok = deflateInit2(&z, 6, Z_DEFLATED, window_bits, kMemLevel, Z_DEFAULT_STRATEGY) == Z_OK;
  }
  ~DeflateStream() {
    if (ok) deflateEnd(&z);
  }
};

struct InflateStream {
  z_stream z{};
  bool ok = false;
  explicit InflateStream(int window_bits) { ok = inflateInit2(&z, window_bits) == Z_OK; }
  ~InflateStream() {
    if (ok) inflateEnd(&z);
  }
};

}  // namespace

std::string deflate_raw(std::string_view in) {
  DeflateStream s;
  if (!s.ok || in.size() > UINT32_MAX) return "";
  // Output is only worth keeping when it is smaller: give deflate one byte less than the input.
  std::string out(in.size() > 0 ? in.size() - 1 : 0, '\0');
  if (out.empty()) return "";
  s.z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  s.z.avail_in = static_cast<uInt>(in.size());
  s.z.next_out = reinterpret_cast<Bytef*>(out.data());
  s.z.avail_out = static_cast<uInt>(out.size());
  if (::deflate(&s.z, Z_FINISH) != Z_STREAM_END) return "";  // did not fit: not smaller
  out.resize(out.size() - s.z.avail_out);
  return out;
}

namespace {

Result<std::string, std::string> inflate(std::string_view in, size_t max_bytes, int window_bits, const char* what) {
  InflateStream s(window_bits);
  if (!s.ok) return Err(std::string("zlib could not start an inflate stream"));
  if (in.size() > UINT32_MAX) return Err(std::string("compressed data larger than 4 GiB"));
  s.z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  s.z.avail_in = static_cast<uInt>(in.size());
  std::string out;
  char chunk[16384];
  for (;;) {
    s.z.next_out = reinterpret_cast<Bytef*>(chunk);
    s.z.avail_out = sizeof chunk;
    const int rc = ::inflate(&s.z, Z_NO_FLUSH);
    const size_t got = sizeof chunk - s.z.avail_out;
    if (out.size() + got > max_bytes)
      return Err("compressed data inflates to more than " + std::to_string(max_bytes) + " bytes");
    out.append(chunk, got);
    if (rc == Z_STREAM_END) break;
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && s.z.avail_in == 0) return Err(std::string("compressed data cut short"));
    return Err(std::string("not ") + what + ": " + (s.z.msg ? s.z.msg : "zlib error " + std::to_string(rc)));
  }
  if (s.z.avail_in != 0) return Err(std::string("bytes after the end of the compressed data"));
  return out;
}

}  // namespace

Result<std::string, std::string> inflate_raw(std::string_view in, size_t max_bytes) {
  return inflate(in, max_bytes, kRawWindowBits, "raw deflate data");
}

std::string gzip(std::string_view in) {
  DeflateStream s(kGzipWindowBits);
  if (!s.ok || in.size() > UINT32_MAX) return "";
  std::string out(deflateBound(&s.z, static_cast<uLong>(in.size())), '\0');
  s.z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  s.z.avail_in = static_cast<uInt>(in.size());
  s.z.next_out = reinterpret_cast<Bytef*>(out.data());
  s.z.avail_out = static_cast<uInt>(out.size());
  // deflateBound covers the gzip header and trailer, so one Z_FINISH always completes.
  if (::deflate(&s.z, Z_FINISH) != Z_STREAM_END) return "";
  out.resize(out.size() - s.z.avail_out);
  return out;
}

Result<std::string, std::string> gunzip(std::string_view in, size_t max_bytes) {
  return inflate(in, max_bytes, kGzipWindowBits, "gzip data");
}

}  // namespace deliverd::core
