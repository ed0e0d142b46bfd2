// The IMAP client against a real Dovecot (TLS on 993, STARTTLS on 143, LOGIN refused before TLS),
// and against the in-tree stub for faults Dovecot will not produce on demand.
#include "inbound/imap_client.h"

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/fixtures/dovecot_server.h"
#include "tests/integration/fixtures/imap_stub.h"
#include "tests/integration/fixtures/process.h"
#include "tests/integration/fixtures/test_ca.h"
#include "tests/integration/fixtures/test_loop.h"

namespace deliverd::inbound {
namespace {

using deliverd::testing::DovecotServer;
using deliverd::testing::ImapStub;
using deliverd::testing::now_ms;

using Loop = deliverd::testing::TestLoop;

std::shared_ptr<core::TlsContext> trusting(const std::string& ca_file) {
  core::TlsClientOptions o;
  o.ca_file = ca_file;
  o.use_system_roots = false;
  auto t = core::TlsContext::client(o);
  EXPECT_TRUE(t) << t.error();
  return *t;
}

sockaddr_storage address(const std::string& ip, int port) {
  sockaddr_storage ss{};
  uv_ip4_addr(ip.c_str(), port, reinterpret_cast<sockaddr_in*>(&ss));
  return ss;
}

// One client and what its callbacks said. A test that stops early closes it, so the loop ends.
struct Conn {
  ~Conn() {
    if (client) client->close();
  }
  ImapClient* client = nullptr;
  std::optional<ImapResult<core::Ok>> connected;
  bool closed = false;
  std::optional<ImapError> closed_with;
  std::vector<uint32_t> exists;
};

std::unique_ptr<Conn> open(Loop& loop, const ImapConfig& cfg, const std::string& ip, int port,
                           const std::string& host = "imap.test") {
  auto c = std::make_unique<Conn>();
  Conn* raw = c.get();
  ImapClient::Hooks hooks;
  hooks.exists = [raw](uint32_t n) { raw->exists.push_back(n); };
  hooks.closed = [raw](const std::optional<ImapError>& e) {
    raw->closed = true;
    raw->closed_with = e;
    raw->client = nullptr;
  };
  sockaddr_storage a = address(ip, port);
  c->client = ImapClient::connect(loop.get(), cfg, reinterpret_cast<const sockaddr*>(&a), host, hooks,
                                  [raw](const ImapResult<core::Ok>& r) { raw->connected = r; });
  return c;
}

// One CA for the binary: key generation is the slow part of starting a server.
deliverd::testing::TestCa& test_ca() {
  static deliverd::testing::TestCa ca;
  return ca;
}

DovecotServer::Options with_shared_ca() {
  DovecotServer::Options o;
  o.ca = &test_ca();
  return o;
}

ImapConfig dovecot_config(const DovecotServer& d, core::Security security) {
  ImapConfig cfg;
  cfg.security = security;
  cfg.tls = trusting(d.ca_file());
  cfg.tls_name = d.cert_name();
  for (auto& ms : cfg.timeouts.ms) ms = 15000;
  return cfg;
}

int port_for(core::Security s) { return s == core::Security::Tls ? DovecotServer::kImapsPort : DovecotServer::kImapPort; }

std::string describe(const ImapError& e) {
  return std::string(to_string(e.kind)) + " in " + std::string(to_string(e.command)) + " [" +
         std::string(to_string(e.code)) + "] " + e.text;
}

// Waits for a command's result.
template <class T>
struct Wait {
  std::optional<ImapResult<T>> result;
  std::function<void(const ImapResult<T>&)> cb() {
    return [this](const ImapResult<T>& r) { result = r; };
  }
  bool ready() const { return result.has_value(); }
};

// Connects and logs alice in; the client is ready for commands.
std::unique_ptr<Conn> logged_in(Loop& loop, const DovecotServer& d, ImapConfig cfg,
                                const std::string& password = "imap-pass") {
  auto c = open(loop, cfg, d.host(), port_for(cfg.security));
  Wait<core::Ok> login;
  c->client->login(ImapCredentials::with_password("alice", password), login.cb());
  EXPECT_TRUE(loop.run_until([&] { return login.ready(); }));
  EXPECT_TRUE(login.result && login.result->ok())
      << (login.result && !login.result->ok() ? describe(login.result->error()) : "");
  return c;
}

void logout(Loop& loop, Conn& c) {
  Wait<core::Ok> out;
  c.client->logout(out.cb());
  ASSERT_TRUE(loop.run_until([&] { return c.closed; }));
  ASSERT_TRUE(out.result && out.result->ok());
  EXPECT_FALSE(c.closed_with) << describe(*c.closed_with);
}

const std::string kPlain =
    "From: Alice <alice@acme.example>\r\nTo: bob@example.org\r\nSubject: first\r\nMessage-ID: <m1@acme.example>\r\n"
    "\r\nHello Bob.\r\n";
const std::string kMixed =
    "From: Alice <alice@acme.example>\r\nTo: bob@example.org\r\nSubject: with attachment\r\n"
    "Message-ID: <m2@acme.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
    "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n"
    "--b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n"
    "Content-Disposition: attachment; filename=\"a.pdf\"\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n";
const std::string kDsn =
    "From: MAILER-DAEMON@mx.example.org\r\nTo: alice@acme.example\r\nSubject: Undelivered Mail Returned to Sender\r\n"
    "Message-ID: <dsn1@mx.example.org>\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=delivery-status; boundary=\"r1\"\r\n\r\n"
    "--r1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
    "--r1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
    "Final-Recipient: rfc822; nobody@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\r\n"
    "--r1\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <sent-1@acme.example>\r\nSubject: hi\r\n\r\n"
    "--r1--\r\n";

TEST(ImapClient, ImplicitTlsOn993VerifiesTheCertificateAndLogsIn) {
  DovecotServer dovecot(with_shared_ca());
  Loop loop;
  auto c = logged_in(loop, dovecot, dovecot_config(dovecot, core::Security::Tls));
  ASSERT_TRUE(c->connected && c->connected->ok());
  ASSERT_NE(c->client, nullptr);
  EXPECT_TRUE(c->client->authenticated());
  EXPECT_TRUE(c->client->tls_info().verified);
  EXPECT_FALSE(c->client->tls_info().version.empty());
  // After login the capabilities are the authenticated ones (Dovecot sends them in the OK).
  EXPECT_TRUE(c->client->has_capability("IDLE"));
  EXPECT_TRUE(c->client->has_capability("uidplus"));
  logout(loop, *c);
  EXPECT_NE(dovecot.log().find("Login: user=<alice>, method=PLAIN"), std::string::npos) << dovecot.log();
  EXPECT_NE(dovecot.log().find("TLS"), std::string::npos);
}

TEST(ImapClient, StartTlsOn143ReadsCapabilitiesAgainAndNeverLogsInBeforeTls) {
  DovecotServer dovecot(with_shared_ca());
  Loop loop;
  auto cfg = dovecot_config(dovecot, core::Security::StartTls);
  auto c = open(loop, cfg, dovecot.host(), DovecotServer::kImapPort);
  ASSERT_TRUE(loop.run_until([&] { return c->connected.has_value(); }));
  ASSERT_TRUE(c->connected->ok()) << describe(c->connected->error());
  // Before TLS Dovecot said STARTTLS and LOGINDISABLED; what the client knows now is from after it.
  EXPECT_FALSE(c->client->has_capability("STARTTLS"));
  EXPECT_FALSE(c->client->has_capability("LOGINDISABLED"));
  EXPECT_TRUE(c->client->has_capability("AUTH=PLAIN"));
  EXPECT_TRUE(c->client->tls_info().verified);
  Wait<core::Ok> login;
  c->client->login(ImapCredentials::with_password("alice", "imap-pass"), login.cb());
  ASSERT_TRUE(loop.run_until([&] { return login.ready(); }));
  EXPECT_TRUE(login.result->ok()) << describe(login.result->error());
  logout(loop, *c);
  EXPECT_EQ(dovecot.log().find("Plaintext authentication"), std::string::npos) << dovecot.log();
  EXPECT_NE(dovecot.log().find("Login: user=<alice>"), std::string::npos) << dovecot.log();
}

TEST(ImapClient, ACertificateForAnotherNameIsRefusedBeforeAnyLogin) {
  DovecotServer dovecot(with_shared_ca());
  for (core::Security sec : {core::Security::Tls, core::Security::StartTls}) {
    Loop loop;
    auto cfg = dovecot_config(dovecot, sec);
    cfg.tls_name = "other.test";
    auto c = open(loop, cfg, dovecot.host(), port_for(sec), "other.test");
    Wait<core::Ok> login;
    c->client->login(ImapCredentials::with_password("alice", "imap-pass"), login.cb());
    ASSERT_TRUE(loop.run_until([&] { return c->closed; }));
    ASSERT_TRUE(c->connected && !c->connected->ok());
    EXPECT_EQ(c->connected->error().kind, ImapErrorKind::Tls) << describe(c->connected->error());
    EXPECT_NE(c->connected->error().text.find("certificate"), std::string::npos) << c->connected->error().text;
    ASSERT_TRUE(login.result && !login.result->ok());
    EXPECT_EQ(login.result->error().kind, ImapErrorKind::Tls);
    EXPECT_TRUE(login.result->error().fatal);
  }
  EXPECT_EQ(dovecot.log().find("Login:"), std::string::npos) << dovecot.log();
  EXPECT_EQ(dovecot.log().find("auth failed"), std::string::npos) << dovecot.log();
}

TEST(ImapClient, SecurityNoneIsRefusedWithoutConnecting) {
  DovecotServer dovecot(with_shared_ca());
  Loop loop;
  auto cfg = dovecot_config(dovecot, core::Security::None);
  auto c = open(loop, cfg, dovecot.host(), DovecotServer::kImapPort);
  ASSERT_TRUE(loop.run_until([&] { return c->closed; }));
  ASSERT_TRUE(c->connected && !c->connected->ok());
  EXPECT_EQ(c->connected->error().kind, ImapErrorKind::Tls);
  EXPECT_EQ(c->connected->error().text, "security none: IMAP is spoken only over TLS or STARTTLS");
  EXPECT_EQ(dovecot.log().find("Login:"), std::string::npos) << dovecot.log();
}

TEST(ImapClient, AWrongPasswordIsATypedLoginFailureAndTheConnectionStaysUsable) {
  DovecotServer dovecot(with_shared_ca());
  Loop loop;
  auto c = open(loop, dovecot_config(dovecot, core::Security::Tls), dovecot.host(), DovecotServer::kImapsPort);
  Wait<core::Ok> bad, good;
  c->client->login(ImapCredentials::with_password("alice", "not-it"), bad.cb());
  c->client->login(ImapCredentials::with_password("alice", "imap-pass"), good.cb());
  ASSERT_TRUE(loop.run_until([&] { return good.ready(); }));
  ASSERT_TRUE(bad.result && !bad.result->ok());
  const ImapError& e = bad.result->error();
  EXPECT_EQ(e.kind, ImapErrorKind::LoginFailed) << describe(e);
  EXPECT_EQ(e.command, ImapCommand::Login);
  EXPECT_EQ(e.code, Code::AuthenticationFailed);
  EXPECT_FALSE(e.fatal);
  EXPECT_FALSE(e.transient());
  EXPECT_EQ(e.text.find("not-it"), std::string::npos);
  EXPECT_TRUE(good.result->ok()) << describe(good.result->error());
  logout(loop, *c);
}

TEST(ImapClient, AuthenticatePlainWithAnInitialResponse) {
  DovecotServer dovecot(with_shared_ca());
  Loop loop;
  auto cfg = dovecot_config(dovecot, core::Security::Tls);
  auto c = open(loop, cfg, dovecot.host(), DovecotServer::kImapsPort);
  Wait<core::Ok> login;
  c->client->login(ImapCredentials::with_password("bob", "bob-pass", ImapAuthMethod::Plain), login.cb());
  ASSERT_TRUE(loop.run_until([&] { return login.ready(); }));
  EXPECT_TRUE(login.result->ok()) << describe(login.result->error());
  logout(loop, *c);
  EXPECT_NE(dovecot.log().find("Login: user=<bob>, method=PLAIN"), std::string::npos) << dovecot.log();
  // A wrong password the same way (last: after a failure Dovecot delays the address's next try),
  // and a token where the server offers neither XOAUTH2 nor OAUTHBEARER: named, nothing sent.
  auto d = open(loop, cfg, dovecot.host(), DovecotServer::kImapsPort);
  Wait<core::Ok> oauth, bad;
  d->client->login(ImapCredentials::with_token("bob", "ya29.token"), oauth.cb());
  d->client->login(ImapCredentials::with_password("bob", "wrong", ImapAuthMethod::Plain), bad.cb());
  ASSERT_TRUE(loop.run_until([&] { return bad.ready(); }));
  EXPECT_TRUE(d->client->has_capability("SASL-IR"));
  ASSERT_FALSE(oauth.result->ok());
  EXPECT_EQ(oauth.result->error().kind, ImapErrorKind::AuthUnavailable) << describe(oauth.result->error());
  EXPECT_FALSE(oauth.result->error().fatal);
  ASSERT_FALSE(bad.result->ok());
  EXPECT_EQ(bad.result->error().kind, ImapErrorKind::LoginFailed) << describe(bad.result->error());
  EXPECT_EQ(bad.result->error().command, ImapCommand::Authenticate);
  EXPECT_EQ(bad.result->error().code, Code::AuthenticationFailed);
}

TEST(ImapClient, SelectGivesUidValidityAndExamineIsReadOnly) {
  DovecotServer dovecot(with_shared_ca());
  Loop loop;
  auto c = logged_in(loop, dovecot, dovecot_config(dovecot, core::Security::Tls));
  Wait<MailboxInfo> sel, ex, missing;
  c->client->select("INBOX", sel.cb());
  c->client->examine("INBOX", ex.cb());
  c->client->select("No Such Folder", missing.cb());
  ASSERT_TRUE(loop.run_until([&] { return missing.ready(); }));
  ASSERT_TRUE(sel.result->ok()) << describe(sel.result->error());
  EXPECT_GT(sel.result->value().uid_validity, 0u);
  EXPECT_EQ(sel.result->value().uid_next, 1u);
  EXPECT_EQ(sel.result->value().exists, 0u);
  EXPECT_FALSE(sel.result->value().read_only);
  EXPECT_FALSE(sel.result->value().permanent_flags.empty());
  ASSERT_TRUE(ex.result->ok());
  EXPECT_TRUE(ex.result->value().read_only);
  EXPECT_EQ(ex.result->value().uid_validity, sel.result->value().uid_validity);
  ASSERT_FALSE(missing.result->ok());
  EXPECT_EQ(missing.result->error().kind, ImapErrorKind::CommandFailed);
  EXPECT_FALSE(missing.result->error().fatal);
  logout(loop, *c);
}

TEST(ImapClient, AppendedMessagesAreSearchedAndFetchedAndStayUnseen) {
  DovecotServer dovecot(with_shared_ca());
  Loop loop;
  auto c = logged_in(loop, dovecot, dovecot_config(dovecot, core::Security::Tls));
  std::vector<Wait<uint32_t>> appended(3);
  c->client->append("INBOX", kPlain, {}, appended[0].cb());
  c->client->append("INBOX", kMixed, {}, appended[1].cb());
  c->client->append("INBOX", kDsn, {"$Bounce"}, appended[2].cb());
  Wait<MailboxInfo> sel;
  c->client->select("INBOX", sel.cb());
  ASSERT_TRUE(loop.run_until([&] { return sel.ready(); }));
  for (uint32_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(appended[i].result->ok()) << describe(appended[i].result->error());
    EXPECT_EQ(appended[i].result->value(), i + 1);  // UIDPLUS's APPENDUID
  }
  ASSERT_TRUE(sel.result->ok());
  EXPECT_EQ(sel.result->value().exists, 3u);
  EXPECT_EQ(sel.result->value().uid_next, 4u);

  Wait<std::vector<uint32_t>> all, since2;
  c->client->uid_search("ALL", all.cb());
  c->client->uid_search("UID 2:*", since2.cb());
  FetchItems items;
  items.size = true;
  items.internal_date = true;
  items.body_structure = true;
  items.sections = {"HEADER"};
  Wait<std::vector<FetchData>> fetched, status_part, fields;
  c->client->uid_fetch("1:*", items, fetched.cb());
  FetchItems part;
  part.sections = {"2"};
  c->client->uid_fetch("3", part, status_part.cb());
  FetchItems some;
  some.sections = {"HEADER.FIELDS (Subject Message-ID)"};
  c->client->uid_fetch("1", some, fields.cb());
  ASSERT_TRUE(loop.run_until([&] { return fields.ready(); }));

  ASSERT_TRUE(all.result->ok());
  EXPECT_EQ(all.result->value(), (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(since2.result->value(), (std::vector<uint32_t>{2, 3}));

  ASSERT_TRUE(fetched.result->ok()) << describe(fetched.result->error());
  const auto& f = fetched.result->value();
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0].uid, 1u);
  ASSERT_TRUE(f[0].body_structure);
  EXPECT_EQ(f[0].body_structure->type, "text");
  EXPECT_EQ(f[0].body_structure->section, "1");
  ASSERT_NE(f[0].section("HEADER"), nullptr);
  EXPECT_NE(f[0].section("HEADER")->data->find("Message-ID: <m1@acme.example>"), std::string::npos);
  EXPECT_EQ(f[0].section("HEADER")->data->find("Hello Bob"), std::string::npos);  // headers only
  EXPECT_EQ(f[0].rfc822_size, kPlain.size());
  EXPECT_TRUE(f[0].internal_date.has_value());
  ASSERT_TRUE(f[1].body_structure);
  EXPECT_EQ(f[1].body_structure->subtype, "mixed");
  ASSERT_EQ(f[1].body_structure->parts.size(), 2u);
  EXPECT_EQ(f[1].body_structure->parts[1].type, "application");
  EXPECT_EQ(f[1].body_structure->parts[1].disposition, "attachment");
  ASSERT_TRUE(f[2].body_structure);
  EXPECT_EQ(f[2].body_structure->subtype, "report");
  EXPECT_EQ(f[2].body_structure->param("report-type"), "delivery-status");
  ASSERT_EQ(f[2].body_structure->parts.size(), 3u);
  EXPECT_EQ(f[2].body_structure->parts[1].subtype, "delivery-status");
  EXPECT_EQ(f[2].body_structure->parts[1].section, "2");
  EXPECT_TRUE(f[2].has_flag("$Bounce"));

  ASSERT_TRUE(status_part.result->ok());
  ASSERT_EQ(status_part.result->value().size(), 1u);
  ASSERT_NE(status_part.result->value()[0].section("2"), nullptr);
  EXPECT_NE(status_part.result->value()[0].section("2")->data->find("Status: 5.1.1"), std::string::npos);

  ASSERT_TRUE(fields.result->ok());
  ASSERT_EQ(fields.result->value().size(), 1u);
  ASSERT_EQ(fields.result->value()[0].sections.size(), 1u);
  const std::string& h = *fields.result->value()[0].sections[0].data;
  EXPECT_NE(h.find("Subject: first"), std::string::npos) << h;
  EXPECT_EQ(h.find("From:"), std::string::npos) << h;

  // Reading marked nothing \Seen: neither in what the server told us nor in Dovecot's own view.
  Wait<std::vector<FetchData>> flags;
  c->client->uid_fetch("1:3", FetchItems{}, flags.cb());
  ASSERT_TRUE(loop.run_until([&] { return flags.ready(); }));
  ASSERT_TRUE(flags.result->ok());
  ASSERT_EQ(flags.result->value().size(), 3u);
  for (const auto& m : flags.result->value()) {
    ASSERT_TRUE(m.flags) << *m.uid;
    EXPECT_FALSE(m.has_flag("\\Seen")) << *m.uid;
  }
  logout(loop, *c);
  for (uint32_t uid = 1; uid <= 3; ++uid) EXPECT_EQ(dovecot.flags("alice", uid).find("\\Seen"), std::string::npos);
}

TEST(ImapClient, IdleSeesAMessageAppendedByAnotherConnection) {
  DovecotServer dovecot(with_shared_ca());
  Loop loop;
  auto cfg = dovecot_config(dovecot, core::Security::Tls);
  auto watcher = logged_in(loop, dovecot, cfg);
  Wait<MailboxInfo> sel;
  watcher->client->select("INBOX", sel.cb());
  int idle_done = 0;
  std::optional<ImapResult<core::Ok>> idle_result;
  watcher->client->idle([&](const ImapResult<core::Ok>& r) {
    ++idle_done;
    idle_result = r;
  });
  ASSERT_TRUE(loop.run_until([&] { return watcher->client->idling(); }));
  EXPECT_EQ(watcher->exists, (std::vector<uint32_t>{0}));  // SELECT's count
  auto other = logged_in(loop, dovecot, cfg);
  Wait<uint32_t> appended;
  other->client->append("INBOX", kPlain, {}, appended.cb());
  ASSERT_TRUE(loop.run_until([&] { return watcher->exists.back() == 1; }));
  ASSERT_TRUE(loop.run_until([&] { return appended.ready(); }));
  EXPECT_TRUE(appended.result->ok());
  EXPECT_TRUE(watcher->client->idling());
  // A command behind IDLE ends it (DONE first); IDLE's callback reports the end once.
  Wait<std::vector<uint32_t>> found;
  watcher->client->uid_search("ALL", found.cb());
  ASSERT_TRUE(loop.run_until([&] { return found.ready(); }));
  EXPECT_EQ(idle_done, 1);
  EXPECT_TRUE(idle_result->ok());
  EXPECT_EQ(found.result->value(), (std::vector<uint32_t>{1}));
  logout(loop, *watcher);
  logout(loop, *other);
}

TEST(ImapClient, ALiteralLargerThanTheBoundIsRefusedCleanly) {
  DovecotServer dovecot(with_shared_ca());
  Loop loop;
  auto cfg = dovecot_config(dovecot, core::Security::Tls);
  {
    auto writer = logged_in(loop, dovecot, cfg);
    Wait<uint32_t> appended;
    writer->client->append("INBOX", kPlain + std::string(4000, 'x') + "\r\n", {}, appended.cb());
    ASSERT_TRUE(loop.run_until([&] { return appended.ready(); }));
    logout(loop, *writer);
  }
  cfg.limits.max_literal = 512;
  auto c = logged_in(loop, dovecot, cfg);
  Wait<MailboxInfo> sel;
  c->client->select("INBOX", sel.cb());
  FetchItems whole;
  whole.sections = {""};
  Wait<std::vector<FetchData>> fetched;
  c->client->uid_fetch("1", whole, fetched.cb());
  Wait<core::Ok> after;
  c->client->noop(after.cb());
  ASSERT_TRUE(loop.run_until([&] { return c->closed; }));
  ASSERT_TRUE(fetched.result && !fetched.result->ok());
  EXPECT_EQ(fetched.result->error().kind, ImapErrorKind::TooLarge) << describe(fetched.result->error());
  EXPECT_NE(fetched.result->error().text.find("max_literal"), std::string::npos) << fetched.result->error().text;
  EXPECT_TRUE(fetched.result->error().fatal);
  ASSERT_TRUE(after.result && !after.result->ok());  // queued behind it: the same end
  ASSERT_TRUE(c->closed_with);
  EXPECT_EQ(c->closed_with->kind, ImapErrorKind::TooLarge);
  // A partial fetch within the bound works.
  cfg.limits.max_literal = 512;
  auto again = logged_in(loop, dovecot, cfg);
  Wait<MailboxInfo> sel2;
  again->client->select("INBOX", sel2.cb());
  whole.max_section_bytes = 256;
  Wait<std::vector<FetchData>> partial;
  again->client->uid_fetch("1", whole, partial.cb());
  ASSERT_TRUE(loop.run_until([&] { return partial.ready(); }));
  ASSERT_TRUE(partial.result->ok()) << describe(partial.result->error());
  ASSERT_EQ(partial.result->value().size(), 1u);
  EXPECT_EQ(partial.result->value()[0].sections.at(0).data->size(), 256u);
  EXPECT_EQ(partial.result->value()[0].sections.at(0).origin, 0u);
  logout(loop, *again);
}

TEST(ImapClient, UidMoveTakesTheMessageToAnotherFolder) {
  DovecotServer dovecot(with_shared_ca());
  ASSERT_EQ(dovecot.doveadm({"mailbox", "create", "-u", "alice", "Processed"}), 0);
  Loop loop;
  auto c = logged_in(loop, dovecot, dovecot_config(dovecot, core::Security::Tls));
  Wait<uint32_t> a, b;
  c->client->append("INBOX", kPlain, {}, a.cb());
  c->client->append("INBOX", kDsn, {}, b.cb());
  Wait<MailboxInfo> sel;
  c->client->select("INBOX", sel.cb());
  Wait<core::Ok> moved;
  std::vector<uint32_t> expunged;
  c->client->uid_move("2", "Processed", moved.cb());
  ASSERT_TRUE(loop.run_until([&] { return moved.ready(); }));
  ASSERT_TRUE(moved.result->ok()) << describe(moved.result->error());
  EXPECT_TRUE(c->client->has_capability("MOVE"));
  logout(loop, *c);
  EXPECT_EQ(dovecot.count("alice", "INBOX"), 1u);
  EXPECT_EQ(dovecot.count("alice", "Processed"), 1u);
}

TEST(ImapClient, InputThatCannotBeSentIsRefusedBeforeSending) {
  DovecotServer dovecot(with_shared_ca());
  Loop loop;
  auto c = logged_in(loop, dovecot, dovecot_config(dovecot, core::Security::Tls));
  std::optional<ImapResult<std::vector<FetchData>>> injected;
  c->client->uid_fetch("1 BODY[]\r\na9 DELETE INBOX", FetchItems{},
                       [&](const ImapResult<std::vector<FetchData>>& r) { injected = r; });
  ASSERT_TRUE(injected && !injected->ok());  // answered before the call returned
  EXPECT_EQ(injected->error().kind, ImapErrorKind::InvalidArgument);
  std::optional<ImapResult<std::vector<uint32_t>>> search;
  c->client->uid_search("ALL\r\na9 LOGOUT", [&](const ImapResult<std::vector<uint32_t>>& r) { search = r; });
  ASSERT_TRUE(search && !search->ok());
  FetchItems bad;
  bad.sections = {"1] BODY[2"};
  std::optional<ImapResult<std::vector<FetchData>>> section;
  c->client->uid_fetch("1", bad, [&](const ImapResult<std::vector<FetchData>>& r) { section = r; });
  ASSERT_TRUE(section && !section->ok());
  // The connection is untouched.
  Wait<MailboxInfo> sel;
  c->client->select("INBOX", sel.cb());
  ASSERT_TRUE(loop.run_until([&] { return sel.ready(); }));
  EXPECT_TRUE(sel.result->ok());
  logout(loop, *c);
}

// ---- faults, against the stub ----

deliverd::testing::TestCa& stub_ca() { return test_ca(); }

ImapConfig stub_config(core::Security sec) {
  ImapConfig cfg;
  cfg.security = sec;
  cfg.tls = trusting(stub_ca().ca_file());
  for (auto& ms : cfg.timeouts.ms) ms = 15000;
  return cfg;
}

// LOGIN, then SELECT, against a stub that misbehaves on SELECT as `o` asks.
struct StubSelect {
  ImapResult<core::Ok> login = core::Ok{};
  ImapResult<MailboxInfo> select = MailboxInfo{};
  std::optional<ImapError> closed_with;
};
StubSelect select_on_stub(ImapStub::Options o) {
  o.host = deliverd::testing::free_loopback_ip(993);
  o.port = 993;
  ImapStub stub(stub_ca().issue("stub", {o.host}, 2), o);
  Loop loop;
  auto c = open(loop, stub_config(core::Security::Tls), o.host, 993, o.host);
  Wait<core::Ok> login;
  Wait<MailboxInfo> sel;
  c->client->login(ImapCredentials::with_password("alice", "imap-pass"), login.cb());
  c->client->select("INBOX", sel.cb());
  EXPECT_TRUE(loop.run_until([&] { return c->closed; }));
  StubSelect out;
  if (login.result) out.login = *login.result;
  if (sel.result) out.select = *sel.result;
  out.closed_with = c->closed_with;
  return out;
}

TEST(ImapClient, TheServerClosingMidCommandIsAClearError) {
  ImapStub::Options o;
  o.close_on = "SELECT";
  auto r = select_on_stub(o);
  EXPECT_TRUE(r.login.ok()) << describe(r.login.error());
  ASSERT_FALSE(r.select.ok());
  const ImapError& e = r.select.error();
  EXPECT_EQ(e.kind, ImapErrorKind::Closed) << describe(e);
  EXPECT_EQ(e.command, ImapCommand::Select);
  EXPECT_NE(e.text.find("closed the connection during select"), std::string::npos) << e.text;
  EXPECT_TRUE(e.fatal);
  EXPECT_TRUE(e.transient());
  ASSERT_TRUE(r.closed_with);
  EXPECT_EQ(r.closed_with->kind, ImapErrorKind::Closed);
}

TEST(ImapClient, ByeUnavailableIsATypedBackOffSignal) {
  ImapStub::Options o;
  o.bye_on = "SELECT";
  auto r = select_on_stub(o);
  ASSERT_FALSE(r.select.ok());
  EXPECT_EQ(r.select.error().kind, ImapErrorKind::Unavailable) << describe(r.select.error());
  EXPECT_EQ(r.select.error().code, Code::Unavailable);
  EXPECT_TRUE(r.select.error().transient());
  ASSERT_TRUE(r.closed_with);
  EXPECT_EQ(r.closed_with->kind, ImapErrorKind::Unavailable);
}

TEST(ImapClient, BearerTokensAndTheirErrorChallenge) {
  std::string ip = deliverd::testing::free_loopback_ip(993);
  ImapStub::Options o;
  o.host = ip;
  o.port = 993;
  o.token = "ya29.good";
  ImapStub stub(stub_ca().issue("stub", {ip}, 2), o);
  Loop loop;
  auto c = open(loop, stub_config(core::Security::Tls), ip, 993, ip);
  Wait<core::Ok> expired, bearer_bad, bearer_good, good;
  c->client->login(ImapCredentials::with_token("alice", "ya29.expired"), expired.cb());
  c->client->login(ImapCredentials::with_token("alice", "ya29.expired", ImapAuthMethod::OAuthBearer), bearer_bad.cb());
  c->client->login(ImapCredentials::with_token("alice", "ya29.good", ImapAuthMethod::OAuthBearer), bearer_good.cb());
  c->client->login(ImapCredentials::with_token("alice", "ya29.good"), good.cb());
  ASSERT_TRUE(loop.run_until([&] { return good.ready(); }));
  // XOAUTH2's error challenge is answered with an empty response, OAUTHBEARER's with ^A; the
  // server's NO that follows is the failure.
  ASSERT_FALSE(expired.result->ok());
  EXPECT_EQ(expired.result->error().kind, ImapErrorKind::LoginFailed) << describe(expired.result->error());
  EXPECT_EQ(expired.result->error().code, Code::AuthenticationFailed);
  ASSERT_FALSE(bearer_bad.result->ok());
  EXPECT_EQ(bearer_bad.result->error().kind, ImapErrorKind::LoginFailed);
  EXPECT_TRUE(bearer_good.result->ok()) << describe(bearer_good.result->error());
  EXPECT_TRUE(good.result->ok()) << describe(good.result->error());
  std::string log = stub.log();
  EXPECT_NE(log.find("AUTHENTICATE XOAUTH2 alice fail\nANSWER \n"), std::string::npos) << log;
  EXPECT_NE(log.find("AUTHENTICATE OAUTHBEARER alice fail\nANSWER AQ==\n"), std::string::npos) << log;
  EXPECT_NE(log.find("AUTHENTICATE OAUTHBEARER alice ok"), std::string::npos) << log;
  EXPECT_NE(log.find("AUTHENTICATE XOAUTH2 alice ok"), std::string::npos) << log;
  EXPECT_EQ(log.find("LOGIN alice"), std::string::npos) << log;  // a token never falls back to a password
}

TEST(ImapClient, IdleIsReissuedBeforeItsTimeWithoutEndingForTheCaller) {
  std::string ip = deliverd::testing::free_loopback_ip(143);
  ImapStub stub(stub_ca().issue("stub", {ip}, 2), ip, 143);
  Loop loop;
  auto cfg = stub_config(core::Security::StartTls);
  cfg.idle_reissue_ms = 150;
  auto c = open(loop, cfg, ip, 143, ip);
  Wait<core::Ok> login;
  c->client->login(ImapCredentials::with_password("alice", "imap-pass"), login.cb());
  int idle_done = 0;
  c->client->idle([&](const ImapResult<core::Ok>& r) {
    EXPECT_TRUE(r.ok());
    ++idle_done;
  });
  auto idles = [&] {
    std::string log = stub.log();
    size_t n = 0;
    for (size_t at = log.find("CMD IDLE"); at != std::string::npos; at = log.find("CMD IDLE", at + 1)) ++n;
    return n;
  };
  ASSERT_TRUE(loop.run_until([&] { return idles() >= 3; }));
  EXPECT_EQ(idle_done, 0);
  EXPECT_TRUE(c->client->has_capability("IDLE"));  // read again after STARTTLS
  c->client->stop_idle();
  ASSERT_TRUE(loop.run_until([&] { return idle_done == 1; }));
  ASSERT_TRUE(login.result->ok());
  Wait<core::Ok> out;
  c->client->logout(out.cb());
  ASSERT_TRUE(loop.run_until([&] { return c->closed; }));
  EXPECT_NE(stub.log().find("CMD DONE"), std::string::npos);
}

}  // namespace
}  // namespace deliverd::inbound
