#include "store/mailboxes.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "core/address.h"
#include "core/domain.h"
#include "store/pg_blocking.h"

namespace deliverd::store {
namespace {

bool has_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

bool valid_id(std::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == ':';
  });
}

bool is_ip_literal(std::string_view h) {
  // IPv6 literals are allowed bare (the connector brackets them); the address policy vets them.
  if (h.find(':') != std::string_view::npos)
    return std::all_of(h.begin(), h.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.'; });
  return !h.empty() && h.find_first_not_of("0123456789.") == std::string_view::npos;
}


core::Result<Mailbox, std::string> row_to_mailbox(const PgResult& r, size_t i) {
  const auto& row = r.rows[i];
  auto text = [&](size_t c) { return row[c].value_or(std::string()); };
  Mailbox m;
  m.id = text(0);
  m.account = text(1);
  m.email = text(2);
  m.smtp_host = text(3);
  m.smtp_port = std::atoi(text(4).c_str());
  auto security = parse_security(text(5));
  if (!security) return core::Err("mailbox " + m.id + ": " + security.error());
  m.security = *security;
  m.username = text(6);
  auto mode = parse_mode(text(8));
  if (!mode) return core::Err("mailbox " + m.id + ": " + mode.error());
  m.mode = *mode;
  m.paused = text(9) == "t";
  if (row.size() > 22) {
    auto opt_int = [&](size_t c) -> std::optional<int> {
      if (!row[c]) return std::nullopt;
      return std::atoi(row[c]->c_str());
    };
    m.ramp_start = opt_int(11);
    m.ramp_step = opt_int(12);
    m.ramp_max = opt_int(13);
    m.warmup_start = text(14);
    m.min_gap_s = opt_int(15);
    m.per_hour = opt_int(16);
    m.per_minute = opt_int(17);
    m.timezone = text(18);
    m.window_days = opt_int(19);
    m.window_start_hour = opt_int(20);
    m.window_end_hour = opt_int(21);
    m.disabled = text(22) == "t";
  }
  if (row.size() > 23) m.plaintext_auth = text(23) == "t";
  if (row.size() > 25) {
    m.oauth_provider = text(24);
    m.disabled_reason = text(25);
  }
  return m;
}

bool valid_date(std::string_view d) {
  if (d.size() != 10 || d[4] != '-' || d[7] != '-') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (!std::isdigit(static_cast<unsigned char>(d[i]))) return false;
  int year = std::atoi(std::string(d.substr(0, 4)).c_str());
  int month = (d[5] - '0') * 10 + (d[6] - '0'), day = (d[8] - '0') * 10 + (d[9] - '0');
  if (month < 1 || month > 12 || day < 1) return false;
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return day <= kDays[month - 1] + (month == 2 && leap ? 1 : 0);
}

// IANA zone names: "UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5".
bool valid_timezone(std::string_view z) {
  if (z.empty() || z.size() > 64 || z.front() == '/' || z.find("..") != z.npos) return false;
  return std::all_of(z.begin(), z.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '/' || c == '_' || c == '-' || c == '+';
  });
}

std::optional<std::string> opt_text(const std::optional<int>& v) {
  if (!v) return std::nullopt;
  return std::to_string(*v);
}

}  // namespace

core::Result<Mode, std::string> parse_mode(std::string_view text) {
  if (text == "direct") return Mode::Mx;
  if (auto m = mode_from_name(text)) return *m;
  return core::Err("mode: '" + std::string(text) + "' must be relay or mx");
}

core::Result<core::Security, std::string> parse_security(std::string_view text) {
  if (auto s = core::security_from_name(text)) return *s;
  return core::Err("security: '" + std::string(text) + "' must be none, starttls or tls");
}

bool allowed_smtp_port(int port) { return port == 25 || port == 465 || port == 587 || port == 2525; }

