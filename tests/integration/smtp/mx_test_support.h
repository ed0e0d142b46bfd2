#pragma once
// What the MX delivery tests (TLS policies, DANE, MTA-STS) share: an MxConfig for servers on
// 127.0.x.y:<port> with short timeouts, and one line that says what an outcome was.
#include <memory>
#include <string>

#include "core/outcome.h"
#include "core/tls_context.h"
#include "smtp/mx_delivery.h"

namespace deliverd::smtp::testing {

inline MxConfig mx_test_config(int port, std::shared_ptr<core::TlsContext> tls,
                               TlsPolicy policy = TlsPolicy::Opportunistic) {
  MxConfig mc;
  mc.port = port;
  mc.max_attempts = 2;
  mc.session.helo_name = "client.test";
  for (auto& ms : mc.session.timeouts.ms) ms = 5000;
  mc.session.total_ms = 30000;
  mc.session.security = Security::StartTls;
  mc.session.tls_policy = policy;
  mc.session.tls = std::move(tls);
  return mc;
}

inline std::string describe(const core::Outcome& o) {
  return std::string(core::to_string(o.status)) + " " + std::string(core::to_string(o.phase)) + "/" +
         std::string(core::to_string(o.reason)) + " policy=" + std::string(core::to_string(o.tls_policy)) +
         " tls=" + o.tls_version + " fallback=" + std::string(core::to_string(o.tls_fallback)) + " " + o.detail;
}

}  // namespace deliverd::smtp::testing
