#pragma once
// Reply classifier: what a server's reply says about *whose* problem it is, so the policy module
// can count mailbox-side faults (breaker) apart from recipient faults (bounce, suppress). The
// reply code and enhanced code decide; a small table adds the provider-specific meanings of
// Gmail's and Microsoft 365's quota, rate and login replies.
#include <span>
#include <string_view>

#include "core/outcome.h"

namespace deliverd::smtp {

// The classifier's verdict on whose problem a reply is; the names live with the outcome (core).
using Fault = core::Fault;

struct Classification {
  Fault fault = Fault::Success;
  core::Status status = core::Status::Delivered;
  std::string_view rule;  // the table row or generic rule that decided, for logs and tests
};

struct KnownReply {
  int code;
  std::string_view enhanced;  // "" matches any
  std::string_view text;      // case-insensitive substring of the reply text; "" matches any
  Fault fault;
  core::Status status;
  std::string_view rule;
};

// The provider table, most specific rows first.
std::span<const KnownReply> known_replies();

// phase is the phase the reply answered (rcpt, body, auth, mail, …); relay is
// true when the server is the sending mailbox's own submission server (faults before the
// recipient are then the mailbox's), false when it is the recipient's MX.
Classification classify(const core::Reply& reply, core::Phase phase, bool relay);

// For failures without a reply (connect, TLS, timeouts): a relay server being unreachable is the
// mailbox's fault; an MX being unreachable is the recipient domain's, transiently.
Fault network_fault(bool relay);

}  // namespace deliverd::smtp
