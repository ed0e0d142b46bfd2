#include "daemon/key_command.h"

#include <chrono>
#include <ctime>

#include "admin/permissions.h"
#include "daemon/cli.h"
#include "queue/job.h"
#include "store/api_keys.h"

namespace deliverd::daemon {
namespace {

const std::vector<OptionSpec>& create_specs() {
  static const std::vector<OptionSpec> specs = {
      {"role", true, "owner, admin, user or readonly (required)"},
      {"account", true, "bind the key to this account (required for user and readonly)"},
      {"scopes", true, "narrower than the role: \"mailboxes:read suppressions:write …\""},
      {"expires", true, "RFC 3339 time or a duration from now (90d, 12h)"},
      {"name", true, "a label shown when keys are listed"},
  };
  return specs;
}

std::string rfc3339(long long epoch_s) {
  std::time_t t = static_cast<std::time_t>(epoch_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::string expiry_from_option(const std::string& value, long long now_epoch_s) {
  if (value.size() >= 2 && value.size() <= 7 && (value.back() == 'd' || value.back() == 'h') &&
      value.find_first_not_of("0123456789") == value.size() - 1) {
    long long n = std::stoll(value.substr(0, value.size() - 1));
    if (n <= 0) return "";
    return rfc3339(now_epoch_s + n * (value.back() == 'd' ? 86400 : 3600));
  }
  int64_t ms = 0;
  if (!queue::parse_rfc3339_ms(value, ms) || ms / 1000 <= now_epoch_s) return "";
  return rfc3339(ms / 1000);
}

int run_key_command(const std::vector<std::string>& args, const std::string& pg_conninfo, std::ostream& out,
                    std::ostream& err) {
  if (args.empty() || args[0] != "create") {
    err << usage_for("key create", "Create an admin API key; the key is printed once.", create_specs());
    return 2;
  }
  auto parsed = parse_args(std::vector<std::string>(args.begin() + 1, args.end()), create_specs());
  if (!parsed) {
    err << "deliverd key create: " << parsed.error() << "\n";
    return 2;
  }
  store::ApiKeySpec spec;
  spec.role = parsed->get("role");
  spec.account = parsed->get("account");
  spec.scopes = parsed->get("scopes");
  spec.name = parsed->get("name");
  spec.created_by = "cli";
  if (spec.role.empty()) {
    err << "deliverd key create: --role is required (owner, admin, user or readonly)\n";
    return 2;
  }
  if (parsed->has("expires")) {
    long long now =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    spec.expires_at = expiry_from_option(parsed->get("expires"), now);
    if (spec.expires_at.empty()) {
      err << "deliverd key create: --expires: '" << parsed->get("expires")
          << "' is not a future RFC 3339 time or a duration like 90d or 12h\n";
      return 2;
    }
  }
  // The command line stands for the operator with database access: an owner bound to nothing.
  admin::Principal operator_principal{"cli", "owner", "", "", admin::role_permissions("owner")};
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  if (auto refusal = admin::check_new_key(operator_principal, spec, now_ms)) {
    err << "deliverd key create: " << refusal->message << "\n";
    return 2;
  }
  auto created = store::create_api_key_blocking(pg_conninfo, spec);
  if (!created) {
    err << "deliverd key create: " << created.error() << "\n";
    return 1;
  }
  out << created->token << "\n";
  err << "created key " << created->key.id << " (role " << spec.role
      << (spec.account.empty() ? "" : ", account " + spec.account) << "); it is shown only this once\n";
  return 0;
}

}  // namespace deliverd::daemon
