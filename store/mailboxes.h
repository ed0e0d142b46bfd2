#pragma once
// Sending mailboxes: validation, the blocking upsert used by the command line, and the async
// load the daemon runs on the loop. A mailbox is named by its account and its id (ids are unique
// per account only). Passwords and tokens are sealed with SecretBox before they reach the
// database (the account and id are the associated data) and are never logged.
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/names.h"
#include "core/result.h"
#include "core/security.h"
#include "store/pg_connection.h"
#include "store/secret_box.h"

namespace deliverd::store {

// How a mailbox's mail leaves: through its own submission server (relay) or straight to the
// recipient's MX (mx).
enum class Mode : uint8_t { Relay, Mx };

inline constexpr core::Named<Mode> kModeNames[] = {{Mode::Relay, "relay"}, {Mode::Mx, "mx"}};
static_assert(core::in_order(kModeNames));

constexpr std::string_view to_string(Mode m) { return core::name_in(kModeNames, m); }
constexpr std::optional<Mode> mode_from_name(std::string_view n) { return core::value_in(kModeNames, n); }

// The text forms where they come in (API body, PostgreSQL row): the error names the field.
// "direct" is accepted as an old spelling of "mx".
core::Result<Mode, std::string> parse_mode(std::string_view text);
core::Result<core::Security, std::string> parse_security(std::string_view text);

struct Mailbox {
  std::string id, account, email, smtp_host;
  int smtp_port = 587;
  core::Security security = core::Security::StartTls;
  std::string username, password /* plaintext, memory only */;
  std::string oauth_token;     // XOAUTH2 access token; plaintext, memory only; used instead of password
  // An OAuth grant the daemon refreshes itself ([[oauth]] provider name; "" = none). The refresh
  // token is written by the API and the command line only: the daemon reads it, and writes the
  // ones the provider rotates, through store/oauth_grants.h when it refreshes.
  std::string oauth_provider;
  std::string oauth_refresh_token;  // plaintext, memory only; not loaded by load_mailboxes
  Mode mode = Mode::Relay;
  bool paused = false;
  // Sending-policy overrides (policy/); unset means the daemon's [policy] default.
  std::optional<int> ramp_start, ramp_step, ramp_max;  // day-d limit = min(max, start + step·d)
  std::string warmup_start;                            // "YYYY-MM-DD" (day 0), "" = the day it was added
  std::optional<int> min_gap_s, per_hour, per_minute;
  std::string timezone;            // IANA name ("Europe/Berlin") for the day and window; "" = UTC
  std::optional<int> window_days;  // bit 0 = Monday … bit 6 = Sunday; unset = every day
  std::optional<int> window_start_hour, window_end_hour;  // [start, end) local hours; unset = all day
  bool disabled = false;  // repeated AUTH failures or a revoked OAuth grant; only an operator clears it
  std::string disabled_reason;  // "auth_failures" or "oauth_revoked" while disabled
  // Credentials kept although security is "none": stored by a daemon with [smtp]
  // allow_plaintext_auth (lab rigs); any other daemon refuses to send them.
  bool plaintext_auth = false;
  // Where the mailbox's own inbox is read (inbound/): bounces, complaints and replies. host "" =
  // not watched. An OAuth mailbox logs in with its access token (XOAUTH2) when password is "".
  struct Imap {
    std::string host;
    int port = 0;  // 993 (TLS) or 143 (STARTTLS)
    std::string username, password /* plaintext, memory only */;
    bool operator==(const Imap&) const = default;
  } imap;
  // In memory only: the daemon's count of changes to this row's sending settings (host, port,
  // security, credentials, address, mode, paused, disabled). Part of its pooled sessions' key, so
  // a session opened with old settings is never reused for the new ones.
  uint64_t generation = 0;
};

// Whether two versions of a row send alike: everything a pooled session depends on, and whether
// the mailbox may send at all.
bool same_sending_settings(const Mailbox& a, const Mailbox& b);

// Who paused a mailbox: an account-bound key may resume only its own pauses.
enum class PausedBy : uint8_t { Tenant, Operator, Daemon };
std::string_view to_string(PausedBy by);
std::optional<PausedBy> paused_by_from_name(std::string_view name);

// A change of whether a mailbox may send. Every change, whoever makes it (the admin API, the
// bounce guard, the AUTH-failure disable, a breaker reset), goes through policy::Gate::set_state,
// which writes the shared Redis state and this table together.
enum class MailboxChange : uint8_t {
  Pause,         // paused by `by`
  Resume,        // lifts a pause; an operator's also lifts "disabled" and the AUTH-failure count
  Disable,       // after repeated AUTH failures: only an operator lifts it
  ResetBreaker,  // an operator's resume that also closes the breaker and forgets recent sends
};
// What a change came to: done, no such mailbox, or refused because a stronger pauser holds it
// (a tenant lifting the daemon's or an operator's pause, or a disabled mailbox).
enum class ChangeAnswer : uint8_t { Done, NoMailbox, Refused };

// The secrets of a mailbox, each sealed with its own associated data so none can stand in for another.
enum class MailboxSecret : uint8_t { Password, OAuthToken, ImapPassword, OAuthRefresh };
// A pending (rotated) refresh token is sealed as OAuthRefresh: it is the same secret's next value.
std::string seal_mailbox_secret(const SecretBox& box, std::string_view plaintext, const std::string& account,
                                const std::string& id, MailboxSecret which);
// Opens a value of either sealed format (values sealed before mailboxes were per account were
// bound to the id alone).
core::Result<std::string, std::string> open_mailbox_secret(const SecretBox& box, std::string_view sealed,
                                                           const std::string& account, const std::string& id,
                                                           MailboxSecret which);

// The settings that say which server a mailbox's secrets go to. A change of any of them without
// the secrets given again is refused: a stored secret goes only to the server it was given for.
struct SecretDestination {
  std::string smtp_host;
  int smtp_port = 0;
  core::Security security = core::Security::None;
  std::string oauth_provider;  // a refresh token goes only to the token endpoint it was given for
  bool operator==(const SecretDestination&) const = default;
  static SecretDestination of(const Mailbox& m) { return {m.smtp_host, m.smtp_port, m.security, m.oauth_provider}; }
};

// "security: credentials need TLS …" when m holds a password or token and security is "none"
// (and plaintext is not allowed); nullopt otherwise.
std::optional<std::string> plaintext_credentials_error(const Mailbox& m, bool allow_plaintext_auth);

// Every change to the table is announced on this channel (trigger from migration 0006): the
// payload is the id of a row that changed, or "" when the whole table may have (TRUNCATE).
inline constexpr std::string_view kMailboxChannel = "deliverd_mailboxes";

// The SMTP ports a mailbox may use (DESIGN.md "Security rules").
bool allowed_smtp_port(int port);
// Checks every field; the error names the field and what is wrong with it.
core::Result<core::Ok, std::string> validate_mailbox(const Mailbox& m);
// A host to connect to (smtp_host, imap.host): an IP literal as given, or a name as lower-case
// A-labels (core/domain.h). The error says what is wrong, without the field name.
core::Result<std::string, std::string> normalize_host(std::string_view host);
// Why a (normalised) host may never be a target: a special-use or internal name
// (core::special_use_rule), with the rule; nullopt for other names and for IP literals, which
// the address policy vets when they are connected to.
std::optional<std::string> refused_host(std::string_view host);
// The spelling used inside: email normalised by core/address.h, smtp_host by normalize_host.
// Values that do not parse are left as they are for validate_mailbox to name.
void normalize_mailbox(Mailbox& m);

// Blocking, for the command line: validates, seals the secrets, upserts by (account, id). An
// existing mailbox keeps its stored secrets when none is given, unless its SMTP host, port or
// security changes: then a stored secret must be given again (the error names the option).
core::Result<core::Ok, std::string> add_mailbox(const std::string& conninfo, const Mailbox& m, const SecretBox& box,
                                                bool allow_plaintext_auth = false);

// Async on the loop: every mailbox, passwords opened. A row whose password cannot be opened
// (wrong key, tampered) fails the whole load with an error naming the mailbox.
void load_mailboxes(PgConnection& pg, const SecretBox& box,
                    std::function<void(core::Result<std::vector<Mailbox>, std::string>)> cb);
// One mailbox by its account and id.
struct MailboxRef {
  std::string account, id;
  auto operator<=>(const MailboxRef&) const = default;
  // "<length of account>:<account>:<id>": one string per pair, which no other pair can spell.
  std::string key() const { return std::to_string(account.size()) + ":" + account + ":" + id; }
  // The pair back from key(); nullopt for a string key() cannot have made.
  static std::optional<MailboxRef> from_key(std::string_view key);
};
// The same for some mailboxes only; a pair without a row is simply not in the answer.
void load_mailboxes_by_ref(PgConnection& pg, const SecretBox& box, const std::vector<MailboxRef>& refs,
                           std::function<void(core::Result<std::vector<Mailbox>, std::string>)> cb);
// The mailbox named by a change notification on kMailboxChannel ("<length of id>:<id><account>");
// nullopt for "" (everything may have changed) or a payload that does not parse.
std::optional<MailboxRef> parse_mailbox_notification(std::string_view payload);

// Async: sets the policy flags of one mailbox (nullopt leaves a flag as it is); pausing records
// `by` (unless a stronger pauser holds it already: tenant < operator < daemon), unpausing clears
// it. cb gets whether the mailbox exists.
void set_mailbox_flags(PgConnection& pg, const std::string& account, const std::string& id,
                       std::optional<bool> paused, std::optional<bool> disabled, PausedBy by,
                       std::function<void(core::Result<bool, std::string>)> cb, std::string_view disabled_reason = {});
// The PostgreSQL half of a MailboxChange (policy::Gate::set_state writes Redis first, then this):
// the flags it sets and clears, through set_mailbox_flags.
// `reason` names why a Disable happened ("auth_failures" when empty); a lift clears it.
void store_mailbox_change(PgConnection& pg, const std::string& account, const std::string& id, MailboxChange change,
                          PausedBy by, std::function<void(core::Result<ChangeAnswer, std::string>)> cb,
                          std::string_view reason = {});

}  // namespace deliverd::store
