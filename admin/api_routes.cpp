#include "admin/api_routes.h"

#include <simdjson.h>

#include <stdexcept>

#include "admin/api_internal.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/percent.h"
#include "store/audit_log.h"

namespace deliverd::admin {
namespace detail {

void Call::reply(Response r) {
  if (!write) return respond(std::move(r));
  store::AuditEntry e;
  e.key_id = who.key_id;
  e.role = who.role;
  e.account = account.empty() ? who.account : account;
  e.action = action;
  e.target = target;
  e.peer_ip = req.peer_ip;
  e.status = r.status;
  auto respond_copy = respond;
  auto shared = std::make_shared<Response>(std::move(r));
  store::append_audit(pg(), e, [respond_copy, shared, action = action](core::Result<core::Ok, std::string> res) {
    // The write itself happened; the client still learns its outcome, the operator the failure.
    if (!res) core::log_error("admin_audit_failed", {{"action", action}, {"error", res.error()}});
    respond_copy(std::move(*shared));
  });
}

void Call::field_error(int status, std::string_view code, std::string_view field, std::string_view message) {
  core::JsonWriter w;
  w.begin_object()
      .key("error")
      .begin_object()
      .field("code", code)
      .field("message", message)
      .field("field", field)
      .end_object()
      .end_object();
  ok_json(status, w.take());
}

bool account_from_query(const CallPtr& call, std::optional<std::string>& account) {
  auto q = parse_query(call->req.query);
  if (auto it = q.find("account"); it != q.end()) {
    if (!call->check_account(it->second)) return false;
    account = it->second;
  } else if (!call->who.account.empty()) {
    account = call->who.account;
  }
  return true;
}

const store::AddressHasher* Call::addresses() {
  if (ctx->addresses) return &*ctx->addresses;
  error(500, "internal_error", "no secret key: addresses cannot be hashed");
  return nullptr;
}

void Call::ok_json(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  reply(std::move(r));
}

bool Call::check_account(const std::string& a) {
  account = a;
  if (a.empty()) {
    error(400, "invalid_account", "an account is required");
    return false;
  }
  if (!who.may_see_account(a)) {
    error(403, "forbidden", "this key is bound to another account");
    return false;
  }
  return true;
}

void add_route(Router& router, const std::shared_ptr<ApiContext>& ctx, std::string method, std::string path,
               Resource res, Access access, std::string action, ApiHandler h, Caller caller) {
  router.add(std::move(method), std::move(path),
             [ctx, res, access, caller, action = std::move(action), h = std::move(h)](const Request& req,
                                                                                       Respond respond) {
               auto call = std::make_shared<Call>();
               call->ctx = ctx;
               call->req = req;
               call->respond = std::move(respond);
               call->action = action;
               ctx->auth->authenticate(call->req, [call, res, access, caller, h](std::variant<Principal, Response> r) {
                 if (auto* refused = std::get_if<Response>(&r)) return call->respond(std::move(*refused));
                 call->who = std::get<Principal>(std::move(r));
                 call->write = access == Access::Write;
                 if (!call->who.can(res, access))
                   return call->error(403, "forbidden",
                                      "this key lacks the " + std::string(to_string(res)) +
                                          (access == Access::Read ? ":read" : ":write") + " permission");
                 if (caller == Caller::OperatorsOnly && !call->who.is_operator())
                   return call->error(403, "forbidden", "this action needs an admin or owner key");
                 h(call);
               });
             });
}

const JsonValue* JsonObject::get(const std::string& k) const {
  auto it = fields.find(k);
  return it == fields.end() ? nullptr : it->second.get();
}

namespace {

std::optional<std::string> convert(simdjson::dom::element e, JsonValue& out, int depth) {
  using T = simdjson::dom::element_type;
  switch (e.type()) {
    case T::NULL_VALUE:
      out.type = JsonValue::Type::Null;
      return std::nullopt;
    case T::STRING:
      out.type = JsonValue::Type::String;
      out.s = std::string(e.get_string().value());
      return std::nullopt;
    case T::INT64:
      out.type = JsonValue::Type::Int;
      out.i = e.get_int64().value();
      return std::nullopt;
    case T::BOOL:
      out.type = JsonValue::Type::Bool;
      out.b = e.get_bool().value();
      return std::nullopt;
    case T::ARRAY: {
      out.type = JsonValue::Type::Array;
      simdjson::dom::array arr;
      if (e.get_array().get(arr) != simdjson::SUCCESS) return std::string("not an array");
      for (simdjson::dom::element item : arr) {
        if (item.type() != T::STRING) return std::string("must be an array of strings");
        out.strings.emplace_back(item.get_string().value());
      }
      return std::nullopt;
    }
    case T::OBJECT: {
      if (depth > 1) return std::string("nested too deeply");
      out.type = JsonValue::Type::Object;
      simdjson::dom::object obj;
      if (e.get_object().get(obj) != simdjson::SUCCESS) return std::string("not an object");
      for (simdjson::dom::key_value_pair field : obj) {
        std::string key(field.key);
        if (out.object.fields.count(key)) return "duplicate field '" + key + "'";
        auto v = std::make_shared<JsonValue>();
        if (auto err = convert(field.value, *v, depth + 1)) return key + ": " + *err;
        out.object.fields.emplace(std::move(key), std::move(v));
      }
      return std::nullopt;
    }
    default:
      out.type = JsonValue::Type::Other;
      return std::nullopt;
  }
}

}  // namespace

core::Result<JsonObject, std::string> parse_json_object(std::string_view body) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::padded_string padded(body);
  if (parser.parse(padded).get(doc) != simdjson::SUCCESS) return core::Err(std::string("body: not valid JSON"));
  if (doc.type() != simdjson::dom::element_type::OBJECT) return core::Err(std::string("body: must be a JSON object"));
  JsonValue root;
  if (auto err = convert(doc, root, 0)) return core::Err("body: " + *err);
  return std::move(root.object);
}

std::optional<std::string> read_string(const JsonObject& o, const std::string& k, std::string& out, size_t max_len) {
  const JsonValue* v = o.get(k);
  if (!v || v->type == JsonValue::Type::Null) return std::nullopt;
  if (v->type != JsonValue::Type::String) return k + ": must be a string";
  if (v->s.size() > max_len) return k + ": at most " + std::to_string(max_len) + " bytes";
  out = v->s;
  return std::nullopt;
}

std::optional<std::string> read_int(const JsonObject& o, const std::string& k, int& out) {
  const JsonValue* v = o.get(k);
  if (!v || v->type == JsonValue::Type::Null) return std::nullopt;
  if (v->type != JsonValue::Type::Int || v->i < -2147483647 || v->i > 2147483647) return k + ": must be an integer";
  out = static_cast<int>(v->i);
  return std::nullopt;
}

std::optional<std::string> read_bool(const JsonObject& o, const std::string& k, bool& out) {
  const JsonValue* v = o.get(k);
  if (!v || v->type == JsonValue::Type::Null) return std::nullopt;
  if (v->type != JsonValue::Type::Bool) return k + ": must be true or false";
  out = v->b;
  return std::nullopt;
}

std::map<std::string, std::string> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    auto k = core::percent_decode(pair.substr(0, eq));
    auto v = core::percent_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    if (k && v && !k->empty()) out.emplace(*k, *v);
  }
  return out;
}

