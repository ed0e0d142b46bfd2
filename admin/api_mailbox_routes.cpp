// /v1/mailboxes: list and get (with what the policy engine knows), create and update (after a
// connection test; policy overrides need none), delete, pause, resume, breaker reset, test again.
// Secrets are sealed with SecretBox before they reach the database and never appear in an
// answer; a stored secret is only ever sent to the server it was given for. Mailbox ids are
// unique per account: every query names the account, so no answer reveals another's ids.
#include <chrono>
#include <cstdlib>
#include <ctime>

#include "admin/api_internal.h"
#include "dns/address_policy.h"
#include "store/mailboxes.h"

namespace deliverd::admin::detail {
namespace {

struct MailboxRow {
  store::Mailbox m;
  ImapSettings imap;
  bool has_password = false, has_oauth = false, has_imap_password = false;
  std::optional<store::PausedBy> paused_by;
  std::string created_at, updated_at;
  // The OAuth grant's last refresh, as any daemon recorded it (store/oauth_grants.h); unset = none yet.
  std::optional<std::string> oauth_expires_at, oauth_refreshed_at, oauth_refresh_result;
  std::optional<std::string> watcher;  // kSelect's joined fields; unset = never watched
  // What a create or update does to the OAuth grant: a new one (provider and refresh token in
  // m), none any more (null, or a password instead), or the stored one as it is.
  enum class Grant { Keep, Set, Clear } grant = Grant::Keep;
};

constexpr const char* kSelect =
    "SELECT id, account, email, smtp_host, smtp_port, security, coalesce(username, ''), password_enc, mode, paused,"
    " disabled, oauth_token_enc, coalesce(imap_host, ''), coalesce(imap_port, 0), coalesce(imap_username, ''),"
    " imap_password_enc, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ramp_start, ramp_step, ramp_max,"
    " coalesce(warmup_start::text, ''), min_gap_s, per_hour, per_minute, coalesce(timezone, ''), window_days,"
    " window_start_hour, window_end_hour, coalesce(paused_by, ''), plaintext_auth, coalesce(disabled_reason, ''),"
    " coalesce(oauth_provider, ''), to_char(oauth_expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),"
    " to_char(oauth_refreshed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), oauth_refresh_result,"
    // The inbox watcher as its daemon last wrote it (store/inbound_watch.h): its fields joined by
    // U+001F, the error last (it is the only one that may hold anything).
    " (SELECT concat_ws(chr(31), w.state, w.last_uid, w.uid_validity, w.owner,"
    "   to_char(w.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), w.last_error)"
    "  FROM inbound_watch w WHERE w.account = mailboxes.account AND w.mailbox = mailboxes.id)"
    " FROM mailboxes";

// The per-mailbox overrides of [policy] (store::Mailbox): their names under "policy" in JSON and
// their columns in kSelect. Unset means the daemon's default.
struct IntOverride {
  const char* name;
  std::optional<int> store::Mailbox::*field;
  size_t column;
};
constexpr IntOverride kIntOverrides[] = {
    {"ramp_start", &store::Mailbox::ramp_start, 18},
    {"ramp_step", &store::Mailbox::ramp_step, 19},
    {"ramp_max", &store::Mailbox::ramp_max, 20},
    {"min_gap_s", &store::Mailbox::min_gap_s, 22},
    {"per_hour", &store::Mailbox::per_hour, 23},
    {"per_minute", &store::Mailbox::per_minute, 24},
    {"window_days", &store::Mailbox::window_days, 26},
    {"window_start_hour", &store::Mailbox::window_start_hour, 27},
    {"window_end_hour", &store::Mailbox::window_end_hour, 28}};
struct TextOverride {
  const char* name;
  std::string store::Mailbox::*field;
  size_t column;
  const char* sql_cast;
};
constexpr TextOverride kTextOverrides[] = {{"warmup_start", &store::Mailbox::warmup_start, 21, "::date"},
                                           {"timezone", &store::Mailbox::timezone, 25, ""}};

// Opens the secrets only when a box is given; a secret that does not open is an error.
core::Result<MailboxRow, std::string> from_row(const std::vector<std::optional<std::string>>& row,
                                               const store::SecretBox* box) {
  auto s = [&](size_t i) { return row[i].value_or(""); };
  MailboxRow r;
  r.m.id = s(0);
  r.m.account = s(1);
  r.m.email = s(2);
  r.m.smtp_host = s(3);
  r.m.smtp_port = std::stoi(s(4));
  auto security = store::parse_security(s(5));
  if (!security) return core::Err("mailbox " + r.m.id + ": " + security.error());
  r.m.security = *security;
  r.m.username = s(6);
  auto mode = store::parse_mode(s(8));
  if (!mode) return core::Err("mailbox " + r.m.id + ": " + mode.error());
  r.m.mode = *mode;
  r.m.paused = s(9) == "t";
  r.m.disabled = s(10) == "t";
  r.imap.host = s(12);
  r.imap.port = std::stoi(s(13));
  r.imap.username = s(14);
  r.created_at = s(16);
  r.updated_at = s(17);
  r.has_password = row[7].has_value();
  r.has_oauth = row[11].has_value();
  r.has_imap_password = row[15].has_value();
  for (const auto& o : kIntOverrides)
    if (row[o.column]) r.m.*o.field = std::stoi(*row[o.column]);
  for (const auto& o : kTextOverrides) r.m.*o.field = s(o.column);
  r.paused_by = store::paused_by_from_name(s(29));
  r.m.plaintext_auth = s(30) == "t";
  r.m.disabled_reason = s(31);
  r.m.oauth_provider = s(32);
  r.oauth_expires_at = row[33];
  r.oauth_refreshed_at = row[34];
  r.oauth_refresh_result = row[35];
  if (row.size() > 36) r.watcher = row[36];
  if (box) {
    const std::pair<size_t, store::MailboxSecret> secrets[] = {{7, store::MailboxSecret::Password},
                                                               {11, store::MailboxSecret::OAuthToken},
                                                               {15, store::MailboxSecret::ImapPassword}};
    std::string* dest[] = {&r.m.password, &r.m.oauth_token, &r.imap.password};
    for (size_t k = 0; k < 3; ++k) {
      if (!row[secrets[k].first]) continue;
      auto sealed = store::decode_bytea(*row[secrets[k].first]);
      if (!sealed) return core::Err("a secret of mailbox " + r.m.id + " is not bytea");
      auto plain = store::open_mailbox_secret(*box, *sealed, r.m.account, r.m.id, secrets[k].second);
      if (!plain) return core::Err("a secret of mailbox " + r.m.id + " does not open: " + plain.error());
      *dest[k] = std::move(*plain);
    }
  }
  return r;
}

void watcher_json(core::JsonWriter& w, const std::optional<std::string>& joined) {
  if (!joined) {
    w.null();
    return;
  }
  std::vector<std::string> f;
  size_t start = 0;
  while (f.size() < 5) {
    const size_t sep = joined->find('\x1f', start);
    if (sep == std::string::npos) break;
    f.push_back(joined->substr(start, sep - start));
    start = sep + 1;
  }
  f.push_back(joined->substr(start));
  f.resize(6);
  auto number = [](const std::string& s) { return static_cast<int64_t>(std::strtoll(s.c_str(), nullptr, 10)); };
  w.begin_object().field("state", f[0]).field("last_uid", number(f[1])).field("uid_validity", number(f[2]));
  w.key("owner");
  f[3].empty() ? w.null() : w.value(f[3]);
  w.field("updated_at", f[4]).key("last_error");
  f[5].empty() ? w.null() : w.value(f[5]);
  w.end_object();
}

void mailbox_json(core::JsonWriter& w, const MailboxRow& r, const MailboxLive* live) {
  w.begin_object()
      .field("id", r.m.id)
      .field("account", r.m.account)
      .field("email", r.m.email)
      .field("smtp_host", r.m.smtp_host)
      .field("smtp_port", r.m.smtp_port)
      .field("security", core::to_string(r.m.security))
      .field("username", r.m.username)
      .field("mode", store::to_string(r.m.mode))
      .field("paused", r.m.paused)
      .key("paused_by");
  r.paused_by ? w.value(store::to_string(*r.paused_by)) : w.null();
  w.field("disabled", r.m.disabled).key("disabled_reason");
  r.m.disabled && !r.m.disabled_reason.empty() ? w.value(r.m.disabled_reason) : w.null();
  w.field("has_password", r.has_password).field("has_oauth_token", r.has_oauth).key("oauth");
  if (r.m.oauth_provider.empty()) {
    w.null();
  } else {
    // Never the tokens: who the grant is for and what its last refresh came to.
    auto opt = [&w](const char* name, const std::optional<std::string>& v) {
      w.key(name);
      v ? w.value(*v) : w.null();
    };
    w.begin_object().field("provider", r.m.oauth_provider).field("user", r.m.username);
    opt("access_token_expires_at", r.oauth_expires_at);
    opt("last_refresh_at", r.oauth_refreshed_at);
    opt("last_refresh_result", r.oauth_refresh_result);
    w.end_object();
  }
  w.key("imap");
  if (r.imap.empty()) {
    w.null();
  } else {
    w.begin_object()
        .field("host", r.imap.host)
        .field("port", r.imap.port)
        .field("username", r.imap.username)
        .field("has_password", r.has_imap_password);
    // What reads this inbox (docs/inbound.md): state connecting | reading | idle | polling |
    // backoff, the last UID read, the last error.
    w.key("watcher");
    watcher_json(w, r.watcher);
    w.end_object();
  }
  w.key("policy").begin_object();
  for (const auto& o : kIntOverrides) {
    w.key(o.name);
    r.m.*o.field ? w.value(*(r.m.*o.field)) : w.null();
  }
  for (const auto& o : kTextOverrides) {
    w.key(o.name);
    (r.m.*o.field).empty() ? w.null() : w.value(r.m.*o.field);
  }
  w.end_object();
  w.field("created_at", r.created_at).field("updated_at", r.updated_at);
  if (live) {
    w.key("today").begin_object();
    w.key("sent");
    live->sent_today >= 0 ? w.value(live->sent_today) : w.null();
    w.key("limit");
    live->limit_today >= 0 ? w.value(live->limit_today) : w.null();
    w.end_object().key("breaker");
    live->breaker.empty() ? w.null() : w.value(live->breaker);
  }
  w.end_object();
}

// Loads the mailbox {id} of the account the request acts in: an account-bound key's own; for an
// unbound key the one ?account= names, or else the one account that has a mailbox with this id
// (400 account_required when several have). Answers 404 itself when there is none.
void load_mailbox(const CallPtr& call, bool with_secrets, std::function<void(MailboxRow)> next) {
  std::string id = path_param(call->req, "id");
  call->target = id;
  std::optional<std::string> account;
  if (!account_from_query(call, account)) return;
  call->pg().query(std::string(kSelect) + " WHERE id = $1 AND ($2::text IS NULL OR account = $2) LIMIT 2",
                   {id, account}, [call, with_secrets, next](const store::PgResult& r) {
                     if (!r.ok) return call->error(500, "internal_error", "cannot read the mailbox");
                     if (r.rows.empty()) return call->error(404, "not_found", "no such mailbox");
                     if (r.rows.size() > 1)
                       return call->error(400, "account_required",
                                          "mailbox " + call->target + " exists in several accounts: name one with ?account=");
                     auto row = from_row(r.rows[0], with_secrets ? call->ctx->deps.secrets : nullptr);
                     if (!row) return call->error(500, "internal_error", row.error());
                     if (!call->who.may_see_account(row->m.account)) return call->error(404, "not_found", "no such mailbox");
                     call->account = row->m.account;
                     next(std::move(*row));
                   });
}

// Refusals that a connection test would give, answered as one (422 with its step) before any
// connection: a refused port (port_policy), a special-use host name (ssrf; imap_ssrf for IMAP, as
// the test names a refused IMAP address). apply_fields spells them "<step>: <message>".
constexpr std::string_view kTestSteps[] = {"port_policy", "ssrf", "imap_ssrf"};

void body_error(const CallPtr& call, const std::string& err) {
  for (std::string_view step : kTestSteps) {
    if (err.size() <= step.size() + 2 || err.compare(0, step.size(), step) != 0 || err.compare(step.size(), 2, ": ") != 0)
      continue;
    core::JsonWriter w;
    w.begin_object()
        .key("error")
        .begin_object()
        .field("code", "mailbox_test_failed")
        .field("message", err.substr(step.size() + 2))
        .field("step", step)
        .end_object()
        .end_object();
    return call->ok_json(422, w.take());
  }
  call->error(400, "invalid_body", err);
}

// Applies "policy": a number or string sets an override, null clears it, absent keeps it.
std::optional<std::string> apply_policy(const JsonObject& o, store::Mailbox& m) {
  for (const auto& [name, value] : o.fields) {
    const bool clear = value->type == JsonValue::Type::Null;
    bool known = false;
    for (const auto& ov : kIntOverrides) {
      if (name != ov.name) continue;
      known = true;
      int n = 0;
      if (clear) {
        (m.*ov.field).reset();
      } else if (auto e = read_int(o, name, n)) {
        return e;
      } else {
        m.*ov.field = n;
      }
    }
    for (const auto& ov : kTextOverrides) {
      if (name != ov.name) continue;
      known = true;
      if (clear) {
        (m.*ov.field).clear();
      } else if (auto e = read_string(o, name, m.*ov.field, 64)) {
        return e;
      } else if ((m.*ov.field).empty()) {
        return name + ": use null, not \"\", to clear it";
      }
    }
    if (!known) return name + ": not a policy setting";
  }
  return std::nullopt;
}

// "oauth": {"provider", "user", "refresh_token"} gives a new grant (user: the SASL identity,
// stored as the username; default the mailbox's email), null removes it; a password or static
// token instead of a grant removes it too. The three kinds of credentials exclude each other.
std::optional<std::string> apply_oauth(const JsonObject& o, MailboxRow& r) {
  const JsonValue* v = o.get("oauth");
  const bool other = o.has("password") || o.has("oauth_token");
  if (!v) {
    if (other && !r.m.oauth_provider.empty()) {
      r.m.oauth_provider.clear();
      r.grant = MailboxRow::Grant::Clear;
    }
    return std::nullopt;
  }
  if (v->type == JsonValue::Type::Null) {
    if (!r.m.oauth_provider.empty()) r.grant = MailboxRow::Grant::Clear;
    r.m.oauth_provider.clear();
    return std::nullopt;
  }
  if (v->type != JsonValue::Type::Object) return std::string("oauth: must be an object or null");
  if (other) return std::string("oauth: password, oauth_token and oauth exclude each other");
  std::string provider, user = r.m.email, token;
  std::optional<std::string> err = read_string(v->object, "provider", provider, 64);
  if (!err) err = read_string(v->object, "user", user, 256);
  if (!err) err = read_string(v->object, "refresh_token", token, 8192);
  if (err) return "oauth." + *err;
  if (provider.empty()) return std::string("oauth.provider: required");
  if (token.empty()) return std::string("oauth.refresh_token: required (a grant is given whole)");
  if (user.empty()) return std::string("oauth.user: required");
  r.m.oauth_provider = std::move(provider);
  r.m.oauth_refresh_token = std::move(token);
  r.m.username = std::move(user);
  r.m.password.clear();
  r.m.oauth_token.clear();
  r.grant = MailboxRow::Grant::Set;
  return std::nullopt;
}

// Applies the body's fields to m; the error names the field.
std::optional<std::string> apply_fields(const JsonObject& o, MailboxRow& r, bool creating) {
  std::optional<std::string> err;
  if (creating) {
    if (!err) err = read_string(o, "id", r.m.id, 128);
    if (!err) err = read_string(o, "account", r.m.account, 128);
  } else if (o.has("id") || o.has("account")) {
    return std::string("id and account cannot be changed");
  }
  if (!err) err = read_string(o, "email", r.m.email, 254);
  if (!err) err = read_string(o, "smtp_host", r.m.smtp_host, 253);
  if (!err) err = read_int(o, "smtp_port", r.m.smtp_port);
  std::string security(core::to_string(r.m.security)), mode(store::to_string(r.m.mode));
  if (!err) err = read_string(o, "security", security, 16);
  if (!err) err = read_string(o, "username", r.m.username, 256);
  if (!err) err = read_string(o, "password", r.m.password, 1024);
  if (!err) err = read_string(o, "oauth_token", r.m.oauth_token, 8192);
  if (!err) err = read_string(o, "mode", mode, 16);
  if (err) return err;
  if (auto e = apply_oauth(o, r)) return e;
  auto parsed_security = store::parse_security(security);
  if (!parsed_security) return parsed_security.error();
  r.m.security = *parsed_security;
  auto parsed_mode = store::parse_mode(mode);
  if (!parsed_mode) return parsed_mode.error();
  r.m.mode = *parsed_mode;
  if (const JsonValue* v = o.get("imap")) {
    if (v->type == JsonValue::Type::Null) {
      r.imap = {};
    } else if (v->type != JsonValue::Type::Object) {
      return std::string("imap: must be an object or null");
    } else {
      ImapSettings im = r.imap;
      if (!err) err = read_string(v->object, "host", im.host, 253);
      if (!err) err = read_int(v->object, "port", im.port);
      if (!err) err = read_string(v->object, "username", im.username, 256);
      if (!err) err = read_string(v->object, "password", im.password, 1024);
      if (err) return "imap." + *err;
      auto host = store::normalize_host(im.host);
      if (!host) return "imap.host: '" + im.host + "': " + host.error();
      im.host = std::move(*host);
      if (auto why = store::refused_host(im.host)) return "imap_ssrf: imap.host '" + im.host + "' " + *why;
      if (im.port != 993 && im.port != 143) return std::string("imap.port: 993 (TLS) or 143 (STARTTLS)");
      // An OAuth mailbox logs in to IMAP with its access token (AUTHENTICATE XOAUTH2).
      if (im.username.empty() || (im.password.empty() && r.m.oauth_provider.empty()))
        return std::string("imap.username and imap.password: required");
      if (im.password.find_first_of(std::string("\r\n\0", 3)) != std::string::npos ||
          im.username.find_first_of(std::string("\r\n\0", 3)) != std::string::npos)
        return std::string("imap: username and password may not hold NUL, CR or LF");
      r.imap = std::move(im);
    }
  }
  if (const JsonValue* v = o.get("policy")) {
    if (v->type != JsonValue::Type::Object) return std::string("policy: must be an object");
    if (auto e = apply_policy(v->object, r.m)) return "policy." + *e;
  }
  if (!dns::port_allowed(r.m.smtp_port) || !store::allowed_smtp_port(r.m.smtp_port))
    return "port_policy: smtp_port " + std::to_string(r.m.smtp_port) +
           " is refused by the port policy (use 25, 465, 587 or 2525)";
  store::normalize_mailbox(r.m);
  if (auto why = store::refused_host(r.m.smtp_host)) return "ssrf: smtp_host '" + r.m.smtp_host + "' " + *why;
  if (auto v = store::validate_mailbox(r.m); !v) return v.error();
  return std::nullopt;
}

void probe_failed(const CallPtr& call, const MailboxTestResult& t) {
  core::JsonWriter w;
  w.begin_object()
      .key("error")
      .begin_object()
      .field("code", "mailbox_test_failed")
      .field("message", t.message)
      .field("step", t.step)
      .end_object()
      .end_object();
  call->ok_json(422, w.take());
}

// The test passed: `passed` gets the row to store (with the refresh token the test's refresh
// rotated to, when it did: the one given may no longer work).
void run_probe(const CallPtr& call, const MailboxRow& row, std::function<void(MailboxRow)> passed) {
  if (!call->ctx->deps.test_mailbox) return call->error(501, "not_implemented", "mailbox tests are not configured");
  MailboxProbeRequest req{row.m, row.imap};
  call->ctx->deps.test_mailbox(req, [call, row, passed](MailboxTestResult t) {
    if (!t.ok) return probe_failed(call, t);
    MailboxRow tested = row;
    if (!t.rotated_refresh_token.empty() && row.grant == MailboxRow::Grant::Set)
      tested.m.oauth_refresh_token = t.rotated_refresh_token;
    passed(std::move(tested));
  });
}

// What an account-bound key may not do to a mailbox, whatever its scopes: send from the
// platform's own IPs, loosen the operator's limits, send from another tenant's signing domain,
// or keep credentials without TLS. Answers the refusal itself; true when all is well.
bool check_tenant_rules(const CallPtr& call, const JsonObject& body, const MailboxRow& row, const MailboxRow* before) {
  const ApiDeps& deps = call->ctx->deps;
  if (row.grant == MailboxRow::Grant::Set &&
      !(deps.oauth_provider_known && deps.oauth_provider_known(row.m.oauth_provider))) {
    call->field_error(422, "unknown_provider", "oauth.provider",
                      "oauth.provider: the daemon's config has no [[oauth]] provider \"" + row.m.oauth_provider + "\"");
    return false;
  }
  if (auto e = store::plaintext_credentials_error(row.m, deps.allow_plaintext_auth)) {
    call->field_error(400, "invalid_body", "security", *e);
    return false;
  }
  // A mailbox in a signing domain is created or changed only for the accounts the domain names.
  if (deps.sender_refused) {
    if (auto domain = deps.sender_refused(row.m.account, row.m.email)) {
      call->field_error(422, "sender_not_allowed", "email",
                        "email: " + *domain + " is a signing domain ([[dkim]]) this account may not send from");
      return false;
    }
  }
  if (call->who.is_operator()) return true;
  if (row.m.mode == store::Mode::Mx && (!before || before->m.mode != store::Mode::Mx)) {
    call->field_error(403, "forbidden", "mode",
                      "mode: \"mx\" sends from the platform's own addresses and is set by admin and owner keys only");
    return false;
  }
  // Overrides the request sets may only tighten the operator's limits.
  const JsonValue* policy = body.get("policy");
  if (!policy || policy->type != JsonValue::Type::Object) return true;
  const OperatorLimits lim = deps.operator_limits ? deps.operator_limits() : OperatorLimits{};
  auto at_most = [](int value, int limit) { return value <= limit; };
  auto cap = [](int value, int limit) { return limit == 0 ? true : value != 0 && value <= limit; };  // 0 = no cap
  struct Rule {
    const char* name;
    const std::optional<int>* value;
    int limit;
    bool (*ok)(int, int);
    const char* how;
  };
  const Rule rules[] = {
      {"ramp_start", &row.m.ramp_start, lim.ramp_start, at_most, "at most"},
      {"ramp_step", &row.m.ramp_step, lim.ramp_step, at_most, "at most"},
      {"ramp_max", &row.m.ramp_max, lim.ramp_max, at_most, "at most"},
      {"per_hour", &row.m.per_hour, lim.per_hour, cap, "between 1 and"},
      {"per_minute", &row.m.per_minute, lim.per_minute, cap, "between 1 and"},
      {"min_gap_s", &row.m.min_gap_s, lim.min_gap_s, [](int v, int l) { return v >= l; }, "at least"},
  };
  for (const auto& rule : rules) {
    const JsonValue* set = policy->object.get(rule.name);
    if (!set || set->type == JsonValue::Type::Null || !*rule.value) continue;
    if (!rule.ok(**rule.value, rule.limit)) {
      call->field_error(403, "forbidden", std::string("policy.") + rule.name,
                        std::string("policy.") + rule.name + ": this key may only tighten the operator's limit: " +
                            rule.how + " " + std::to_string(rule.limit));
      return false;
    }
  }
  // A warm-up day 0 in the past would skip the ramp: no earlier than yesterday (UTC; today in
  // some zones).
  if (const JsonValue* set = policy->object.get("warmup_start"); set && set->type == JsonValue::Type::String) {
    std::time_t yesterday = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()) - 86400;
    std::tm utc{};
    gmtime_r(&yesterday, &utc);
    char day[11];
    std::strftime(day, sizeof day, "%Y-%m-%d", &utc);
    if (row.m.warmup_start < day) {
      call->field_error(403, "forbidden", "policy.warmup_start",
                        std::string("policy.warmup_start: this key may not start the ramp-up before ") + day);
      return false;
    }
  }
  return true;
}

std::optional<std::string> sealed(const CallPtr& call, const store::Mailbox& m, const std::string& plain,
                                  store::MailboxSecret which) {
  if (plain.empty()) return std::nullopt;
  return store::encode_bytea(store::seal_mailbox_secret(*call->ctx->deps.secrets, plain, m.account, m.id, which));
}

void save(const CallPtr& call, MailboxRow row, bool creating) {
  const store::Mailbox& m = row.m;
  auto opt = [](const std::string& s) -> std::optional<std::string> {
    if (s.empty()) return std::nullopt;
    return s;
  };
  const bool plaintext = m.security == core::Security::None &&
                         (!m.password.empty() || !m.oauth_token.empty() || !m.oauth_provider.empty());
  std::vector<std::optional<std::string>> params = {
      m.id,
      m.account,
      m.email,
      m.smtp_host,
      std::to_string(m.smtp_port),
      std::string(core::to_string(m.security)),
      opt(m.username),
      sealed(call, m, m.password, store::MailboxSecret::Password),
      std::string(store::to_string(m.mode)),
      sealed(call, m, m.oauth_token, store::MailboxSecret::OAuthToken),
      opt(row.imap.host),
      row.imap.empty() ? std::nullopt : std::optional<std::string>(std::to_string(row.imap.port)),
      opt(row.imap.username),
      sealed(call, m, row.imap.password, store::MailboxSecret::ImapPassword),
      std::string(plaintext ? "true" : "false"),
      opt(m.oauth_provider),
      sealed(call, m, m.oauth_refresh_token, store::MailboxSecret::OAuthRefresh)};
  // An update names what happens to the grant ($18); a new one starts without a pending token or
  // a refresh record, and lifts a disable that a revoked grant caused (the user reconnected).
  constexpr const char* kGrantNames[] = {"keep", "set", "clear"};
  if (!creating) params.push_back(std::string(kGrantNames[static_cast<int>(row.grant)]));
  // The overrides' JSON names are their column names.
  std::string policy_columns, policy_values, policy_sets;
  auto add_policy = [&](const char* name, std::optional<std::string> value, const char* cast) {
    params.push_back(std::move(value));
    const std::string param = "$" + std::to_string(params.size()) + cast;
    policy_columns += std::string(", ") + name;
    policy_values += ", " + param;
    policy_sets += std::string(", ") + name + " = " + param;
  };
  for (const auto& o : kIntOverrides)
    add_policy(o.name, m.*o.field ? std::optional<std::string>(std::to_string(*(m.*o.field))) : std::nullopt,
               "::integer");
  for (const auto& o : kTextOverrides)
    add_policy(o.name, opt(m.*o.field), o.sql_cast);
  std::string sql =
      creating
          ? "INSERT INTO mailboxes (id, account, email, smtp_host, smtp_port, security, username, password_enc, mode,"
            " oauth_token_enc, imap_host, imap_port, imap_username, imap_password_enc, plaintext_auth,"
            " oauth_provider, oauth_refresh_enc" +
                policy_columns +
                ") VALUES ($1, $2, $3, $4, $5::integer, $6, $7, $8::bytea, $9, $10::bytea, $11, $12::integer, $13,"
                " $14::bytea, $15::boolean, $16, $17::bytea" +
                policy_values + ") ON CONFLICT (account, id) DO NOTHING"
          : "UPDATE mailboxes SET email = $3, smtp_host = $4, smtp_port = $5::integer, security = $6, username = $7,"
            " password_enc = $8::bytea, mode = $9, oauth_token_enc = $10::bytea, imap_host = $11,"
            " imap_port = $12::integer, imap_username = $13, imap_password_enc = $14::bytea,"
            " plaintext_auth = $15::boolean,"
            " oauth_provider = CASE $18::text WHEN 'keep' THEN oauth_provider ELSE $16 END,"
            " oauth_refresh_enc = CASE $18::text WHEN 'keep' THEN oauth_refresh_enc ELSE $17::bytea END,"
            " oauth_pending_enc = CASE $18::text WHEN 'keep' THEN oauth_pending_enc END,"
            " oauth_expires_at = CASE $18::text WHEN 'keep' THEN oauth_expires_at END,"
            " oauth_refreshed_at = CASE $18::text WHEN 'keep' THEN oauth_refreshed_at END,"
            " oauth_refresh_result = CASE $18::text WHEN 'keep' THEN oauth_refresh_result END,"
            " disabled = disabled AND NOT ($18::text = 'set' AND coalesce(disabled_reason, '') = 'oauth_revoked'),"
            " disabled_reason = CASE WHEN $18::text = 'set' AND disabled_reason = 'oauth_revoked' THEN NULL"
            " ELSE disabled_reason END" +
                policy_sets + ", updated_at = now() WHERE id = $1 AND account = $2";
  call->pg().query(std::move(sql), std::move(params),
                   [call, creating, id = m.id, account = m.account](const store::PgResult& r) {
                     if (!r.ok) return call->error(500, "internal_error", "cannot save the mailbox");
                     if (r.affected == 0)
                       return creating ? call->error(409, "conflict", "this account has a mailbox with this id")
                                       : call->error(404, "not_found", "no such mailbox");
                     if (call->ctx->deps.mailboxes_changed) call->ctx->deps.mailboxes_changed();
                     call->pg().query(std::string(kSelect) + " WHERE account = $1 AND id = $2", {account, id},
                                      [call, creating](const store::PgResult& r2) {
                                        if (!r2.ok || r2.rows.empty())
                                          return call->error(500, "internal_error", "cannot read the mailbox back");
                                        auto row2 = from_row(r2.rows[0], nullptr);
                                        if (!row2) return call->error(500, "internal_error", row2.error());
                                        core::JsonWriter w;
                                        mailbox_json(w, *row2, nullptr);
                                        call->ok_json(creating ? 201 : 200, w.take());
                                      });
                   });
}

// What the policy engine knows of each mailbox of a page, gathered before the page is answered.
struct LivePage {
  std::vector<MailboxRow> rows;
  std::vector<MailboxLive> live;
  size_t waiting = 0;
  bool more = false;
};

void answer_page(const CallPtr& call, const LivePage& page, const std::optional<std::string>& next) {
  core::JsonWriter w;
  w.begin_object().key("items").begin_array();
  for (size_t i = 0; i < page.rows.size(); ++i) mailbox_json(w, page.rows[i], &page.live[i]);
  w.end_array().key("next");
  next ? w.value(*next) : w.null();
  w.end_object();
  call->ok_json(200, w.take());
}

void list_mailboxes(CallPtr call) {
  auto q = parse_query(call->req.query);
  std::optional<std::string> acct;
  if (!account_from_query(call, acct)) return;
  std::string after = q.count("after") ? q["after"] : "";
  int limit = 100;
  if (auto it = q.find("limit"); it != q.end()) {
    if (it->second.empty() || it->second.size() > 6 ||
        it->second.find_first_not_of("0123456789") != std::string::npos || std::stoi(it->second) < 1 ||
        std::stoi(it->second) > call->ctx->deps.max_page)
      return call->error(400, "invalid_query", "limit: 1-" + std::to_string(call->ctx->deps.max_page));
    limit = std::stoi(it->second);
  }
  // Paged by id within an account; an unbound key listing every account pages by (account, id)
  // and its cursor is "<length of account>:<account>:<id>" (MailboxRef::key).
  std::string after_account, after_id = after;
  if (!acct && !after.empty()) {
    auto ref = store::MailboxRef::from_key(after);
    if (!ref) return call->error(400, "invalid_query", "after: the next cursor of a previous page");
    after_account = std::move(ref->account);
    after_id = std::move(ref->id);
  }
  call->pg().query(
      std::string(kSelect) +
          " WHERE ($1::text IS NULL OR account = $1) AND (account, id) > ($2, $3) ORDER BY account, id"
          " LIMIT $4::integer",
      {acct, acct ? *acct : after_account, after_id, std::to_string(limit + 1)},
      [call, limit, all_accounts = !acct](const store::PgResult& r) {
        if (!r.ok) return call->error(500, "internal_error", "cannot list mailboxes");
        auto page = std::make_shared<LivePage>();
        size_t n = std::min(r.rows.size(), static_cast<size_t>(limit));
        page->more = r.rows.size() > n;
        for (size_t i = 0; i < n; ++i) {
          auto row = from_row(r.rows[i], nullptr);
          if (row) page->rows.push_back(std::move(*row));
        }
        page->live.resize(page->rows.size());
        auto finish = [call, page, all_accounts] {
          std::optional<std::string> next;
          if (page->more && !page->rows.empty()) {
            const store::Mailbox& last = page->rows.back().m;
            next = all_accounts ? store::MailboxRef{last.account, last.id}.key() : last.id;
          }
          answer_page(call, *page, next);
        };
        const auto& live = call->ctx->deps.mailbox_live;
        if (!live || page->rows.empty()) return finish();
        page->waiting = page->rows.size();
        for (size_t i = 0; i < page->rows.size(); ++i)
          live(page->rows[i].m.account, page->rows[i].m.id, [page, i, finish](MailboxLive l) {
            page->live[i] = std::move(l);
            if (--page->waiting == 0) finish();
          });
      });
}

void get_mailbox(CallPtr call) {
  load_mailbox(call, false, [call](MailboxRow row) {
    auto answer = [call, row](MailboxLive live) {
      core::JsonWriter w;
      mailbox_json(w, row, &live);
      call->ok_json(200, w.take());
    };
    if (!call->ctx->deps.mailbox_live) return answer({});
    call->ctx->deps.mailbox_live(row.m.account, row.m.id, answer);
  });
}

void create_mailbox(CallPtr call) {
  if (!call->ctx->deps.secrets) return call->error(501, "not_implemented", "no secret key is configured");
  auto body = parse_json_object(call->req.body);
  if (!body) return call->error(400, "invalid_body", body.error());
  MailboxRow row;
  row.m.account = call->who.account;
  if (auto err = apply_fields(*body, row, true)) return body_error(call, *err);
  call->target = row.m.id;
  if (!call->check_account(row.m.account)) return;
  if (!check_tenant_rules(call, *body, row, nullptr)) return;
  // A duplicate id is refused before the (slow, outbound) connection test; ids are per account,
  // so only the account's own mailboxes can conflict.
  call->pg().query("SELECT 1 FROM mailboxes WHERE account = $1 AND id = $2", {row.m.account, row.m.id},
                   [call, row](const store::PgResult& r) {
                     if (!r.ok) return call->error(500, "internal_error", "cannot check the mailbox id");
                     if (!r.rows.empty()) return call->error(409, "conflict", "this account has a mailbox with this id");
                     run_probe(call, row, [call](MailboxRow tested) { save(call, std::move(tested), true); });
                   });
}

// A change of where the SMTP (or IMAP) secrets would be sent must carry them again: stored
// secrets go only to the server they were given for. Secrets not given again are dropped, so a
// stale token never reaches the new server. Answers 422 itself; true when all is well.
bool secrets_follow_destination(const CallPtr& call, const JsonObject& body, MailboxRow& row, const MailboxRow& before) {
  if (!(store::SecretDestination::of(row.m) == store::SecretDestination::of(before.m))) {
    if (!before.m.oauth_provider.empty() && row.grant == MailboxRow::Grant::Keep) {
      // The access tokens its grant yields would go to the new server.
      call->field_error(422, "credentials_required", "oauth",
                        "oauth: the OAuth grant must be given again when smtp_host, smtp_port or security changes "
                        "(deliverd mailbox add --oauth-provider … --refresh-token-file …)");
      return false;
    }
    const bool password = body.has("password"), token = body.has("oauth_token");
    if (!password && !token && row.grant != MailboxRow::Grant::Set && (before.has_password || before.has_oauth)) {
      const char* field = before.has_password ? "password" : "oauth_token";
      call->field_error(422, "credentials_required", field,
                        std::string(field) + ": required again when smtp_host, smtp_port or security changes (a stored "
                                             "secret is only ever sent to the server it was given for)");
      return false;
    }
    if (!password) row.m.password.clear();
    if (!token) row.m.oauth_token.clear();
  }
  if (!row.imap.empty() && !before.imap.empty() &&
      (row.imap.host != before.imap.host || row.imap.port != before.imap.port)) {
    const JsonValue* imap = body.get("imap");
    if (!imap || imap->type != JsonValue::Type::Object || !imap->object.has("password")) {
      call->field_error(422, "credentials_required", "imap.password",
                        "imap.password: required again when imap.host or imap.port changes (a stored secret is only "
                        "ever sent to the server it was given for)");
      return false;
    }
  }
  return true;
}

void update_mailbox(CallPtr call) {
  if (!call->ctx->deps.secrets) return call->error(501, "not_implemented", "no secret key is configured");
  auto body = parse_json_object(call->req.body);
  if (!body) return call->error(400, "invalid_body", body.error());
  load_mailbox(call, true, [call, body = std::move(*body)](MailboxRow row) {
    MailboxRow before = row;
    if (auto err = apply_fields(body, row, false)) return body_error(call, *err);
    if (!secrets_follow_destination(call, body, row, before)) return;
    if (!check_tenant_rules(call, body, row, &before)) return;
    bool connection_changed = row.m.smtp_host != before.m.smtp_host || row.m.smtp_port != before.m.smtp_port ||
                              row.m.security != before.m.security || row.m.username != before.m.username ||
                              row.m.password != before.m.password || row.m.oauth_token != before.m.oauth_token ||
                              row.grant != MailboxRow::Grant::Keep ||
                              row.imap.host != before.imap.host || row.imap.port != before.imap.port ||
                              row.imap.username != before.imap.username || row.imap.password != before.imap.password;
    // A new sender address or mode is vouched for by a connection test too.
    bool identity_changed = row.m.email != before.m.email || row.m.mode != before.m.mode;
    if (!connection_changed && !identity_changed) return save(call, row, false);
    run_probe(call, row, [call](MailboxRow tested) { save(call, std::move(tested), false); });
  });
}

void delete_mailbox(CallPtr call) {
  load_mailbox(call, false, [call](MailboxRow row) {
    call->pg().query("DELETE FROM mailboxes WHERE account = $1 AND id = $2", {row.m.account, row.m.id},
                     [call](const store::PgResult& r) {
                       if (!r.ok) return call->error(500, "internal_error", "cannot delete the mailbox");
                       if (r.affected == 0) return call->error(404, "not_found", "no such mailbox");
                       if (call->ctx->deps.mailboxes_changed) call->ctx->deps.mailboxes_changed();
                       Response resp;
                       resp.status = 204;
                       call->reply(std::move(resp));
                     });
  });
}

void set_flags(CallPtr call, bool paused) {
  if (!call->ctx->deps.set_mailbox_state)
    return call->error(501, "not_implemented", "the policy gate is not configured");
  load_mailbox(call, false, [call, paused](MailboxRow row) {
    const bool operator_call = call->who.is_operator();
    // The tenant may lift its own pause only; the daemon's (bounce guard, repeated AUTH
    // failures) and an operator's are for operators to lift.
    if (!paused && !operator_call) {
      if (row.m.disabled && row.m.disabled_reason == "oauth_revoked")
        return call->error(403, "forbidden",
                           "the provider revoked this mailbox's OAuth grant: connect it again (PATCH with a new "
                           "\"oauth\" grant), which lifts the disable");
      if (row.m.disabled)
        return call->error(403, "forbidden",
                           "the daemon disabled this mailbox after repeated AUTH failures: resuming needs an admin or "
                           "owner key");
      if (row.m.paused && row.paused_by != store::PausedBy::Tenant)
        return call->error(403, "forbidden",
                           std::string("this mailbox was paused by ") +
                               (row.paused_by == store::PausedBy::Operator ? "an operator" : "the daemon") +
                               ": resuming needs an admin or owner key");
    }
    // An operator's resume also clears "disabled" (set after repeated AUTH failures).
    const store::PausedBy by = operator_call ? store::PausedBy::Operator : store::PausedBy::Tenant;
    // Redis and the row together (policy::Gate::set_state), so every daemon stops or sends again
    // at its next job.
    call->ctx->deps.set_mailbox_state(
        row.m.account, row.m.id, paused ? store::MailboxChange::Pause : store::MailboxChange::Resume, by,
        [call, paused](core::Result<store::ChangeAnswer, std::string> r) {
          if (!r) return call->error(503, "unavailable", "cannot change the mailbox: " + r.error());
          if (*r == store::ChangeAnswer::NoMailbox) return call->error(404, "not_found", "no such mailbox");
          if (*r == store::ChangeAnswer::Refused)
            return call->error(403, "forbidden",
                               "this mailbox was paused by the daemon or an operator, or disabled: "
                               "resuming needs an admin or owner key");
          if (call->ctx->deps.mailboxes_changed) call->ctx->deps.mailboxes_changed();
          core::JsonWriter w;
          w.begin_object().field("id", call->target).field("paused", paused).end_object();
          call->ok_json(200, w.take());
        });
  });
}

void breaker_reset(CallPtr call) {
  if (!call->ctx->deps.breaker_reset) return call->error(501, "not_implemented", "breakers are not configured");
  load_mailbox(call, false, [call](MailboxRow row) {
    call->ctx->deps.breaker_reset(row.m.account, row.m.id, [call](bool ok) {
      if (!ok) return call->error(503, "unavailable", "the breaker could not be reset");
      core::JsonWriter w;
      w.begin_object().field("id", call->target).field("breaker", "closed").end_object();
      call->ok_json(200, w.take());
    });
  });
}

void test_mailbox(CallPtr call) {
  if (!call->ctx->deps.secrets) return call->error(501, "not_implemented", "no secret key is configured");
  if (!call->ctx->deps.test_mailbox) return call->error(501, "not_implemented", "mailbox tests are not configured");
  // The stored settings only: the request names nothing the stored secrets could be sent to.
  load_mailbox(call, true, [call](MailboxRow row) {
    call->ctx->deps.test_mailbox(MailboxProbeRequest{row.m, row.imap}, [call](MailboxTestResult t) {
      core::JsonWriter w;
      w.begin_object().field("id", call->target).field("ok", t.ok);
      w.key("step");
      t.step.empty() ? w.null() : w.value(t.step);
      w.field("message", t.message).end_object();
      call->ok_json(200, w.take());
    });
  });
}

}  // namespace

