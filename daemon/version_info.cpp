#include "daemon/version_info.h"

#include <ares.h>
#include <hiredis/hiredis.h>
#include <http_parser.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <toml++/impl/version.h>
#include <uv.h>

#ifndef DELIVERD_VERSION
#define DELIVERD_VERSION "0.0.0"
#endif
// Neither library has a runtime version call; CMake passes the pkg-config version.
#ifndef DELIVERD_SIMDJSON_VERSION
#define DELIVERD_SIMDJSON_VERSION "unknown"
#endif
#ifndef DELIVERD_LIBSYSTEMD_VERSION
#define DELIVERD_LIBSYSTEMD_VERSION "unknown"
#endif

namespace deliverd::daemon {
namespace {

std::string dotted(unsigned long major, unsigned long minor, unsigned long patch) {
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

// PQlibVersion(): major*10000 + minor for 10 and later.
std::string libpq_version() {
  int v = PQlibVersion();
  if (v >= 100000) return std::to_string(v / 10000) + "." + std::to_string(v % 10000);
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
}

}  // namespace

std::string deliverd_version() { return DELIVERD_VERSION; }

std::string version_report() {
  unsigned long hp = http_parser_version();
  std::string out;
  out += "deliverd " + deliverd_version() + "\n";
  out += std::string("libuv ") + uv_version_string() + "\n";
  out += std::string("c-ares ") + ares_version(nullptr) + "\n";
  out += "hiredis " + dotted(HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH) + "\n";
  out += "libpq " + libpq_version() + "\n";
  out += std::string("openssl ") + OpenSSL_version(OPENSSL_VERSION_STRING) + "\n";
  out += std::string("simdjson ") + DELIVERD_SIMDJSON_VERSION + "\n";
  out += "toml++ " + dotted(TOML_LIB_MAJOR, TOML_LIB_MINOR, TOML_LIB_PATCH) + "\n";
  out += "http-parser " + dotted((hp >> 16) & 255, (hp >> 8) & 255, hp & 255) + "\n";
  out += std::string("libsystemd ") + DELIVERD_LIBSYSTEMD_VERSION + "\n";
  return out;
}

}  // namespace deliverd::daemon
