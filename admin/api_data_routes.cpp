// /v1/accounts/{account}/suppressions, /v1/messages, /v1/accounts/{account} (export, erase).
#include "admin/api_internal.h"
#include "core/hex.h"
#include "queue/job.h"
#include "store/accounts.h"
#include "store/delivery_events.h"
#include "store/suppressions.h"

namespace deliverd::admin::detail {
namespace {

int page_limit(const CallPtr& call, const std::map<std::string, std::string>& q) {
  int limit = 100;
  if (auto it = q.find("limit"); it != q.end()) {
    if (it->second.empty() || it->second.size() > 6 || it->second.find_first_not_of("0123456789") != std::string::npos)
      return -1;
    limit = std::stoi(it->second);
  }
  if (limit < 1 || limit > call->ctx->deps.max_page) return -1;
  return limit;
}

// ---- suppressions ----

void list_suppressions(CallPtr call) {
  if (!call->check_account(path_param(call->req, "account"))) return;
  auto q = parse_query(call->req.query);
  int limit = page_limit(call, q);
  if (limit < 0) return call->error(400, "invalid_query", "limit: 1-" + std::to_string(call->ctx->deps.max_page));
  std::optional<std::string> after;
  if (auto it = q.find("after"); it != q.end()) {
    auto raw = core::from_hex(it->second);
    if (!raw || raw->size() != 32)
      return call->error(400, "invalid_query", "after: the next cursor of a previous page");
    after = store::encode_bytea(*raw);
  }
  call->pg().query(
      "SELECT address, address_sha256, reason, source,"
      " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
      " FROM suppressions WHERE account = $1 AND ($2::bytea IS NULL OR address_sha256 > $2::bytea)"
      " ORDER BY address_sha256 LIMIT $3::integer",
      {call->account, after, std::to_string(limit + 1)}, [call, limit](const store::PgResult& r) {
        if (!r.ok) return call->error(500, "internal_error", "cannot list suppressions");
        core::JsonWriter w;
        w.begin_object().key("items").begin_array();
        std::string last;
        size_t n = std::min(r.rows.size(), static_cast<size_t>(limit));
        for (size_t i = 0; i < n; ++i) {
          const auto& row = r.rows[i];
          last = core::to_hex(store::decode_bytea(row[1].value_or("")).value_or(""));
          w.begin_object().key("address");
          if (row[0])
            w.value(*row[0]);
          else
            w.null();
          w.field("address_sha256", last)
              .field("reason", row[2].value_or(""))
              .field("source", row[3].value_or(""))
              .field("created_at", row[4].value_or(""))
              .end_object();
        }
        w.end_array().key("next");
        if (r.rows.size() > n)
          w.value(last);
        else
          w.null();
        w.end_object();
        call->ok_json(200, w.take());
      });
}

void add_suppression(CallPtr call) {
  if (!call->check_account(path_param(call->req, "account"))) return;
  auto body = parse_json_object(call->req.body);
  if (!body) return call->error(400, "invalid_body", body.error());
  store::Suppression s;
  s.account = call->account;
  s.reason = "manual";
  s.source = "api";
  std::optional<std::string> err = read_string(*body, "address", s.address, queue::kMaxEmailLength);
  if (!err) err = read_string(*body, "reason", s.reason, 64);
  if (err) return call->error(400, "invalid_body", *err);
  auto parsed = store::parse_listed_address(s.address);
  if (!parsed) return call->error(400, "invalid_body", "address: " + parsed.error());
  s.address = parsed->str();
  call->target = s.address;
  const store::AddressHasher* addresses = call->addresses();
  if (!addresses) return;
  store::add_suppression(call->pg(), *addresses, s, [call, address = s.address](core::Result<bool, std::string> r) {
    if (!r) return call->error(500, "internal_error", "cannot add the suppression");
    core::JsonWriter w;
    w.begin_object().field("address", address).field("added", *r).field("suppressed", true).end_object();
    call->ok_json(*r ? 201 : 200, w.take());
  });
}

void check_suppression(CallPtr call) {
  if (!call->check_account(path_param(call->req, "account"))) return;
  std::string address = store::normalize_address(path_param(call->req, "address"));
  if (address.empty()) return call->error(400, "invalid_address", "not an email address");
  const store::AddressHasher* addresses = call->addresses();
  if (!addresses) return;
  store::is_suppressed(call->pg(), *addresses, call->account, address, [call, address](core::Result<bool, std::string> r) {
    if (!r) return call->error(500, "internal_error", "cannot check the suppression list");
    core::JsonWriter w;
    w.begin_object().field("address", address).field("suppressed", *r).end_object();
    call->ok_json(200, w.take());
  });
}

void remove_suppression(CallPtr call) {
  if (!call->check_account(path_param(call->req, "account"))) return;
  std::string address = store::normalize_address(path_param(call->req, "address"));
  if (address.empty()) return call->error(400, "invalid_address", "not an email address");
  const store::AddressHasher* addresses = call->addresses();
  if (!addresses) return;
  store::remove_suppression(
      call->pg(), *addresses, call->account, address, call->who.is_operator(),
      [call, address, hashed = core::to_hex(addresses->key(address))](
          core::Result<store::SuppressionRemoval, std::string> r) {
        if (!r) return call->error(500, "internal_error", "cannot remove the suppression");
        // An erased address is named by its (keyed) hash only, in the audit log as everywhere.
        call->target = (r->erased ? "sha256:" + hashed : address) +
                       (r->sources.empty() ? "" : " (source " + r->sources + ")");
        if (!r->found) return call->error(404, "not_found", "the address is not suppressed");
        if (!r->removed)
          return call->error(403, "forbidden",
                             "this suppression comes from " + r->guard_source +
                                 ": only an admin or owner key may remove it");
        Response resp;
        resp.status = 204;
        call->reply(std::move(resp));
      });
}

// ---- messages ----

void inject_message(CallPtr call) {
  if (!call->ctx->deps.inject) return call->error(501, "not_implemented", "message injection is not configured");
  auto job = queue::parse_job(call->req.body, call->ctx->deps.max_job_bytes);
  if (!job) {
    core::JsonWriter w;
    w.begin_object()
        .key("error")
        .begin_object()
        .field("code", "invalid_job")
        .field("message", job.error().to_string())
        .field("field", job.error().field)
        .end_object()
        .end_object();
    return call->ok_json(422, w.take());
  }
  call->target = job->id;
  if (!call->check_account(job->account)) return;
  // A job names a mailbox of its own account (ids are per account): no other account's can be used.
  call->pg().query("SELECT 1 FROM mailboxes WHERE account = $1 AND id = $2", {job->account, job->mailbox},
                   [call, id = job->id, mailbox = job->mailbox](const store::PgResult& r) {
                     if (!r.ok) return call->error(500, "internal_error", "cannot check the mailbox");
                     if (r.rows.empty()) return call->error(422, "invalid_job", "mailbox: no such mailbox in this account");
                     call->ctx->deps.inject(call->req.body, [call, id](core::Result<std::string, std::string> res) {
                       if (!res) return call->error(503, "unavailable", "the job could not be queued: " + res.error());
                       core::JsonWriter w;
                       w.begin_object().field("id", id).field("stream_id", *res).field("status", "queued").end_object();
                       call->ok_json(202, w.take());
                     });
                   });
}

// No event rows: either retention removed them (a marker says so, with the last status) or the
// message has no outcome yet (or is not visible to this key).
void aged_out_or_unknown(CallPtr call, const std::optional<std::string>& account, const std::string& id) {
  store::aged_out_jobs(call->pg(), id, [call, account, id](core::Result<std::vector<store::AgedOutJob>, std::string> r) {
    if (!r) return call->error(500, "internal_error", "cannot read delivery events");
    for (const auto& a : *r) {
      if (!call->who.may_see_account(a.account) || (account && a.account != *account)) continue;
      core::JsonWriter w;
      w.begin_object()
          .key("error")
          .begin_object()
          .field("code", "aged_out")
          .field("message", "the outcome of this message is older than the retention of delivery events "
                            "([postgres] events_retention_days) and its rows were removed")
          .field("id", id)
          .field("account", a.account)
          .field("last_status", a.last_status)
          .field("last_event_at", a.last_event_at)
          .field("aged_out_at", a.aged_at)
          .end_object()
          .end_object();
      return call->ok_json(410, w.take());
    }
    call->error(404, "not_found", "no outcome for this message yet");
  });
}

// Job ids are per account: an account-bound key reads its own account's job; an unbound key
// names the account with ?account= when the id was used by several.
void get_message(CallPtr call) {
  std::string id = path_param(call->req, "id");
  std::optional<std::string> account;
  if (!account_from_query(call, account)) return;
  store::delivery_events_for_job(
      call->pg(), account, id, [call, account, id](core::Result<std::vector<store::DeliveryEvent>, std::string> r) {
        if (!r) return call->error(500, "internal_error", "cannot read delivery events");
        std::vector<store::DeliveryEvent> mine;
        for (auto& e : *r)
          if (call->who.may_see_account(e.account)) mine.push_back(std::move(e));
        if (mine.empty()) return aged_out_or_unknown(call, account, id);
        for (const auto& e : mine)
          if (e.account != mine.front().account)
            return call->error(400, "account_required",
                               "job " + id + " was used by several accounts: name one with ?account=");
        core::JsonWriter w;
        w.begin_object()
            .field("id", id)
            .field("account", mine.back().account)
            .field("status", mine.back().status)
            .key("outcome")
            .raw(store::delivery_event_json(mine.back()))
            .key("events")
            .begin_array();
        for (const auto& e : mine) w.raw(store::delivery_event_json(e));
        w.end_array().end_object();
        call->ok_json(200, w.take());
      });
}

// ---- accounts ----

void export_account(CallPtr call) {
  if (!call->check_account(path_param(call->req, "account"))) return;
  store::export_account(call->pg(), call->account, [call](core::Result<std::string, std::string> r) {
    if (!r) return call->error(500, "internal_error", r.error());
    Response resp;
    resp.body = std::move(*r);
    resp.headers.emplace_back("Content-Disposition", "attachment; filename=\"account-export.json\"");
    call->reply(std::move(resp));
  });
}

void erase_account(CallPtr call) {
  if (!call->check_account(path_param(call->req, "account"))) return;
  call->target = call->account;
  // Erasing deletes the account's keys: its owner keys go only by an owner's hand, as they are
  // revoked only by one.
  store::erase_account(call->pg(), call->account, call->who.role == "owner",
                       [call](core::Result<store::EraseCounts, std::string> r) {
    if (!r) return call->error(500, "internal_error", "cannot erase the account");
    if (r->refused_owner_keys)
      return call->error(403, "forbidden", "the account has owner keys: only an owner key may erase it");
    if (call->ctx->deps.mailboxes_changed) call->ctx->deps.mailboxes_changed();
    auto answer = [call, pgc = *r](const queue::RedisEraseCounts* q, int64_t late_events) {
      core::JsonWriter w;
      w.begin_object()
          .field("account", call->account)
          .key("erased")
          .begin_object()
          .field("mailboxes", pgc.mailboxes)
          .field("delivery_events", pgc.delivery_events + late_events)
          .field("api_keys", pgc.api_keys)
          .field("suppressions_reduced_to_hash", pgc.suppressions_hashed)
          .field("audit_rows_scrubbed", pgc.audit_rows_scrubbed);
      if (q)
        w.field("retry_members", q->retry_members)
            .field("results_entries", q->results_entries)
            .field("dead_letters", q->dead_letters);
      w.end_object().end_object();
      call->ok_json(200, w.take());
    };
    if (!call->ctx->deps.erase_queued) return answer(nullptr, 0);
    // Redis next: the marker stops the account's queued and in-flight jobs, then its retry-set
    // members and stream entries go. Rows that deliveries finished meanwhile wrote go last.
    call->ctx->deps.erase_queued(call->account, [call, answer](core::Result<queue::RedisEraseCounts, std::string> q) {
      if (!q) return call->error(500, "internal_error", "the account's rows are erased, its queued jobs are not: retry");
      store::erase_account_events(call->pg(), call->account, [call, answer, q = *q](core::Result<int64_t, std::string> e) {
        if (!e) return call->error(500, "internal_error", "cannot erase the account's latest delivery events: retry");
        answer(&q, *e);
      });
    });
  });
}

void erase_address(CallPtr call) {
  if (!call->check_account(path_param(call->req, "account"))) return;
  auto body = parse_json_object(call->req.body);
  if (!body) return call->error(400, "invalid_body", body.error());
  std::string address;
  if (auto err = read_string(*body, "address", address, queue::kMaxEmailLength))
    return call->error(400, "invalid_body", *err);
  address = store::normalize_address(address);
  if (address.empty()) return call->error(400, "invalid_body", "address: required, an email address");
  const store::AddressHasher* addresses = call->addresses();
  if (!addresses) return;
  // The audit row names the keyed hash: writing the address down would undo the erasure. The
  // "sha256:" label and the field name are kept for compatibility (the value is an HMAC-SHA-256).
  call->target = "sha256:" + core::to_hex(addresses->key(address));
  store::erase_address(call->pg(), *addresses, call->account, address, [call](core::Result<int64_t, std::string> r) {
    if (!r) return call->error(500, "internal_error", "cannot erase the address");
    core::JsonWriter w;
    w.begin_object()
        .field("address_sha256", call->target.substr(7))
        .field("delivery_events_scrubbed", *r)
        .field("suppressed", true)
        .end_object();
    call->ok_json(200, w.take());
  });
}

}  // namespace

void add_suppression_routes(Router& router, const std::shared_ptr<ApiContext>& ctx) {
  const std::string base = "/v1/accounts/{account}/suppressions";
  add_route(router, ctx, "GET", base, Resource::Suppressions, Access::Read, "suppression.list", list_suppressions);
  add_route(router, ctx, "POST", base, Resource::Suppressions, Access::Write, "suppression.add", add_suppression);
  add_route(router, ctx, "GET", base + "/{address}", Resource::Suppressions, Access::Read, "suppression.check",
            check_suppression);
  add_route(router, ctx, "DELETE", base + "/{address}", Resource::Suppressions, Access::Write, "suppression.remove",
            remove_suppression);
}

void add_message_routes(Router& router, const std::shared_ptr<ApiContext>& ctx) {
  add_route(router, ctx, "POST", "/v1/messages", Resource::Messages, Access::Write, "message.inject", inject_message);
  add_route(router, ctx, "GET", "/v1/messages/{id}", Resource::Messages, Access::Read, "message.get", get_message);
}

void add_account_routes(Router& router, const std::shared_ptr<ApiContext>& ctx) {
  add_route(router, ctx, "GET", "/v1/accounts/{account}/export", Resource::Accounts, Access::Read, "account.export",
            export_account);
  add_route(router, ctx, "DELETE", "/v1/accounts/{account}", Resource::Accounts, Access::Write, "account.erase",
            erase_account, Caller::OperatorsOnly);
  add_route(router, ctx, "POST", "/v1/accounts/{account}/erase-address", Resource::Accounts, Access::Write,
            "account.erase_address", erase_address);
}

}  // namespace deliverd::admin::detail
