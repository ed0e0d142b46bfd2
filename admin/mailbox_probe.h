#pragma once
// The connection test a mailbox must pass before it is saved (and again on demand): resolve the
// SMTP host, check the port and every address against the policies, connect, negotiate TLS,
// authenticate, QUIT; then, when IMAP settings are given, the same for IMAP LOGIN (993 implicit
// TLS, 143 STARTTLS) and LOGOUT. The answer names the step that failed.
#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "core/tls_context.h"
#include "dns/address_policy.h"
#include "dns/resolver.h"
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
  // resolve, port_policy, ssrf, connect, tls, auth, smtp, imap_resolve, imap_port_policy, imap_ssrf,
  // imap_connect, imap_tls, imap_login, timeout; "" when ok.
  std::string step;
  std::string message;
};

struct MailboxProberConfig {
  int timeout_ms = 12000;  // for each of the SMTP and IMAP checks (both fit the 30 s handler deadline)
  std::string helo_name = "localhost";
};

// Lives on one loop; the resolver, policy and TLS context must outlive it.
class MailboxProber {
 public:
  MailboxProber(uv_loop_t* loop, dns::Resolver* resolver, const dns::AddressPolicy* policy,
                std::shared_ptr<core::TlsContext> tls_client, MailboxProberConfig config = {});
  void probe(const MailboxProbeRequest& req, std::function<void(MailboxTestResult)> done);

 private:
  uv_loop_t* loop_;
  dns::Resolver* resolver_;
  const dns::AddressPolicy* policy_;
  std::shared_ptr<core::TlsContext> tls_;
  MailboxProberConfig config_;
};

}  // namespace deliverd::admin
