#include "store/delivery_events.h"

#include <algorithm>
#include <iterator>

#include "core/json_writer.h"
#include "core/log.h"
#include "core/metrics.h"
#include "store/suppressions.h"

namespace deliverd::store {
namespace {

constexpr const char* kColumns =
    "id, job_id, account, coalesce(mailbox, ''), coalesce(recipient, ''), status, coalesce(reply_code, 0),"
    " coalesce(enhanced_code, ''), coalesce(reply_text, ''), coalesce(host, ''), coalesce(ip, ''),"
    " coalesce(tls_version, ''), coalesce(tls_cipher, ''), attempt, coalesce(duration_ms, 0), coalesce(detail, ''),"
    " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

DeliveryEvent from_row(const std::vector<std::optional<std::string>>& row) {
  auto s = [&](size_t i) { return row.size() > i && row[i] ? *row[i] : std::string(); };
  DeliveryEvent e;
  e.id = std::stoll(s(0));
  e.job_id = s(1);
  e.account = s(2);
  e.mailbox = s(3);
  e.recipient = s(4);
  e.status = s(5);
  e.reply_code = std::stoi(s(6));
  e.enhanced_code = s(7);
  e.reply_text = s(8);
  e.host = s(9);
  e.ip = s(10);
  e.tls_version = s(11);
  e.tls_cipher = s(12);
  e.attempt = std::stoi(s(13));
  e.duration_ms = std::stoll(s(14));
  e.detail = s(15);
  e.created_at = s(16);
  return e;
}

void read_events(PgConnection& pg, std::string sql, std::vector<std::optional<std::string>> params,
                 std::function<void(core::Result<std::vector<DeliveryEvent>, std::string>)> cb) {
  pg.query(std::move(sql), std::move(params), [cb = std::move(cb)](const PgResult& r) {
    if (!r.ok) return cb(core::Err("cannot read delivery events: " + r.error));
    std::vector<DeliveryEvent> out;
    out.reserve(r.rows.size());
    for (const auto& row : r.rows) out.push_back(from_row(row));
    cb(std::move(out));
  });
}

}  // namespace

void insert_delivery_events(PgConnection& pg, const std::vector<DeliveryEvent>& events,
                            std::function<void(core::Result<core::Ok, std::string>)> cb) {
  auto opt = [](const std::string& s) -> std::optional<std::string> {
    if (s.empty()) return std::nullopt;
    return s;
  };
  constexpr size_t kColumnsPerRow = 16;
  std::string sql =
      "INSERT INTO delivery_events (job_id, account, mailbox, recipient, recipient_sha256, status, reply_code,"
      " enhanced_code, reply_text, host, ip, tls_version, tls_cipher, attempt, duration_ms, detail) VALUES ";
  std::vector<std::optional<std::string>> params;
  params.reserve(events.size() * kColumnsPerRow);
  for (size_t i = 0; i < events.size(); ++i) {
    const DeliveryEvent& e = events[i];
    std::string normalized = normalize_address(e.recipient);
    std::optional<std::string> hash;
    if (!normalized.empty()) hash = encode_bytea(address_sha256(normalized));
    const size_t p = i * kColumnsPerRow;
    auto n = [&](size_t k) { return "$" + std::to_string(p + k); };
    sql += (i ? ", (" : "(") + n(1) + ", " + n(2) + ", " + n(3) + ", " + n(4) + ", " + n(5) + "::bytea, " + n(6) +
           ", " + n(7) + "::integer, " + n(8) + ", " + n(9) + ", " + n(10) + ", " + n(11) + ", " + n(12) + ", " +
           n(13) + ", " + n(14) + "::integer, " + n(15) + "::bigint, " + n(16) + ")";
    for (auto& v : std::vector<std::optional<std::string>>{
             e.job_id, e.account, opt(e.mailbox), opt(e.recipient), hash, e.status,
             e.reply_code ? std::optional<std::string>(std::to_string(e.reply_code)) : std::nullopt,
             opt(e.enhanced_code), opt(e.reply_text), opt(e.host), opt(e.ip), opt(e.tls_version), opt(e.tls_cipher),
             std::to_string(e.attempt), std::to_string(e.duration_ms), opt(e.detail)})
      params.push_back(std::move(v));
  }
  pg.query(std::move(sql), std::move(params), [cb = std::move(cb)](const PgResult& r) {
    if (!r.ok) return cb(core::Err("cannot write delivery events: " + r.error));
    cb(core::Ok{});
  });
}

namespace {

core::Family<core::Counter>& written() {
  static auto& f = core::Registry::global().counter(
      "deliverd_delivery_events_total",
      "Delivery event rows for PostgreSQL, by result (written, failed, dropped: beyond the buffer)", {"result"});
  return f;
}

}  // namespace

DeliveryEventWriter::DeliveryEventWriter(PgConnection& pg, size_t max_batch, size_t max_buffered)
    : pg_(pg), max_batch_(std::max<size_t>(1, max_batch)), max_buffered_(max_buffered) {
  written();
}

DeliveryEventWriter::~DeliveryEventWriter() { *self_ = nullptr; }

void DeliveryEventWriter::add(DeliveryEvent e) {
  if (buffered_.size() >= max_buffered_) {
    written().with({"dropped"}).inc();
    core::log_warn("delivery_event_dropped", {{"job", e.job_id}, {"reason", "the buffer for PostgreSQL is full"}});
    return;
  }
  buffered_.push_back(std::move(e));
  if (!writing_) write_next();
}

void DeliveryEventWriter::when_idle(std::function<void()> done) {
  if (idle()) return done();
  idle_waiters_.push_back(std::move(done));
}

void DeliveryEventWriter::write_next() {
  if (buffered_.empty()) {
    for (auto& w : std::exchange(idle_waiters_, {})) w();
    return;
  }
  writing_ = true;
  const size_t n = std::min(buffered_.size(), max_batch_);
  std::vector<DeliveryEvent> batch(std::make_move_iterator(buffered_.begin()),
                                   std::make_move_iterator(buffered_.begin() + static_cast<std::ptrdiff_t>(n)));
  buffered_.erase(buffered_.begin(), buffered_.begin() + static_cast<std::ptrdiff_t>(n));
  insert_delivery_events(pg_, batch, [ref = self_, n, first = batch.front().job_id](core::Result<core::Ok, std::string> r) {
    DeliveryEventWriter* self = *ref;
    if (!self) return;
    self->writing_ = false;
    written().with({r ? "written" : "failed"}).inc(static_cast<double>(n));
    if (!r)
      core::log_warn("delivery_events_not_stored",
                     {{"rows", std::to_string(n)}, {"first_job", first}, {"error", r.error()}});
    self->write_next();
  });
}

void delivery_events_for_job(PgConnection& pg, const std::string& job_id,
                             std::function<void(core::Result<std::vector<DeliveryEvent>, std::string>)> cb) {
  read_events(pg, std::string("SELECT ") + kColumns + " FROM delivery_events WHERE job_id = $1 ORDER BY id LIMIT 1000",
              {job_id}, std::move(cb));
}

void delivery_events_for_account(PgConnection& pg, const std::string& account, int64_t after_id, int limit,
                                 std::function<void(core::Result<std::vector<DeliveryEvent>, std::string>)> cb) {
  read_events(pg,
              std::string("SELECT ") + kColumns +
                  " FROM delivery_events WHERE account = $1 AND id > $2::bigint ORDER BY id LIMIT $3::integer",
              {account, std::to_string(after_id), std::to_string(limit)}, std::move(cb));
}

std::string delivery_event_json(const DeliveryEvent& e) {
  core::JsonWriter w;
  w.begin_object()
      .field("id", e.id)
      .field("job_id", e.job_id)
      .field("account", e.account)
      .field("mailbox", e.mailbox)
      .key("recipient");
  if (e.recipient.empty())
    w.null();
  else
    w.value(e.recipient);
  w.field("status", e.status)
      .field("reply_code", e.reply_code)
      .field("enhanced_code", e.enhanced_code)
      .field("reply_text", e.reply_text)
      .field("host", e.host)
      .field("ip", e.ip)
      .field("tls_version", e.tls_version)
      .field("tls_cipher", e.tls_cipher)
      .field("attempt", e.attempt)
      .field("duration_ms", e.duration_ms)
      .field("detail", e.detail)
      .field("created_at", e.created_at)
      .end_object();
  return w.take();
}

}  // namespace deliverd::store