core::Result<core::Ok, std::string> validate_mailbox(const Mailbox& m) {
  if (!valid_id(m.id)) return core::Err(std::string("id: 1-128 characters of letters, digits, '_', '-', '.', ':'"));
  if (m.account.empty() || m.account.size() > 128 || has_control(m.account))
    return core::Err(std::string("account: required, at most 128 printable characters"));
  if (auto a = core::parse_address(m.email); !a) return core::Err("email: '" + m.email + "': " + a.error());
  if (auto h = normalize_host(m.smtp_host); !h) return core::Err("smtp_host: '" + m.smtp_host + "': " + h.error());
  if (auto why = refused_host(m.smtp_host)) return core::Err("smtp_host: '" + m.smtp_host + "' " + *why);
  if (!allowed_smtp_port(m.smtp_port))
    return core::Err("smtp_port: " + std::to_string(m.smtp_port) + " is not allowed (use 25, 465, 587 or 2525)");
  if (m.oauth_token.size() > 8192 || m.oauth_token.find_first_of(std::string("\r\n\0", 3)) != std::string::npos)
    return core::Err(std::string("oauth_token: at most 8192 bytes, without NUL, CR or LF"));
  if (!m.oauth_token.empty() && m.username.empty())
    return core::Err(std::string("username: required with an OAuth token"));
  // A row read back holds the provider without its token (not loaded); a token needs its provider.
  if (m.oauth_provider.empty() && !m.oauth_refresh_token.empty())
    return core::Err(std::string("oauth: provider and refresh_token go together"));
  if (m.oauth_provider.size() > 64 || has_control(m.oauth_provider))
    return core::Err(std::string("oauth.provider: at most 64 printable characters"));
  if (m.oauth_refresh_token.size() > 8192 ||
      m.oauth_refresh_token.find_first_of(std::string("\r\n\0", 3)) != std::string::npos)
    return core::Err(std::string("oauth.refresh_token: at most 8192 bytes, without NUL, CR or LF"));
  if (!m.oauth_provider.empty() && m.username.empty())
    return core::Err(std::string("oauth.user: required (the SASL identity, usually the mailbox's address)"));
  if (!m.oauth_provider.empty() && (!m.password.empty() || !m.oauth_token.empty()))
    return core::Err(std::string("oauth: a mailbox has one kind of credential: password, oauth_token or oauth"));
  if (m.username.size() > 256 || has_control(m.username))
    return core::Err(std::string("username: at most 256 printable characters"));
  // The password is not echoed in the message.
  if (m.password.size() > 1024 || m.password.find('\0') != std::string::npos ||
      m.password.find_first_of("\r\n") != std::string::npos)
    return core::Err(std::string("password: at most 1024 bytes, without NUL, CR or LF"));
  if (!m.password.empty() && m.username.empty()) return core::Err(std::string("username: required with a password"));
  const std::pair<const char*, const std::optional<int>*> counts[] = {
      {"ramp_start", &m.ramp_start}, {"ramp_step", &m.ramp_step}, {"ramp_max", &m.ramp_max},
      {"min_gap_s", &m.min_gap_s},   {"per_hour", &m.per_hour},   {"per_minute", &m.per_minute}};
  for (const auto& [name, v] : counts)
    if (*v && (**v < 0 || **v > 1000000)) return core::Err(std::string(name) + ": must be between 0 and 1000000");
  if (!m.warmup_start.empty() && !valid_date(m.warmup_start))
    return core::Err("warmup_start: '" + m.warmup_start + "' is not a date like 2026-11-29");
  if (!m.timezone.empty() && !valid_timezone(m.timezone))
    return core::Err("timezone: '" + m.timezone + "' is not an IANA zone name like Europe/Berlin");
  if (m.window_days && (*m.window_days < 0 || *m.window_days > 127))
    return core::Err(std::string("window_days: a bit mask 0-127 (bit 0 = Monday)"));
  if (m.window_start_hour && (*m.window_start_hour < 0 || *m.window_start_hour > 23))
    return core::Err(std::string("window_start_hour: 0-23"));
  if (m.window_end_hour && (*m.window_end_hour < 1 || *m.window_end_hour > 24))
    return core::Err(std::string("window_end_hour: 1-24"));
  return core::Ok{};
}

core::Result<std::string, std::string> normalize_host(std::string_view h) {
  if (h.empty()) return core::Err(std::string("required"));
  if (h.size() > 253) return core::Err(std::string("longer than 253 characters"));
  if (is_ip_literal(h)) return std::string(h);
  return core::normalize_domain(h);
}

