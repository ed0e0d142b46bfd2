#include "daemon/config.h"

#include "core/address.h"
#include "core/https_client.h"

#include <unistd.h>

#include <set>
#include <toml++/toml.h>

#include "core/ascii.h"
#include "core/https_client.h"
#include "core/log.h"
#include "dns/address_policy.h"
#include "queue/redis_client.h"
#include "queue/retry_policy.h"

namespace deliverd::daemon {
namespace {

// Collects typed values from one TOML table; the first error wins and names file, line and key.
class Reader {
 public:
  Reader(const std::string& file, const toml::table& root) : file_(file), root_(root) {}

  void str(const char* table, const char* key, std::string& out) {
    if (auto* n = find(table, key)) {
      if (auto v = n->value<std::string>())
        out = *v;
      else
        fail(*n, table, key, "must be a string");
    }
  }
  void integer(const char* table, const char* key, int& out, long lo, long hi) {
    int64_t v = out;
    integer64(table, key, v, lo, hi);
    out = static_cast<int>(v);  // within [lo, hi], which fit an int
  }
  void integer64(const char* table, const char* key, int64_t& out, int64_t lo, int64_t hi) {
    if (auto* n = find(table, key)) {
      auto v = n->value<int64_t>();
      if (!v || !n->is_integer())
        fail(*n, table, key, "must be an integer");
      else if (*v < lo || *v > hi)
        fail(*n, table, key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
      else
        out = *v;
    }
  }
  void real(const char* table, const char* key, double& out, double lo, double hi) {
    if (auto* n = find(table, key)) {
      auto v = n->value<double>();
      if (!v) return fail(*n, table, key, "must be a number");
      if (*v < lo || *v > hi) return fail(*n, table, key, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
      out = *v;
    }
  }
  void int_list(const char* table, const char* key, std::vector<int>& out, long lo, long hi) {
    if (auto* n = find(table, key)) {
      auto* arr = n->as_array();
      if (!arr || arr->empty()) return fail(*n, table, key, "must be a non-empty list of integers");
      out.clear();
      for (auto& el : *arr) {
        auto v = el.value<int64_t>();
        if (!v || !el.is_integer()) return fail(el, table, key, "must be a list of integers");
        if (*v < lo || *v > hi)
          return fail(el, table, key, "each must be between " + std::to_string(lo) + " and " + std::to_string(hi));
        out.push_back(static_cast<int>(*v));
      }
    }
  }
  void boolean(const char* table, const char* key, bool& out) {
    if (auto* n = find(table, key)) {
      if (auto v = n->value<bool>(); v && n->is_boolean())
        out = *v;
      else
        fail(*n, table, key, "must be true or false");
    }
  }
  void str_list(const char* table, const char* key, std::vector<std::string>& out) {
    if (auto* n = find(table, key)) {
      auto* arr = n->as_array();
      if (!arr) return fail(*n, table, key, "must be a list of strings");
      out.clear();
      for (auto& el : *arr) {
        auto v = el.value<std::string>();
        if (!v) return fail(el, table, key, "must be a list of strings");
        out.push_back(*v);
      }
    }
  }
  void duration(const char* table, const char* key, int64_t& out, int64_t lo_ms) {
    if (auto* n = find(table, key)) {
      auto v = n->value<std::string>();
      if (!v) return fail(*n, table, key, "must be a duration string such as \"90s\", \"5m\", \"1h\" or \"3d\"");
      auto ms = queue::parse_duration_ms(*v);
      if (!ms) return fail(*n, table, key, ms.error());
      if (*ms < lo_ms) return fail(*n, table, key, "must be at least " + std::to_string(lo_ms) + " ms");
      out = *ms;
    }
  }
  void duration_list(const char* table, const char* key, std::vector<int64_t>& out, int64_t lo_ms) {
    if (auto* n = find(table, key)) {
      auto* arr = n->as_array();
      if (!arr || arr->empty()) return fail(*n, table, key, "must be a non-empty list of durations (\"1m\", \"1h\" …)");
      out.clear();
      for (auto& el : *arr) {
        auto v = el.value<std::string>();
        auto ms = v ? queue::parse_duration_ms(*v) : core::Result<int64_t, std::string>(core::Err{std::string("must be a string")});
        if (!ms) return fail(el, table, key, ms.error());
        if (*ms < lo_ms) return fail(el, table, key, "each delay must be at least " + std::to_string(lo_ms) + " ms");
        out.push_back(*ms);
      }
    }
  }
  // Unknown tables and keys are errors: a typo must not silently fall back to a default.
  void reject_unknown(const std::map<std::string, std::set<std::string>>& known) {
    for (auto& [tname, tnode] : root_) {
      auto it = known.find(std::string(tname.str()));
      if (it == known.end()) {
        fail_at(tnode.source().begin.line, std::string(tname.str()), "", "unknown table");
        continue;
      }
      auto* t = tnode.as_table();
      if (!t) {
        fail_at(tnode.source().begin.line, std::string(tname.str()), "", "must be a table");
        continue;
      }
      for (auto& [k, v] : *t)
        if (!it->second.count(std::string(k.str())))
          fail_at(v.source().begin.line, it->first, std::string(k.str()), "unknown key");
    }
  }
  void check(bool ok, const char* table, const char* key, const std::string& msg) {
    if (ok) return;
    auto* n = find(table, key);
    fail_at(n ? n->source().begin.line : 0, table, key, msg);
  }
  const std::string& error() const { return error_; }

 private:
  const toml::node* find(const char* table, const char* key) const {
    auto* t = root_[table].as_table();
    return t ? t->get(key) : nullptr;
  }
  void fail(const toml::node& n, const std::string& table, const std::string& key, const std::string& msg) {
    fail_at(n.source().begin.line, table, key, msg);
  }
  void fail_at(unsigned line, const std::string& table, const std::string& key, const std::string& msg) {
    if (!error_.empty()) return;
    error_ = file_ + ":" + (line ? std::to_string(line) : std::string("?")) + ": [" + table + "]" +
             (key.empty() ? "" : " " + key) + ": " + msg;
  }
  std::string file_;
  const toml::table& root_;
  std::string error_;
};

std::string system_hostname() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
  return buf;
}

bool valid_hostname(const std::string& h) {
  if (h.empty() || h.size() > 253) return false;
  for (char c : h)
    if (!(core::ascii_is_alnum(c) || c == '-' || c == '.')) return false;
  return h.front() != '.' && h.front() != '-' && h.back() != '.';
}

// An array of tables ([[name]]) taken out of the document, with what its error messages name.
struct TableArray {
  std::string name;
  toml::array tables;
  unsigned line = 0;  // the array's, for a table without a position of its own
  // "<path>:<line>: [[name]] ", the prefix of every error about one of its tables.
  std::string where(const std::string& path, const toml::node& table) const {
    unsigned at = table.source().begin.line ? table.source().begin.line : line;
    return path + ":" + std::to_string(at) + ": [[" + name + "]] ";
  }
};

TableArray take_table_array(toml::table& root, const char* name) {
  TableArray out{name, {}, 0};
  if (auto* a = root[name].as_array()) {
    out.tables = *a;
    out.line = root[name].node()->source().begin.line;
    root.erase(name);
  }
  return out;
}

}  // namespace

bool dkim_account_allowed(const std::vector<std::string>& accounts, std::string_view account) {
  for (const auto& a : accounts)
    if (a == "*" || a == account) return true;
  return false;
}

const Config::OAuthProvider* Config::oauth_provider(std::string_view name) const {
  for (const auto& p : oauth)
    if (p.name == name) return &p;
  return nullptr;
}

bool Config::DkimKey::allows(const std::string& account) const { return dkim_account_allowed(accounts, account); }

const Config::DkimKey* Config::dkim_for_address(const std::string& email) const {
  size_t at = email.rfind('@');
  if (at == std::string::npos) return nullptr;
  const std::string domain = core::ascii_lowercase(email.substr(at + 1));
  // The closest enclosing domain wins: a key for mail.acme.example governs that subdomain.
  const DkimKey* best = nullptr;
  for (const auto& k : dkim) {
    bool in = domain == k.domain ||
              (domain.size() > k.domain.size() && domain.compare(domain.size() - k.domain.size(), k.domain.size(),
                                                                  k.domain) == 0 &&
               domain[domain.size() - k.domain.size() - 1] == '.');
    if (in && (!best || k.domain.size() > best->domain.size())) best = &k;
  }
  return best;
}

core::Result<Config, std::string> load_config(const std::string& path) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return core::Err{path + ":" + std::to_string(e.source().begin.line) + ": " + std::string(e.description())};
  } catch (const std::exception& e) {
    return core::Err{path + ": " + e.what()};
  }

