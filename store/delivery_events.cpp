#include "store/delivery_events.h"

#include <algorithm>
#include <iterator>

#include "core/json_writer.h"
#include "core/utf8.h"
#include "core/log.h"
#include "core/metrics.h"
#include "store/suppressions.h"

namespace deliverd::store {
namespace {

constexpr const char* kColumns =
    "id, job_id, account, coalesce(mailbox, ''), coalesce(recipient, ''), status, coalesce(reply_code, 0),"
    " coalesce(enhanced_code, ''), coalesce(reply_text, ''), coalesce(host, ''), coalesce(ip, ''),"
    " coalesce(tls_version, ''), coalesce(tls_cipher, ''), attempt, coalesce(duration_ms, 0), coalesce(detail, ''),"
    " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " coalesce(message_id, '')";

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
  e.message_id = s(17);
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

namespace {

// The server refused the statement (it has a SQLSTATE), as opposed to the connection failing.
bool refused_by_server(const PgResult& r) { return !r.ok && !r.sqlstate.empty(); }

// One field of COPY's text format: \N for NULL, and the four bytes that format gives meaning to
// escaped; every other byte goes as it is (one append per run, not per byte).
void copy_field(std::string& out, const std::string* v) {
  if (!v) {
    out += "\\N";
    return;
  }
  size_t from = 0;
  for (size_t i = 0; i < v->size(); ++i) {
    const char c = (*v)[i];
    const char* esc = c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : nullptr;
    if (!esc) continue;
    out.append(*v, from, i - from);
    out += esc;
    from = i + 1;
  }
  out.append(*v, from, std::string::npos);
}

constexpr const char* kCopySql =
    "COPY delivery_events (job_id, account, mailbox, recipient, recipient_sha256, status, reply_code, enhanced_code,"
    " reply_text, host, ip, tls_version, tls_cipher, attempt, duration_ms, detail, message_id) FROM STDIN";

// The rows in COPY text format, in kCopySql's column order.
std::string copy_rows(const AddressHasher& addresses, const std::vector<DeliveryEvent>& events) {
  std::string out;
  out.reserve(events.size() * 256);
  std::string scratch;
  auto field = [&](const std::string& v, bool last = false) {
    copy_field(out, &v);
    out += last ? '\n' : '\t';
  };
  auto optional = [&](const std::string& v) {
    copy_field(out, v.empty() ? nullptr : &v);
    out += '\t';
  };
  // Text a peer chose: any bytes, stored as valid UTF-8 without losing one.
  auto peer = [&](const std::string& v, bool last = false) {
    scratch = core::escape_utf8_lossless(v);
    copy_field(out, scratch.empty() ? nullptr : &scratch);
    out += last ? '\n' : '\t';
  };
  for (const DeliveryEvent& e : events) {
    field(e.job_id);
    field(e.account);
    optional(e.mailbox);
    optional(e.recipient);
    // The address's keyed hash, so erasing an address finds its events whatever case they had.
    const std::string key = addresses.key(e.recipient);
    optional(key.empty() ? key : encode_bytea(key));
    field(e.status);
    optional(e.reply_code ? std::to_string(e.reply_code) : std::string());
    peer(e.enhanced_code);
    peer(e.reply_text);
    peer(e.host);
    peer(e.ip);
    peer(e.tls_version);
    peer(e.tls_cipher);
    field(std::to_string(e.attempt));
    field(std::to_string(e.duration_ms));
    peer(e.detail);
    peer(e.message_id, true);
  }
  return out;
}

void insert_rows(PgConnection& pg, const AddressHasher& addresses, const std::vector<DeliveryEvent>& events,
                 std::function<void(const PgResult&)> cb) {
  pg.copy_in(kCopySql, copy_rows(addresses, events), std::move(cb));
}

}  // namespace

void insert_delivery_events(PgConnection& pg, const AddressHasher& addresses, const std::vector<DeliveryEvent>& events,
                            std::function<void(core::Result<core::Ok, std::string>)> cb) {
  insert_rows(pg, addresses, events, [cb = std::move(cb)](const PgResult& r) {
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

constexpr uint64_t kRetryMinMs = 1000;
constexpr uint64_t kRetryMaxMs = 30000;

}  // namespace

DeliveryEventWriter::DeliveryEventWriter(PgConnection& pg, AddressHasher addresses, size_t max_batch,
                                         size_t max_buffered, uint64_t gather_ms)
    : pg_(pg),
      addresses_(std::move(addresses)),
      max_batch_(std::max<size_t>(1, max_batch)),
      max_buffered_(max_buffered),
      gather_ms_(gather_ms) {
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
  schedule();
}

void DeliveryEventWriter::when_idle(std::function<void()> done) {
  if (idle()) return done();
  idle_waiters_.push_back(std::move(done));
  schedule();
}

void DeliveryEventWriter::finished() {
  writing_ = false;
  schedule();
}

void DeliveryEventWriter::schedule() {
  if (writing_) return;
  if (buffered_.empty() || gather_ms_ == 0 || buffered_.size() >= max_batch_ || !idle_waiters_.empty()) {
    if (gathering_) gather_timer_->stop();
    gathering_ = false;
    return write_next();
  }
  if (gathering_) return;
  // Made when first needed, like the retry timer.
  if (!gather_timer_) gather_timer_ = core::TimerHandle(pg_.loop());
  gathering_ = true;
  gather_timer_->start(gather_ms_, [this] {
    gathering_ = false;
    write_next();
  });
}

void DeliveryEventWriter::write_next() {
  if (writing_) return;
  if (buffered_.empty()) {
    for (auto& w : std::exchange(idle_waiters_, {})) w();
    return;
  }
  writing_ = true;
  const size_t n = std::min(buffered_.size(), max_batch_);
  std::vector<DeliveryEvent> batch(std::make_move_iterator(buffered_.begin()),
                                   std::make_move_iterator(buffered_.begin() + static_cast<std::ptrdiff_t>(n)));
  buffered_.erase(buffered_.begin(), buffered_.begin() + static_cast<std::ptrdiff_t>(n));
  auto rows = std::make_shared<std::vector<DeliveryEvent>>(std::move(batch));
  insert_rows(pg_, addresses_, *rows, [ref = self_, rows](const PgResult& r) {
    DeliveryEventWriter* self = *ref;
    if (!self) return;
    if (r.ok) {
      self->retry_ms_ = 0;
      written().with({"written"}).inc(static_cast<double>(rows->size()));
      return self->finished();
    }
    if (refused_by_server(r) && rows->size() > 1) {
      // One row the server will not take must not cost the others theirs.
      core::log_warn("delivery_events_batch_refused",
                     {{"rows", std::to_string(rows->size())}, {"error", r.error}, {"note", "writing them one by one"}});
      return self->write_rows_alone(std::move(*rows));
    }
    if (refused_by_server(r)) {
      written().with({"failed"}).inc();
      core::log_warn("delivery_event_not_stored", {{"job", rows->front().job_id}, {"error", r.error}});
      return self->finished();
    }
    // No verdict on the rows (the connection failed): keep them, in order, and try again later.
    // Past the buffer's bound the newest are the ones dropped, as add() does.
    self->retry_ms_ = std::clamp<uint64_t>(self->retry_ms_ * 2, kRetryMinMs, kRetryMaxMs);
    core::log_warn("delivery_events_deferred", {{"rows", std::to_string(rows->size())},
                                                {"error", r.error},
                                                {"retry_ms", std::to_string(self->retry_ms_)}});
    self->buffered_.insert(self->buffered_.begin(), std::make_move_iterator(rows->begin()),
                           std::make_move_iterator(rows->end()));
    if (self->buffered_.size() > self->max_buffered_) {
      const size_t over = self->buffered_.size() - self->max_buffered_;
      written().with({"dropped"}).inc(static_cast<double>(over));
      self->buffered_.resize(self->max_buffered_);
    }
    // Made when first needed: a writer that never retries holds no handle on the loop.
    if (!self->retry_timer_) self->retry_timer_ = core::TimerHandle(self->pg_.loop());
    self->retry_timer_->start(self->retry_ms_, [self] { self->finished(); });
  });
}

void DeliveryEventWriter::write_rows_alone(std::vector<DeliveryEvent> batch) {
  auto left = std::make_shared<size_t>(batch.size());
  for (auto& e : batch) {
    std::vector<DeliveryEvent> one;
    one.push_back(std::move(e));
    insert_rows(pg_, addresses_, one, [ref = self_, left, job = one.front().job_id](const PgResult& r) {
      DeliveryEventWriter* self = *ref;
      if (!self) return;
      written().with({r.ok ? "written" : "failed"}).inc();
      if (!r.ok) core::log_warn("delivery_event_not_stored", {{"job", job}, {"error", r.error}});
      if (--*left == 0) self->finished();
    });
  }
}

void delivery_events_for_job(PgConnection& pg, const std::optional<std::string>& account, const std::string& job_id,
                             std::function<void(core::Result<std::vector<DeliveryEvent>, std::string>)> cb) {
  read_events(pg,
              std::string("SELECT ") + kColumns +
                  " FROM delivery_events WHERE job_id = $1 AND ($2::text IS NULL OR account = $2) ORDER BY id LIMIT 1000",
              {job_id, account}, std::move(cb));
}

void delivery_events_for_account(PgConnection& pg, const std::string& account, int64_t after_id, int limit,
                                 std::function<void(core::Result<std::vector<DeliveryEvent>, std::string>)> cb) {
  read_events(pg,
              std::string("SELECT ") + kColumns +
                  " FROM delivery_events WHERE account = $1 AND id > $2::bigint ORDER BY id LIMIT $3::integer",
              {account, std::to_string(after_id), std::to_string(limit)}, std::move(cb));
}

// ---- retention -----------------------------------------------------------------------------

namespace {

core::Family<core::Counter>& pruned() {
  static auto& f = core::Registry::global().counter(
      "deliverd_delivery_events_pruned_total",
      "Rows removed by [postgres] events_retention_days (events, and the aged-out markers kept after them)",
      {"table"});
  return f;
}

// One batch: the oldest `batch` rows by id are looked at (no index on created_at is needed, and
// a pass with nothing old to remove reads only that many index entries); those past the horizon
// go, and each job among them leaves its last status behind. Ids grow with insertion time, so
// the oldest rows are at the front. The advisory lock keeps two daemons off the same rows.
constexpr const char* kPruneSql =
    "WITH lock AS (SELECT pg_try_advisory_xact_lock(hashtext('deliverd.delivery_events_retention')) AS ok),"
    " old AS (SELECT e.id FROM delivery_events e, lock WHERE lock.ok ORDER BY e.id LIMIT $2::integer),"
    " gone AS (DELETE FROM delivery_events d USING old WHERE d.id = old.id"
    "   AND d.created_at < now() - make_interval(days => $1::integer)"
    "   RETURNING d.id, d.job_id, d.account, d.status, d.created_at),"
    " last AS (SELECT DISTINCT ON (job_id, account) job_id, account, status, created_at FROM gone"
    "   ORDER BY job_id, account, id DESC),"
    " marked AS (INSERT INTO delivery_event_tombstones (job_id, account, last_status, last_event_at)"
    "   SELECT job_id, account, status, created_at FROM last"
    "   ON CONFLICT (job_id, account) DO UPDATE SET last_status = EXCLUDED.last_status,"
    "     last_event_at = EXCLUDED.last_event_at, aged_at = now()"
    "   WHERE delivery_event_tombstones.last_event_at <= EXCLUDED.last_event_at RETURNING 1)"
    " SELECT (SELECT count(*) FROM old), (SELECT count(*) FROM gone), (SELECT count(*) FROM marked)";

// The markers themselves last as long as the rows did.
constexpr const char* kPruneTombstonesSql =
    "DELETE FROM delivery_event_tombstones WHERE (job_id, account) IN"
    " (SELECT job_id, account FROM delivery_event_tombstones"
    "  WHERE aged_at < now() - make_interval(days => $1::integer) ORDER BY aged_at LIMIT $2::integer)";

int64_t cell_int(const PgResult& r, size_t col) {
  if (r.rows.empty() || r.rows[0].size() <= col || !r.rows[0][col]) return 0;
  return std::stoll(*r.rows[0][col]);
}

}  // namespace

DeliveryEventRetention::DeliveryEventRetention(PgConnection& pg, RetentionConfig cfg)
    : pg_(pg), cfg_(cfg) {
  cfg_.batch = std::max<size_t>(1, cfg_.batch);
  pruned();
}

DeliveryEventRetention::~DeliveryEventRetention() { *self_ = nullptr; }

void DeliveryEventRetention::start(uint64_t first_ms) {
  if (!timer_) timer_ = core::TimerHandle(pg_.loop());
  timer_->start(first_ms, [this] {
    run_pass([this](int64_t, int64_t) { start(cfg_.interval_ms); });
  });
}

void DeliveryEventRetention::run_pass(std::function<void(int64_t, int64_t)> done) {
  if (cfg_.days <= 0 || running_) {
    if (done) done(0, 0);
    return;
  }
  running_ = true;
  next_batch(0, 0, std::move(done));
}

void DeliveryEventRetention::next_batch(int64_t rows, int64_t tombstones, std::function<void(int64_t, int64_t)> done) {
  const std::vector<std::optional<std::string>> params = {std::to_string(cfg_.days), std::to_string(cfg_.batch)};
  pg_.query(kPruneSql, params, [ref = self_, rows, tombstones, done = std::move(done)](const PgResult& r) mutable {
    DeliveryEventRetention* self = *ref;
    if (!self) return;
    auto fail = [&](const std::string& error) {
      self->running_ = false;
      core::log_warn("delivery_events_prune_failed", {{"error", error}});
      if (done) done(-1, -1);
    };
    if (!r.ok) return fail(r.error);
    const int64_t looked = cell_int(r, 0), removed = cell_int(r, 1);
    rows += removed;
    pruned().with({"delivery_events"}).inc(static_cast<double>(removed));
    // Every row looked at was old: there may be more. A pause first, so other queries get the
    // connection and the table between two batches.
    if (removed > 0 && removed == looked) {
      if (!self->timer_) self->timer_ = core::TimerHandle(self->pg_.loop());
      return self->timer_->start(self->cfg_.pause_ms, [self, rows, tombstones, done = std::move(done)]() mutable {
        self->next_batch(rows, tombstones, std::move(done));
      });
    }
    const std::vector<std::optional<std::string>> tp = {std::to_string(self->cfg_.days),
                                                        std::to_string(self->cfg_.batch)};
    self->pg_.query(kPruneTombstonesSql, tp, [ref, rows, tombstones, done = std::move(done)](const PgResult& t) mutable {
      DeliveryEventRetention* self = *ref;
      if (!self) return;
      self->running_ = false;
      if (!t.ok) {
        core::log_warn("delivery_events_prune_failed", {{"error", t.error}});
        if (done) done(-1, -1);
        return;
      }
      tombstones += t.affected;
      pruned().with({"tombstones"}).inc(static_cast<double>(t.affected));
      if (rows > 0 || tombstones > 0)
        core::log_info("delivery_events_pruned", {{"rows", std::to_string(rows)},
                                                  {"tombstones", std::to_string(tombstones)},
                                                  {"retention_days", std::to_string(self->cfg_.days)}});
      if (done) done(rows, tombstones);
    });
  });
}

void aged_out_jobs(PgConnection& pg, const std::string& job_id,
                   std::function<void(core::Result<std::vector<AgedOutJob>, std::string>)> cb) {
  pg.query(
      "SELECT job_id, account, last_status,"
      " to_char(last_event_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
      " to_char(aged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
      " FROM delivery_event_tombstones WHERE job_id = $1 LIMIT 100",
      {job_id}, [cb = std::move(cb)](const PgResult& r) {
        if (!r.ok) return cb(core::Err("cannot read aged-out markers: " + r.error));
        std::vector<AgedOutJob> out;
        for (const auto& row : r.rows) {
          auto s = [&](size_t i) { return row.size() > i && row[i] ? *row[i] : std::string(); };
          out.push_back({s(0), s(1), s(2), s(3), s(4)});
        }
        cb(std::move(out));
      });
}

void find_sent_message(PgConnection& pg, const AddressHasher& addresses, const std::string& account,
                       const std::string& mailbox, const std::vector<std::string>& message_ids,
                       const std::string& recipient, int64_t window_s,
                       std::function<void(core::Result<std::optional<SentMessage>, std::string>)> cb) {
  // Ids are tried in the order given: the first that names a delivery wins, before any match by
  // recipient. deliverd's own ids are printable ASCII without array syntax, so an id that is not
  // (peer bytes: Latin-1, quotes, braces) cannot be one of them and is left out rather than sent
  // where it could make the statement fail and the signal wait forever.
  std::string ids = "{";
  size_t used = 0;
  for (const auto& id : message_ids) {
    if (used == 16) break;
    bool ok = !id.empty() && id.size() <= 250;
    for (unsigned char c : id)
      if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '{' || c == '}' || c == ',') ok = false;
    if (!ok) continue;
    ids += (used++ ? ",\"" : "\"") + id + "\"";
  }
  ids += "}";
  const std::string key = addresses.key(recipient);
  std::optional<std::string> hash;
  if (!key.empty()) hash = encode_bytea(key);
  pg.query(
      "SELECT job_id, coalesce(recipient, ''), coalesce(message_id, ''), by_id FROM ("
      " SELECT d.job_id, d.recipient, d.message_id, d.id, array_position($3::text[], d.message_id) AS rank, true AS by_id"
      "   FROM delivery_events d WHERE d.account = $1 AND d.mailbox = $2 AND d.message_id = ANY($3::text[])"
      " UNION ALL"
      " SELECT d.job_id, d.recipient, d.message_id, d.id, cardinality($3::text[]) + 1 AS rank, false AS by_id"
      "   FROM delivery_events d WHERE $4::bytea IS NOT NULL AND d.account = $1 AND d.mailbox = $2"
      "    AND d.recipient_sha256 = $4::bytea AND d.status = 'delivered'"
      "    AND d.created_at > now() - make_interval(secs => $5::bigint)"
      ") m ORDER BY rank, id DESC LIMIT 1",
      {account, mailbox, ids, hash, std::to_string(window_s)},
      [cb = std::move(cb)](const PgResult& r) {
        if (!r.ok) return cb(core::Err("cannot look up the sent message: " + r.error));
        if (r.rows.empty()) return cb(std::optional<SentMessage>());
        const auto& row = r.rows[0];
        auto s = [&](size_t i) { return row.size() > i && row[i] ? *row[i] : std::string(); };
        SentMessage m{s(0), s(1), s(2), false};
        m.by_message_id = s(3) == "t";
        cb(std::optional<SentMessage>(std::move(m)));
      });
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
      .field("detail", e.detail);
  if (!e.message_id.empty()) w.field("message_id", e.message_id);
  w.field("created_at", e.created_at)
      .end_object();
  return w.take();
}

}  // namespace deliverd::store
