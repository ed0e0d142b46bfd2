-- Every change to mailboxes is announced, so a daemon's in-memory copy follows at once whoever
-- made it: the platform's web app, `deliverd mailbox add`, or another daemon's admin API. One
-- notification per statement (the payload is empty): daemons reload the whole list, which is
-- small, and PostgreSQL folds identical notifications of one transaction into one.
CREATE FUNCTION deliverd_mailboxes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('deliverd_mailboxes', '');
  RETURN NULL;
END
$$;

CREATE TRIGGER mailboxes_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON mailboxes
  FOR EACH STATEMENT EXECUTE FUNCTION deliverd_mailboxes_notify();
