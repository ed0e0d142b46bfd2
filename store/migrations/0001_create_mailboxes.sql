-- Sending mailboxes. password_enc is sealed with SecretBox (AES-256-GCM, the mailbox id as
-- associated data); the plaintext never reaches the database.
CREATE TABLE mailboxes (
  id           text PRIMARY KEY,
  account      text NOT NULL,
  email        text NOT NULL,
  smtp_host    text NOT NULL,
  smtp_port    integer NOT NULL CHECK (smtp_port IN (25, 465, 587, 2525)),
  security     text NOT NULL DEFAULT 'starttls' CHECK (security IN ('none', 'starttls', 'tls')),
  username     text,
  password_enc bytea,
  mode         text NOT NULL DEFAULT 'relay',
  paused       boolean NOT NULL DEFAULT false,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX mailboxes_account_idx ON mailboxes (account);
