#include "store/mailboxes.h"

#include <algorithm>
#include <cctype>

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

// Letters, digits and hyphens in dot-separated labels; no leading/trailing hyphen.
bool valid_domain(std::string_view d) {
  if (d.empty() || d.size() > 253 || d.front() == '.' || d.back() == '.') return false;
  size_t start = 0;
  while (start <= d.size()) {
    size_t dot = d.find('.', start);
    std::string_view label = d.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (unsigned char c : label)
      if (!std::isalnum(c) && c != '-') return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

// Deliberately narrower than RFC 5322: a dot-atom local part, which is what a sending mailbox
// has in practice, and which can go into a header and MAIL FROM without quoting.
bool valid_email(std::string_view e) {
  size_t at = e.rfind('@');
  if (at == std::string_view::npos || at == 0 || e.size() > 254) return false;
  std::string_view local = e.substr(0, at), domain = e.substr(at + 1);
  if (local.size() > 64 || local.front() == '.' || local.back() == '.' || local.find("..") != local.npos) return false;
  for (unsigned char c : local) {
    if (std::isalnum(c)) continue;
    if (std::string_view("!#$%&'*+-/=?^_`{|}~.").find(static_cast<char>(c)) == std::string_view::npos) return false;
  }
  return valid_domain(domain) && domain.find('.') != std::string_view::npos;
}

bool valid_host(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  // IPv6 literals are allowed bare (the connector brackets them); the address policy vets them.
  if (h.find(':') != std::string_view::npos)
    return std::all_of(h.begin(), h.end(), [](unsigned char c) { return std::isxdigit(c) || c == ':' || c == '.'; });
  return valid_domain(h);
}

Mailbox row_to_mailbox(const PgResult& r, size_t i) {
  const auto& row = r.rows[i];
  auto text = [&](size_t c) { return row[c].value_or(std::string()); };
  Mailbox m;
  m.id = text(0);
  m.account = text(1);
  m.email = text(2);
  m.smtp_host = text(3);
  m.smtp_port = std::atoi(text(4).c_str());
  m.security = text(5);
  m.username = text(6);
  m.mode = text(8);
  m.paused = text(9) == "t";
  return m;
}

}  // namespace

bool allowed_smtp_port(int port) { return port == 25 || port == 465 || port == 587 || port == 2525; }

core::Result<core::Ok, std::string> validate_mailbox(const Mailbox& m) {
  if (!valid_id(m.id)) return core::Err(std::string("id: 1-128 characters of letters, digits, '_', '-', '.', ':'"));
  if (m.account.empty() || m.account.size() > 128 || has_control(m.account))
    return core::Err(std::string("account: required, at most 128 printable characters"));
  if (!valid_email(m.email)) return core::Err("email: '" + m.email + "' is not a valid address like user@example.com");
  if (!valid_host(m.smtp_host)) return core::Err("smtp_host: '" + m.smtp_host + "' is not a valid host name or IP");
  if (!allowed_smtp_port(m.smtp_port))
    return core::Err("smtp_port: " + std::to_string(m.smtp_port) + " is not allowed (use 25, 465, 587 or 2525)");
  if (m.security != "none" && m.security != "starttls" && m.security != "tls")
    return core::Err("security: '" + m.security + "' must be none, starttls or tls");
  if (m.mode != "relay" && m.mode != "mx" && m.mode != "direct")
    return core::Err("mode: '" + m.mode + "' must be relay or mx");
  if (m.oauth_token.size() > 8192 || m.oauth_token.find_first_of(std::string("\r\n\0", 3)) != std::string::npos)
    return core::Err(std::string("oauth_token: at most 8192 bytes, without NUL, CR or LF"));
  if (!m.oauth_token.empty() && m.username.empty())
    return core::Err(std::string("username: required with an OAuth token"));
  if (m.username.size() > 256 || has_control(m.username))
    return core::Err(std::string("username: at most 256 printable characters"));
  // The password is not echoed in the message.
  if (m.password.size() > 1024 || m.password.find('\0') != std::string::npos ||
      m.password.find_first_of("\r\n") != std::string::npos)
    return core::Err(std::string("password: at most 1024 bytes, without NUL, CR or LF"));
  if (!m.password.empty() && m.username.empty()) return core::Err(std::string("username: required with a password"));
  return core::Ok{};
}

core::Result<core::Ok, std::string> add_mailbox(const std::string& conninfo, const Mailbox& m, const SecretBox& box) {
  auto valid = validate_mailbox(m);
  if (!valid) return valid;
  auto pg = detail::BlockingPg::connect(conninfo);
  if (!pg) return core::Err(pg.error());
  std::optional<std::string> password_enc;
  if (!m.password.empty()) password_enc = encode_bytea(box.seal(m.password, m.id));
  std::optional<std::string> oauth_token_enc;
  if (!m.oauth_token.empty()) oauth_token_enc = encode_bytea(box.seal(m.oauth_token, m.id + "/oauth"));
  std::optional<std::string> username;
  if (!m.username.empty()) username = m.username;
  PgResult r = pg->exec(
      "INSERT INTO mailboxes (id, account, email, smtp_host, smtp_port, security, username, password_enc, mode, paused,"
      " oauth_token_enc)"
      " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::bytea, $9, $10, $11::bytea)"
      " ON CONFLICT (id) DO UPDATE SET account = EXCLUDED.account, email = EXCLUDED.email,"
      " smtp_host = EXCLUDED.smtp_host, smtp_port = EXCLUDED.smtp_port, security = EXCLUDED.security,"
      " username = EXCLUDED.username, password_enc = EXCLUDED.password_enc, mode = EXCLUDED.mode,"
      " paused = EXCLUDED.paused, oauth_token_enc = EXCLUDED.oauth_token_enc, updated_at = now()",
      {m.id, m.account, m.email, m.smtp_host, std::to_string(m.smtp_port), m.security, username, password_enc,
       m.mode == "direct" ? std::string("mx") : m.mode, m.paused ? "true" : "false", oauth_token_enc});
  if (!r.ok) {
    if (r.sqlstate == "42P01") return core::Err("mailboxes table missing: run `deliverd migrate` first");
    return core::Err("cannot save mailbox " + m.id + ": " + r.error);
  }
  return core::Ok{};
}

void load_mailboxes(PgConnection& pg, const SecretBox& box,
                    std::function<void(core::Result<std::vector<Mailbox>, std::string>)> cb) {
  pg.query(
      "SELECT id, account, email, smtp_host, smtp_port, security, username, password_enc, mode, paused,"
      " oauth_token_enc FROM mailboxes ORDER BY id",
      {}, [box, cb = std::move(cb)](const PgResult& r) {
        if (!r.ok) return cb(core::Err("cannot load mailboxes: " + r.error));
        std::vector<Mailbox> out;
        out.reserve(r.rows.size());
        for (size_t i = 0; i < r.rows.size(); ++i) {
          Mailbox m = row_to_mailbox(r, i);
          if (const auto& enc = r.rows[i][7]) {
            auto sealed = decode_bytea(*enc);
            if (!sealed) return cb(core::Err("mailbox " + m.id + ": password_enc is not hex bytea"));
            auto plain = box.open(*sealed, m.id);
            if (!plain) return cb(core::Err("mailbox " + m.id + ": cannot open password: " + plain.error()));
            m.password = std::move(*plain);
          }
          if (r.rows[i].size() > 10 && r.rows[i][10]) {
            auto sealed = decode_bytea(*r.rows[i][10]);
            if (!sealed) return cb(core::Err("mailbox " + m.id + ": oauth_token_enc is not hex bytea"));
            auto plain = box.open(*sealed, m.id + "/oauth");
            if (!plain) return cb(core::Err("mailbox " + m.id + ": cannot open OAuth token: " + plain.error()));
            m.oauth_token = std::move(*plain);
          }
          out.push_back(std::move(m));
        }
        cb(std::move(out));
      });
}

}  // namespace deliverd::store
