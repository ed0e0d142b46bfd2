// deliverd: outbound mail delivery daemon. Subcommands: run, check-config, migrate, mailbox add,
// suppress add|remove|list, version.

#include <sys/prctl.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "daemon/app.h"
#include "daemon/cli.h"
#include "daemon/config.h"
#include "daemon/key_command.h"
#include "daemon/status_command.h"
#include "daemon/version_info.h"
#include "core/key_file.h"
#include "core/log.h"
#include "dns/address_policy.h"
#include "store/mailboxes.h"
#include "store/migrations.h"
#include "store/oauth_grants.h"
#include "store/rekey.h"
#include "store/secret_box.h"
#include "store/suppressions.h"

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
  // Mailboxes that name an [[oauth]] provider the config lacks would never get a token. Without
  // PostgreSQL (a config checked on another host) this is said, not failed.
  auto in_use = store::oauth_providers_in_use(cfg.pg_conninfo);
  if (!in_use) {
    std::fprintf(stderr, "%s: note: mailboxes' OAuth providers not checked: %s\n", cfg.path.c_str(),
                 in_use.error().c_str());
  } else {
    int missing = 0;
    for (const auto& [name, count] : *in_use) {
      if (cfg.oauth_provider(name)) continue;
      std::fprintf(stderr, "%s: [[oauth]]: no provider \"%s\", which %lld mailbox(es) use\n", cfg.path.c_str(),
                   name.c_str(), static_cast<long long>(count));
      ++missing;
    }
    if (missing) return 2;
  }
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
  const std::string security = a.get("security", "starttls");
  auto parsed_security = core::security_from_name(security);
  if (!parsed_security)
    return fail("mailbox add: --security must be none, starttls or tls, got \"" + security + "\"");
  m.security = *parsed_security;
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
  // An OAuth grant the daemon refreshes itself: the provider of [[oauth]], the SASL user, and
  // the refresh token from a file (never on the command line, where ps would show it).
  if (a.has("oauth-provider") || a.has("oauth-user") || a.has("refresh-token-file")) {
    if (!a.has("oauth-provider") || !a.has("refresh-token-file"))
      return fail("mailbox add: --oauth-provider and --refresh-token-file go together");
    m.oauth_provider = a.get("oauth-provider");
    if (a.has("oauth-user")) m.username = a.get("oauth-user");
    if (m.username.empty()) m.username = m.email;
    std::string err;
    m.oauth_refresh_token = read_secret_file(a.get("refresh-token-file"), err);
    if (!err.empty()) return fail("mailbox add: --refresh-token-file: " + err);
  }
  // The inbox deliverd reads bounces and replies from (docs/inbound.md); the password comes from a
  // file, an OAuth mailbox logs in with its access token.
  if (a.has("imap-host") || a.has("imap-port") || a.has("imap-user") || a.has("imap-password-file")) {
    if (!a.has("imap-host")) return fail("mailbox add: --imap-port, --imap-user and --imap-password-file need --imap-host");
    auto host = store::normalize_host(a.get("imap-host"));
    if (!host) return fail("mailbox add: --imap-host: " + host.error());
    if (auto why = store::refused_host(*host)) return fail("mailbox add: --imap-host '" + *host + "' " + *why);
    m.imap.host = *host;
    const std::string port = a.get("imap-port", "993");
    if (port != "993" && port != "143") return fail("mailbox add: --imap-port must be 993 (TLS) or 143 (STARTTLS), got \"" + port + "\"");
    m.imap.port = std::stoi(port);
    m.imap.username = a.get("imap-user", m.username.empty() ? m.email : m.username);
    if (a.has("imap-password-file")) {
      std::string err;
      m.imap.password = read_secret_file(a.get("imap-password-file"), err);
      if (!err.empty()) return fail("mailbox add: --imap-password-file: " + err);
    } else if (m.oauth_provider.empty()) {
      return fail("mailbox add: --imap-host needs --imap-password-file (or an OAuth grant)");
    }
  }
  const std::string mode = a.get("mode", "relay");
  auto parsed_mode = store::mode_from_name(mode);
  if (!parsed_mode) return fail("mailbox add: --mode must be relay or mx, got \"" + mode + "\"");
  m.mode = *parsed_mode;
  // Sending-policy overrides; without them the mailbox follows the [policy] defaults.
  const std::pair<const char*, std::optional<int>*> counts[] = {
      {"ramp-start", &m.ramp_start}, {"ramp-step", &m.ramp_step}, {"ramp-max", &m.ramp_max},
      {"min-gap-s", &m.min_gap_s},   {"per-hour", &m.per_hour},   {"per-minute", &m.per_minute}};
  for (const auto& [flag, field] : counts) {
    if (!a.has(flag)) continue;
    const std::string v = a.get(flag);
    size_t used = 0;
    int n = -1;
    try {
      n = std::stoi(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != v.size() || v.empty() || n < 0)
      return fail(std::string("mailbox add: --") + flag + " must be a whole number >= 0, got \"" + v + "\"");
    *field = n;
  }
  m.warmup_start = a.get("warmup-start");
  m.timezone = a.get("timezone");
  store::normalize_mailbox(m);
  if (auto valid = store::validate_mailbox(m); !valid) return fail("mailbox add: " + valid.error());
  if (const daemon::Config::DkimKey* k = cfg.dkim_for_address(m.email); k && !k->allows(m.account))
    return fail("mailbox add: --email: " + k->domain + " is a signing domain ([[dkim]] accounts) that account " +
                m.account + " may not send from");
  if (auto e = store::plaintext_credentials_error(m, cfg.smtp_allow_plaintext_auth))
    return fail("mailbox add: --" + *e);
  auto box = store::SecretBox::from_key_file(cfg.secret_key_file, cfg.old_secret_key_files);
  if (!box) return fail("[security] secret_key_file: " + box.error());
  auto r = store::add_mailbox(cfg.pg_conninfo, m, *box, cfg.smtp_allow_plaintext_auth);
  if (!r) return fail("mailbox add: " + r.error());
  std::printf("mailbox %s saved (account %s, %s via %s:%d, security %s)\n", m.id.c_str(), m.account.c_str(),
              m.email.c_str(), m.smtp_host.c_str(), m.smtp_port, security.c_str());
  return 0;
}

