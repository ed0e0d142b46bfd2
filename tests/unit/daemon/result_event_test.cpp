#include "daemon/result_event.h"

#include <gtest/gtest.h>

#include <iterator>

#include "daemon/oauth_tokens.h"
#include "policy/signals.h"

using namespace deliverd;

TEST(ResultEvent, CarriesEveryFieldOfTheSchema) {
  core::Outcome o;
  o.status = core::Status::Bounced;
  o.phase = core::phase_from_name("rcpt").value();
  o.reason = core::reason_from_name("rcpt_rejected").value();
  o.fault = core::fault_from_name("recipient_permanent").value();
  o.reply = {550, "5.1.1", "no such user"};
  o.host = "mx.example.org";
  o.ip = "192.0.2.1";
  daemon::EventContext ctx{"job-1", "1-0", "acct", "mbx", "bob@example.org", 2, 1234, 1764410400123, 0, 0, ""};
  EXPECT_EQ(daemon::result_event(ctx, o),
            R"({"v":1,"job_id":"job-1","entry_id":"1-0","account":"acct","mailbox":"mbx","to":"bob@example.org",)"
            R"("status":"bounced","phase":"rcpt","reason":"rcpt_rejected","fault":"recipient_permanent","reply":{"code":550,"enhanced":"5.1.1",)"
            R"("text":"no such user"},"detail":"","host":"mx.example.org","ip":"192.0.2.1",)"
            R"("tls":{"policy":"none","used":false,"version":"","cipher":"","fallback":""},"attempt":2,"duration_ms":1234,"ts":"2025-11-29T10:00:00.123Z"})");
}

// tls says which policy applied, whether TLS carried the message and, when it did not although
// the server offered it, why.
TEST(ResultEvent, TlsNamesThePolicyWhetherItWasUsedAndAnyFallback) {
  daemon::EventContext ctx;
  core::Outcome o;
  o.status = core::Status::Delivered;
  o.tls_policy = core::TlsPolicy::Opportunistic;
  o.tls_version = "TLSv1.1";
  o.tls_cipher = "ECDHE-RSA-AES256-SHA";
  EXPECT_NE(daemon::result_event(ctx, o).find(R"("tls":{"policy":"opportunistic","used":true,"version":"TLSv1.1",)"
                                               R"("cipher":"ECDHE-RSA-AES256-SHA","fallback":""})"),
            std::string::npos)
      << daemon::result_event(ctx, o);
  o.tls_version.clear();
  o.tls_cipher.clear();
  o.tls_fallback = core::TlsFallback::HandshakeFailed;
  EXPECT_NE(daemon::result_event(ctx, o).find(R"("tls":{"policy":"opportunistic","used":false,"version":"",)"
                                               R"("cipher":"","fallback":"handshake_failed"})"),
            std::string::npos)
      << daemon::result_event(ctx, o);
  o.status = core::Status::Deferred;
  o.tls_policy = core::TlsPolicy::MtaSts;
  o.tls_fallback = core::TlsFallback::None;
  EXPECT_NE(daemon::result_event(ctx, o).find(R"("tls":{"policy":"mta-sts","used":false,)"), std::string::npos);
}

TEST(ResultEvent, NoReplyMeansNullCode) {
  core::Outcome o;
  o.status = core::Status::Rejected;
  daemon::EventContext ctx;
  EXPECT_NE(daemon::result_event(ctx, o).find(R"("reply":{"code":null,)"), std::string::npos);
}

