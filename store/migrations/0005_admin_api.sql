-- Admin API (issue 8): API keys, the audit log, delivery outcomes, and suppressions that may be
-- reduced to their hash when an account or one address is erased (GDPR).

-- A key is "dlv_<prefix>_<secret>". Only the SHA-256 of the whole token is kept; the prefix is
-- stored in clear so a presented key is found with one indexed lookup.
CREATE TABLE api_keys (
  id           text PRIMARY KEY,
  prefix       text NOT NULL UNIQUE,
  token_sha256 bytea NOT NULL CHECK (length(token_sha256) = 32),
  role         text NOT NULL CHECK (role IN ('owner', 'admin', 'user', 'readonly')),
  account      text,
  scopes       text,              -- space-separated "resource:read|write"; NULL = everything the role allows
  name         text,
  created_by   text,              -- key id of the creator, or 'cli'
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz,
  last_used_at timestamptz,
  revoked_at   timestamptz,
  CHECK (role IN ('owner', 'admin') OR account IS NOT NULL)
);
CREATE INDEX api_keys_account_idx ON api_keys (account);

-- Every write through the API: who (key id, role), what (action, target), for which account,
-- from where, when.
CREATE TABLE audit_log (
  id       bigserial PRIMARY KEY,
  at       timestamptz NOT NULL DEFAULT now(),
  key_id   text,
  role     text,
  account  text,
  action   text NOT NULL,
  target   text,
  peer_ip  text,
  status   integer
);
CREATE INDEX audit_log_account_idx ON audit_log (account, at);

-- One row per final or deferred outcome of a job, written by the daemon.
CREATE TABLE delivery_events (
  id               bigserial PRIMARY KEY,
  job_id           text NOT NULL,
  account          text NOT NULL,
  mailbox          text,
  recipient        text,             -- NULL once the address was erased
  recipient_sha256 bytea CHECK (recipient_sha256 IS NULL OR length(recipient_sha256) = 32),
  status           text NOT NULL,
  reply_code       integer,
  enhanced_code    text,
  reply_text       text,
  host             text,
  ip               text,
  tls_version      text,
  tls_cipher       text,
  attempt          integer NOT NULL DEFAULT 1,
  duration_ms      bigint,
  detail           text,
  created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_events_job_idx ON delivery_events (job_id, id);
CREATE INDEX delivery_events_account_idx ON delivery_events (account, id);
CREATE INDEX delivery_events_recipient_idx ON delivery_events (account, recipient_sha256);

-- Erasure keeps a suppression as its hash only, so the address is never mailed again without
-- the address itself being kept.
ALTER TABLE suppressions ALTER COLUMN address DROP NOT NULL;

-- The optional IMAP login a mailbox is tested with (993 implicit TLS, 143 STARTTLS); the
-- password is sealed like the SMTP one, with "<id>/imap" as associated data.
ALTER TABLE mailboxes
  ADD COLUMN imap_host         text,
  ADD COLUMN imap_port         integer CHECK (imap_port IN (143, 993)),
  ADD COLUMN imap_username     text,
  ADD COLUMN imap_password_enc bytea;