int cmd_rekey(const daemon::ParsedArgs& a) {
  daemon::Config cfg;
  if (!load(a, cfg)) return 2;
  size_t batch = 500;
  if (a.has("batch")) {
    const std::string v = a.get("batch");
    if (v.empty() || v.size() > 6 || v.find_first_not_of("0123456789") != std::string::npos || std::stoul(v) == 0)
      return fail("rekey: --batch must be a whole number from 1 to 999999, got \"" + v + "\"");
    batch = std::stoul(v);
  }
  auto box = store::SecretBox::from_key_file(cfg.secret_key_file, cfg.old_secret_key_files);
  if (!box) return fail("[security] secret_key_file: " + box.error());
  auto r = store::rekey_secrets(cfg.pg_conninfo, *box, batch, [](const store::RekeyReport& p) {
    std::fprintf(stderr, "rekey: %lld mailboxes looked at, %lld secrets resealed\n",
                 static_cast<long long>(p.mailboxes), static_cast<long long>(p.resealed));
  });
  if (!r) return fail("rekey: " + r.error());
  for (const auto& f : r->failures) std::fprintf(stderr, "deliverd: rekey: %s\n", f.c_str());
  std::printf("rekey: %lld mailboxes, %lld secrets resealed with key %s, %lld already were, %lld changed meanwhile, %zu "
              "could not be opened\n",
              static_cast<long long>(r->mailboxes), static_cast<long long>(r->resealed),
              core::key_id_hex(box->key_id()).c_str(), static_cast<long long>(r->already_current),
              static_cast<long long>(r->changed_meanwhile), r->failures.size());
  // Then the address hashes that still have their address next to them (erased rows have not).
  auto h = store::rehash_addresses(cfg.pg_conninfo, store::AddressHasher::from(*box), batch,
                                   [](const store::RehashReport& p) {
                                     std::fprintf(stderr, "rekey: %lld suppressions and %lld delivery events looked at\n",
                                                  static_cast<long long>(p.suppressions),
                                                  static_cast<long long>(p.events));
                                   });
  if (!h) return fail("rekey: " + h.error());
  std::printf("rekey: %lld suppressions rehashed with key %s, %lld kept (listed under the new key already); %lld delivery "
              "events rehashed\n",
              static_cast<long long>(h->suppressions_rehashed), core::key_id_hex(box->key_id()).c_str(),
              static_cast<long long>(h->suppressions_kept), static_cast<long long>(h->events_rehashed));
  // Values that changed meanwhile were written by a running daemon; run again to be sure.
  return r->failures.empty() ? 0 : 1;
}

