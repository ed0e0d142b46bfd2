#pragma once
// Command-line parsing shared by the subcommands: "--name value" and "--flag" options.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"

namespace deliverd::daemon {

struct OptionSpec {
  std::string name;  // without the leading "--"
  bool takes_value;
  std::string help;
};

struct ParsedArgs {
  std::map<std::string, std::string> values;  // flags map to "1"
  bool has(const std::string& n) const { return values.count(n) != 0; }
  std::string get(const std::string& n, const std::string& fallback = {}) const {
    auto it = values.find(n);
    return it == values.end() ? fallback : it->second;
  }
};

// Parses args (after the subcommand) against specs; the error names the offending argument.
core::Result<ParsedArgs, std::string> parse_args(const std::vector<std::string>& args,
                                                 const std::vector<OptionSpec>& specs);

std::string usage_for(const std::string& command, const std::string& summary, const std::vector<OptionSpec>& specs);

}  // namespace deliverd::daemon
