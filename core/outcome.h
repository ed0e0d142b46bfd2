#pragma once
// The vocabulary every module shares: how a delivery attempt ended (DESIGN.md "Outcomes"), where
// it ended (Phase), why (Reason) and whose problem it was (Fault). Each is an enum with one name
// table; the names are the wire form of result events, logs, metric labels and PostgreSQL rows
// (docs/job-schema.md), and nothing inside the process compares their text.
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>

#include "core/names.h"

namespace deliverd::core {

enum class Status : uint8_t { Delivered, Deferred, Bounced, Suppressed, Rejected, Expired, Failed };

inline constexpr Named<Status> kStatusNames[] = {
    {Status::Delivered, "delivered"}, {Status::Deferred, "deferred"}, {Status::Bounced, "bounced"},
    {Status::Suppressed, "suppressed"}, {Status::Rejected, "rejected"}, {Status::Expired, "expired"},
    {Status::Failed, "failed"},
};
static_assert(in_order(kStatusNames));

constexpr std::string_view to_string(Status s) { return name_in(kStatusNames, s); }
constexpr std::optional<Status> status_from_name(std::string_view n) { return value_in(kStatusNames, n); }

constexpr Status kAllStatuses[] = {Status::Delivered, Status::Deferred, Status::Bounced, Status::Suppressed,
                                   Status::Rejected,  Status::Expired,  Status::Failed};

// Where an attempt ended: before any connection (policy, envelope, resolve, pool) or in the SMTP
// dialogue (smtp::Phase maps each session state onto one of these).
enum class Phase : uint8_t {
  None,  // not set
  Policy,
  Envelope,
  Resolve,
  Pool,
  Connect,
  Tls,
  Banner,
  Ehlo,
  Helo,
  StartTls,
  Auth,
  Mail,
  Rcpt,
  Data,
  Body,
  Rset,
  Idle,
  Quit,
};

inline constexpr Named<Phase> kPhaseNames[] = {
    {Phase::None, ""},          {Phase::Policy, "policy"}, {Phase::Envelope, "envelope"}, {Phase::Resolve, "resolve"},
    {Phase::Pool, "pool"},      {Phase::Connect, "connect"}, {Phase::Tls, "tls"},         {Phase::Banner, "banner"},
    {Phase::Ehlo, "ehlo"},      {Phase::Helo, "helo"},     {Phase::StartTls, "starttls"}, {Phase::Auth, "auth"},
    {Phase::Mail, "mail"},      {Phase::Rcpt, "rcpt"},     {Phase::Data, "data"},         {Phase::Body, "body"},
    {Phase::Rset, "rset"},      {Phase::Idle, "idle"},     {Phase::Quit, "quit"},
};
static_assert(in_order(kPhaseNames));

constexpr std::string_view to_string(Phase p) { return name_in(kPhaseNames, p); }
constexpr std::optional<Phase> phase_from_name(std::string_view n) { return value_in(kPhaseNames, n); }

// The short machine-readable cause of an outcome (and of a policy decision). Names are part of
// the result-event schema: renaming one changes what producers see.
enum class Reason : uint8_t {
  None,  // not set
  Delivered,
  Duplicate,  // already delivered under this (account, job id): nothing sent again
  Ok,  // a policy decision that lets the send go ahead
  // policy decisions
  Suppressed,
  MailboxDisabled,
  MailboxPaused,
  PolicyUnavailable,
  OutsideWindow,
  RampUp,
  BreakerOpen,
  DestinationThrottle,
  // the delivery's own checks
  Aborted,
  Expired,
  MaxAge,
  NotBefore,
  UnknownMailbox,
  PortRefused,
  InvalidMessage,
  DkimFailed,
  // the SMTP session
  InvalidEnvelope,
  TlsUnconfigured,
  SessionTimeout,
  SessionUnavailable,
  Timeout,
  TlsFailed,
  TlsCertificate,
  ProtocolError,
  StarttlsFailed,
  StarttlsUnavailable,
  AuthUnavailable,
  AuthFailed,
  AuthDeferred,
  Smtputf8Unsupported,
  MessageTooLarge,
  AuthNeedsTls,
  ProbePassed,  // the connection test: the server would take mail from us
  ConnectionClosed,
  ConnectionReset,
  ConnectionRefused,
  IoError,
  BannerRejected,
  BannerDeferred,
  EhloRejected,
  EhloDeferred,
  HeloRejected,
  HeloDeferred,
  MailRejected,
  MailDeferred,
  RcptRejected,
  RcptDeferred,
  DataRejected,
  DataDeferred,
  BodyRejected,
  BodyDeferred,
  RsetRejected,
  RsetDeferred,
  // the session pool
  ShuttingDown,
  NoIdleConnection,
  PoolFull,
  // name resolution: the relay host (dns_…), the recipient's MX (mx_…) and an MX host's address
  SsrfRefused,
  InvalidHost,
  DnsNxdomain,
  DnsNoAddress,
  DnsTimeout,
  DnsServfail,
  DnsServerRefused,
  DnsConnectionRefused,
  DnsBadResponse,
  DnsCancelled,
  DnsError,
  DnsOverloaded,
  NullMx,
  NoUsableMx,
  MtaStsMxMismatch,  // the domain's MTA-STS policy (enforce) allows none of its MX hosts
  DaneTlsaFailed,    // an MX host's TLSA lookup failed (bogus, timeout): the host is not used
  MxNxdomain,
  MxTimeout,
  MxServfail,
  MxServerRefused,
  MxConnectionRefused,
  MxBadResponse,
  MxCancelled,
  MxError,
  MxRefusedByPolicy,
  MxInvalidName,
  MxOverloaded,
  Nxdomain,
  Servfail,
  ServerRefused,
  BadResponse,
  Cancelled,
  Error,
  NoAddress,
  RefusedByPolicy,
  InvalidName,
  Overloaded,
  // the account was erased while its job waited or was in flight: nothing of it is kept
  AccountErased,
  // an OAuth mailbox's access token (oauth::FailureKind, same names)
  OauthRevoked,
  OauthUnavailable,
  OauthClientRejected,
  OauthBadAnswer,
  OauthNoProvider,
  OauthStoreFailed,
};

inline constexpr Named<Reason> kReasonNames[] = {
    {Reason::None, ""},
    {Reason::Delivered, "delivered"},
    {Reason::Duplicate, "duplicate"},
    {Reason::Ok, "ok"},
    {Reason::Suppressed, "suppressed"},
    {Reason::MailboxDisabled, "mailbox_disabled"},
    {Reason::MailboxPaused, "mailbox_paused"},
    {Reason::PolicyUnavailable, "policy_unavailable"},
    {Reason::OutsideWindow, "outside_window"},
    {Reason::RampUp, "ramp_up"},
    {Reason::BreakerOpen, "breaker_open"},
    {Reason::DestinationThrottle, "destination_throttle"},
    {Reason::Aborted, "aborted"},
    {Reason::Expired, "expired"},
    {Reason::MaxAge, "max_age"},
    {Reason::NotBefore, "not_before"},
    {Reason::UnknownMailbox, "unknown_mailbox"},
    {Reason::PortRefused, "port_refused"},
    {Reason::InvalidMessage, "invalid_message"},
    {Reason::DkimFailed, "dkim_failed"},
    {Reason::InvalidEnvelope, "invalid_envelope"},
    {Reason::TlsUnconfigured, "tls_unconfigured"},
    {Reason::SessionTimeout, "session_timeout"},
    {Reason::SessionUnavailable, "session_unavailable"},
    {Reason::Timeout, "timeout"},
    {Reason::TlsFailed, "tls_failed"},
    {Reason::TlsCertificate, "tls_certificate"},
    {Reason::ProtocolError, "protocol_error"},
    {Reason::StarttlsFailed, "starttls_failed"},
    {Reason::StarttlsUnavailable, "starttls_unavailable"},
    {Reason::AuthUnavailable, "auth_unavailable"},
    {Reason::AuthFailed, "auth_failed"},
    {Reason::AuthDeferred, "auth_deferred"},
    {Reason::Smtputf8Unsupported, "smtputf8_unsupported"},
    {Reason::MessageTooLarge, "message_too_large"},
    {Reason::AuthNeedsTls, "auth_needs_tls"},
    {Reason::ProbePassed, "probe_passed"},
    {Reason::ConnectionClosed, "connection_closed"},
    {Reason::ConnectionReset, "connection_reset"},
    {Reason::ConnectionRefused, "connection_refused"},
    {Reason::IoError, "io_error"},
    {Reason::BannerRejected, "banner_rejected"},
    {Reason::BannerDeferred, "banner_deferred"},
    {Reason::EhloRejected, "ehlo_rejected"},
    {Reason::EhloDeferred, "ehlo_deferred"},
    {Reason::HeloRejected, "helo_rejected"},
    {Reason::HeloDeferred, "helo_deferred"},
    {Reason::MailRejected, "mail_rejected"},
    {Reason::MailDeferred, "mail_deferred"},
    {Reason::RcptRejected, "rcpt_rejected"},
    {Reason::RcptDeferred, "rcpt_deferred"},
    {Reason::DataRejected, "data_rejected"},
    {Reason::DataDeferred, "data_deferred"},
    {Reason::BodyRejected, "body_rejected"},
    {Reason::BodyDeferred, "body_deferred"},
    {Reason::RsetRejected, "rset_rejected"},
    {Reason::RsetDeferred, "rset_deferred"},
    {Reason::ShuttingDown, "shutting_down"},
    {Reason::NoIdleConnection, "no_idle_connection"},
    {Reason::PoolFull, "pool_full"},
    {Reason::SsrfRefused, "ssrf_refused"},
    {Reason::InvalidHost, "invalid_host"},
    {Reason::DnsNxdomain, "dns_nxdomain"},
    {Reason::DnsNoAddress, "dns_no_address"},
    {Reason::DnsTimeout, "dns_timeout"},
    {Reason::DnsServfail, "dns_servfail"},
    {Reason::DnsServerRefused, "dns_server_refused"},
    {Reason::DnsConnectionRefused, "dns_connection_refused"},
    {Reason::DnsBadResponse, "dns_bad_response"},
    {Reason::DnsCancelled, "dns_cancelled"},
    {Reason::DnsError, "dns_error"},
    {Reason::DnsOverloaded, "dns_overloaded"},
    {Reason::NullMx, "null_mx"},
    {Reason::NoUsableMx, "no_usable_mx"},
    {Reason::MtaStsMxMismatch, "mta_sts_mx_mismatch"},
    {Reason::DaneTlsaFailed, "dane_tlsa_failed"},
    {Reason::MxNxdomain, "mx_nxdomain"},
    {Reason::MxTimeout, "mx_timeout"},
    {Reason::MxServfail, "mx_servfail"},
    {Reason::MxServerRefused, "mx_server_refused"},
    {Reason::MxConnectionRefused, "mx_connection_refused"},
    {Reason::MxBadResponse, "mx_bad_response"},
    {Reason::MxCancelled, "mx_cancelled"},
    {Reason::MxError, "mx_error"},
    {Reason::MxRefusedByPolicy, "mx_refused_by_policy"},
    {Reason::MxInvalidName, "mx_invalid_name"},
    {Reason::MxOverloaded, "mx_overloaded"},
    {Reason::Nxdomain, "nxdomain"},
    {Reason::Servfail, "servfail"},
    {Reason::ServerRefused, "server_refused"},
    {Reason::BadResponse, "bad_response"},
    {Reason::Cancelled, "cancelled"},
    {Reason::Error, "error"},
    {Reason::NoAddress, "no_address"},
    {Reason::RefusedByPolicy, "refused_by_policy"},
    {Reason::InvalidName, "invalid_name"},
    {Reason::Overloaded, "overloaded"},
    {Reason::AccountErased, "account_erased"},
    {Reason::OauthRevoked, "oauth_revoked"},
    {Reason::OauthUnavailable, "oauth_unavailable"},
    {Reason::OauthClientRejected, "oauth_client_rejected"},
    {Reason::OauthBadAnswer, "oauth_bad_answer"},
    {Reason::OauthNoProvider, "oauth_no_provider"},
    {Reason::OauthStoreFailed, "oauth_store_failed"},
};
static_assert(in_order(kReasonNames));

constexpr std::string_view to_string(Reason r) { return name_in(kReasonNames, r); }
constexpr std::optional<Reason> reason_from_name(std::string_view n) { return value_in(kReasonNames, n); }

// Whose problem it was, from the reply classifier (smtp/classifier.h), so the policy can count
// mailbox-side faults (breaker) apart from recipient faults (bounce, suppress).
enum class Fault : uint8_t {
  None,                // no SMTP exchange decided it (policy, bad envelope, abort)
  Success,             // 2xx/3xx: nothing wrong
  RecipientPermanent,  // the recipient does not exist / refuses for good: bounce
  RecipientTransient,  // the recipient's side is busy or full for now: retry later
  Mailbox,             // the sending mailbox or its server is at fault (quota, account blocked, down)
  Throttled,           // sending too fast (rate, concurrency, login attempts): back off
  PolicyAuth,          // authentication or sender policy (credentials, DMARC, auth level)
};

inline constexpr Named<Fault> kFaultNames[] = {
    {Fault::None, ""},
    {Fault::Success, "success"},
    {Fault::RecipientPermanent, "recipient_permanent"},
    {Fault::RecipientTransient, "recipient_transient"},
    {Fault::Mailbox, "mailbox"},
    {Fault::Throttled, "throttled"},
    {Fault::PolicyAuth, "policy_auth"},
};
static_assert(in_order(kFaultNames));

constexpr std::string_view to_string(Fault f) { return name_in(kFaultNames, f); }
constexpr std::optional<Fault> fault_from_name(std::string_view n) { return value_in(kFaultNames, n); }

// Which TLS policy a delivery ran under (docs/smtp.md, "MX mode: opportunistic TLS, required TLS
// and `tls.policy`"). Opportunistic takes any TLS the peer offers, unverified, and plaintext when
// TLS cannot be had; every other policy but none means TLS 1.2+ with a verified certificate or no
// delivery at all.
enum class TlsPolicy : uint8_t {
  None,           // no TLS asked for: a lab mailbox in plaintext, or decided before any connection
  Opportunistic,  // MX mode without a policy: TLS when it works, else plaintext
  MtaSts,         // the recipient domain's MTA-STS policy in enforce mode (RFC 8461)
  Dane,           // usable TLSA records for the MX host (RFC 7672)
  Required,       // a mailbox's own server with TLS, or [smtp] mx_tls = "required"
};

inline constexpr Named<TlsPolicy> kTlsPolicyNames[] = {
    {TlsPolicy::None, "none"},         {TlsPolicy::Opportunistic, "opportunistic"}, {TlsPolicy::MtaSts, "mta-sts"},
    {TlsPolicy::Dane, "dane"},         {TlsPolicy::Required, "required"},
};
static_assert(in_order(kTlsPolicyNames));

constexpr std::string_view to_string(TlsPolicy p) { return name_in(kTlsPolicyNames, p); }
constexpr std::optional<TlsPolicy> tls_policy_from_name(std::string_view n) { return value_in(kTlsPolicyNames, n); }
// Whether the policy insists on TLS 1.2+ with a verified certificate (never plaintext).
constexpr bool verified_tls_required(TlsPolicy p) { return p != TlsPolicy::None && p != TlsPolicy::Opportunistic; }

// Why an opportunistic connection carried the message in plaintext although the server offered
// STARTTLS.
enum class TlsFallback : uint8_t {
  None,
  StarttlsRefused,  // a 4xx/5xx to STARTTLS: this connection went on in plaintext
  HandshakeFailed,  // the handshake after STARTTLS's 220 failed: a new connection without TLS
};

inline constexpr Named<TlsFallback> kTlsFallbackNames[] = {
    {TlsFallback::None, ""},
    {TlsFallback::StarttlsRefused, "starttls_refused"},
    {TlsFallback::HandshakeFailed, "handshake_failed"},
};
static_assert(in_order(kTlsFallbackNames));

constexpr std::string_view to_string(TlsFallback f) { return name_in(kTlsFallbackNames, f); }
constexpr std::optional<TlsFallback> tls_fallback_from_name(std::string_view n) { return value_in(kTlsFallbackNames, n); }

// What one connection's TLS negotiation came to, in TLS-RPT's terms (RFC 8460 4.3 result types):
// set on the outcome of the message during which the connection negotiated (or failed to
// negotiate) TLS, None on messages that reused it and where TLS was not attempted.
enum class TlsResult : uint8_t {
  None,
  Success,
  StarttlsNotSupported,     // TLS was required and the server offered no STARTTLS
  CertificateHostMismatch,  // the certificate does not name the host
  CertificateExpired,
  CertificateNotTrusted,    // no chain to a trusted root (self-signed, unknown issuer)
  ValidationFailure,        // any other negotiation failure (handshake, protocol, MX mismatch)
  TlsaInvalid,              // DANE: no TLSA record matched the server's certificate or key
  DnssecInvalid,            // DANE: the TLSA lookup failed DNSSEC validation (bogus) or failed
  DaneRequired,
  StsPolicyFetchError,
  StsPolicyInvalid,
  StsWebpkiInvalid,
};

inline constexpr Named<TlsResult> kTlsResultNames[] = {
    {TlsResult::None, ""},
    {TlsResult::Success, "success"},
    {TlsResult::StarttlsNotSupported, "starttls-not-supported"},
    {TlsResult::CertificateHostMismatch, "certificate-host-mismatch"},
    {TlsResult::CertificateExpired, "certificate-expired"},
    {TlsResult::CertificateNotTrusted, "certificate-not-trusted"},
    {TlsResult::ValidationFailure, "validation-failure"},
    {TlsResult::TlsaInvalid, "tlsa-invalid"},
    {TlsResult::DnssecInvalid, "dnssec-invalid"},
    {TlsResult::DaneRequired, "dane-required"},
    {TlsResult::StsPolicyFetchError, "sts-policy-fetch-error"},
    {TlsResult::StsPolicyInvalid, "sts-policy-invalid"},
    {TlsResult::StsWebpkiInvalid, "sts-webpki-invalid"},
};
static_assert(in_order(kTlsResultNames));

constexpr std::string_view to_string(TlsResult r) { return name_in(kTlsResultNames, r); }
constexpr std::optional<TlsResult> tls_result_from_name(std::string_view n) { return value_in(kTlsResultNames, n); }

// For logs and test messages: the wire name.
std::ostream& operator<<(std::ostream& os, Status s);
std::ostream& operator<<(std::ostream& os, Phase p);
std::ostream& operator<<(std::ostream& os, Reason r);
std::ostream& operator<<(std::ostream& os, Fault f);
std::ostream& operator<<(std::ostream& os, TlsPolicy p);

// One SMTP reply as the server sent it: "550 5.1.1 no such user" → {550, "5.1.1", "no such user"}.
struct Reply {
  int code = 0;          // 0 when no reply was received (connect failure, timeout, …)
  std::string enhanced;  // "" when the server did not send an enhanced status code
  std::string text;      // the reply text, lines joined with "\n", without code prefixes
};

struct Outcome {
  Status status = Status::Failed;
  Phase phase = Phase::None;     // where it ended
  Reason reason = Reason::None;  // short machine-readable cause
  Reply reply;
  std::string detail;  // human-readable explanation
  std::string host;    // the host name connected to (or tried)
  std::string ip;      // the vetted address actually used
  std::string tls_version;  // "" when the message did not go over TLS
  std::string tls_cipher;
  TlsPolicy tls_policy = TlsPolicy::None;      // the policy the attempt ran under
  TlsFallback tls_fallback = TlsFallback::None;  // set: plaintext because TLS failed or was refused
  TlsResult tls_result = TlsResult::None;        // this attempt's TLS negotiation, for TLS-RPT
  std::string tls_local_ip;  // this side's address of the connection tls_result is about (TLS-RPT's sending-mta-ip)
  std::string tls_result_detail;                 // a failure's own words (OpenSSL's, the policy's)
  Fault fault = Fault::None;
};

}  // namespace deliverd::core