std::string path_param(const Request& req, std::string_view name) {
  const std::string* p = req.param(name);
  if (!p) return {};
  return core::percent_decode(*p).value_or("");
}

}  // namespace detail

void add_api_routes(Router& router, ApiDeps deps) {
  if (!deps.loop || !deps.pg) throw std::invalid_argument("admin API: a loop and a PostgreSQL connection are required");
  auto ctx = std::make_shared<detail::ApiContext>();
  ctx->auth = std::make_unique<Authenticator>(deps.loop, deps.pg, deps.auth);
  if (deps.secrets) ctx->addresses = store::AddressHasher::from(*deps.secrets);
  ctx->deps = std::move(deps);
  detail::add_mailbox_routes(router, ctx);
  detail::add_suppression_routes(router, ctx);
  detail::add_message_routes(router, ctx);
  detail::add_account_routes(router, ctx);
  detail::add_key_routes(router, ctx);
  // Per-tenant series (labelled account or mailbox) are for the platform's owner and admin keys,
  // those bound to no account (a bound key would see the other tenants'); every other key and the
  // open /metrics get the rest. A tenant sees its own mailboxes' figures in /v1/mailboxes.
  auto metrics = [](detail::CallPtr call) {
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    const bool platform = call->who.is_operator() && call->who.account.empty();
    r.body = core::Registry::global().render(platform ? core::Registry::Audience::Operators
                                                      : core::Registry::Audience::Public);
    call->reply(std::move(r));
  };
  detail::add_route(router, ctx, "GET", "/v1/metrics", Resource::Metrics, Access::Read, "metrics.read", metrics);
  // /metrics stays open for scrapers without a key; one that sends a key is authenticated like
  // any API request (a wrong key is a 401, not a quiet downgrade).
  Router with_key;
  detail::add_route(with_key, ctx, "GET", "/metrics", Resource::Metrics, Access::Read, "metrics.read", metrics);
  router.set("GET", "/metrics", [with_key](const Request& req, Respond respond) {
    if (req.header("Authorization")) return with_key.dispatch(req, std::move(respond));
    Response r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = core::Registry::global().render(core::Registry::Audience::Public);
    respond(std::move(r));
  });
}

}  // namespace deliverd::admin
