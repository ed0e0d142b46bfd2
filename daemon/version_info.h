#pragma once
// `deliverd version`: our version and those of the libraries we are linked with, so a bug
// report names the exact combination running on a host.
#include <string>

namespace deliverd::daemon {

// Version of deliverd itself (the project version CMake compiled in).
std::string deliverd_version();

// Multi-line report, "name version" per line, deliverd first. Runtime versions where the
// library exposes one (libuv, c-ares, libpq, OpenSSL, http-parser), else the version compiled
// against (hiredis, toml++, simdjson, libsystemd).
std::string version_report();

}  // namespace deliverd::daemon
