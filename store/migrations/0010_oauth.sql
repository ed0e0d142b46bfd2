-- OAuth 2.0 mailboxes (Gmail, Microsoft 365): the daemon refreshes their access tokens itself.
-- oauth_provider names an [[oauth]] entry of the config; the refresh token is sealed like a
-- password (store::MailboxSecret::OAuthRefresh). A refresh token that the provider rotated is
-- written to oauth_pending_enc before the access token that came with it is used, and replaces
-- oauth_refresh_enc once it has worked, so a daemon that dies at any point loses neither.
ALTER TABLE mailboxes ADD COLUMN oauth_provider text;
ALTER TABLE mailboxes ADD COLUMN oauth_refresh_enc bytea;
ALTER TABLE mailboxes ADD COLUMN oauth_pending_enc bytea;
-- What the API shows of the last refresh (any daemon's).
ALTER TABLE mailboxes ADD COLUMN oauth_expires_at timestamptz;
ALTER TABLE mailboxes ADD COLUMN oauth_refreshed_at timestamptz;
ALTER TABLE mailboxes ADD COLUMN oauth_refresh_result text;
ALTER TABLE mailboxes ADD CONSTRAINT mailboxes_oauth_grant
  CHECK ((oauth_provider IS NULL) = (oauth_refresh_enc IS NULL));
ALTER TABLE mailboxes DROP CONSTRAINT mailboxes_no_plaintext_credentials;
ALTER TABLE mailboxes ADD CONSTRAINT mailboxes_no_plaintext_credentials
  CHECK (security <> 'none' OR plaintext_auth
         OR (password_enc IS NULL AND oauth_token_enc IS NULL AND oauth_refresh_enc IS NULL));

-- Why the daemon disabled a mailbox: auth_failures (repeated AUTH refusals) or oauth_revoked (the
-- provider refused the refresh token: the user must connect the mailbox again). NULL while enabled.
ALTER TABLE mailboxes ADD COLUMN disabled_reason text;
UPDATE mailboxes SET disabled_reason = 'auth_failures' WHERE disabled;