  Config c;
  c.path = path;
  // [[dkim]] and [[oauth]] are arrays of tables, read on their own below; reject_unknown checks
  // plain tables.
  TableArray dkim_tables = take_table_array(root, "dkim");
  TableArray oauth_tables = take_table_array(root, "oauth");
  Reader r(path, root);
  r.reject_unknown({
      {"daemon", {"hostname", "log_level", "log_format", "shutdown_grace_s", "workers"}},
      {"redis",
       {"url", "stream", "group", "consumer", "results_stream", "dead_stream", "results_maxlen", "max_inflight",
        "block_ms", "claim_idle_s", "password_file", "ca_file", "retry_set", "done_prefix", "max_inflight_bytes",
        "max_job_bytes", "results_retention", "dead_retention", "sentinels", "sentinel_master", "sentinel_username",
        "sentinel_password_file"}},
      {"retry", {"schedule", "max_age"}},
      {"policy",
       {"ramp_start", "ramp_step", "ramp_max", "per_hour", "per_minute", "min_gap_s", "jitter_s", "breaker_failures",
        "breaker_open_minutes", "quota_open_minutes", "auth_disable_after", "bounce_window", "bounce_rate",
        "paused_retry_s", "destination_max_connections", "destination_per_minute"}},
      {"postgres", {"conninfo", "events_retention_days"}},
      {"admin", {"listen", "trusted_proxies"}},
      {"security", {"allow_private_targets", "secret_key_file", "old_secret_key_files"}},
      {"dns", {"servers", "timeout_ms", "tries", "max_ttl_s", "negative_ttl_s", "cache_entries", "timeout_ttl_s", "dnssec_resolver"}},
      {"smtp",
       {"connect_timeout_s", "banner_timeout_s", "command_timeout_s", "data_timeout_s", "data_end_timeout_s",
        "session_timeout_s", "starttls_timeout_s", "tls_timeout_s", "auth_timeout_s", "quit_timeout_s", "ca_file",
        "max_sessions", "max_sessions_per_destination", "max_messages_per_connection", "idle_timeout_s", "mx_tls",
        "mta_sts", "mx_port", "mx_max_attempts", "mx_deadline_s", "allow_plaintext_auth", "tls_rpt", "tls_rpt_org",
        "tls_rpt_contact", "tls_rpt_from"}},
      {"unsubscribe", {"listen", "base_url", "key_file", "old_key_files", "mailto"}},
      {"compliance", {"postal_address", "accounts"}},
      {"inbound",
       {"enabled", "max_watchers", "poll_interval", "move_to", "suppress_on_reply", "correlation_window",
        "max_fetch_bytes", "lease"}},
  });

