// deliverd: outbound mail delivery daemon. Subcommands: run, check-config, migrate, mailbox add, version.
#include <openssl/opensslv.h>
#include <uv.h>

#include <ares.h>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/app.h"
#include "daemon/cli.h"
#include "daemon/config.h"
#include "dns/address_policy.h"
#include "store/mailboxes.h"
#include "store/migrations.h"
#include "store/secret_box.h"

#ifndef DELIVERD_VERSION
#define DELIVERD_VERSION "0.0.0"
#endif

namespace {
using namespace deliverd;
using daemon::OptionSpec;

const OptionSpec kConfigOpt{"config", true, "path to deliverd.toml (default /etc/deliverd/deliverd.toml)"};
const OptionSpec kHelpOpt{"help", false, "show this help"};

struct Command {
  std::string name;
  std::string summary;
  std::vector<OptionSpec> options;
  std::function<int(const daemon::ParsedArgs&)> run;
};

int fail(const std::string& msg) {
  std::fprintf(stderr, "deliverd: %s\n", msg.c_str());
  return 2;
}

// Loads and fully validates the config, or prints the error naming file, line and key.
bool load(const daemon::ParsedArgs& a, daemon::Config& out) {
  auto cfg = daemon::load_config(a.get("config", "/etc/deliverd/deliverd.toml"));
  if (!cfg) {
    fail(cfg.error());
    return false;
  }
  if (auto v = daemon::validate_config(*cfg); !v) {
    fail(v.error());
    return false;
  }
  out = std::move(cfg).value();
  return true;
}

int cmd_run(const daemon::ParsedArgs& a) {
  daemon::Config cfg;
  if (!load(a, cfg)) return 2;
  daemon::App app(std::move(cfg));
  return app.run();
}

int cmd_check_config(const daemon::ParsedArgs& a) {
  daemon::Config cfg;
  if (!load(a, cfg)) return 2;
  std::printf("%s: ok\n", cfg.path.c_str());
  return 0;
}

int cmd_migrate(const daemon::ParsedArgs& a) {
  daemon::Config cfg;
  if (!load(a, cfg)) return 2;
  auto r = store::migrate(cfg.pg_conninfo);
  if (!r) return fail("migrate: " + r.error());
  std::printf("schema at version %d\n", *r);
  return 0;
}

std::string read_secret_file(const std::string& path, std::string& err) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    err = "cannot read " + path;
    return {};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

int cmd_mailbox_add(const daemon::ParsedArgs& a) {
  daemon::Config cfg;
  if (!load(a, cfg)) return 2;
  for (const char* req : {"id", "account", "email", "smtp-host", "smtp-port"})
    if (!a.has(req)) return fail(std::string("mailbox add: --") + req + " is required");
  store::Mailbox m;
  m.id = a.get("id");
  m.account = a.get("account");
  m.email = a.get("email");
  m.smtp_host = a.get("smtp-host");
  try {
    size_t used = 0;
    m.smtp_port = std::stoi(a.get("smtp-port"), &used);
    if (used != a.get("smtp-port").size()) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    return fail("mailbox add: --smtp-port must be a number, got \"" + a.get("smtp-port") + "\"");
  }
  if (!dns::port_allowed(m.smtp_port))
    return fail("mailbox add: --smtp-port " + std::to_string(m.smtp_port) +
                " is refused by the port policy (allowed: 25, 465, 587, 2525)");
  m.security = a.get("security", "starttls");
  if (m.security != "none" && m.security != "starttls" && m.security != "tls")
    return fail("mailbox add: --security must be none, starttls or tls, got \"" + m.security + "\"");
  m.username = a.get("username");
  if (a.has("password-file")) {
    std::string err;
    m.password = read_secret_file(a.get("password-file"), err);
    if (!err.empty()) return fail("mailbox add: --password-file: " + err);
  }
  if (a.has("oauth-token-file")) {
    std::string err;
    m.oauth_token = read_secret_file(a.get("oauth-token-file"), err);
    if (!err.empty()) return fail("mailbox add: --oauth-token-file: " + err);
  }
  m.mode = a.get("mode", "relay");
  if (m.mode != "relay" && m.mode != "mx")
    return fail("mailbox add: --mode must be relay or mx, got \"" + m.mode + "\"");
  auto box = store::SecretBox::from_key_file(cfg.secret_key_file);
  if (!box) return fail("[security] secret_key_file: " + box.error());
  auto r = store::add_mailbox(cfg.pg_conninfo, m, *box);
  if (!r) return fail("mailbox add: " + r.error());
  std::printf("mailbox %s saved (account %s, %s via %s:%d, security %s)\n", m.id.c_str(), m.account.c_str(),
              m.email.c_str(), m.smtp_host.c_str(), m.smtp_port, m.security.c_str());
  return 0;
}

int cmd_version(const daemon::ParsedArgs&) {
  std::printf("deliverd %s\nlibuv %s\nc-ares %s\n%s\n", DELIVERD_VERSION, uv_version_string(),
              ares_version(nullptr), OPENSSL_VERSION_TEXT);
  return 0;
}

const std::vector<Command>& commands() {
  static const std::vector<Command> cmds = {
      {"run", "Run the daemon: consume jobs from Redis and deliver them.", {kConfigOpt, kHelpOpt}, cmd_run},
      {"check-config",
       "Validate the configuration file; exit 0, or print FILE:LINE: [table] key: problem and exit 2.",
       {kConfigOpt, kHelpOpt},
       cmd_check_config},
      {"migrate", "Apply pending PostgreSQL schema migrations.", {kConfigOpt, kHelpOpt}, cmd_migrate},
      {"mailbox add",
       "Register (or update) a sending mailbox; its password is stored encrypted.",
       {kConfigOpt,
        {"id", true, "mailbox id used by jobs (e.g. mbx_7)"},
        {"account", true, "tenant the mailbox belongs to"},
        {"email", true, "sender address"},
        {"smtp-host", true, "submission server host name or IP"},
        {"smtp-port", true, "25, 465, 587 or 2525"},
        {"security", true, "none | starttls | tls (default starttls)"},
        {"username", true, "AUTH user name"},
        {"password-file", true, "file holding the AUTH password"},
        {"oauth-token-file", true, "file holding an OAuth access token for AUTH XOAUTH2 (Gmail, Microsoft 365)"},
        {"mode", true, "relay (through --smtp-host, default) | mx (straight to the recipient's MX)"},
        kHelpOpt},
       cmd_mailbox_add},
      {"version", "Print the version of deliverd and its libraries.", {kHelpOpt}, cmd_version},
  };
  return cmds;
}

void print_usage(FILE* out) {
  std::fprintf(out, "usage: deliverd COMMAND [OPTIONS]\n\ncommands:\n");
  for (const auto& c : commands()) std::fprintf(out, "  %-14s %s\n", c.name.c_str(), c.summary.c_str());
  std::fprintf(out, "\nRun 'deliverd COMMAND --help' for the options of a command.\n");
}

}  // namespace

int main(int argc, char** argv) {
  // A peer that vanishes mid-write must be an error value on that connection, not a dead process.
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_usage(args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  for (const auto& c : commands()) {
    // Two-word commands ("mailbox add") match two arguments.
    size_t words = c.name.find(' ') == std::string::npos ? 1 : 2;
    if (args.size() < words) continue;
    std::string given = words == 1 ? args[0] : args[0] + " " + args[1];
    if (given != c.name) continue;
    std::vector<std::string> rest(args.begin() + static_cast<long>(words), args.end());
    auto parsed = daemon::parse_args(rest, c.options);
    if (!parsed) {
      fail(c.name + ": " + parsed.error());
      std::fputs(daemon::usage_for(c.name, c.summary, c.options).c_str(), stderr);
      return 2;
    }
    if (parsed->has("help")) {
      std::fputs(daemon::usage_for(c.name, c.summary, c.options).c_str(), stdout);
      return 0;
    }
    return c.run(*parsed);
  }
  fail("unknown command \"" + args[0] + "\"");
  print_usage(stderr);
  return 2;
}
