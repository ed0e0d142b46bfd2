// The .deb built by `cpack -G DEB` passes lintian without errors, unpacks into a clean root
// with a fresh dpkg database, and the binary it ships validates the config it ships.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/integration/fixtures/process.h"

namespace dt = deliverd::testing;
namespace fs = std::filesystem;

namespace {

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string find_deb(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".deb") return e.path().string();
  return {};
}

// The config the package ships names /etc/deliverd/secret.key; inside the test root it is
// <root>/etc/deliverd/secret.key.
void point_secret_into_root(const std::string& conf, const std::string& key_path) {
  std::string text = dt::read_file(conf);
  const std::string from = "secret_key_file = \"/etc/deliverd/secret.key\"";
  auto at = text.find(from);
  ASSERT_NE(at, std::string::npos) << "shipped config no longer has the default secret_key_file line";
  text.replace(at, from.size(), "secret_key_file = \"" + key_path + "\"");
  dt::write_file(conf, text);
}

}  // namespace

TEST(Packaging, DebPassesLintianAndInstallsIntoACleanRoot) {
  const std::string build_dir = env_or_empty("DELIVERD_BUILD_DIR");
  const std::string binary = env_or_empty("DELIVERD_BINARY");
  ASSERT_FALSE(build_dir.empty());
  ASSERT_TRUE(fs::exists(binary)) << binary << " is not built; build the deliverd target first";
  ASSERT_TRUE(fs::exists(build_dir + "/CPackConfig.cmake"));

  dt::TempDir tmp("deliverd-pkg");
  std::string out;
  // CPACK_CMAKE_GENERATOR=Ninja: that generator has no "preinstall" target, so cpack only runs
  // the install scripts and packages what is built, instead of first building every target of
  // the tree (the Makefile generator's preinstall depends on "all").
  int rc = dt::run_command({"cpack", "-G", "DEB", "-B", tmp.file("out"), "--config", build_dir + "/CPackConfig.cmake",
                            "-D", "CPACK_CMAKE_GENERATOR=Ninja"},
                           &out, 180000);
  ASSERT_EQ(rc, 0) << out;
  std::string deb = find_deb(tmp.file("out"));
  ASSERT_FALSE(deb.empty()) << out;

  // Metadata.
  ASSERT_EQ(dt::run_command({"dpkg-deb", "-f", deb, "Package", "Section", "Depends"}, &out), 0) << out;
  EXPECT_NE(out.find("Package: deliverd"), std::string::npos) << out;
  EXPECT_NE(out.find("Section: mail"), std::string::npos) << out;
  EXPECT_NE(out.find("libuv1"), std::string::npos) << "shlibdeps did not run: " << out;

  // lintian: errors fail the test, warnings are printed for the record.
  std::string lint;
  int lrc = dt::run_command({"lintian", "--no-cfg", "--allow-root", deb}, &lint, 300000);
  std::istringstream lines(lint);
  std::string line, errors;
  while (std::getline(lines, line))
    if (line.rfind("E: ", 0) == 0) errors += line + "\n";
  EXPECT_TRUE(errors.empty()) << errors;
  EXPECT_NE(lrc, 127) << "lintian missing (scripts/deps installs it)";
  std::cout << "lintian:\n" << lint << std::endl;

  // A clean root with an empty dpkg database. --unpack, not -i: configuring runs postinst
  // chrooted into the root, which has no /bin/sh and no systemd (and the host's tools must not
  // be run against the host from a test). The maintainer scripts are checked with sh -n below.
  std::string root = tmp.file("root");
  fs::create_directories(root + "/var/lib/dpkg/info");
  fs::create_directories(root + "/var/lib/dpkg/updates");
  dt::write_file(root + "/var/lib/dpkg/status", "");
  dt::write_file(root + "/var/lib/dpkg/available", "");
  rc = dt::run_command({"dpkg", "--root=" + root, "--force-depends", "--unpack", deb}, &out, 60000);
  ASSERT_EQ(rc, 0) << out;
  ASSERT_EQ(dt::run_command({"dpkg-query", "--root=" + root, "-W", "-f=${Status}|${Conffiles}", "deliverd"}, &out), 0)
      << out;
  EXPECT_NE(out.find("install ok unpacked"), std::string::npos) << out;
  EXPECT_NE(out.find("/etc/deliverd/deliverd.toml"), std::string::npos) << "config is not a conffile: " << out;

  // An unpacked, not yet configured package keeps a new conffile as <name>.dpkg-new; putting it
  // in place is what the configure step does for a first installation.
  std::string conf = root + "/etc/deliverd/deliverd.toml";
  ASSERT_TRUE(fs::exists(conf + ".dpkg-new") || fs::exists(conf));
  if (fs::exists(conf + ".dpkg-new")) fs::rename(conf + ".dpkg-new", conf);

  for (const char* f : {"usr/sbin/deliverd", "lib/systemd/system/deliverd.service", "usr/lib/sysusers.d/deliverd.conf",
                        "usr/lib/tmpfiles.d/deliverd.conf", "etc/deliverd/deliverd.toml",
                        "usr/share/man/man8/deliverd.8.gz", "usr/share/man/man5/deliverd.toml.5.gz",
                        "usr/share/doc/deliverd/copyright", "usr/share/doc/deliverd/changelog.Debian.gz"})
    EXPECT_TRUE(fs::exists(root + "/" + f)) << f;
  for (const char* script : {"postinst", "prerm", "postrm"}) {
    std::string path = root + "/var/lib/dpkg/info/deliverd." + script;
    ASSERT_TRUE(fs::exists(path)) << path;
    EXPECT_EQ(dt::run_command({"sh", "-n", path}, &out), 0) << script << ": " << out;
  }

  // The shipped binary checks the shipped config (with a key, which is not shipped).
  std::string key = root + "/etc/deliverd/secret.key";
  dt::write_secret_file(key, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n");
  point_secret_into_root(root + "/etc/deliverd/deliverd.toml", key);
  rc = dt::run_command({root + "/usr/sbin/deliverd", "check-config", "--config", root + "/etc/deliverd/deliverd.toml"},
                       &out, 60000);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(": ok"), std::string::npos) << out;

  rc = dt::run_command({root + "/usr/sbin/deliverd", "version"}, &out, 60000);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("deliverd "), std::string::npos) << out;
}
