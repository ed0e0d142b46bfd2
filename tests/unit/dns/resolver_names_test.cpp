#include <gtest/gtest.h>

#include "dns/resolver.h"
#include "tests/unit/support/names_check.h"

namespace deliverd::dns {
namespace {

TEST(ResolverNames, CodesRoundTrip) {
  testing::expect_names_round_trip(kCodeNames, [](Code c) { return to_string(c); }, code_from_name,
                                   testing::FirstMayBeEmpty::Yes);
}

TEST(ResolverNames, FailedLookupsNameTheirReason) {
  ResolvedHost r;
  r.host = "smtp.example.org";
  EXPECT_FALSE(resolve_failure_outcome(r).has_value());
  const std::pair<Code, const char*> cases[] = {{Code::Nxdomain, "dns_nxdomain"},     {Code::NoAddress, "dns_no_address"},
                                                {Code::Timeout, "dns_timeout"},       {Code::Error, "dns_error"},
                                                {Code::RefusedByPolicy, "ssrf_refused"}, {Code::InvalidName, "invalid_host"}};
  for (const auto& [code, reason] : cases) {
    r.error = code;
    auto o = resolve_failure_outcome(r);
    ASSERT_TRUE(o.has_value());
    EXPECT_EQ(core::to_string(o->reason), reason);
    EXPECT_EQ(core::to_string(o->phase), "resolve");
  }
}

}  // namespace
}  // namespace deliverd::dns