// The suppression commands hash addresses as the daemon does: under a key derived from the
// secret key. Failing that, the message that `fail` prints.
core::Result<store::AddressHasher, std::string> address_hasher(const daemon::Config& cfg) {
  auto box = store::SecretBox::from_key_file(cfg.secret_key_file, cfg.old_secret_key_files);
  if (!box) return core::Err("[security] secret_key_file: " + box.error());
  return store::AddressHasher::from(*box);
}

int cmd_suppress_add(const daemon::ParsedArgs& a) {
  daemon::Config cfg;
  if (!load(a, cfg)) return 2;
  if (!a.has("account")) return fail("suppress add: --account is required (use * for every account)");
  if (!a.has("address")) return fail("suppress add: the ADDRESS is required");
  auto addresses = address_hasher(cfg);
  if (!addresses) return fail(addresses.error());
  auto r = store::add_suppression_blocking(cfg.pg_conninfo, *addresses,
                                           {a.get("account"), a.get("address"), a.get("reason", "manual"), "cli"});
  if (!r) return fail("suppress add: " + r.error());
  std::printf("%s %s for account %s\n", store::normalize_address(a.get("address")).c_str(),
              *r ? "suppressed" : "was already suppressed", a.get("account").c_str());
  return 0;
}

int cmd_suppress_remove(const daemon::ParsedArgs& a) {
  daemon::Config cfg;
  if (!load(a, cfg)) return 2;
  if (!a.has("account")) return fail("suppress remove: --account is required");
  if (!a.has("address")) return fail("suppress remove: the ADDRESS is required");
  auto addresses = address_hasher(cfg);
  if (!addresses) return fail(addresses.error());
  auto r = store::remove_suppression_blocking(cfg.pg_conninfo, *addresses, a.get("account"), a.get("address"));
  if (!r) return fail("suppress remove: " + r.error());
  if (!*r) {
    std::fprintf(stderr, "deliverd: suppress remove: %s is not suppressed for account %s\n",
                 store::normalize_address(a.get("address")).c_str(), a.get("account").c_str());
    return 1;
  }
  std::printf("%s removed from account %s\n", store::normalize_address(a.get("address")).c_str(),
              a.get("account").c_str());
  return 0;
}

int cmd_suppress_list(const daemon::ParsedArgs& a) {
  daemon::Config cfg;
  if (!load(a, cfg)) return 2;
  if (!a.has("account")) return fail("suppress list: --account is required");
  size_t limit = 100;
  if (a.has("limit")) {
    const std::string v = a.get("limit");
    if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos)
      return fail("suppress list: --limit must be a whole number, got \"" + v + "\"");
    limit = std::stoul(v);
  }
  auto addresses = address_hasher(cfg);
  if (!addresses) return fail(addresses.error());
  auto r = store::list_suppressions_blocking(cfg.pg_conninfo, *addresses, a.get("account"), a.get("address"), limit);
  if (!r) return fail("suppress list: " + r.error());
  for (const auto& s : *r)
    std::printf("%s\t%s\t%s\t%s\n", s.row.address.c_str(), s.row.reason.c_str(), s.row.source.c_str(),
                s.created_at.c_str());
  return 0;
}

// "suppress add --account A bob@x.org": the one bare argument is the address, passed on as
// --address so that the shared option parser sees only options.
std::vector<std::string> address_as_option(const std::vector<std::string>& args,
                                           const std::vector<OptionSpec>& specs) {
  std::vector<std::string> out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& x = args[i];
    if (x.rfind("--", 0) == 0) {
      out.push_back(x);
      bool takes = false;
      for (const auto& s : specs)
        if (x.substr(2) == s.name) takes = s.takes_value;
      if (takes && i + 1 < args.size()) out.push_back(args[++i]);
      continue;
    }
    out.push_back("--address");
    out.push_back(x);
  }
  return out;
}

int cmd_version(const daemon::ParsedArgs&) {
  std::fputs(daemon::version_report().c_str(), stdout);
  return 0;
}

int cmd_status(const daemon::ParsedArgs& a) {
  std::string listen = a.get("admin");
  if (listen.empty()) {
    // Only the listener is needed: no key files are opened, so an operator without them can ask.
    auto cfg = daemon::load_config(a.get("config", "/etc/deliverd/deliverd.toml"));
    if (!cfg) return fail(cfg.error());
    listen = cfg->admin_listen;
  }
  return daemon::run_status(listen, std::cout);
}

