#include "daemon/cli.h"

namespace deliverd::daemon {
namespace {
// Built with append: g++ 12 warns falsely (-Wrestrict) on chains of operator+ here.
core::Err<std::string> option_error(const std::string& name, const char* what) {
  std::string msg = "option --";
  msg.append(name).append(what);
  return core::Err<std::string>(std::move(msg));
}
}  // namespace

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
      value.assign(name, eq + 1);
      name.resize(eq);
      inline_value = true;
    }
    const OptionSpec* spec = nullptr;
    for (const auto& s : specs)
      if (s.name == name) spec = &s;
    if (!spec) return core::Err<std::string>(std::string("unknown option --").append(name));
    if (spec->takes_value) {
      if (!inline_value) {
        if (i + 1 >= args.size()) return option_error(name, " needs a value");
        value = args[++i];
      }
      out.values[name] = value;
    } else {
      if (inline_value) return option_error(name, " takes no value");
      out.values[name] = "1";
    }
  }
  return out;
}

std::string usage_for(const std::string& command, const std::string& summary, const std::vector<OptionSpec>& specs) {
  // Appends rather than chains of operator+: g++ 12 warns falsely (-Wrestrict) on those.
  std::string out = "usage: deliverd ";
  out.append(command);
  for (const auto& s : specs) out.append(" [--").append(s.name).append(s.takes_value ? " VALUE]" : "]");
  out.append("\n\n").append(summary).append("\n\noptions:\n");
  for (const auto& s : specs) {
    std::string left = "  --";
    left.append(s.name).append(s.takes_value ? " VALUE" : "");
    if (left.size() < 28) left.resize(28, ' ');
    out.append(left).append(" ").append(s.help).append("\n");
  }
  return out;
}

}  // namespace deliverd::daemon
