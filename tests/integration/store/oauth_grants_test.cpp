// OAuth grants against a real PostgreSQL: a grant stored by the command line's upsert is read
// back opened; a rotated refresh token is durable as pending before it is used, replaces the
// current one once it worked, or is forgotten when refused; the refresh record is what the API
// shows; a new grant resets all of that and lifts a disable the revoked grant caused; and the
// providers in use are counted for check-config.
#include <gtest/gtest.h>

#include "store/mailboxes.h"
#include "store/oauth_grants.h"
#include "tests/integration/store/pg_store_test.h"

namespace deliverd::store {
namespace {

SecretBox test_box() {
  std::array<unsigned char, 32> k{};
  k.fill(7);
  return SecretBox::from_key(k);
}

Mailbox oauth_mailbox(const std::string& account, const std::string& id, const std::string& refresh) {
  Mailbox m;
  m.account = account;
  m.id = id;
  m.email = "alice@acme.example";
  m.smtp_host = "smtp.acme.example";
  m.username = "alice@acme.example";
  m.oauth_provider = "google";
  m.oauth_refresh_token = refresh;
  return m;
}

class OAuthGrantsTest : public PgStoreTest {
 protected:
  core::Result<OAuthGrant, std::string> load(const std::string& account, const std::string& id) {
    core::Result<OAuthGrant, std::string> out = core::Err(std::string("no answer"));
    on_loop([&](PgConnection& pg, auto done) {
      load_oauth_grant(pg, box_, account, id, [&, done](core::Result<OAuthGrant, std::string> r) {
        out = std::move(r);
        done();
      });
    });
    return out;
  }
  template <class F>
  bool write(F f) {
    bool ok = false;
    on_loop([&](PgConnection& pg, auto done) {
      f(pg, [&, done](bool r) {
        ok = r;
        done();
      });
    });
    return ok;
  }
  // Copies one account's sealed refresh token onto the other's row (a tampered database).
  void rows_copy_refresh(const std::string& from, const std::string& to) {
    scalar("UPDATE mailboxes SET oauth_refresh_enc = (SELECT oauth_refresh_enc FROM mailboxes WHERE account = '" + from +
           "' AND id = 'mbx_1') WHERE account = '" + to + "' AND id = 'mbx_1' RETURNING 1");
  }
  SecretBox box_ = test_box();
};

TEST_F(OAuthGrantsTest, ARotatedTokenIsPendingUntilItWorkedThenCurrent) {
  ASSERT_TRUE(add_mailbox(pg_.conninfo(), oauth_mailbox("acct_a", "mbx_1", "rt-1"), box_).ok());
  auto g = load("acct_a", "mbx_1");
  ASSERT_TRUE(g) << g.error();
  EXPECT_EQ(g->provider, "google");
  EXPECT_EQ(g->refresh_token, "rt-1");
  EXPECT_EQ(g->pending_refresh_token, "");
  // Sealed, not stored as given.
  EXPECT_EQ(scalar("SELECT position('rt-1' in encode(oauth_refresh_enc, 'escape')) FROM mailboxes"), "0");

  ASSERT_TRUE(write([&](PgConnection& pg, auto cb) { save_oauth_pending(pg, box_, "acct_a", "mbx_1", "rt-2", cb); }));
  g = load("acct_a", "mbx_1");
  ASSERT_TRUE(g) << g.error();
  EXPECT_EQ(g->refresh_token, "rt-1") << "the current token stays until the pending one has worked";
  EXPECT_EQ(g->pending_refresh_token, "rt-2");

  ASSERT_TRUE(write([&](PgConnection& pg, auto cb) { promote_oauth_pending(pg, "acct_a", "mbx_1", cb); }));
  g = load("acct_a", "mbx_1");
  ASSERT_TRUE(g) << g.error();
  EXPECT_EQ(g->refresh_token, "rt-2");
  EXPECT_EQ(g->pending_refresh_token, "");
  EXPECT_FALSE(write([&](PgConnection& pg, auto cb) { promote_oauth_pending(pg, "acct_a", "mbx_1", cb); }))
      << "nothing pending: nothing promoted";

  // A pending token the provider refused is forgotten; the current one stays.
  ASSERT_TRUE(write([&](PgConnection& pg, auto cb) { save_oauth_pending(pg, box_, "acct_a", "mbx_1", "rt-bad", cb); }));
  ASSERT_TRUE(write([&](PgConnection& pg, auto cb) { drop_oauth_pending(pg, "acct_a", "mbx_1", cb); }));
  g = load("acct_a", "mbx_1");
  ASSERT_TRUE(g) << g.error();
  EXPECT_EQ(g->refresh_token, "rt-2");
  EXPECT_EQ(g->pending_refresh_token, "");
}

TEST_F(OAuthGrantsTest, AnotherAccountsMailboxWithTheSameIdIsNotTouched) {
  ASSERT_TRUE(add_mailbox(pg_.conninfo(), oauth_mailbox("acct_a", "mbx_1", "rt-a"), box_).ok());
  ASSERT_TRUE(add_mailbox(pg_.conninfo(), oauth_mailbox("acct_b", "mbx_1", "rt-b"), box_).ok());
  ASSERT_TRUE(write([&](PgConnection& pg, auto cb) { save_oauth_pending(pg, box_, "acct_a", "mbx_1", "rt-a2", cb); }));
  ASSERT_TRUE(write([&](PgConnection& pg, auto cb) { promote_oauth_pending(pg, "acct_a", "mbx_1", cb); }));
  auto b = load("acct_b", "mbx_1");
  ASSERT_TRUE(b) << b.error();
  EXPECT_EQ(b->refresh_token, "rt-b");
  // A token sealed for one account's mailbox does not open as another's.
  rows_copy_refresh("acct_a", "acct_b");
  auto swapped = load("acct_b", "mbx_1");
  ASSERT_FALSE(swapped);
  EXPECT_NE(swapped.error().find("mailbox acct_b/mbx_1: a refresh token does not open"), std::string::npos)
      << swapped.error();
}

TEST_F(OAuthGrantsTest, MissingGrantsAreNamed) {
  auto none = load("acct_a", "nope");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error(), "mailbox acct_a/nope: no such mailbox");
  Mailbox plain = oauth_mailbox("acct_a", "pw", "");
  plain.oauth_provider.clear();
  plain.password = "secret";
  ASSERT_TRUE(add_mailbox(pg_.conninfo(), plain, box_).ok());
  auto no_grant = load("acct_a", "pw");
  ASSERT_FALSE(no_grant);
  EXPECT_EQ(no_grant.error(), "mailbox acct_a/pw: has no OAuth grant");
  EXPECT_FALSE(write([&](PgConnection& pg, auto cb) { save_oauth_pending(pg, box_, "acct_a", "pw", "rt", cb); }))
      << "a mailbox without a grant takes no pending token";
}

TEST_F(OAuthGrantsTest, ANewGrantResetsTheRecordAndLiftsARevokedDisable) {
  ASSERT_TRUE(add_mailbox(pg_.conninfo(), oauth_mailbox("acct_a", "mbx_1", "rt-1"), box_).ok());
  on_loop([&](PgConnection& pg, auto done) {
    record_oauth_refresh(pg, "acct_a", "mbx_1", 1800000000000, "ok", 1800003600000);
    pg.query("SELECT 1", {}, [done](const PgResult&) { done(); });
  });
  EXPECT_EQ(scalar("SELECT oauth_refresh_result || ' ' || extract(epoch FROM oauth_expires_at)::bigint FROM mailboxes"),
            "ok 1800003600");
  // The provider refused the grant: recorded, and the mailbox disabled with that reason.
  on_loop([&](PgConnection& pg, auto done) {
    record_oauth_refresh(pg, "acct_a", "mbx_1", 1800000100000, "oauth_revoked", 0);
    store_mailbox_change(
        pg, "acct_a", "mbx_1", MailboxChange::Disable, PausedBy::Daemon,
        [done](core::Result<ChangeAnswer, std::string>) { done(); }, "oauth_revoked");
  });
  EXPECT_EQ(scalar("SELECT oauth_refresh_result || ' ' || extract(epoch FROM oauth_expires_at)::bigint || ' ' ||"
                   " disabled || ' ' || disabled_reason FROM mailboxes"),
            "oauth_revoked 1800003600 true oauth_revoked")
      << "a failure keeps the last known expiry";
  ASSERT_TRUE(write([&](PgConnection& pg, auto cb) { save_oauth_pending(pg, box_, "acct_a", "mbx_1", "rt-x", cb); }));

  // The user connects the mailbox again: a new grant, nothing of the old one left.
  ASSERT_TRUE(add_mailbox(pg_.conninfo(), oauth_mailbox("acct_a", "mbx_1", "rt-new"), box_).ok());
  EXPECT_EQ(scalar("SELECT coalesce(oauth_refresh_result, 'none') || ' ' || (oauth_expires_at IS NULL) || ' ' ||"
                   " (oauth_pending_enc IS NULL) FROM mailboxes"),
            "none true true");
  auto g = load("acct_a", "mbx_1");
  ASSERT_TRUE(g) << g.error();
  EXPECT_EQ(g->refresh_token, "rt-new");
}

TEST_F(OAuthGrantsTest, AnAuthFailureDisableIsNamedSoAndAnOperatorsResumeClearsIt) {
  ASSERT_TRUE(add_mailbox(pg_.conninfo(), oauth_mailbox("acct_a", "mbx_1", "rt-1"), box_).ok());
  on_loop([&](PgConnection& pg, auto done) {
    store_mailbox_change(pg, "acct_a", "mbx_1", MailboxChange::Disable, PausedBy::Daemon,
                         [done](core::Result<ChangeAnswer, std::string>) { done(); });
  });
  EXPECT_EQ(scalar("SELECT disabled_reason FROM mailboxes"), "auth_failures");
  on_loop([&](PgConnection& pg, auto done) {
    store_mailbox_change(pg, "acct_a", "mbx_1", MailboxChange::Resume, PausedBy::Operator,
                         [done](core::Result<ChangeAnswer, std::string>) { done(); });
  });
  EXPECT_EQ(scalar("SELECT disabled || ' ' || coalesce(disabled_reason, 'none') FROM mailboxes"), "false none");
}

TEST_F(OAuthGrantsTest, TheProvidersInUseAreCounted) {
  ASSERT_TRUE(add_mailbox(pg_.conninfo(), oauth_mailbox("acct_a", "mbx_1", "rt-1"), box_).ok());
  ASSERT_TRUE(add_mailbox(pg_.conninfo(), oauth_mailbox("acct_b", "mbx_1", "rt-1"), box_).ok());
  Mailbox ms = oauth_mailbox("acct_b", "mbx_2", "rt-2");
  ms.oauth_provider = "microsoft";
  ASSERT_TRUE(add_mailbox(pg_.conninfo(), ms, box_).ok());
  auto in_use = oauth_providers_in_use(pg_.conninfo());
  ASSERT_TRUE(in_use) << in_use.error();
  std::vector<std::pair<std::string, int64_t>> want = {{"google", 2}, {"microsoft", 1}};
  EXPECT_EQ(*in_use, want);
}

TEST_F(OAuthGrantsTest, AGrantNeedsItsParts) {
  Mailbox m = oauth_mailbox("acct_a", "mbx_1", "");
  auto r = add_mailbox(pg_.conninfo(), m, box_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "oauth: provider and refresh_token go together");
  m = oauth_mailbox("acct_a", "mbx_1", "rt");
  m.password = "pw";
  r = add_mailbox(pg_.conninfo(), m, box_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "oauth: a mailbox has one kind of credential: password, oauth_token or oauth");
  m = oauth_mailbox("acct_a", "mbx_1", "rt\r\nMAIL FROM:<x>");
  r = add_mailbox(pg_.conninfo(), m, box_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), "oauth.refresh_token: at most 8192 bytes, without NUL, CR or LF");
  m = oauth_mailbox("acct_a", "mbx_1", "rt");
  m.security = core::Security::None;
  r = add_mailbox(pg_.conninfo(), m, box_);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("without TLS"), std::string::npos) << r.error();
}

}  // namespace
}  // namespace deliverd::store