std::optional<std::string> refused_host(std::string_view host) {
  if (is_ip_literal(host)) return std::nullopt;
  auto rule = core::special_use_rule(host);
  if (!rule) return std::nullopt;
  return "is never a target: " + std::string(*rule);
}

void normalize_mailbox(Mailbox& m) {
  if (auto a = core::parse_address(m.email)) m.email = a->str();
  if (auto h = normalize_host(m.smtp_host)) m.smtp_host = std::move(*h);
}


std::string_view to_string(PausedBy by) {
  switch (by) {
    case PausedBy::Tenant:
      return "tenant";
    case PausedBy::Operator:
      return "operator";
    case PausedBy::Daemon:
      return "daemon";
  }
  return "daemon";
}

std::optional<PausedBy> paused_by_from_name(std::string_view name) {
  for (PausedBy by : {PausedBy::Tenant, PausedBy::Operator, PausedBy::Daemon})
    if (to_string(by) == name) return by;
  return std::nullopt;
}

namespace {

std::string_view secret_suffix(MailboxSecret which) {
  switch (which) {
    case MailboxSecret::Password:
      return "";
    case MailboxSecret::OAuthToken:
      return "/oauth";
    case MailboxSecret::ImapPassword:
      return "/imap";
    case MailboxSecret::OAuthRefresh:
      return "/oauth-refresh";
  }
  return "";
}

// Account, then id (an account holds no NUL: PostgreSQL text cannot), then which secret.
std::string secret_aad(const std::string& account, const std::string& id, MailboxSecret which) {
  std::string aad("mailbox\0", 8);
  aad.append(account).append(1, '\0').append(id).append(secret_suffix(which));
  return aad;
}

}  // namespace

std::string seal_mailbox_secret(const SecretBox& box, std::string_view plaintext, const std::string& account,
                                const std::string& id, MailboxSecret which) {
  return box.seal(plaintext, secret_aad(account, id, which));
}

core::Result<std::string, std::string> open_mailbox_secret(const SecretBox& box, std::string_view sealed,
                                                           const std::string& account, const std::string& id,
                                                           MailboxSecret which) {
  if (SecretBox::version_of(sealed) == SecretBox::kLegacyVersion)
    return box.open(sealed, id + std::string(secret_suffix(which)));
  return box.open(sealed, secret_aad(account, id, which));
}

namespace {
constexpr std::string_view kPlaintextCredentials =
    "security: \"none\" would send the password or token without TLS; use \"starttls\" or \"tls\" (a lab rig may "
    "set [smtp] allow_plaintext_auth)";
}  // namespace

std::optional<std::string> plaintext_credentials_error(const Mailbox& m, bool allow_plaintext_auth) {
  if (m.security != core::Security::None ||
      (m.password.empty() && m.oauth_token.empty() && m.oauth_refresh_token.empty()) || allow_plaintext_auth)
    return std::nullopt;
  return std::string(kPlaintextCredentials);
}

