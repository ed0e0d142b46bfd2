#pragma once
// Which sections of one message to fetch, decided from its BODYSTRUCTURE before any body is read,
// and the inbound::Message built from what came back. The classifier needs the top-level header,
// the report parts (RFC 3464 delivery-status, RFC 6533 global-delivery-status, RFC 5965
// feedback-report, RFC 8098 disposition-notification), the header of a returned message, and
// the first text parts of a plain-text notice; nothing else, and never an attachment whole.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "inbound/imap_parser.h"
#include "inbound/mime.h"

namespace deliverd::inbound {

struct FetchPlanLimits {
  size_t max_sections = 8;              // sections per message, the header included
  uint32_t max_section_bytes = 64 * 1024;  // each fetched as BODY.PEEK[s]<0.n>
};

struct PlannedSection {
  std::string section;   // "HEADER", "2", "3.HEADER"
  ContentType type;      // of the part ("message/rfc822" for a returned message's header)
  std::string encoding;  // Content-Transfer-Encoding from BODYSTRUCTURE, lower-case
};

struct FetchPlan {
  std::vector<PlannedSection> sections;  // sections[0] is always "HEADER"
  std::vector<std::string> names() const;  // the section names, for FetchItems::sections
};

FetchPlan plan_fetch(const BodyPart& structure, const FetchPlanLimits& limits = {});

// The Message the classifier reads: the top-level header from "HEADER", one Part per other
// section (transfer encoding undone, cut at limits.max_part_bytes). A section the server did not
// return is left out; truncated is set when a section was cut or left out.
Message assemble_message(const FetchPlan& plan, const FetchData& data, const MimeLimits& limits = {});

}  // namespace deliverd::inbound