TEST(ResultEvent, FormatsRfc3339WithMilliseconds) {
  EXPECT_EQ(daemon::format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(daemon::format_rfc3339_ms(1798545600007), "2026-12-29T12:00:00.007Z");
}

TEST(MailboxEvent, NamesTheMailboxAndWhyWithoutAJob) {
  EXPECT_EQ(daemon::mailbox_event("mailbox_disabled", "acct", "mbx_g", "oauth_revoked",
                                  "invalid_grant: Token has been expired or revoked.", 1764410400123),
            R"({"v":1,"event":"mailbox_disabled","account":"acct","mailbox":"mbx_g","reason":"oauth_revoked",)"
            R"("detail":"invalid_grant: Token has been expired or revoked.","ts":"2025-11-29T10:00:00.123Z"})");
}

// Every way a token cannot be had is an outcome reason of the same name; only a revoked grant
// fails the job, the rest wait in the retry set, and each is the mailbox's fault, which the
// breaker counts.
TEST(OAuthFailureOutcome, RevokedFailsTheRestDeferAsTheMailboxsFault) {
  for (size_t i = 0; i < std::size(oauth::kFailureNames); ++i) {
    auto kind = static_cast<oauth::FailureKind>(i);
    core::Outcome o = daemon::oauth_failure_outcome({kind, "why"}, "google");
    EXPECT_EQ(core::to_string(o.reason), oauth::to_string(kind));
    EXPECT_EQ(o.status, kind == oauth::FailureKind::Revoked ? core::Status::Failed : core::Status::Deferred);
    EXPECT_EQ(o.phase, core::Phase::Auth);
    EXPECT_EQ(o.detail, "oauth (google): why");
    EXPECT_EQ(policy::breaker_signal(o), policy::Signal::Failure) << oauth::to_string(kind);
  }
}

TEST(ResultEvent, DeliveredCarriesTheMessageIdSent) {
  core::Outcome o;
  o.status = core::Status::Delivered;
  daemon::EventContext ctx;
  ctx.message_id = "abc@acme.example";
  EXPECT_NE(daemon::result_event(ctx, o).find(R"("message_id":"abc@acme.example")"), std::string::npos);
  ctx.message_id.clear();
  EXPECT_EQ(daemon::result_event(ctx, o).find("message_id"), std::string::npos);
}

TEST(SignalEvent, BounceNamesTheJobStatusAndDiagnosticNeverTheBody) {
  inbound::Signal s;
  s.kind = inbound::SignalKind::Bounce;
  s.rule = "rfc3464";
  s.message_id = "dsn-1@mx.example.org";
  s.date = "Thu, 3 Dec 2026 10:00:00 +0000";
  inbound::SignalRecipient r;
  r.address = "bob@example.org";
  r.action = inbound::DsnAction::Failed;
  r.status = "5.1.1";
  r.diagnostic = "smtp; 550 5.1.1 no such user \xE9t\xE9";  // Latin-1 from the peer
  r.remote_mta = "dns; mx.example.org";
  s.recipients = {r};
  daemon::SignalEventContext ctx{"job-7", "acct", "mbx", "bob@example.org", true, 1764410400123};
  EXPECT_EQ(daemon::signal_event(ctx, s, &s.recipients[0]),
            R"({"v":1,"event":"bounce","job_id":"job-7","account":"acct","mailbox":"mbx","recipient":"bob@example.org",)"
            R"("matched_by":"message_id","rule":"rfc3464","status":"5.1.1","action":"failed",)"
            R"("diagnostic":"smtp; 550 5.1.1 no such user \\xe9t\\xe9","remote_mta":"dns; mx.example.org",)"
            R"("message_id":"dsn-1@mx.example.org","date":"Thu, 3 Dec 2026 10:00:00 +0000","ts":"2025-11-29T10:00:00.123Z"})");
}

TEST(SignalEvent, ComplaintAndReplyCarryWhatTheyAreAbout) {
  inbound::Signal s;
  s.kind = inbound::SignalKind::Complaint;
  s.rule = "arf";
  s.feedback_type = "abuse";
  daemon::SignalEventContext ctx{"job-8", "acct", "mbx", "bob@example.org", false, 0};
  const std::string c = daemon::signal_event(ctx, s, nullptr);
  EXPECT_NE(c.find(R"("event":"complaint")"), std::string::npos) << c;
  EXPECT_NE(c.find(R"("feedback_type":"abuse")"), std::string::npos) << c;
  EXPECT_NE(c.find(R"("matched_by":"recipient")"), std::string::npos) << c;
  EXPECT_EQ(c.find("status"), std::string::npos) << c;
  s.kind = inbound::SignalKind::Reply;
  s.rule = "in_reply_to";
  const std::string reply = daemon::signal_event(ctx, s, nullptr);
  EXPECT_NE(reply.find(R"("event":"reply")"), std::string::npos) << reply;
  EXPECT_EQ(reply.find("feedback_type"), std::string::npos) << reply;
}
