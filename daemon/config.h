#pragma once
// deliverd.toml, loaded and validated once at start-up (and on reload). Every error names the
// file, the line and the key, so an operator can fix it without reading the code.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "policy/policy_config.h"

namespace deliverd::daemon {

struct Config {
  std::string path;

  // [daemon]
  std::string hostname;            // EHLO name and Message-ID domain; default: the host's name
  std::string log_level = "info";  // debug | info | warn | error
  std::string log_format = "kv";   // kv (key=value) | json
  int shutdown_grace_s = 30;       // SIGTERM: how long in-flight deliveries may take to finish
  int workers = 0;                 // event loops (threads); 0: the CPUs the process may use

  // [redis]
  std::string redis_url = "redis://127.0.0.1:6379";
  std::string stream = "deliverd:jobs";
  std::string group = "deliverd";
  std::string consumer;  // default: hostname (stable across restarts)
  std::string results_stream = "deliverd:results";
  std::string dead_stream = "deliverd:dead";
  int results_maxlen = 1000000;
  int max_inflight = 512;
  // Bytes of the jobs read and not yet finished (plus at most one read): bounds the memory held
  // for jobs whatever their size.
  int64_t max_inflight_bytes = 128LL << 20;
  // A job entry larger than this is dead-lettered with its size (only its first 4 KiB kept).
  int64_t max_job_bytes = 32LL << 20;
  // Age after which results and dead letters are trimmed (besides results_maxlen); 0 = no age limit.
  int64_t results_retention_ms = 7LL * 86'400'000;
  int64_t dead_retention_ms = 30LL * 86'400'000;
  int block_ms = 1000;
  // Entries left idle this long by a consumer are taken over by another (XAUTOCLAIM); a live
  // daemon renews its own every third of it. Longer than [smtp] session_timeout_s by default.
  int claim_idle_s = 2400;
  std::string redis_password_file;  // overrides a password in the URL; keeps it out of the config
  std::string redis_ca_file;        // extra CA bundle for rediss://
  // Redis Sentinel: the primary named sentinel_master is found (and followed) through these
  // "host:port" entries; the URL's host and port are then not used.
  std::vector<std::string> redis_sentinels;
  std::string redis_sentinel_master;
  std::string redis_sentinel_username, redis_sentinel_password_file;
  std::string retry_set = "deliverd:retry";
  std::string done_prefix = "deliverd:done:";