  r.str("daemon", "hostname", c.hostname);
  r.str("daemon", "log_level", c.log_level);
  r.str("daemon", "log_format", c.log_format);
  r.integer("daemon", "shutdown_grace_s", c.shutdown_grace_s, 0, 3600);
  r.integer("daemon", "workers", c.workers, 0, 64);

  r.str("redis", "url", c.redis_url);
  r.str("redis", "stream", c.stream);
  r.str("redis", "group", c.group);
  r.str("redis", "consumer", c.consumer);
  r.str("redis", "results_stream", c.results_stream);
  r.str("redis", "dead_stream", c.dead_stream);
  r.integer("redis", "results_maxlen", c.results_maxlen, 1000, 1000000000);
  r.integer("redis", "max_inflight", c.max_inflight, 1, 100000);
  r.integer64("redis", "max_inflight_bytes", c.max_inflight_bytes, 1LL << 20, 1LL << 40);
  // 512 MiB is the largest bulk string Redis accepts (proto-max-bulk-len's default).
  r.integer64("redis", "max_job_bytes", c.max_job_bytes, 4096, 512LL << 20);
  r.duration("redis", "results_retention", c.results_retention_ms, 0);
  r.duration("redis", "dead_retention", c.dead_retention_ms, 0);
  r.integer("redis", "block_ms", c.block_ms, 10, 60000);
  r.integer("redis", "claim_idle_s", c.claim_idle_s, 1, 7 * 86400);
  r.str("redis", "password_file", c.redis_password_file);
  r.str("redis", "ca_file", c.redis_ca_file);
  r.str_list("redis", "sentinels", c.redis_sentinels);
  r.str("redis", "sentinel_master", c.redis_sentinel_master);
  r.str("redis", "sentinel_username", c.redis_sentinel_username);
  r.str("redis", "sentinel_password_file", c.redis_sentinel_password_file);
  for (const auto& s : c.redis_sentinels)
    if (auto a = queue::parse_sentinel_address(s); !a) r.check(false, "redis", "sentinels", a.error());
  r.check(c.redis_sentinels.empty() || !c.redis_sentinel_master.empty(), "redis", "sentinel_master",
          "is required with sentinels (the name the sentinels monitor the primary under)");
  r.str("redis", "retry_set", c.retry_set);
  r.str("redis", "done_prefix", c.done_prefix);
  r.duration_list("retry", "schedule", c.retry_schedule_ms, 100);
  r.duration("retry", "max_age", c.retry_max_age_ms, 1000);

