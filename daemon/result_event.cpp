#include "daemon/result_event.h"

#include <ctime>

#include "core/json_writer.h"
#include "core/utf8.h"

namespace deliverd::daemon {

std::string format_rfc3339_ms(int64_t epoch_ms) {
  std::time_t secs = static_cast<std::time_t>(epoch_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[80];  // room for any int the compiler cannot rule out
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(epoch_ms % 1000));
  return buf;
}

std::string result_event(const EventContext& ctx, const core::Outcome& o) {
  core::JsonWriter w;
  w.begin_object()
      .field("v", 1)
      .field("job_id", ctx.job_id)
      .field("entry_id", ctx.entry_id)
      .field("account", ctx.account)
      .field("mailbox", ctx.mailbox)
      .field("to", ctx.to)
      .field("status", core::to_string(o.status))
      .field("phase", core::to_string(o.phase))
      .field("reason", core::to_string(o.reason))
      .field("fault", core::to_string(o.fault));
  w.key("reply").begin_object();
  if (o.reply.code) {
    w.field("code", o.reply.code);
  } else {
    w.key("code").null();
  }
  // What the peer sent is any bytes: kept losslessly (\xNN, \\) rather than replaced.
  using core::escape_utf8_lossless;
  w.field("enhanced", escape_utf8_lossless(o.reply.enhanced))
      .field("text", escape_utf8_lossless(o.reply.text))
      .end_object();
  w.field("detail", escape_utf8_lossless(o.detail))
      .field("host", escape_utf8_lossless(o.host))
      .field("ip", escape_utf8_lossless(o.ip));
  w.key("tls")
      .begin_object()
      .field("policy", core::to_string(o.tls_policy))
      .field("used", !o.tls_version.empty())
      .field("version", escape_utf8_lossless(o.tls_version))
      .field("cipher", escape_utf8_lossless(o.tls_cipher))
      .field("fallback", core::to_string(o.tls_fallback))
      .end_object();
  w.field("attempt", ctx.attempt);
  if (ctx.next_attempt_ms) w.field("next_attempt_at", format_rfc3339_ms(ctx.next_attempt_ms));
  if (!ctx.message_id.empty()) w.field("message_id", core::escape_utf8_lossless(ctx.message_id));
  if (ctx.first_delivered_ms) w.field("first_delivered_at", format_rfc3339_ms(ctx.first_delivered_ms));
  w.field("duration_ms", static_cast<int64_t>(ctx.duration_ms)).field("ts", format_rfc3339_ms(ctx.now_ms)).end_object();
  return w.take();
}

std::string mailbox_event(std::string_view event, const std::string& account, const std::string& mailbox,
                          std::string_view reason, const std::string& detail, int64_t now_ms) {
  core::JsonWriter w;
  w.begin_object()
      .field("v", 1)
      .field("event", event)
      .field("account", account)
      .field("mailbox", mailbox)
      .field("reason", reason)
      .field("detail", core::escape_utf8_lossless(detail))
      .field("ts", format_rfc3339_ms(now_ms))
      .end_object();
  return w.take();
}

std::string signal_event(const SignalEventContext& ctx, const inbound::Signal& s,
                         const inbound::SignalRecipient* about) {
  using core::escape_utf8_lossless;
  core::JsonWriter w;
  w.begin_object()
      .field("v", 1)
      .field("event", inbound::to_string(s.kind))
      .field("job_id", ctx.job_id)
      .field("account", ctx.account)
      .field("mailbox", ctx.mailbox)
      .field("recipient", escape_utf8_lossless(ctx.recipient))
      .field("matched_by", ctx.by_message_id ? "message_id" : "recipient")
      .field("rule", s.rule);
  if (s.kind == inbound::SignalKind::Bounce || s.kind == inbound::SignalKind::Delay) {
    w.field("status", escape_utf8_lossless(about ? about->status : ""))
        .field("action", about ? inbound::to_string(about->action) : std::string_view("unknown"))
        .field("diagnostic", escape_utf8_lossless(about ? about->diagnostic : ""))
        .field("remote_mta", escape_utf8_lossless(about ? about->remote_mta : ""));
  }
  if (s.kind == inbound::SignalKind::Complaint) w.field("feedback_type", escape_utf8_lossless(s.feedback_type));
  w.field("message_id", escape_utf8_lossless(s.message_id))
      .field("date", escape_utf8_lossless(s.date))
      .field("ts", format_rfc3339_ms(ctx.now_ms))
      .end_object();
  return w.take();
}

}  // namespace deliverd::daemon
