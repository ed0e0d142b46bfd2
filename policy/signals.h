#pragma once
// What one delivery outcome tells the policy: a breaker signal (mailbox-side faults only, from
// the reply classifier's Outcome::fault), whether it was a send for the bounce guard, and
// whether it was a hard bounce that suppresses the address.
#include <string_view>

#include "core/outcome.h"

namespace deliverd::policy {

enum class Signal {
  Neutral,      // says nothing about the mailbox: recipient faults (5.1.x …), policy decisions
  Success,      // the mailbox's server took the message (closes a half-open breaker)
  Failure,      // mailbox-side: connect/TLS to its relay, 421/454, 4.7.x throttles, …
  AuthFailure,  // the server refused the mailbox's credentials (counts as Failure too)
  Quota,        // 550 5.4.5 / 554 5.2.0: the provider's sending quota; open until it resets
};

std::string_view to_string(Signal s);

Signal breaker_signal(const core::Outcome& o);
// Delivered or bounced: the attempts the bounce guard's window is made of.
bool counts_as_send(const core::Outcome& o);
// A permanent recipient failure that suppresses the address: 5.1.x (bad mailbox/domain) and
// 5.2.1 (mailbox disabled); a bare 550/551/553 without an enhanced code from the recipient too.
bool is_hard_bounce(const core::Outcome& o);

}  // namespace deliverd::policy