core::Result<core::Ok, std::string> add_mailbox(const std::string& conninfo, const Mailbox& given, const SecretBox& box,
                                                bool allow_plaintext_auth) {
  Mailbox m = given;
  if (!m.oauth_provider.empty() && m.oauth_refresh_token.empty())
    return core::Err(std::string("oauth: provider and refresh_token go together"));
  auto valid = validate_mailbox(m);
  if (!valid) return valid;
  auto pg = detail::BlockingPg::connect(conninfo);
  if (!pg) return core::Err(pg.error());
  // One transaction, the row locked: a concurrent change cannot slip between check and write.
  if (PgResult b = pg->exec("BEGIN"); !b.ok) return core::Err("cannot save mailbox " + m.id + ": " + b.error);
  auto fail = [&](std::string e) -> core::Result<core::Ok, std::string> {
    pg->exec("ROLLBACK");
    return core::Err(std::move(e));
  };
  PgResult old = pg->exec(
      "SELECT smtp_host, smtp_port, security, password_enc, oauth_token_enc, oauth_provider, oauth_refresh_enc"
      " FROM mailboxes WHERE account = $1 AND id = $2 FOR UPDATE",
      {m.account, m.id});
  if (!old.ok) {
    if (old.sqlstate == "42P01") return fail("mailboxes table missing: run `deliverd migrate` first");
    return fail("cannot save mailbox " + m.id + ": " + old.error);
  }
  std::optional<std::string> password_enc, oauth_token_enc, oauth_provider, oauth_refresh_enc;
  if (!m.password.empty()) password_enc = encode_bytea(seal_mailbox_secret(box, m.password, m.account, m.id, MailboxSecret::Password));
  if (!m.oauth_token.empty())
    oauth_token_enc = encode_bytea(seal_mailbox_secret(box, m.oauth_token, m.account, m.id, MailboxSecret::OAuthToken));
  if (!m.oauth_provider.empty()) {
    oauth_provider = m.oauth_provider;
    oauth_refresh_enc =
        encode_bytea(seal_mailbox_secret(box, m.oauth_refresh_token, m.account, m.id, MailboxSecret::OAuthRefresh));
  }
  if (!old.rows.empty() && m.password.empty() && m.oauth_token.empty() && m.oauth_provider.empty()) {
    const auto& row = old.rows[0];
    const bool had_secret = row[3].has_value() || row[4].has_value() || row[6].has_value();
    // The table's CHECK admits only named values; one that does not read counts as a change.
    auto stored_security = parse_security(row[2].value_or(""));
    SecretDestination before{row[0].value_or(""), std::atoi(row[1].value_or("0").c_str()),
                             stored_security ? *stored_security : core::Security::None, row[5].value_or("")};
    if (!stored_security) before.smtp_port = -1;
    SecretDestination now = SecretDestination::of(m);
    now.oauth_provider = before.oauth_provider;  // not given: the stored grant stays with its provider
    if (had_secret && !(before == now))
      return fail("mailbox " + m.id + ": --smtp-host, --smtp-port or --security changes where its stored password or "
                  "token would be sent; give --password-file, --oauth-token-file or --refresh-token-file again");
    password_enc = row[3];  // unchanged server: the stored secrets stay
    oauth_token_enc = row[4];
    oauth_provider = row[5];
    oauth_refresh_enc = row[6];
    if (had_secret && m.security == core::Security::None && !allow_plaintext_auth)
      return fail("mailbox " + m.id + ": " + std::string(kPlaintextCredentials));
  }
  if (auto e = plaintext_credentials_error(m, allow_plaintext_auth)) return fail("mailbox " + m.id + ": " + *e);
  // IMAP settings are written when given, whole (the password goes only to the host it was given
  // for); without them the stored ones stay.
  std::optional<std::string> imap_host, imap_port, imap_user, imap_password_enc;
  if (!m.imap.host.empty()) {
    imap_host = m.imap.host;
    imap_port = std::to_string(m.imap.port);
    imap_user = m.imap.username;
    if (!m.imap.password.empty())
      imap_password_enc =
          encode_bytea(seal_mailbox_secret(box, m.imap.password, m.account, m.id, MailboxSecret::ImapPassword));
  }
  const bool plaintext = m.security == core::Security::None && (password_enc || oauth_token_enc || oauth_refresh_enc);
  // A new grant replaces the old one whole (its pending token and refresh record included) and
  // lifts a disable that a revoked grant caused: the user has connected the mailbox again.
  const bool new_grant = !m.oauth_provider.empty();
  std::optional<std::string> username;
  if (!m.username.empty()) username = m.username;
  std::optional<std::string> paused_by;
  if (m.paused) paused_by = std::string(to_string(PausedBy::Operator));
  PgResult r = pg->exec(
      "INSERT INTO mailboxes (id, account, email, smtp_host, smtp_port, security, username, password_enc, mode, paused,"
      " oauth_token_enc, ramp_start, ramp_step, ramp_max, warmup_start, min_gap_s, per_hour, per_minute, timezone,"
      " window_days, window_start_hour, window_end_hour, disabled, plaintext_auth, paused_by, oauth_provider,"
      " oauth_refresh_enc, imap_host, imap_port, imap_username, imap_password_enc)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::bytea, $9, $10, $11::bytea, $12, $13, $14, $15::date, $16, $17, $18,"
      " $19, $20, $21, $22, $23, $24, $25, $26, $27::bytea, $29, $30::integer, $31, $32::bytea)"
      " ON CONFLICT (account, id) DO UPDATE SET email = EXCLUDED.email,"
      " smtp_host = EXCLUDED.smtp_host, smtp_port = EXCLUDED.smtp_port, security = EXCLUDED.security,"
      " username = EXCLUDED.username, password_enc = EXCLUDED.password_enc, mode = EXCLUDED.mode,"
      " paused = EXCLUDED.paused, oauth_token_enc = EXCLUDED.oauth_token_enc, ramp_start = EXCLUDED.ramp_start,"
      " ramp_step = EXCLUDED.ramp_step, ramp_max = EXCLUDED.ramp_max, warmup_start = EXCLUDED.warmup_start,"
      " min_gap_s = EXCLUDED.min_gap_s, per_hour = EXCLUDED.per_hour, per_minute = EXCLUDED.per_minute,"
      " timezone = EXCLUDED.timezone, window_days = EXCLUDED.window_days,"
      " window_start_hour = EXCLUDED.window_start_hour, window_end_hour = EXCLUDED.window_end_hour,"
      " disabled = EXCLUDED.disabled, plaintext_auth = EXCLUDED.plaintext_auth, paused_by = EXCLUDED.paused_by,"
      " oauth_provider = EXCLUDED.oauth_provider, oauth_refresh_enc = EXCLUDED.oauth_refresh_enc,"
      " oauth_pending_enc = CASE WHEN $28::boolean THEN NULL ELSE mailboxes.oauth_pending_enc END,"
      " oauth_expires_at = CASE WHEN $28::boolean THEN NULL ELSE mailboxes.oauth_expires_at END,"
      " oauth_refreshed_at = CASE WHEN $28::boolean THEN NULL ELSE mailboxes.oauth_refreshed_at END,"
      " oauth_refresh_result = CASE WHEN $28::boolean THEN NULL ELSE mailboxes.oauth_refresh_result END,"
      " disabled_reason = CASE WHEN NOT EXCLUDED.disabled THEN NULL ELSE mailboxes.disabled_reason END,"
      " imap_host = CASE WHEN $29::text IS NULL THEN mailboxes.imap_host ELSE EXCLUDED.imap_host END,"
      " imap_port = CASE WHEN $29::text IS NULL THEN mailboxes.imap_port ELSE EXCLUDED.imap_port END,"
      " imap_username = CASE WHEN $29::text IS NULL THEN mailboxes.imap_username ELSE EXCLUDED.imap_username END,"
      " imap_password_enc = CASE WHEN $29::text IS NULL THEN mailboxes.imap_password_enc"
      "   ELSE EXCLUDED.imap_password_enc END,"
      " updated_at = now()",
      {m.id, m.account, m.email, m.smtp_host, std::to_string(m.smtp_port), std::string(core::to_string(m.security)),
       username, password_enc, std::string(to_string(m.mode)), m.paused ? "true" : "false", oauth_token_enc,
       opt_text(m.ramp_start), opt_text(m.ramp_step), opt_text(m.ramp_max),
       m.warmup_start.empty() ? std::optional<std::string>() : m.warmup_start, opt_text(m.min_gap_s),
       opt_text(m.per_hour), opt_text(m.per_minute),
       m.timezone.empty() ? std::optional<std::string>() : m.timezone, opt_text(m.window_days),
       opt_text(m.window_start_hour), opt_text(m.window_end_hour), m.disabled ? "true" : "false",
       plaintext ? "true" : "false", paused_by, oauth_provider, oauth_refresh_enc, new_grant ? "true" : "false",
       imap_host, imap_port, imap_user, imap_password_enc});
  if (!r.ok) return fail("cannot save mailbox " + m.id + ": " + r.error);
  if (PgResult c = pg->exec("COMMIT"); !c.ok) return core::Err("cannot save mailbox " + m.id + ": " + c.error);
  return core::Ok{};
}

