#pragma once
// The connection test a mailbox must pass before it is saved (and again on demand). It takes the
// path a delivery takes: port policy, resolve through the daemon's resolver (its AddressPolicy
// vets every address), then smtp::Session::probe() to exactly the vetted address, which runs the
// delivery session's own banner, EHLO, TLS and AUTH code and says QUIT. When IMAP settings are
// given, the same for IMAP with inbound::ImapClient, the client the mailbox watcher uses: LOGIN
// (993 implicit TLS, 143 STARTTLS) and LOGOUT. What is the probe's own is the answer: the step
// that failed, named as the API documents it.
#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "core/tls_context.h"
#include "dns/resolver.h"
#include "inbound/imap_client.h"
#include "smtp/session.h"
#include "store/mailboxes.h"

namespace deliverd::admin {

struct ImapSettings {
  std::string host;
  int port = 0;  // 993 (implicit TLS) or 143 (STARTTLS)
  std::string username, password;
  bool empty() const { return host.empty(); }
};

struct MailboxProbeRequest {
  store::Mailbox mailbox;  // password / oauth_token in plaintext
  ImapSettings imap;
};

struct MailboxTestResult {
  bool ok = false;
  // oauth_refresh, resolve, port_policy, ssrf, connect, tls, auth, smtp, imap_resolve,
  // imap_port_policy, imap_ssrf, imap_connect, imap_tls, imap_login, timeout; "" when ok.
  std::string step;
  std::string message;
  // An OAuth grant's test refresh rotated the refresh token: this one is to be stored, not the
  // one given. "" otherwise.
  std::string rotated_refresh_token;
};

struct MailboxProberConfig {
  int timeout_ms = 12000;  // for each of the SMTP and IMAP checks (both fit the 30 s handler deadline)
  // Client TLS for both checks: the system CAs plus [smtp] ca_file, as deliveries use.
  std::shared_ptr<core::TlsContext> tls;
  // The daemon's session settings (timeouts, HELO name, the plaintext-AUTH lab override); the
  // mailbox's security and credentials are applied with smtp::submission_config, as for a send.
  smtp::SessionConfig smtp;
  // The IMAP client's timeouts and bounds; security follows the port (993 TLS, 143 STARTTLS).
  inbound::ImapConfig imap;
};

// Lives on one loop; the resolver must outlive it and every check it started.
class MailboxProber {
 public:
  MailboxProber(uv_loop_t* loop, dns::Resolver* resolver, MailboxProberConfig config);
  // `done` is called exactly once; it may be called before probe() returns (port policy).
  void probe(const MailboxProbeRequest& req, std::function<void(MailboxTestResult)> done);
  // On reload: later checks use these settings; checks under way keep theirs.
  void reconfigure(MailboxProberConfig config) { config_ = std::move(config); }

 private:
  uv_loop_t* loop_;
  dns::Resolver* resolver_;
  MailboxProberConfig config_;
};

}  // namespace deliverd::admin
