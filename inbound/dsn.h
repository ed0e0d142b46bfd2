#pragma once
// Delivery status notifications: the message/delivery-status body of RFC 3464 and the
// message/global-delivery-status body of RFC 6533 (the same fields, UTF-8 allowed). One
// per-message group, then one group per recipient, separated by empty lines. Bounded: at most
// kMaxDsnRecipients recipients are read; a field longer than the header limit is cut.
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace deliverd::inbound {

inline constexpr size_t kMaxDsnRecipients = 100;

enum class DsnAction : uint8_t { Failed, Delayed, Delivered, Relayed, Expanded, Unknown };
std::string_view to_string(DsnAction a);
DsnAction parse_dsn_action(std::string_view value);  // case-insensitive; comments ignored

struct DsnRecipient {
  std::string final_recipient;     // the address, type prefix ("rfc822;", "utf-8;") removed
  std::string original_recipient;  // likewise, "" when absent
  DsnAction action = DsnAction::Unknown;
  std::string status;      // "5.1.1"; "" when the field is missing or not a status code
  std::string diagnostic;  // Diagnostic-Code without its type: "550 5.1.1 <bob@x>: user unknown"
  std::string remote_mta;  // Remote-MTA without its type
};

struct DeliveryStatus {
  std::string reporting_mta;
  std::string original_envelope_id;
  std::vector<DsnRecipient> recipients;
  bool truncated = false;  // more recipients than kMaxDsnRecipients
};

// An error when there is no recipient group with a Final-Recipient (nothing to act on).
core::Result<DeliveryStatus, std::string> parse_delivery_status(std::string_view body);

// The first "x.y.z" status code in text (x 2, 4 or 5; y and z 1-3 digits), not inside a
// longer run of digits and dots: "(#5.1.1)" → "5.1.1", "550-5.7.1 …" → "5.7.1"; "" when none.
std::string status_in(std::string_view text);

// "rfc822; bob@x" → "bob@x"; "smtp; 550 …" → "550 …"; a value without a type stays as it is.
std::string without_type(std::string_view value);

}  // namespace deliverd::inbound
