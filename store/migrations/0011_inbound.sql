-- What comes back to a sending mailbox (inbound/): every delivered message's Message-ID is kept
-- with its event, so a bounce, complaint or reply read over IMAP names the job it is about. The
-- index serves that lookup only, so it holds only rows that have an id.
ALTER TABLE delivery_events ADD COLUMN message_id text;
CREATE INDEX delivery_events_message_id ON delivery_events (account, mailbox, message_id)
  WHERE message_id IS NOT NULL;
-- The fallback correlation (a notice without the returned headers, by recipient within a time
-- window) uses delivery_events_recipient_idx (account, recipient_sha256) from 0005.

-- Where each mailbox's watcher stands: the folder's UIDVALIDITY and the last UID read, so each
-- message is read once across restarts and daemons; and what the watcher is doing, for the API.
CREATE TABLE inbound_watch (
  account      text NOT NULL,
  mailbox      text NOT NULL,
  uid_validity bigint NOT NULL DEFAULT 0,
  last_uid     bigint NOT NULL DEFAULT 0,
  state        text NOT NULL DEFAULT 'connecting',
  last_error   text NOT NULL DEFAULT '',
  owner        text NOT NULL DEFAULT '',
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (account, mailbox),
  FOREIGN KEY (account, mailbox) REFERENCES mailboxes (account, id) ON DELETE CASCADE
);