  auto& pol = c.policy;
  r.integer("policy", "ramp_start", pol.ramp_start, 0, 100000);
  r.integer("policy", "ramp_step", pol.ramp_step, 0, 100000);
  r.integer("policy", "ramp_max", pol.ramp_max, 0, 1000000);
  r.integer("policy", "per_hour", pol.per_hour, 0, 1000000);
  r.integer("policy", "per_minute", pol.per_minute, 0, 100000);
  r.integer("policy", "min_gap_s", pol.min_gap_s, 0, 86400);
  r.integer("policy", "jitter_s", pol.jitter_s, 0, 86400);
  r.integer("policy", "breaker_failures", pol.breaker_failures, 1, 1000);
  r.int_list("policy", "breaker_open_minutes", pol.breaker_open_minutes, 1, 7 * 24 * 60);
  r.integer("policy", "quota_open_minutes", pol.quota_open_minutes, 1, 7 * 24 * 60);
  r.integer("policy", "auth_disable_after", pol.auth_disable_after, 1, 1000);
  r.integer("policy", "bounce_window", pol.bounce_window, 1, 100000);
  r.real("policy", "bounce_rate", pol.bounce_rate, 0.0, 1.0);
  r.integer("policy", "paused_retry_s", pol.paused_retry_s, 1, 86400);
  r.integer("policy", "destination_max_connections", pol.destination_max_connections, 0, 100000);
  r.integer("policy", "destination_per_minute", pol.destination_per_minute, 0, 1000000);
  if (r.error().empty())
    if (auto v = policy::validate(pol); !v) r.check(false, "policy", "ramp_start", v.error());

  r.str("postgres", "conninfo", c.pg_conninfo);
  r.integer("postgres", "events_retention_days", c.events_retention_days, 0, 36500);
  r.str("admin", "listen", c.admin_listen);
  r.str_list("admin", "trusted_proxies", c.trusted_proxies);
  for (const auto& cidr : c.trusted_proxies)
    if (auto parsed = dns::parse_cidr(cidr); !parsed) r.check(false, "admin", "trusted_proxies", parsed.error());
  r.str_list("security", "allow_private_targets", c.allow_private_targets);
  r.str("security", "secret_key_file", c.secret_key_file);
  r.str_list("security", "old_secret_key_files", c.old_secret_key_files);

