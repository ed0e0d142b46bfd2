#pragma once
// The reference for the differential test: the composer before the one-pass rewrite, with the
// same MessageSpec, in its own namespace.
#include <ctime>
#include <string>
#include <string_view>

#include "core/result.h"
#include "smtp/composer.h"

namespace deliverd::smtp::legacy {

core::Result<std::string, std::string> compose(const MessageSpec& m, std::time_t now);
std::string dot_stuff(std::string_view message);
core::Result<core::Ok, std::string> validate_message(std::string_view message, bool utf8_headers = false);
std::string rfc5322_date(std::time_t t);
std::string encode_words(std::string_view utf8);
std::string quoted_printable(std::string_view crlf_text);
std::string base64_lines(std::string_view bytes);
core::Result<std::string, std::string> header_field(std::string_view name, std::string_view value,
                                                    std::string_view field);
std::string message_id_of(std::string_view message);

}  // namespace deliverd::smtp::legacy
