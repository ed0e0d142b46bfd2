#pragma once
// Internal to admin/: what the /v1 route files share — the authenticated call, the audit write,
// reading JSON bodies and query strings.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "admin/api_routes.h"
#include "admin/auth.h"
#include "admin/permissions.h"
#include "core/json_writer.h"
#include "store/address_hash.h"

namespace deliverd::admin::detail {

struct ApiContext {
  ApiDeps deps;
  std::unique_ptr<Authenticator> auth;
  // Derived from deps.secrets (store/address_hash.h); unset without it, and then the routes that
  // hash addresses answer 500.
  std::optional<store::AddressHasher> addresses;
};

// One authenticated request on its way to an answer. reply() writes the audit row first when
// the route writes, so an answered write is always on record.
struct Call {
  std::shared_ptr<ApiContext> ctx;
  Request req;
  Principal who;
  bool write = false;
  std::string action, account, target;  // for the audit row
  Respond respond;

  void reply(Response r);
  void error(int status, std::string_view code, std::string_view message) { reply(json_error(status, code, message)); }
  void ok_json(int status, std::string body);
  // {"error":{"code","message","field"}}: a refusal that names the request field at fault.
  void field_error(int status, std::string_view code, std::string_view field, std::string_view message);
  // Records the account acted on; answers 403 (and returns false) when the key is bound to
  // another account.
  bool check_account(const std::string& a);
  store::PgConnection& pg() { return *ctx->deps.pg; }
  // The address hasher, or nullptr after answering 500 (no secret key was given to the API).
  const store::AddressHasher* addresses();
};
using CallPtr = std::shared_ptr<Call>;
using ApiHandler = std::function<void(CallPtr)>;

// Who may call a route beyond its permission: anyone holding it, or operators only (owner and
// admin keys) for what undoes the platform's guards.
enum class Caller : uint8_t { AnyRole, OperatorsOnly };

// Authenticates, checks the permission (and the role, for OperatorsOnly), then runs h.
void add_route(Router& router, const std::shared_ptr<ApiContext>& ctx, std::string method, std::string path,
               Resource res, Access access, std::string action, ApiHandler h, Caller caller = Caller::AnyRole);

// The account an unbound key names with ?account= (bound keys: their own). Answers 400/403 and
// returns false when the query names an account the key may not see.
bool account_from_query(const CallPtr& call, std::optional<std::string>& account);

void add_key_routes(Router& router, const std::shared_ptr<ApiContext>& ctx);
void add_account_routes(Router& router, const std::shared_ptr<ApiContext>& ctx);
void add_suppression_routes(Router& router, const std::shared_ptr<ApiContext>& ctx);
void add_message_routes(Router& router, const std::shared_ptr<ApiContext>& ctx);
void add_mailbox_routes(Router& router, const std::shared_ptr<ApiContext>& ctx);

// A flat JSON object as the API accepts it: values are strings, integers, booleans, null,
// arrays of strings, or one level of nested object (kept as its own JsonObject).
struct JsonValue;
struct JsonObject {
  std::map<std::string, std::shared_ptr<JsonValue>> fields;
  const JsonValue* get(const std::string& k) const;
  bool has(const std::string& k) const { return fields.count(k) != 0; }
};
struct JsonValue {
  enum class Type { Null, String, Int, Bool, Array, Object, Other } type = Type::Null;
  std::string s;
  int64_t i = 0;
  bool b = false;
  std::vector<std::string> strings;  // Array of strings
  JsonObject object;
};
// Errors name the problem ("body: not valid JSON", "body: must be a JSON object").
core::Result<JsonObject, std::string> parse_json_object(std::string_view body);

// Typed reads: absent leaves `out` alone and returns ok; a wrong type is an error naming the field.
std::optional<std::string> read_string(const JsonObject& o, const std::string& k, std::string& out,
                                       size_t max_len = 4096);
std::optional<std::string> read_int(const JsonObject& o, const std::string& k, int& out);
std::optional<std::string> read_bool(const JsonObject& o, const std::string& k, bool& out);

std::map<std::string, std::string> parse_query(std::string_view query);
// A path parameter, decoded; "" when missing or malformed.
std::string path_param(const Request& req, std::string_view name);

}  // namespace deliverd::admin::detail