  r.str_list("dns", "servers", c.dns_servers);
  r.integer("dns", "timeout_ms", c.dns_timeout_ms, 100, 60000);
  r.integer("dns", "tries", c.dns_tries, 1, 10);
  r.integer("dns", "max_ttl_s", c.dns_max_ttl_s, 0, 86400);
  r.integer("dns", "negative_ttl_s", c.dns_negative_ttl_s, 0, 3600);
  r.integer("dns", "timeout_ttl_s", c.dns_timeout_ttl_s, 0, 3600);
  r.integer("dns", "cache_entries", c.dns_cache_entries, 0, 10000000);
  r.str("dns", "dnssec_resolver", c.dns_dnssec_resolver);

  r.integer("smtp", "connect_timeout_s", c.smtp_connect_timeout_s, 1, 3600);
  r.integer("smtp", "banner_timeout_s", c.smtp_banner_timeout_s, 1, 3600);
  r.integer("smtp", "command_timeout_s", c.smtp_command_timeout_s, 1, 3600);
  r.integer("smtp", "data_timeout_s", c.smtp_data_timeout_s, 1, 3600);
  r.integer("smtp", "data_end_timeout_s", c.smtp_data_end_timeout_s, 1, 3600);
  r.integer("smtp", "session_timeout_s", c.smtp_session_timeout_s, 10, 86400);
  r.integer("smtp", "starttls_timeout_s", c.smtp_starttls_timeout_s, 1, 3600);
  r.integer("smtp", "tls_timeout_s", c.smtp_tls_timeout_s, 1, 3600);
  r.integer("smtp", "auth_timeout_s", c.smtp_auth_timeout_s, 1, 3600);
  r.integer("smtp", "quit_timeout_s", c.smtp_quit_timeout_s, 1, 3600);
  r.str("smtp", "ca_file", c.smtp_ca_file);
  r.integer("smtp", "max_sessions", c.smtp_max_sessions, 1, 1000000);
  r.integer("smtp", "max_sessions_per_destination", c.smtp_max_sessions_per_destination, 1, 100000);
  r.integer("smtp", "max_messages_per_connection", c.smtp_max_messages_per_connection, 1, 100000);
  r.integer("smtp", "idle_timeout_s", c.smtp_idle_timeout_s, 1, 3600);
  r.str("smtp", "mx_tls", c.smtp_mx_tls);
  r.check(c.smtp_mx_tls == "opportunistic" || c.smtp_mx_tls == "required", "smtp", "mx_tls",
          "must be \"opportunistic\" or \"required\"");
  r.boolean("smtp", "mta_sts", c.smtp_mta_sts);
  r.integer("smtp", "mx_port", c.smtp_mx_port, 1, 65535);
  r.check(c.smtp_mx_port == 25 || c.smtp_mx_port == 465 || c.smtp_mx_port == 587 || c.smtp_mx_port == 2525, "smtp",
          "mx_port", "must be 25, 465, 587 or 2525");
  r.integer("smtp", "mx_max_attempts", c.smtp_mx_max_attempts, 1, 20);
  r.integer("smtp", "mx_deadline_s", c.smtp_mx_deadline_s, 10, 3600);
  r.boolean("smtp", "allow_plaintext_auth", c.smtp_allow_plaintext_auth);
  r.boolean("smtp", "tls_rpt", c.smtp_tls_rpt);
  r.str("smtp", "tls_rpt_org", c.smtp_tls_rpt_org);
  r.str("smtp", "tls_rpt_contact", c.smtp_tls_rpt_contact);
  r.str("smtp", "tls_rpt_from", c.smtp_tls_rpt_from);
  auto one_line = [](const std::string& v) { return v.size() <= 200 && v.find_first_of("\r\n") == std::string::npos; };
  r.check(one_line(c.smtp_tls_rpt_org), "smtp", "tls_rpt_org", "must be one line of at most 200 characters");
  r.check(one_line(c.smtp_tls_rpt_contact), "smtp", "tls_rpt_contact", "must be one line of at most 200 characters");
  // A missing key has no line of its own: the error points at tls_rpt, which asked for it.
  r.check(!c.smtp_tls_rpt || !c.smtp_tls_rpt_org.empty(), "smtp", "tls_rpt",
          "needs tls_rpt_org (the organization-name of the reports)");
  r.check(!c.smtp_tls_rpt || !c.smtp_tls_rpt_from.empty(), "smtp", "tls_rpt",
          "needs tls_rpt_from (the envelope and From of report mail)");
  if (!c.smtp_tls_rpt_from.empty()) {
    auto from = core::parse_address(c.smtp_tls_rpt_from);
    r.check(from.ok(), "smtp", "tls_rpt_from", "is not a mail address: " + (from.ok() ? std::string() : from.error()));
  }

