-- Addresses an account must never mail again (one-click unsubscribe, hard bounces, operators).
-- address keeps the local part as given and the domain lower-cased; address_sha256 is the
-- SHA-256 of that normalised form, so lookups and the key stay fixed-width.
CREATE TABLE suppressions (
  account        text NOT NULL,
  address        text NOT NULL,
  address_sha256 bytea NOT NULL CHECK (length(address_sha256) = 32),
  reason         text NOT NULL,
  source         text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (account, address_sha256)
);
