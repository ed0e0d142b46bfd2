// The TLSA query and response wire format (dns/tlsa_message.h) and what an answer means for DANE
// (tlsa_result_from in dns/tlsa_lookup.h), on hand-built packets.
#include "dns/tlsa_message.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dns/tlsa_lookup.h"

namespace deliverd::dns {
namespace {

using Bytes = std::vector<unsigned char>;

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<unsigned char>(v >> 8));
  b.push_back(static_cast<unsigned char>(v));
}
void put32(Bytes& b, uint32_t v) {
  put16(b, static_cast<uint16_t>(v >> 16));
  put16(b, static_cast<uint16_t>(v));
}
void name(Bytes& b, const std::string& dotted) {
  size_t start = 0;
  while (start < dotted.size()) {
    size_t dot = dotted.find('.', start);
    if (dot == std::string::npos) dot = dotted.size();
    b.push_back(static_cast<unsigned char>(dot - start));
    b.insert(b.end(), dotted.begin() + static_cast<long>(start), dotted.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  b.push_back(0);
}

constexpr const char* kName = "_25._tcp.mx.dane.test";

// A response header and the echoed question (at offset 12, so a pointer 0xc00c names kName).
struct Msg {
  Bytes b;
  size_t an_at = 6, ns_at = 8;
  Msg(uint16_t flags, uint16_t an, uint16_t ns = 0, const std::string& q = kName, uint16_t id = 0x4242) {
    put16(b, id);
    put16(b, flags);
    put16(b, 1);
    put16(b, an);
    put16(b, ns);
    put16(b, 0);
    name(b, q);
    put16(b, kTypeTlsa);
    put16(b, 1);
  }
  // An RR whose owner is a compression pointer to offset 12 (the question name) or a full name.
  void rr_header(uint16_t type, uint32_t ttl, uint16_t rdlen, const std::string& owner = "") {
    if (owner.empty()) {
      b.push_back(0xc0);
      b.push_back(12);
    } else {
      name(b, owner);
    }
    put16(b, type);
    put16(b, 1);
    put32(b, ttl);
    put16(b, rdlen);
  }
  void tlsa(uint8_t u, uint8_t s, uint8_t m, const std::string& data, uint32_t ttl = 300,
            const std::string& owner = "") {
    rr_header(kTypeTlsa, ttl, static_cast<uint16_t>(3 + data.size()), owner);
    b.insert(b.end(), {u, s, m});
    b.insert(b.end(), data.begin(), data.end());
  }
  void cname(const std::string& owner, const std::string& target, uint32_t ttl = 300) {
    Bytes t;
    name(t, target);
    rr_header(5, ttl, static_cast<uint16_t>(t.size()), owner);
    b.insert(b.end(), t.begin(), t.end());
  }
  void soa(uint32_t ttl, uint32_t minimum) {
    Bytes r;
    name(r, "ns.dane.test");
    name(r, "admin.dane.test");
    for (uint32_t v : {1u, 3600u, 600u, 86400u, minimum}) put32(r, v);
    rr_header(6, ttl, static_cast<uint16_t>(r.size()), "dane.test");
    b.insert(b.end(), r.begin(), r.end());
  }
  TlsaResponse parse(std::optional<uint16_t> id = 0x4242, const std::string& q = kName) const {
    return parse_tlsa_response(b.data(), b.size(), id, q);
  }
};

constexpr uint16_t kOkAd = 0x81a0;  // QR RD RA AD, NOERROR
constexpr uint16_t kOk = 0x8180;    // QR RD RA, NOERROR
constexpr uint16_t kNxAd = 0x81a3;  // NXDOMAIN with AD
constexpr uint16_t kServfail = 0x8182;

TEST(BuildTlsaQuery, SetsRdAdAndAnEdnsOptWithDo) {
  std::string q = build_tlsa_query(0xbeef, "_25._tcp.MX.Dane.Test.");
  Bytes want = {0xbe, 0xef, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1};
  name(want, "_25._tcp.mx.dane.test");
  put16(want, 52);
  put16(want, 1);
  want.insert(want.end(), {0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0});
  EXPECT_EQ(Bytes(q.begin(), q.end()), want);
}

TEST(BuildTlsaQuery, RefusesNamesThatCannotBeSent) {
  std::string error;
  EXPECT_EQ(build_tlsa_query(1, "", &error), "");
  EXPECT_NE(error.find("not a valid DNS name"), std::string::npos);
  EXPECT_EQ(build_tlsa_query(1, "a..b"), "");
  EXPECT_EQ(build_tlsa_query(1, std::string(64, 'a') + ".test"), "");
  EXPECT_EQ(build_tlsa_query(1, "bad name.test"), "");
}

TEST(ParseTlsaResponse, ReadsSecureRecordsWithExactBytes) {
  Msg m(kOkAd, 2);
  std::string digest(32, '\0');
  for (int i = 0; i < 32; ++i) digest[static_cast<size_t>(i)] = static_cast<char>(i * 7);
  m.tlsa(3, 1, 1, digest, 600);
  m.tlsa(2, 0, 2, "\x01\x02", 120);
  auto r = m.parse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_TRUE(r.authenticated);
  EXPECT_EQ(r.rcode, Rcode::NoError);
  ASSERT_EQ(r.records.size(), 2u);
  EXPECT_EQ(r.records[0], (TlsaRecord{3, 1, 1, digest}));
  EXPECT_EQ(r.records[1], (TlsaRecord{2, 0, 2, std::string("\x01\x02")}));
  EXPECT_EQ(r.answer_ttl, 120u);
  EXPECT_EQ(r.owner, kName);
  auto res = tlsa_result_from(r);
  EXPECT_EQ(res.status, TlsaResult::Status::Secure);
  EXPECT_EQ(res.records, r.records);
}

TEST(ParseTlsaResponse, ComparesNamesWithoutCase) {
  Msg m(kOkAd, 1, 0, "_25._TCP.MX.dane.TEST");
  m.tlsa(3, 1, 1, "x");
  auto r = m.parse(0x4242, "_25._tcp.mx.dane.test");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.records.size(), 1u);
}

TEST(ParseTlsaResponse, FollowsInAnswerCnameChain) {
  Msg m(kOkAd, 4);
  m.cname(kName, "a.dane.test", 900);
  m.cname("a.dane.test", "b.dane.test", 800);
  m.tlsa(3, 1, 1, "ignored: wrong owner");  // at the question name, which is an alias
  m.tlsa(3, 1, 2, "final", 1000, "b.dane.test");
  auto r = m.parse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.owner, "b.dane.test");
  ASSERT_EQ(r.records.size(), 1u);
  EXPECT_EQ(r.records[0].data, "final");
  EXPECT_EQ(r.answer_ttl, 800u);
}