bool same_sending_settings(const Mailbox& a, const Mailbox& b) {
  return a.email == b.email && a.smtp_host == b.smtp_host && a.smtp_port == b.smtp_port && a.security == b.security &&
         a.username == b.username && a.password == b.password && a.oauth_token == b.oauth_token && a.oauth_provider == b.oauth_provider && a.mode == b.mode &&
         a.paused == b.paused && a.disabled == b.disabled && a.plaintext_auth == b.plaintext_auth;
}

namespace {

void select_mailboxes(PgConnection& pg, const SecretBox& box, const std::string& where,
                      std::vector<std::optional<std::string>> params,
                      std::function<void(core::Result<std::vector<Mailbox>, std::string>)> cb) {
  pg.query(
      "SELECT id, account, email, smtp_host, smtp_port, security, username, password_enc, mode, paused,"
      " oauth_token_enc, ramp_start, ramp_step, ramp_max, warmup_start::text, min_gap_s, per_hour, per_minute,"
      " timezone, window_days, window_start_hour, window_end_hour, disabled, plaintext_auth,"
      " coalesce(oauth_provider, ''), coalesce(disabled_reason, ''), coalesce(imap_host, ''),"
      " coalesce(imap_port, 0), coalesce(imap_username, ''), imap_password_enc FROM mailboxes" + where +
          " ORDER BY account, id",
      std::move(params), [box, cb = std::move(cb)](const PgResult& r) {
        if (!r.ok) return cb(core::Err("cannot load mailboxes: " + r.error));
        std::vector<Mailbox> out;
        out.reserve(r.rows.size());
        for (size_t i = 0; i < r.rows.size(); ++i) {
          auto parsed = row_to_mailbox(r, i);
          if (!parsed) return cb(core::Err(parsed.error()));
          Mailbox m = std::move(parsed).value();
          if (const auto& enc = r.rows[i][7]) {
            auto sealed = decode_bytea(*enc);
            if (!sealed) return cb(core::Err("mailbox " + m.id + ": password_enc is not hex bytea"));
            auto plain = open_mailbox_secret(box, *sealed, m.account, m.id, MailboxSecret::Password);
            if (!plain) return cb(core::Err("mailbox " + m.id + ": cannot open password: " + plain.error()));
            m.password = std::move(*plain);
          }
          if (r.rows[i].size() > 10 && r.rows[i][10]) {
            auto sealed = decode_bytea(*r.rows[i][10]);
            if (!sealed) return cb(core::Err("mailbox " + m.id + ": oauth_token_enc is not hex bytea"));
            auto plain = open_mailbox_secret(box, *sealed, m.account, m.id, MailboxSecret::OAuthToken);
            if (!plain) return cb(core::Err("mailbox " + m.id + ": cannot open OAuth token: " + plain.error()));
            m.oauth_token = std::move(*plain);
          }
          if (r.rows[i].size() > 29) {
            auto col = [&](size_t c) { return r.rows[i][c] ? *r.rows[i][c] : std::string(); };
            m.imap.host = col(26);
            m.imap.port = std::atoi(col(27).c_str());
            m.imap.username = col(28);
            if (const auto& enc = r.rows[i][29]) {
              auto sealed = decode_bytea(*enc);
              if (!sealed) return cb(core::Err("mailbox " + m.id + ": imap_password_enc is not hex bytea"));
              auto plain = open_mailbox_secret(box, *sealed, m.account, m.id, MailboxSecret::ImapPassword);
              if (!plain) return cb(core::Err("mailbox " + m.id + ": cannot open IMAP password: " + plain.error()));
              m.imap.password = std::move(*plain);
            }
          }
          out.push_back(std::move(m));
        }
        cb(std::move(out));
      });
}

}  // namespace

