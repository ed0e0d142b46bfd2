// /v1/keys: create (the token is in this one answer only), list, revoke (with every key the
// revoked key made, and the keys those made).
#include <chrono>

#include "admin/api_internal.h"
#include "store/api_keys.h"

namespace deliverd::admin::detail {
namespace {

std::string key_json(const store::ApiKey& k, const std::string& token = {}) {
  core::JsonWriter w;
  auto opt = [&](std::string_view name, const std::string& v) {
    w.key(name);
    if (v.empty())
      w.null();
    else
      w.value(v);
  };
  w.begin_object().field("id", k.id).field("prefix", k.prefix);
  if (!token.empty()) w.field("key", token);
  w.field("role", k.role);
  opt("account", k.account);
  w.field("scopes", k.scopes.empty() ? scopes_to_string(role_permissions(k.role)) : k.scopes);
  opt("name", k.name);
  opt("created_by", k.created_by);
  w.field("created_at", k.created_at);
  opt("expires_at", k.expires_at);
  opt("last_used_at", k.last_used_at);
  opt("revoked_at", k.revoked_at);
  w.end_object();
  return w.take();
}

void create_key(CallPtr call) {
  auto body = parse_json_object(call->req.body);
  if (!body) return call->error(400, "invalid_body", body.error());
  store::ApiKeySpec spec;
  std::optional<std::string> err;
  if (!err) err = read_string(*body, "role", spec.role, 16);
  if (!err) err = read_string(*body, "account", spec.account, 128);
  if (!err) err = read_string(*body, "name", spec.name, 200);
  if (!err) err = read_string(*body, "expires_at", spec.expires_at, 64);
  if (!err) {
    if (const JsonValue* s = body->get("scopes")) {
      if (s->type == JsonValue::Type::String) {
        spec.scopes = s->s;
      } else if (s->type == JsonValue::Type::Array) {
        for (const auto& x : s->strings) spec.scopes += (spec.scopes.empty() ? "" : " ") + x;
        if (spec.scopes.empty()) err = "scopes: must name at least one scope";
      } else if (s->type != JsonValue::Type::Null) {
        err = "scopes: must be a string or an array of strings";
      }
    }
  }
  if (err) return call->error(400, "invalid_body", *err);
  if (spec.role.empty()) return call->error(400, "invalid_body", "role: required");
  const int64_t now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  spec.created_by = call->who.key_id;
  if (auto refusal = check_new_key(call->who, spec, now_ms))
    return call->error(refusal->status, refusal->code, refusal->message);
  call->account = spec.account;
  store::insert_api_key(call->pg(), spec, [call](core::Result<store::CreatedApiKey, std::string> r) {
    if (!r) return call->error(500, "internal_error", "the key could not be stored");
    call->target = r->key.id;
    call->ok_json(201, key_json(r->key, r->token));
  });
}

void list_keys(CallPtr call) {
  std::string account = call->who.account;
  auto q = parse_query(call->req.query);
  if (auto it = q.find("account"); it != q.end()) {
    if (!call->check_account(it->second)) return;
    account = it->second;
  }
  store::list_api_keys(call->pg(), account, [call](core::Result<std::vector<store::ApiKey>, std::string> r) {
    if (!r) return call->error(500, "internal_error", "cannot list keys");
    core::JsonWriter w;
    w.begin_object().key("items").begin_array();
    for (const auto& k : *r) w.raw(key_json(k));
    w.end_array().end_object();
    call->ok_json(200, w.take());
  });
}

void revoke_key(CallPtr call) {
  std::string id = path_param(call->req, "id");
  call->target = id;
  store::get_api_key(call->pg(), id, [call, id](core::Result<std::optional<store::ApiKey>, std::string> r) {
    if (!r) return call->error(500, "internal_error", "cannot read the key");
    if (!*r || !call->who.may_see_account((*r)->account)) return call->error(404, "not_found", "no such key");
    call->account = (*r)->account;
    if (auto refusal = check_revoke(call->who, **r))
      return call->error(refusal->status, refusal->code, refusal->message);
    store::revoke_api_key(call->pg(), id, [call](core::Result<int64_t, std::string> rv) {
      if (!rv) return call->error(500, "internal_error", "cannot revoke the key");
      Response resp;
      resp.status = 204;
      call->reply(std::move(resp));
    });
  });
}

}  // namespace

void add_key_routes(Router& router, const std::shared_ptr<ApiContext>& ctx) {
  add_route(router, ctx, "GET", "/v1/keys", Resource::Keys, Access::Read, "key.list", list_keys);
  add_route(router, ctx, "POST", "/v1/keys", Resource::Keys, Access::Write, "key.create", create_key);
  add_route(router, ctx, "DELETE", "/v1/keys/{id}", Resource::Keys, Access::Write, "key.revoke", revoke_key);
}

}  // namespace deliverd::admin::detail