TEST(ParseTlsaResponse, BoundsCnameChains) {
  Msg loop(kOkAd, 2);
  loop.cname(kName, "a.dane.test");
  loop.cname("a.dane.test", kName);
  auto r = loop.parse();
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("CNAME chain longer"), std::string::npos) << r.error;

  Msg longer(kOkAd, kMaxCnameHops + 1);
  std::string from = kName;
  for (int i = 0; i <= kMaxCnameHops; ++i) {
    std::string to = "c" + std::to_string(i) + ".dane.test";
    longer.cname(from, to);
    from = to;
  }
  EXPECT_FALSE(longer.parse().ok());
}

TEST(ParseTlsaResponse, ReadsRcodesAndFlags) {
  Msg nx(kNxAd, 0, 1);
  nx.soa(3600, 60);
  auto r = nx.parse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.rcode, Rcode::NxDomain);
  EXPECT_TRUE(r.authenticated);
  EXPECT_EQ(r.negative_ttl, 60u);
  EXPECT_EQ(tlsa_result_from(r).status, TlsaResult::Status::NoRecords);

  Msg sf(kServfail, 0);
  r = sf.parse();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.rcode, Rcode::ServFail);
  EXPECT_FALSE(r.authenticated);

  Msg tc(kOkAd | 0x0200, 0);
  r = tc.parse();
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(tlsa_result_from(r).status, TlsaResult::Status::Failed);

  Msg refused(0x8185, 0);
  r = refused.parse();
  EXPECT_EQ(r.rcode, Rcode::Refused);
  EXPECT_EQ(tlsa_result_from(r).status, TlsaResult::Status::Failed);

  Msg notimp(0x8184, 0);
  r = notimp.parse();
  EXPECT_EQ(r.rcode, Rcode::Other);
  EXPECT_EQ(r.rcode_value, 4);
}

TEST(TlsaResultFrom, MapsAnswersOntoDaneStatuses) {
  using S = TlsaResult::Status;
  Msg secure(kOkAd, 1);
  secure.tlsa(3, 1, 1, "k");
  EXPECT_EQ(tlsa_result_from(secure.parse()).status, S::Secure);

  // Unsigned: the records are there but must not be used.
  Msg insecure(kOk, 1);
  insecure.tlsa(3, 1, 1, "k");
  auto res = tlsa_result_from(insecure.parse());
  EXPECT_EQ(res.status, S::Insecure);
  EXPECT_TRUE(res.records.empty());

  Msg nodata(kOkAd, 0);
  EXPECT_EQ(tlsa_result_from(nodata.parse()).status, S::NoRecords);
  Msg nodata_insecure(kOk, 0);
  EXPECT_EQ(tlsa_result_from(nodata_insecure.parse()).status, S::Insecure);

  // SERVFAIL is a lookup failure, even with AD (which a validator would not set).
  Msg bogus(kServfail | 0x0020, 0);
  EXPECT_EQ(tlsa_result_from(bogus.parse()).status, S::Bogus);

  // Only unusable (too short) TLSA records under AD: an authenticated "no usable records".
  Msg shortrec(kOkAd, 1);
  shortrec.rr_header(kTypeTlsa, 300, 2);
  shortrec.b.insert(shortrec.b.end(), {3, 1});
  auto r = shortrec.parse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.malformed_records, 1u);
  EXPECT_EQ(tlsa_result_from(r).status, S::NoRecords);
}