void load_mailboxes(PgConnection& pg, const SecretBox& box,
                    std::function<void(core::Result<std::vector<Mailbox>, std::string>)> cb) {
  select_mailboxes(pg, box, "", {}, std::move(cb));
}

void load_mailboxes_by_ref(PgConnection& pg, const SecretBox& box, const std::vector<MailboxRef>& refs,
                           std::function<void(core::Result<std::vector<Mailbox>, std::string>)> cb) {
  std::string where = " WHERE (account, id) IN (";
  std::vector<std::optional<std::string>> params;
  for (const auto& r : refs) {
    where += params.empty() ? "(" : ", (";
    params.push_back(r.account);
    where += "$" + std::to_string(params.size()) + ", ";
    params.push_back(r.id);
    where += "$" + std::to_string(params.size()) + ")";
  }
  if (params.empty()) where += "(NULL, NULL)";
  select_mailboxes(pg, box, where + ")", std::move(params), std::move(cb));
}

namespace {

// "<n>:<n bytes><tail>" → (the n bytes, tail): the length prefix both MailboxRef::key() and the
// mailbox notification use. At most max_digits digits; nullopt when the string is not one.
std::optional<std::pair<std::string_view, std::string_view>> split_length_prefixed(std::string_view s,
                                                                                   size_t max_digits) {
  size_t colon = s.find(':');
  if (colon == 0 || colon == std::string_view::npos || colon > max_digits) return std::nullopt;
  std::string_view digits = s.substr(0, colon);
  if (digits.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  size_t n = static_cast<size_t>(std::atoi(std::string(digits).c_str()));
  std::string_view rest = s.substr(colon + 1);
  if (n > rest.size()) return std::nullopt;
  return std::pair{rest.substr(0, n), rest.substr(n)};
}

}  // namespace

std::optional<MailboxRef> MailboxRef::from_key(std::string_view key) {
  auto parts = split_length_prefixed(key, 4);
  if (!parts || parts->second.empty() || parts->second.front() != ':') return std::nullopt;
  return MailboxRef{std::string(parts->first), std::string(parts->second.substr(1))};
}

std::optional<MailboxRef> parse_mailbox_notification(std::string_view payload) {
  auto parts = split_length_prefixed(payload, 6);
  if (!parts || parts->first.empty()) return std::nullopt;
  return MailboxRef{std::string(parts->second), std::string(parts->first)};
}

void set_mailbox_flags(PgConnection& pg, const std::string& account, const std::string& id,
                       std::optional<bool> paused, std::optional<bool> disabled, PausedBy by,
                       std::function<void(core::Result<bool, std::string>)> cb, std::string_view disabled_reason) {
  auto flag = [](std::optional<bool> b) -> std::optional<std::string> {
    if (!b) return std::nullopt;
    return std::string(*b ? "true" : "false");
  };
  // Pausing again never weakens who paused: a tenant's pause of a mailbox the daemon paused
  // leaves it the daemon's, so the tenant cannot then lift it (tenant < operator < daemon).
  pg.query("UPDATE mailboxes SET paused = COALESCE($3::boolean, paused), disabled = COALESCE($4::boolean, disabled),"
           " paused_by = CASE WHEN $3::boolean THEN"
           "   CASE WHEN paused AND array_position(ARRAY['tenant', 'operator', 'daemon'], paused_by)"
           "     >= array_position(ARRAY['tenant', 'operator', 'daemon'], $5) THEN paused_by ELSE $5 END"
           " WHEN NOT $3::boolean THEN NULL ELSE paused_by END,"
           " disabled_reason = CASE WHEN $4::boolean THEN COALESCE($6, disabled_reason, 'auth_failures')"
           " WHEN NOT $4::boolean THEN NULL ELSE disabled_reason END,"
           " updated_at = now() WHERE account = $1 AND id = $2",
           {account, id, flag(paused), flag(disabled), std::string(to_string(by)),
            disabled_reason.empty() ? std::optional<std::string>() : std::string(disabled_reason)},
           [cb = std::move(cb)](const PgResult& r) {
             if (!r.ok) return cb(core::Err("cannot update mailbox flags: " + r.error));
             cb(r.affected > 0);
           });
}

void store_mailbox_change(PgConnection& pg, const std::string& account, const std::string& id, MailboxChange change,
                          PausedBy by, std::function<void(core::Result<ChangeAnswer, std::string>)> cb,
                          std::string_view reason) {
  const bool lifts = change == MailboxChange::Resume || change == MailboxChange::ResetBreaker;
  std::optional<bool> paused, disabled;
  if (change == MailboxChange::Pause) paused = true;
  if (change == MailboxChange::Disable) disabled = true;
  if (lifts) paused = false;
  if (lifts && by != PausedBy::Tenant) disabled = false;  // an operator's resume lifts a disable too
  set_mailbox_flags(
      pg, account, id, paused, disabled, by,
      [cb = std::move(cb)](core::Result<bool, std::string> r) {
        if (!r) return cb(core::Err(r.error()));
        cb(*r ? ChangeAnswer::Done : ChangeAnswer::NoMailbox);
      },
      reason);
}

}  // namespace deliverd::store