  r.str("unsubscribe", "listen", c.unsubscribe_listen);
  r.str("unsubscribe", "base_url", c.unsubscribe_base_url);
  r.str("unsubscribe", "key_file", c.unsubscribe_key_file);
  r.str_list("unsubscribe", "old_key_files", c.unsubscribe_old_key_files);
  r.str("unsubscribe", "mailto", c.unsubscribe_mailto);
  auto& in = c.inbound;
  r.boolean("inbound", "enabled", in.enabled);
  r.integer("inbound", "max_watchers", in.max_watchers, 0, 100000);
  r.duration("inbound", "poll_interval", in.poll_interval_ms, 1000);
  r.str("inbound", "move_to", in.move_to);
  r.check(in.move_to.find_first_of("\r\n\"\\") == std::string::npos && in.move_to.size() <= 200, "inbound",
          "move_to", "must be a folder name without quotes, backslashes or line breaks");
  r.boolean("inbound", "suppress_on_reply", in.suppress_on_reply);
  r.duration("inbound", "correlation_window", in.correlation_window_ms, 60'000);
  r.integer("inbound", "max_fetch_bytes", in.max_fetch_bytes, 4096, 16 << 20);
  r.duration("inbound", "lease", in.lease_ms, 3000);
  r.str("compliance", "postal_address", c.postal_address);
  if (auto* accounts = root["compliance"]["accounts"].node()) {
    if (auto* t = accounts->as_table()) {
      for (auto& [k, v] : *t) {
        if (auto s = v.value<std::string>()) c.account_postal_addresses[std::string(k.str())] = *s;
        else r.check(false, "compliance", "accounts", "values must be strings (account = \"postal address\")");
      }
    } else {
      r.check(false, "compliance", "accounts", "must be a table of account = \"postal address\"");
    }
  }
  for (auto& el : dkim_tables.tables) {
    auto* t = el.as_table();
    std::string where = dkim_tables.where(path, el);
    if (!t) return core::Err{where + "must be a table"};
    Config::DkimKey k;
    bool has_accounts = false;
    for (auto& [key, v] : *t) {
      std::string name(key.str());
      if (name == "accounts") {
        has_accounts = true;
        auto* arr = v.as_array();
        if (!arr || arr->empty())
          return core::Err{where + "accounts: must be a non-empty list of account ids ([\"*\"] for every account)"};
        for (auto& el : *arr) {
          auto a = el.value<std::string>();
          if (!a || a->empty()) return core::Err{where + "accounts: must be a list of non-empty strings"};
          k.accounts.push_back(*a);
        }
        continue;
      }
      auto s = v.value<std::string>();
      std::string* out = name == "domain" ? &k.domain : name == "selector" ? &k.selector
                       : name == "key_file" ? &k.key_file : name == "algorithm" ? &k.algorithm : nullptr;
      if (!out) return core::Err{where + name + ": unknown key"};
      if (!s) return core::Err{where + name + ": must be a string"};
      *out = *s;
    }
    if (k.domain.empty() || k.selector.empty() || k.key_file.empty())
      return core::Err{where + "domain, selector and key_file are required"};
    k.domain = core::ascii_lowercase(k.domain);
    if (!has_accounts)
      return core::Err{where + "accounts: required: the accounts that may send from " + k.domain +
                       " and have it signed ([\"*\"] for every account)"};
    if (k.algorithm != "rsa-sha256" && k.algorithm != "ed25519-sha256")
      return core::Err{where + "algorithm: must be rsa-sha256 or ed25519-sha256"};
    for (const auto& other : c.dkim)
      if (other.domain == k.domain) return core::Err{where + "domain: " + k.domain + " has two keys"};
    c.dkim.push_back(std::move(k));
  }

  for (auto& el : oauth_tables.tables) {
    auto* t = el.as_table();
    std::string where = oauth_tables.where(path, el);
    if (!t) return core::Err{where + "must be a table"};
    Config::OAuthProvider p;
    for (auto& [key, v] : *t) {
      std::string name(key.str());
      std::string* out = name == "name"                 ? &p.name
                         : name == "token_url"          ? &p.token_url
                         : name == "client_id"          ? &p.client_id
                         : name == "client_secret_file" ? &p.client_secret_file
                         : name == "scope"              ? &p.scope
                                                        : nullptr;
      if (!out) return core::Err{where + name + ": unknown key"};
      auto s = v.value<std::string>();
      if (!s) return core::Err{where + name + ": must be a string"};
      *out = *s;
    }
    if (p.name.empty() || p.token_url.empty() || p.client_id.empty())
      return core::Err{where + "name, token_url and client_id are required"};
    if (auto u = core::parse_https_url(p.token_url); !u) return core::Err{where + "token_url: " + u.error()};
    for (const auto& other : c.oauth)
      if (other.name == p.name) return core::Err{where + "name: " + p.name + " is given twice"};
    c.oauth.push_back(std::move(p));
  }

  if (c.hostname.empty()) c.hostname = system_hostname();
  if (c.consumer.empty()) c.consumer = c.hostname;
  core::LogLevel level;
  r.check(core::parse_log_level(c.log_level, level), "daemon", "log_level", "must be debug, info, warn or error");
  core::LogFormat format;
  r.check(core::parse_log_format(c.log_format, format), "daemon", "log_format", "must be kv or json");
  r.check(valid_hostname(c.hostname), "daemon", "hostname", "must be a DNS host name");
  r.check(c.redis_url.rfind("redis://", 0) == 0 || c.redis_url.rfind("rediss://", 0) == 0, "redis", "url",
          "must start with redis:// or rediss://");
  r.check(!c.stream.empty() && !c.group.empty() && !c.consumer.empty(), "redis", "stream",
          "stream, group and consumer must not be empty");
  r.check(!c.retry_set.empty() && !c.done_prefix.empty(), "redis", "retry_set",
          "retry_set and done_prefix must not be empty");
  r.check(!c.admin_listen.empty() && c.admin_listen.find(':') != std::string::npos, "admin", "listen",
          "must be HOST:PORT");
  r.check(!c.secret_key_file.empty(), "security", "secret_key_file",
          "is required (32-byte key for mailbox secrets at rest)");
  r.check(c.unsubscribe_base_url.empty() || c.unsubscribe_base_url.rfind("https://", 0) == 0 ||
              c.unsubscribe_base_url.rfind("http://", 0) == 0,
          "unsubscribe", "base_url", "must be an http(s) URL (https in production: RFC 8058)");
  r.check(c.unsubscribe_base_url.find_first_of(" <>\"") == std::string::npos, "unsubscribe", "base_url",
          "must not contain spaces, quotes or angle brackets");
  r.check((c.unsubscribe_base_url.empty() && c.unsubscribe_listen.empty()) || !c.unsubscribe_key_file.empty(),
          "unsubscribe", "key_file", "is required with base_url or listen (it signs the unsubscribe tokens)");
  r.check(c.unsubscribe_listen.empty() || c.unsubscribe_listen.find(':') != std::string::npos, "unsubscribe",
          "listen", "must be HOST:PORT");
  if (!r.error().empty()) return core::Err{r.error()};
  while (!c.unsubscribe_base_url.empty() && c.unsubscribe_base_url.back() == '/') c.unsubscribe_base_url.pop_back();
  return c;
}

}  // namespace deliverd::daemon