TEST(ParseTlsaResponse, RejectsWhatDoesNotAnswerTheQuestion) {
  Msg m(kOkAd, 0);
  EXPECT_NE(m.parse(0x1111).error.find("does not match query id"), std::string::npos);
  EXPECT_TRUE(m.parse(std::nullopt).ok());
  EXPECT_NE(m.parse(0x4242, "_25._tcp.other.test").error.find("does not echo"), std::string::npos);

  Msg query(0x0120, 0);
  EXPECT_NE(query.parse().error.find("QR=0"), std::string::npos);

  Msg two(kOkAd, 0);
  two.b[5] = 2;
  EXPECT_NE(two.parse().error.find("2 questions"), std::string::npos);

  Msg wrong_type(kOkAd, 0);
  wrong_type.b[wrong_type.b.size() - 3] = 1;  // type A
  EXPECT_FALSE(wrong_type.parse().ok());

  Msg opcode(kOkAd | 0x2000, 0);
  EXPECT_NE(opcode.parse().error.find("opcode"), std::string::npos);
}

TEST(ParseTlsaResponse, RejectsEveryTruncation) {
  Msg m(kOkAd, 2, 1);
  m.cname(kName, "a.dane.test");
  m.tlsa(3, 1, 1, std::string(32, 'x'), 300, "a.dane.test");
  m.soa(300, 60);
  ASSERT_TRUE(m.parse().ok()) << m.parse().error;
  for (size_t cut = 0; cut < m.b.size(); ++cut) {
    auto r = parse_tlsa_response(m.b.data(), cut, 0x4242, kName);
    EXPECT_FALSE(r.ok()) << "cut at " << cut;
    EXPECT_FALSE(r.error.empty());
  }
  EXPECT_FALSE(parse_tlsa_response(nullptr, 0, std::nullopt, kName).ok());
}

TEST(ParseTlsaResponse, RejectsCompressionLoopsAndForwardPointers) {
  // An answer whose owner points at itself.
  Msg self(kOkAd, 1);
  size_t at = self.b.size();
  self.b.push_back(0xc0);
  self.b.push_back(static_cast<unsigned char>(at));
  put16(self.b, kTypeTlsa);
  put16(self.b, 1);
  put32(self.b, 300);
  put16(self.b, 3);
  self.b.insert(self.b.end(), {3, 1, 1});
  auto r = self.parse();
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("compression pointer"), std::string::npos) << r.error;

  // A pointer forward, into the record's own data.
  Msg fwd(kOkAd, 1);
  fwd.b.push_back(0xc0);
  fwd.b.push_back(static_cast<unsigned char>(fwd.b.size() + 20));
  put16(fwd.b, kTypeTlsa);
  put16(fwd.b, 1);
  put32(fwd.b, 300);
  put16(fwd.b, 3);
  fwd.b.insert(fwd.b.end(), {3, 1, 1});
  EXPECT_FALSE(fwd.parse().ok());

  Msg label_type(kOkAd, 1);
  label_type.b.push_back(0x80);
  EXPECT_NE(label_type.parse().error.find("unknown label type"), std::string::npos);
}

TEST(ParseTlsaResponse, EscapesOctetsThatWouldMakeNamesAmbiguous) {
  // "mx.dane" as one label must not match the two labels mx, dane.
  Msg m(kOkAd, 1);
  Bytes owner = {3, '_', '2', '5'};
  owner.insert(owner.end(), {4, '_', 't', 'c', 'p', 7, 'm', 'x', '.', 'd', 'a', 'n', 'e', 4, 't', 'e', 's', 't', 0});
  m.b.insert(m.b.end(), owner.begin(), owner.end());
  put16(m.b, kTypeTlsa);
  put16(m.b, 1);
  put32(m.b, 300);
  put16(m.b, 4);
  m.b.insert(m.b.end(), {3, 1, 1, 'k'});
  auto r = m.parse();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_TRUE(r.records.empty());
}

TEST(TlsaName, PrefixesPortAndProtocol) {
  EXPECT_EQ(tlsa_name("MX.Example.ORG."), "_25._tcp.mx.example.org");
  EXPECT_EQ(tlsa_name("mx.example.org", 465), "_465._tcp.mx.example.org");
}

TEST(TlsaStatusNames, AreTheMetricLabels) {
  EXPECT_EQ(to_string(TlsaResult::Status::NoRecords), "no_records");
  EXPECT_EQ(to_string(TlsaResult::Status::Bogus), "bogus");
}

}  // namespace
}  // namespace deliverd::dns
