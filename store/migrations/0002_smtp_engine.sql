-- SMTP engine (issue 3): OAuth access tokens for AUTH XOAUTH2, sealed with SecretBox like the
-- password (associated data "<id>/oauth", so one secret cannot be swapped in for the other), and
-- the sending mode: relay (through smtp_host) or mx (straight to the recipient's MX).
ALTER TABLE mailboxes ADD COLUMN oauth_token_enc bytea;
UPDATE mailboxes SET mode = 'mx' WHERE mode = 'direct';
