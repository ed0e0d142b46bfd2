#include "core/sasl.h"

namespace deliverd::core {
namespace {

// RFC 5801 saslname: "," and "=" are escaped inside the GS2 header.
std::string saslname(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == ',')
      out += "=2C";
    else if (c == '=')
      out += "=3D";
    else
      out += c;
  }
  return out;
}

}  // namespace

std::string sasl_plain(std::string_view user, std::string_view password) {
  std::string out(1, '\0');
  out += user;
  out += '\0';
  out += password;
  return out;
}

std::string sasl_xoauth2(std::string_view user, std::string_view token) {
  std::string out = "user=";
  out += user;
  out +=
      "\x01"
      "auth=Bearer ";
  out += token;
  out += "\x01\x01";
  return out;
}

std::string sasl_oauthbearer(std::string_view user, std::string_view host, int port, std::string_view token) {
  std::string out = "n,a=" + saslname(user) + ",";
  out +=
      "\x01"
      "host=";
  out += host;
  out +=
      "\x01"
      "port=" +
      std::to_string(port);
  out +=
      "\x01"
      "auth=Bearer ";
  out += token;
  out += "\x01\x01";
  return out;
}

}  // namespace deliverd::core
