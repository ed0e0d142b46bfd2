-- The tenant boundary: what one account may do must not reach another's data, limits or secrets.

-- Mailbox ids are unique per account: a job names its mailbox within its account, so no account
-- can take, probe or learn another's ids.
ALTER TABLE mailboxes DROP CONSTRAINT mailboxes_pkey;
ALTER TABLE mailboxes ADD PRIMARY KEY (account, id);
DROP INDEX IF EXISTS mailboxes_account_idx;  -- the primary key's index serves lookups by account
CREATE INDEX mailboxes_id_idx ON mailboxes (id);

-- No credentials over plaintext: a mailbox with security 'none' holds no password and no token,
-- unless a daemon configured with [smtp] allow_plaintext_auth (a lab rig) stored it and marked it.
-- Rows that already had credentials without TLS are marked, so the upgrade loses nothing; a
-- daemon without allow_plaintext_auth still never sends them (the session refuses AUTH before TLS).
ALTER TABLE mailboxes ADD COLUMN plaintext_auth boolean NOT NULL DEFAULT false;
UPDATE mailboxes SET plaintext_auth = true
  WHERE security = 'none' AND (password_enc IS NOT NULL OR oauth_token_enc IS NOT NULL);
ALTER TABLE mailboxes ADD CONSTRAINT mailboxes_no_plaintext_credentials
  CHECK (security <> 'none' OR plaintext_auth OR (password_enc IS NULL AND oauth_token_enc IS NULL));

-- Who paused a mailbox decides who may resume it: the tenant (an account-bound key), an operator
-- (admin or owner key, the command line) or the daemon (bounce guard). A pause of unknown origin
-- counts as the daemon's, the strictest.
ALTER TABLE mailboxes ADD COLUMN paused_by text CHECK (paused_by IN ('tenant', 'operator', 'daemon'));
UPDATE mailboxes SET paused_by = 'daemon' WHERE paused;

-- Change notifications name the account as well as the id: "<length of id>:<id><account>", so
-- neither may hold a separator that makes one pair read as another.
CREATE OR REPLACE FUNCTION deliverd_mailboxes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    PERFORM pg_notify('deliverd_mailboxes', '');
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    PERFORM pg_notify('deliverd_mailboxes', length(OLD.id) || ':' || OLD.id || OLD.account);
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    PERFORM pg_notify('deliverd_mailboxes', length(NEW.id) || ':' || NEW.id || NEW.account);
  END IF;
  RETURN NULL;
END
$$;

-- Suppressions written by an erasure say so in their source, like one-click and bounce ones:
-- account-bound keys may not remove them.
UPDATE suppressions SET source = 'erasure' WHERE reason = 'erased' AND source = 'api';

-- A key never outlives the key that made it: revoking a key revokes the keys it made, and a key
-- expires no later than its maker. Keys made before this rule get it now: their makers' revocation
-- and expiry reach them. (created_by is 'cli' or a key id; depth is bounded against a cycle
-- written into the table by hand.)
WITH RECURSIVE chain(id, revoked, expires, depth) AS (
  SELECT id, revoked_at IS NOT NULL, expires_at, 0 FROM api_keys
    WHERE created_by IS NULL OR created_by NOT IN (SELECT id FROM api_keys)
  UNION ALL
  SELECT k.id, c.revoked OR k.revoked_at IS NOT NULL, LEAST(c.expires, k.expires_at), c.depth + 1
    FROM api_keys k JOIN chain c ON k.created_by = c.id WHERE c.depth < 64)
UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL AND id IN (SELECT id FROM chain WHERE revoked);

WITH RECURSIVE chain(id, expires, depth) AS (
  SELECT id, expires_at, 0 FROM api_keys
    WHERE created_by IS NULL OR created_by NOT IN (SELECT id FROM api_keys)
  UNION ALL
  SELECT k.id, LEAST(c.expires, k.expires_at), c.depth + 1
    FROM api_keys k JOIN chain c ON k.created_by = c.id WHERE c.depth < 64)
UPDATE api_keys k SET expires_at = chain.expires FROM chain
  WHERE k.id = chain.id AND chain.expires IS NOT NULL AND (k.expires_at IS NULL OR k.expires_at > chain.expires);