  // [retry]
  std::vector<int64_t> retry_schedule_ms = {60'000, 300'000, 900'000, 3'600'000, 10'800'000, 21'600'000};
  int64_t retry_max_age_ms = 72LL * 3'600'000;

  // [policy] (docs/policy.md): ramp-up, pacing, breakers, bounce guard, destination throttle
  policy::PolicyConfig policy;

  // [postgres]
  std::string pg_conninfo = "host=127.0.0.1 dbname=deliverd";
  int events_retention_days = 90;  // delivery_events rows older than this are removed; 0 = kept

  // [admin]
  std::string admin_listen = "127.0.0.1:8025";
  // CIDRs of reverse proxies in front of the admin and unsubscribe listeners: requests from them
  // are attributed to the rightmost untrusted X-Forwarded-For hop (admin/client_address.h).
  std::vector<std::string> trusted_proxies;

  // [security]
  std::vector<std::string> allow_private_targets;
  std::string secret_key_file;
  // Earlier keys, read-only: values sealed with them still open until `deliverd rekey` has
  // resealed everything with secret_key_file.
  std::vector<std::string> old_secret_key_files;

  // [dns]
  std::vector<std::string> dns_servers;  // empty: the system's resolv.conf
  // A validating resolver the operator runs ("127.0.0.1:53"), asked for TLSA records with DNSSEC:
  // DANE in MX mode (docs/smtp.md "DANE"). Empty: DANE is off.
  std::string dns_dnssec_resolver;
  int dns_timeout_ms = 3000;
  int dns_tries = 2;
  int dns_max_ttl_s = 3600;      // answers are cached for their TTL, capped here
  int dns_negative_ttl_s = 60;   // NXDOMAIN / no-data answers are cached this long
  int dns_timeout_ttl_s = 30;    // a lookup that timed out answers "timeout" this long without asking
  int dns_cache_entries = 100000;

  // [smtp] (seconds; RFC 5321 4.5.3.2 defaults)
  int smtp_connect_timeout_s = 30;
  int smtp_banner_timeout_s = 300;
  int smtp_command_timeout_s = 300;
  int smtp_data_timeout_s = 120;
  int smtp_data_end_timeout_s = 600;
  int smtp_session_timeout_s = 1800;
  int smtp_starttls_timeout_s = 120;  // reply to STARTTLS
  int smtp_tls_timeout_s = 30;        // the TLS handshake
  int smtp_auth_timeout_s = 120;      // each AUTH round trip
  int smtp_quit_timeout_s = 10;
  std::string smtp_ca_file;           // extra CA bundle trusted besides the system's
  int smtp_max_sessions = 1000;       // open SMTP connections, all mailboxes and domains
  int smtp_max_sessions_per_destination = 10;  // open connections to one mailbox's server / one MX domain
  int smtp_max_messages_per_connection = 100;
  int smtp_idle_timeout_s = 30;       // an unused pooled connection QUITs after this
  std::string smtp_mx_tls = "opportunistic";  // MX mode STARTTLS: opportunistic | required
  bool smtp_mta_sts = true;           // MX mode: honour recipient domains' MTA-STS policies (RFC 8461)
  // TLS-RPT (RFC 8460): daily reports to recipient domains that ask for them (docs/smtp.md).
  bool smtp_tls_rpt = false;
  std::string smtp_tls_rpt_org;      // organization-name; required when on
  std::string smtp_tls_rpt_contact;  // contact-info; optional
  std::string smtp_tls_rpt_from;     // envelope and From of report mail; required when on
  int smtp_mx_port = 25;
  int smtp_mx_max_attempts = 5;
  int smtp_mx_deadline_s = 300;  // one delivery's MX lookups and connects together
  // Lab rigs only: let the session and the connection test send AUTH / IMAP LOGIN without TLS,
  // and let mailboxes with security "none" keep credentials. Logged loudly at start.
  bool smtp_allow_plaintext_auth = false;

  // [unsubscribe] (docs/compliance.md): the public one-click listener and our default URL
  std::string unsubscribe_listen;    // "" = no listener
  std::string unsubscribe_base_url;  // "https://u.example.net" → "<base_url>/u/<token>"
  std::string unsubscribe_key_file;  // 32 raw bytes or 64 hex characters; signs the tokens
  std::vector<std::string> unsubscribe_old_key_files;  // earlier keys: their links keep working
  std::string unsubscribe_mailto;    // default mailto for List-Unsubscribe; "" = none

  // [[dkim]]: one signing key per sending domain, and the accounts that may send from it
  struct DkimKey {
    std::string domain, selector, key_file, algorithm = "rsa-sha256";
    std::vector<std::string> accounts;  // required; ["*"] = every account
    bool allows(const std::string& account) const;
  };
  // The [[dkim]] table whose domain is the address's domain or a parent of it; nullptr if none.
  const DkimKey* dkim_for_address(const std::string& email) const;
  std::vector<DkimKey> dkim;

  // [[oauth]]: token endpoints that refresh the access tokens of OAuth mailboxes (docs/smtp.md)
  struct OAuthProvider {
    std::string name, token_url, client_id, client_secret_file, scope;
  };
  const OAuthProvider* oauth_provider(std::string_view name) const;
  std::vector<OAuthProvider> oauth;

  // [inbound] (docs/inbound.md): what comes back to the sending mailboxes, read over IMAP
  struct Inbound {
    bool enabled = true;         // watch every mailbox that has IMAP settings
    int max_watchers = 1000;     // IMAP connections this daemon holds at most
    int64_t poll_interval_ms = 60'000;  // servers without IDLE are looked at this often
    std::string move_to;         // "" = never change the mailbox; else bounces and complaints go to this folder
    bool suppress_on_reply = false;     // a human reply suppresses the address too
    int64_t correlation_window_ms = 7LL * 86'400'000;  // a notice without headers matches sends this recent
    int max_fetch_bytes = 65536;        // per section fetched (headers, report parts)
    int64_t lease_ms = 30'000;          // one watcher per mailbox across the fleet: the Redis lease
  } inbound;

  // [compliance]: CAN-SPAM postal address footer for campaign mail, default and per account
  std::string postal_address;
  std::map<std::string, std::string> account_postal_addresses;
};

// Whether a [[dkim]] accounts list lets account sign (send) from its domain; "*" names every account.
bool dkim_account_allowed(const std::vector<std::string>& accounts, std::string_view account);

// Reads and validates; the error is "FILE:LINE: [table] key: what is wrong".
core::Result<Config, std::string> load_config(const std::string& path);

}  // namespace deliverd::daemon
