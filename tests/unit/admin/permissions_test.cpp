// Roles, scopes and key-creation rules; key format.
#include "admin/permissions.h"

#include <gtest/gtest.h>

#include <set>

#include "admin/auth.h"
#include "queue/job.h"
#include "store/api_keys.h"

namespace deliverd::admin {
namespace {

Principal principal(const std::string& role, const std::string& account = "", const std::string& scopes = "") {
  store::ApiKey k;
  k.id = "key_x";
  k.role = role;
  k.account = account;
  k.scopes = scopes;
  return principal_for(k);
}

TEST(Permissions, ReadonlyNeverWritesAndUserNeverManagesKeys) {
  for (int r = 0; r < kResourceCount; ++r) {
    auto res = static_cast<Resource>(r);
    EXPECT_FALSE(principal("readonly", "a").can(res, Access::Write)) << to_string(res);
    EXPECT_TRUE(principal("owner").can(res, Access::Write));
    EXPECT_TRUE(principal("admin").can(res, Access::Read));
  }
  EXPECT_FALSE(principal("user", "a").can(Resource::Keys, Access::Read));
  EXPECT_FALSE(principal("user", "a").can(Resource::Keys, Access::Write));
  EXPECT_TRUE(principal("user", "a").can(Resource::Mailboxes, Access::Write));
  EXPECT_TRUE(principal("readonly", "a").can(Resource::Suppressions, Access::Read));
  EXPECT_EQ(role_permissions("root"), 0u);
}

TEST(Permissions, ScopesNarrowTheRoleAndNeverWidenIt) {
  auto p = principal("user", "a", "suppressions:read");
  EXPECT_TRUE(p.can(Resource::Suppressions, Access::Read));
  EXPECT_FALSE(p.can(Resource::Suppressions, Access::Write));
  EXPECT_FALSE(p.can(Resource::Mailboxes, Access::Read));
  EXPECT_FALSE(principal("readonly", "a", "keys:write mailboxes:write").can(Resource::Keys, Access::Write));
  EXPECT_EQ(principal("owner", "", "nonsense").permissions, 0u);  // unparseable grants nothing
}

TEST(Permissions, ParseScopesNamesTheBadOne) {
  auto ok = parse_scopes("mailboxes:read, suppressions:write");
  ASSERT_TRUE(ok);
  EXPECT_EQ(scopes_to_string(*ok), "mailboxes:read suppressions:write");
  auto bad = parse_scopes("mailboxes:read mailboxes:delete");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().find("mailboxes:delete"), std::string::npos);
  EXPECT_FALSE(parse_scopes(""));
  EXPECT_FALSE(parse_scopes("stuff"));
}

TEST(Permissions, KeyCreationRules) {
  store::ApiKeySpec s{"owner", "", "", "", "", ""};
  EXPECT_FALSE(check_new_key(principal("owner"), s, 0));
  s = {"owner", "", "", "", "", ""};
  ASSERT_TRUE(check_new_key(principal("admin"), s, 0));
  EXPECT_EQ(check_new_key(principal("admin"), s, 0)->status, 403);
  s = {"admin", "", "", "", "", ""};
  EXPECT_FALSE(check_new_key(principal("admin"), s, 0));
  s = {"user", "", "", "", "", ""};
  EXPECT_EQ(check_new_key(principal("admin"), s, 0)->status, 400);  // no account
  s = {"user", "b", "", "", "", ""};
  EXPECT_EQ(check_new_key(principal("admin", "a"), s, 0)->status, 403);  // another account
  s = {"user", "", "", "", "", ""};
  EXPECT_FALSE(check_new_key(principal("admin", "a"), s, 0));  // inherits the creator's account
  EXPECT_EQ(s.account, "a");
  s = {"readonly", "a", "mailboxes:write", "", "", ""};
  EXPECT_EQ(check_new_key(principal("owner"), s, 0)->status, 400);
  s = {"admin", "", "", "", "", ""};
  EXPECT_EQ(check_new_key(principal("admin", "", "keys:write"), s, 0)->status, 403);  // more than it holds
  s = {"user", "a", "", "", "", ""};
  EXPECT_EQ(check_new_key(principal("user", "a"), s, 0)->status, 403);
  s = {"superuser", "", "", "", "", ""};
  EXPECT_EQ(check_new_key(principal("owner"), s, 0)->status, 400);

  store::ApiKey owner_key;
  owner_key.role = "owner";
  EXPECT_TRUE(check_revoke(principal("admin"), owner_key));
  EXPECT_FALSE(check_revoke(principal("owner"), owner_key));
  store::ApiKey other;
  other.role = "user";
  other.account = "b";
  EXPECT_EQ(check_revoke(principal("admin", "a"), other)->status, 404);
}

TEST(Permissions, AKeyNeverOutlivesItsCreator) {
  store::ApiKey k;
  k.id = "key_parent";
  k.role = "admin";
  k.expires_at = "2030-01-01T00:00:00Z";
  Principal parent = principal_for(k);
  int64_t now = 0;
  ASSERT_TRUE(queue::parse_rfc3339_ms("2029-01-01T00:00:00Z", now));
  store::ApiKeySpec s{"user", "a", "", "", "", ""};
  EXPECT_FALSE(check_new_key(parent, s, now));
  EXPECT_EQ(s.expires_at, "2030-01-01T00:00:00Z") << "no expiry asked: the creator's";
  s.expires_at = "2029-06-01T00:00:00Z";
  EXPECT_FALSE(check_new_key(parent, s, now));
  EXPECT_EQ(s.expires_at, "2029-06-01T00:00:00Z") << "an earlier expiry stays";
  s.expires_at = "2031-01-01T00:00:00Z";
  auto later = check_new_key(parent, s, now);
  ASSERT_TRUE(later);
  EXPECT_EQ(later->status, 400);
  EXPECT_NE(later->message.find("2030-01-01T00:00:00Z"), std::string::npos) << later->message;
  s.expires_at = "2028-01-01T00:00:00Z";
  EXPECT_EQ(check_new_key(parent, s, now)->status, 400) << "in the past";
  // A creator without expiry leaves the choice to the request.
  store::ApiKeySpec open{"user", "a", "", "", "", ""};
  EXPECT_FALSE(check_new_key(principal("admin"), open, now));
  EXPECT_EQ(open.expires_at, "");
}

TEST(ApiKeyFormat, GeneratedKeysAreWellFormedAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto k = store::generate_api_key();
    ASSERT_EQ(k.token.size(), store::kApiKeyLength);
    auto prefix = store::api_key_prefix(k.token);
    ASSERT_TRUE(prefix);
    EXPECT_EQ(*prefix, k.key.prefix);
    EXPECT_EQ(k.key.id, "key_" + k.key.prefix);
    EXPECT_TRUE(store::api_key_matches(k.token, k.key.token_sha256));
    EXPECT_TRUE(seen.insert(k.token).second);
  }
  auto k = store::generate_api_key();
  std::string wrong = k.token;
  wrong.back() = wrong.back() == 'a' ? 'b' : 'a';
  EXPECT_FALSE(store::api_key_matches(wrong, k.key.token_sha256));
  EXPECT_FALSE(store::api_key_matches(k.token, "short"));
  EXPECT_FALSE(store::api_key_prefix(""));
  EXPECT_FALSE(store::api_key_prefix("dlv_" + std::string(12, 'g') + "_" + std::string(64, 'a')));
  EXPECT_FALSE(store::api_key_prefix("xyz_" + std::string(12, 'a') + "_" + std::string(64, 'a')));
  EXPECT_FALSE(store::api_key_prefix("dlv_" + std::string(12, 'a') + "-" + std::string(64, 'a')));
  EXPECT_FALSE(store::api_key_prefix(k.token + "0"));
}

}  // namespace
}  // namespace deliverd::admin