int cmd_key_create(const daemon::ParsedArgs& a) {
  daemon::Config cfg;
  if (!load(a, cfg)) return 2;
  std::vector<std::string> args = {"create"};
  for (const char* opt : {"role", "account", "scopes", "expires", "name"})
    if (a.has(opt)) args.insert(args.end(), {std::string("--") + opt, a.get(opt)});
  return daemon::run_key_command(args, cfg.pg_conninfo, std::cout, std::cerr);
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
        {"oauth-provider", true, "[[oauth]] provider whose token endpoint refreshes this mailbox's access token"},
        {"oauth-user", true, "the OAuth SASL user (default --email)"},
        {"refresh-token-file", true, "file holding the OAuth refresh token (with --oauth-provider)"},
        {"imap-host", true, "IMAP server of the mailbox's inbox, read for bounces and replies (docs/inbound.md)"},
        {"imap-port", true, "993 (TLS, default) | 143 (STARTTLS)"},
        {"imap-user", true, "IMAP login (default --username, else --email)"},
        {"imap-password-file", true, "file holding the IMAP password (an OAuth mailbox uses its token)"},
        {"mode", true, "relay (through --smtp-host, default) | mx (straight to the recipient's MX)"},
        {"ramp-start", true, "ramp-up: sends allowed on the first day (default [policy] ramp_start)"},
        {"ramp-step", true, "ramp-up: added per day (default [policy] ramp_step)"},
        {"ramp-max", true, "ramp-up: daily limit once warmed up (default [policy] ramp_max)"},
        {"warmup-start", true, "YYYY-MM-DD, day 0 of the ramp-up (default: the first day it sends)"},
        {"min-gap-s", true, "seconds between two sends, before jitter (default [policy] min_gap_s)"},
        {"per-hour", true, "sends per hour (default [policy] per_hour; 0 = no cap)"},
        {"per-minute", true, "sends per minute (default [policy] per_minute; 0 = no cap)"},
        {"timezone", true, "IANA zone of the mailbox's days, e.g. Europe/Berlin (default UTC)"},
        kHelpOpt},
       cmd_mailbox_add},
      {"rekey",
       "Reseal every stored secret with [security] secret_key_file, so the keys in old_secret_key_files can be "
       "retired; safe while daemons run, and again (exit 1 when a secret did not open).",
       {kConfigOpt, {"batch", true, "mailboxes per batch (default 500)"}, kHelpOpt},
       cmd_rekey},
      {"suppress add",
       "Suppress ADDRESS for --account (\"*\" = every account); every daemon stops mailing it at once.",
       {kConfigOpt,
        {"account", true, "tenant, or * for the global list"},
        {"address", true, "the address (may also be given as the last argument)"},
        {"reason", true, "why (default manual)"},
        kHelpOpt},
       cmd_suppress_add},
      {"suppress remove",
       "Remove ADDRESS from the suppression list of --account.",
       {kConfigOpt,
        {"account", true, "tenant, or * for the global list"},
        {"address", true, "the address (may also be given as the last argument)"},
        kHelpOpt},
       cmd_suppress_remove},
      {"suppress list",
       "List the suppressions of --account, newest first (or only ADDRESS).",
       {kConfigOpt,
        {"account", true, "tenant, or * for the global list"},
        {"address", true, "only this address (may also be given as the last argument)"},
        {"limit", true, "at most this many rows (default 100)"},
        kHelpOpt},
       cmd_suppress_list},
      {"key create",
       "Create an admin API key; the token is printed once (docs/admin-api.md).",
       {kConfigOpt,
        {"role", true, "owner | admin | user | readonly"},
        {"account", true, "the account a user or readonly key is bound to"},
        {"scopes", true, "narrower than the role, e.g. \"mailboxes:read suppressions:write\""},
        {"expires", true, "RFC 3339 time or a duration from now (90d, 12h)"},
        {"name", true, "a label for the key"},
        kHelpOpt},
       cmd_key_create},
      {"status",
       "Show whether the running daemon is ready, and a summary of its metrics.",
       {kConfigOpt, {"admin", true, "HOST:PORT of the admin listener (default: [admin] listen)"}, kHelpOpt},
       cmd_status},
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
  // Every command may hold keys and opened secrets in memory: no core dump may write them out,
  // and no other process of the same user may attach to read them (ptrace needs dumpable).
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) std::perror("deliverd: prctl(PR_SET_DUMPABLE)");
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
    if (c.name.rfind("suppress ", 0) == 0) rest = address_as_option(rest, c.options);
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
    const int rc = c.run(*parsed);
    core::drain_log(2000);
    return rc;
  }
  fail("unknown command \"" + args[0] + "\"");
  print_usage(stderr);
  return 2;
}
