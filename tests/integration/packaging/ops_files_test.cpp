// The operations files are accepted by the tools that consume them: the unit by
// systemd-analyze (exposure score and verify), the sysusers/tmpfiles snippets by systemd, the
// alert rules by promtool, the man pages by man/groff, and the man page covers the config.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/integration/fixtures/process.h"

namespace dt = deliverd::testing;
namespace fs = std::filesystem;

namespace {

std::string src(const std::string& rel) {
  const char* root = std::getenv("DELIVERD_SOURCE_DIR");
  return std::string(root ? root : ".") + "/" + rel;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

bool is_name_char(char c) { return (c >= 'a' && c <= 'z') || c == '_' || c == '.'; }

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t");
  size_t e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// std::regex is avoided on purpose: GCC 12 warns (-Wmaybe-uninitialized) inside <regex> in the
// sanitizer build, and these patterns are simple.
// "[table]", "[[table]]", "# [table]" → table; otherwise "".
std::string table_of(std::string line) {
  line = trim(line);
  if (!line.empty() && line[0] == '#') line = trim(line.substr(1));
  if (line.size() < 3 || line.front() != '[' || line.back() != ']') return "";
  size_t b = line.find_first_not_of('[');
  size_t e = line.find_last_not_of(']');
  std::string name = line.substr(b, e - b + 1);
  for (char c : name)
    if (!is_name_char(c)) return "";
  return name;
}

// "key = …" or "# key = …" → key; otherwise "".
std::string key_of(std::string line) {
  line = trim(line);
  if (!line.empty() && line[0] == '#') line = trim(line.substr(1));
  size_t n = 0;
  while (n < line.size() && ((line[n] >= 'a' && line[n] <= 'z') || line[n] == '_')) ++n;
  if (n == 0) return "";
  std::string rest = trim(line.substr(n));
  return !rest.empty() && rest[0] == '=' ? line.substr(0, n) : "";
}

}  // namespace

TEST(SystemdUnit, ExposureScoreIsAtMostTwo) {
  std::string out;
  int rc = dt::run_command({"systemd-analyze", "security", "--offline=true", "--no-pager", src("systemd/deliverd.service")},
                           &out);
  ASSERT_EQ(rc, 0) << out;
  const std::string marker = "Overall exposure level for deliverd.service: ";
  auto at = out.find(marker);
  ASSERT_NE(at, std::string::npos) << out;
  size_t used = 0;
  double score = std::stod(out.substr(at + marker.size()), &used);
  ASSERT_GT(used, 0u);
  std::cout << "systemd-analyze security: " << out.substr(at, out.find('\n', at) - at) << std::endl;
  EXPECT_LE(score, 2.0) << out;
}

TEST(SystemdUnit, VerifyAcceptsItWithTheBuiltBinaryAndManPages) {
  const char* bin = std::getenv("DELIVERD_BINARY");
  ASSERT_TRUE(bin && fs::exists(bin)) << "build the deliverd target first";
  dt::TempDir tmp("deliverd-unit");
  // verify checks that ExecStart= exists and that every man: page in Documentation= resolves,
  // so the copy points at the built binary and MANPATH at the roff sources from docs/man.
  std::string unit = replace_all(dt::read_file(src("systemd/deliverd.service")), "/usr/sbin/deliverd", bin);
  fs::create_directories(tmp.file("units"));
  dt::write_file(tmp.file("units/deliverd.service"), unit);
  fs::create_directories(tmp.file("man/man8"));
  fs::create_directories(tmp.file("man/man5"));
  fs::copy_file(src("docs/man/deliverd.8"), tmp.file("man/man8/deliverd.8"));
  fs::copy_file(src("docs/man/deliverd.toml.5"), tmp.file("man/man5/deliverd.toml.5"));
  std::string out;
  int rc = dt::run_command({"env", "MANPATH=" + tmp.file("man"), "SYSTEMD_LOG_LEVEL=warning", "systemd-analyze",
                            "verify", tmp.file("units/deliverd.service")},
                           &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out.find("deliverd.service:"), std::string::npos) << out;
}

TEST(SystemdUnit, DeclaresNotifyWatchdogReloadAndCredentials) {
  std::string unit = dt::read_file(src("systemd/deliverd.service"));
  for (const char* line : {"Type=notify\n", "NotifyAccess=main\n", "WatchdogSec=30\n",
                           "ExecReload=/bin/kill -HUP $MAINPID\n", "LoadCredential=secret.key:/etc/deliverd/secret.key\n",
                           "User=deliverd\n", "LimitCORE=0\n", "CapabilityBoundingSet=\n", "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n"})
    EXPECT_NE(unit.find(line), std::string::npos) << line;
}

TEST(SystemdSnippets, SysusersCreatesTheUserAndTmpfilesItsStateDirectory) {
  dt::TempDir root("deliverd-sysroot");
  fs::create_directories(root.file("etc"));
  std::string out;
  ASSERT_EQ(dt::run_command({"systemd-sysusers", "--root=" + root.path(), src("systemd/deliverd.sysusers")}, &out), 0)
      << out;
  std::string passwd = dt::read_file(root.file("etc/passwd"));
  EXPECT_NE(passwd.find("deliverd:x:"), std::string::npos) << passwd;
  EXPECT_NE(passwd.find(":/var/lib/deliverd:/usr/sbin/nologin"), std::string::npos) << passwd;
  ASSERT_EQ(dt::run_command({"systemd-tmpfiles", "--root=" + root.path(), "--create", src("systemd/deliverd.tmpfiles")},
                            &out),
            0)
      << out;
  auto st = fs::status(root.file("var/lib/deliverd"));
  ASSERT_TRUE(fs::is_directory(st));
  EXPECT_EQ(st.permissions() & fs::perms::all,
            fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
}

TEST(Monitoring, AlertRulesPassPromtoolCheckAndTheirUnitTests) {
  std::string out;
  EXPECT_EQ(dt::run_command({"promtool", "check", "rules", src("docs/monitoring/alerts.yml")}, &out), 0) << out;
  EXPECT_EQ(dt::run_command({"promtool", "test", "rules", src("docs/monitoring/alerts_test.yml")}, &out), 0) << out;
}

TEST(Monitoring, DashboardQueriesOnlyMetricsTheDaemonDocumentsOrExports) {
  std::string dash = dt::read_file(src("docs/monitoring/grafana-dashboard.json"));
  std::string metrics_doc = dt::read_file(src("docs/metrics.md"));
  ASSERT_FALSE(dash.empty());
  // Names in the code tree (registered by someone) or in docs/metrics.md count as known.
  std::string known = metrics_doc;
  std::string out;
  dt::run_command({"grep", "-rhoE", "\"deliverd_[a-z_]+\"", "--include=*.cpp", src("core"), src("dns"), src("smtp"),
                   src("queue"), src("store"), src("admin"), src("daemon"), src("policy")},
                  &out);
  known += out;
  std::set<std::string> unknown;
  for (size_t at = dash.find("deliverd_"); at != std::string::npos; at = dash.find("deliverd_", at + 1)) {
    if (at > 0 && (is_name_char(dash[at - 1]) || dash[at - 1] == '-')) continue;
    size_t end = at;
    while (end < dash.size() && ((dash[end] >= 'a' && dash[end] <= 'z') || dash[end] == '_')) ++end;
    std::string n = dash.substr(at, end - at);
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (n.size() > std::strlen(suffix) && n.ends_with(suffix) && known.find(n) == std::string::npos)
        n.resize(n.size() - std::strlen(suffix));
    if (known.find(n) != std::string::npos) continue;
    unknown.insert(n);
  }
  std::string list;
  for (const auto& n : unknown) list += n + " ";
  EXPECT_TRUE(unknown.empty()) << "dashboard queries unknown metrics: " << list;
}

TEST(ManPages, RenderWithoutGroffWarnings) {
  for (const char* page : {"docs/man/deliverd.8", "docs/man/deliverd.toml.5"}) {
    std::string out;
    int rc = dt::run_command({"sh", "-c", "LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l \"$1\" 2>&1 >/dev/null",
                              "sh", src(page)},
                             &out);
    EXPECT_EQ(rc, 0) << page << ": " << out;
    EXPECT_TRUE(out.empty()) << page << ": " << out;
  }
}

TEST(ManPages, ConfigPageDocumentsEveryKeyOfTheExampleConfig) {
  std::string page = dt::read_file(src("docs/man/deliverd.toml.5"));
  std::string conf = dt::read_file(src("conf/deliverd.toml"));
  ASSERT_FALSE(page.empty());
  ASSERT_FALSE(conf.empty());
  std::istringstream in(conf);
  std::string line, table, missing;
  while (std::getline(in, line)) {
    if (std::string t = table_of(line); !t.empty()) {
      table = t;
      if (page.find(".SH [" + table + "]") == std::string::npos && page.find(".SH [[" + table + "]]") == std::string::npos &&
          page.find(".SS [" + table + "]") == std::string::npos)
        missing += "[" + table + "] ";
    } else if (std::string k = key_of(line); !k.empty() && table != "compliance.accounts") {
      // Keys are written ".BR key " in the page, or as a later key of a combined entry
      // (.BR a " = 5, " b " = 2"); a commented example counts as a key too.
      if (page.find(".BR " + k + " ") == std::string::npos && page.find(", \" " + k + " \" = ") == std::string::npos)
        missing += table + "." + k + " ";
    }
  }
  EXPECT_TRUE(missing.empty()) << "deliverd.toml(5) lacks: " << missing;
}