void add_mailbox_routes(Router& router, const std::shared_ptr<ApiContext>& ctx) {
  using R = Resource;
  using A = Access;
  add_route(router, ctx, "GET", "/v1/mailboxes", R::Mailboxes, A::Read, "mailbox.list", list_mailboxes);
  add_route(router, ctx, "POST", "/v1/mailboxes", R::Mailboxes, A::Write, "mailbox.create", create_mailbox);
  add_route(router, ctx, "GET", "/v1/mailboxes/{id}", R::Mailboxes, A::Read, "mailbox.get", get_mailbox);
  add_route(router, ctx, "PATCH", "/v1/mailboxes/{id}", R::Mailboxes, A::Write, "mailbox.update", update_mailbox);
  add_route(router, ctx, "DELETE", "/v1/mailboxes/{id}", R::Mailboxes, A::Write, "mailbox.delete", delete_mailbox);
  add_route(router, ctx, "POST", "/v1/mailboxes/{id}/pause", R::Mailboxes, A::Write, "mailbox.pause",
            [](CallPtr c) { set_flags(std::move(c), true); });
  add_route(router, ctx, "POST", "/v1/mailboxes/{id}/resume", R::Mailboxes, A::Write, "mailbox.resume",
            [](CallPtr c) { set_flags(std::move(c), false); });
  add_route(router, ctx, "POST", "/v1/mailboxes/{id}/breaker-reset", R::Mailboxes, A::Write, "mailbox.breaker_reset",
            breaker_reset, Caller::OperatorsOnly);
  add_route(router, ctx, "POST", "/v1/mailboxes/{id}/test", R::Mailboxes, A::Write, "mailbox.test", test_mailbox);
}

}  // namespace deliverd::admin::detail
