// docs/openapi.yaml describes every route the router serves (method and path).
#include <gtest/gtest.h>
#include <uv.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "admin/admin_routes.h"
#include "admin/api_routes.h"

namespace deliverd::admin {
namespace {

// path → methods, from the "paths:" section (two-space path keys, four-space method keys).
std::map<std::string, std::set<std::string>> openapi_operations(const std::string& file) {
  std::ifstream in(file);
  std::map<std::string, std::set<std::string>> ops;
  std::string line, current;
  bool in_paths = false;
  while (std::getline(in, line)) {
    if (line == "paths:") {
      in_paths = true;
      continue;
    }
    if (!in_paths) continue;
    if (!line.empty() && line[0] != ' ' && line[0] != '#') break;  // the next top-level key
    if (line.rfind("  /", 0) == 0 && line.back() == ':') {
      current = line.substr(2, line.size() - 3);
      ops[current];
    } else if (!current.empty() && line.size() > 5 && line.rfind("    ", 0) == 0 && line[4] != ' ' &&
               line.back() == ':') {
      ops[current].insert(line.substr(4, line.size() - 5));
    }
  }
  return ops;
}

TEST(OpenApi, EveryRouteIsDescribed) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  Router router;
  add_health_routes(router, nullptr);
  ApiDeps deps;
  deps.loop = &loop;
  deps.pg = store::PgConnection::create(&loop, "host=/nonexistent");  // never used: no request is made
  add_api_routes(router, deps);
  const char* src = std::getenv("DELIVERD_SOURCE_DIR");
  ASSERT_TRUE(src);
  auto ops = openapi_operations(std::string(src) + "/docs/openapi.yaml");
  ASSERT_FALSE(ops.empty());
  size_t described = 0;
  for (const auto& [method, path] : router.routes()) {
    std::string m;
    for (char c : method) m += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_TRUE(ops.count(path) && ops[path].count(m)) << method << " " << path << " is not in docs/openapi.yaml";
    ++described;
  }
  EXPECT_GE(described, 24u);
  // And nothing is documented that the router does not serve.
  std::set<std::pair<std::string, std::string>> served;
  for (const auto& [method, path] : router.routes()) served.emplace(method, path);
  for (const auto& [path, methods] : ops)
    for (const auto& m : methods) {
      if (m == "parameters") continue;
      std::string upper;
      for (char c : m) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      EXPECT_TRUE(served.count({upper, path})) << upper << " " << path << " is documented but not routed";
    }
  deps.pg->close();
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

}  // namespace
}  // namespace deliverd::admin
