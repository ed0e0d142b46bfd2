#include "core/names.h"

#include <gtest/gtest.h>

#include "core/outcome.h"
#include "core/security.h"
#include "tests/unit/support/names_check.h"

namespace deliverd::core {
namespace {

using testing::expect_names_round_trip;
using testing::FirstMayBeEmpty;

TEST(Names, StatusesRoundTrip) {
  expect_names_round_trip(kStatusNames, [](Status s) { return to_string(s); }, status_from_name);
}

TEST(Names, PhasesRoundTrip) {
  expect_names_round_trip(kPhaseNames, [](Phase p) { return to_string(p); }, phase_from_name, FirstMayBeEmpty::Yes);
}

TEST(Names, ReasonsRoundTrip) {
  expect_names_round_trip(kReasonNames, [](Reason r) { return to_string(r); }, reason_from_name, FirstMayBeEmpty::Yes);
}

TEST(Names, FaultsRoundTrip) {
  expect_names_round_trip(kFaultNames, [](Fault f) { return to_string(f); }, fault_from_name, FirstMayBeEmpty::Yes);
}

TEST(Names, TlsPoliciesRoundTrip) {
  expect_names_round_trip(kTlsPolicyNames, [](TlsPolicy p) { return to_string(p); }, tls_policy_from_name);
}

TEST(Names, TlsFallbacksRoundTrip) {
  expect_names_round_trip(kTlsFallbackNames, [](TlsFallback f) { return to_string(f); }, tls_fallback_from_name,
                          FirstMayBeEmpty::Yes);
}

// Only opportunistic and none let a message go without verified TLS 1.2+.
TEST(Names, EveryTlsPolicyButOpportunisticAndNoneWantsVerifiedTls) {
  EXPECT_FALSE(verified_tls_required(TlsPolicy::None));
  EXPECT_FALSE(verified_tls_required(TlsPolicy::Opportunistic));
  EXPECT_TRUE(verified_tls_required(TlsPolicy::MtaSts));
  EXPECT_TRUE(verified_tls_required(TlsPolicy::Dane));
  EXPECT_TRUE(verified_tls_required(TlsPolicy::Required));
}

TEST(Names, SecuritiesRoundTrip) {
  expect_names_round_trip(kSecurityNames, [](Security s) { return to_string(s); }, security_from_name);
}

// The wire names producers and dashboards already rely on (docs/job-schema.md).
TEST(Names, WireNamesAreTheDocumentedOnes) {
  EXPECT_EQ(to_string(Reason::NoIdleConnection), "no_idle_connection");
  EXPECT_EQ(to_string(Reason::RcptRejected), "rcpt_rejected");
  EXPECT_EQ(to_string(Reason::DnsNxdomain), "dns_nxdomain");
  EXPECT_EQ(to_string(Reason::MxRefusedByPolicy), "mx_refused_by_policy");
  EXPECT_EQ(to_string(Phase::StartTls), "starttls");
  EXPECT_EQ(to_string(Fault::PolicyAuth), "policy_auth");
  EXPECT_EQ(to_string(Fault::None), "");
  EXPECT_EQ(to_string(Status::Suppressed), "suppressed");
  EXPECT_EQ(to_string(TlsPolicy::None), "none");
  EXPECT_EQ(to_string(TlsPolicy::Opportunistic), "opportunistic");
  EXPECT_EQ(to_string(TlsPolicy::MtaSts), "mta-sts");
  EXPECT_EQ(to_string(TlsPolicy::Dane), "dane");
  EXPECT_EQ(to_string(TlsPolicy::Required), "required");
  EXPECT_EQ(to_string(TlsFallback::StarttlsRefused), "starttls_refused");
  EXPECT_EQ(to_string(TlsFallback::HandshakeFailed), "handshake_failed");
}

enum class Color : uint8_t { Red, Green };
constexpr Named<Color> kColors[] = {{Color::Red, "red"}, {Color::Green, "green"}};
constexpr Named<Color> kSwapped[] = {{Color::Green, "green"}, {Color::Red, "red"}};

TEST(Names, TablesAreCheckedForOrderAtCompileTime) {
  static_assert(in_order(kColors));
  static_assert(!in_order(kSwapped));
  static_assert(name_in(kColors, Color::Green) == "green");
  static_assert(value_in(kColors, "red") == Color::Red);
  static_assert(!value_in(kColors, "blue").has_value());
}

}  // namespace
}  // namespace deliverd::core
