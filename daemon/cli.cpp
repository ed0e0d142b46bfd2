#include "daemon/cli.h"

namespace deliverd::daemon {

core::Result<ParsedArgs, std::string> parse_args(const std::vector<std::string>& args,
                                                 const std::vector<OptionSpec>& specs) {
  ParsedArgs out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) != 0) return core::Err{"unexpected argument \"" + a + "\""};
    std::string name = a.substr(2);
    std::string value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const OptionSpec* spec = nullptr;
    for (const auto& s : specs)
      if (s.name == name) spec = &s;
    if (!spec) return core::Err{"unknown option --" + name};
    if (spec->takes_value) {
      if (!inline_value) {
        if (i + 1 >= args.size()) return core::Err{"option --" + name + " needs a value"};
        value = args[++i];
      }
      out.values[name] = value;
    } else {
      if (inline_value) return core::Err{"option --" + name + " takes no value"};
      out.values[name] = "1";
    }
  }
  return out;
}

std::string usage_for(const std::string& command, const std::string& summary, const std::vector<OptionSpec>& specs) {
  std::string out = "usage: deliverd " + command;
  for (const auto& s : specs) out += " [--" + s.name + (s.takes_value ? " VALUE]" : "]");
  out += "\n\n" + summary + "\n\noptions:\n";
  for (const auto& s : specs) {
    std::string left = "  --" + s.name + (s.takes_value ? " VALUE" : "");
    if (left.size() < 28) left.resize(28, ' ');
    out += left + " " + s.help + "\n";
  }
  return out;
}

}  // namespace deliverd::daemon
