-- Every change to mailboxes is announced, so a daemon's in-memory copy follows at once whoever
-- made it: the platform's web app, `deliverd mailbox add`, another daemon's admin API, the policy
-- gate pausing a mailbox. The payload is the id of the row (both ids when one is renamed);
-- TRUNCATE fires no row triggers and says "" (read everything again). PostgreSQL folds identical
-- notifications of one transaction into one.
CREATE FUNCTION deliverd_mailboxes_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    PERFORM pg_notify('deliverd_mailboxes', '');
    RETURN NULL;
  END IF;
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    PERFORM pg_notify('deliverd_mailboxes', OLD.id);
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    PERFORM pg_notify('deliverd_mailboxes', NEW.id);
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER mailboxes_notify AFTER INSERT OR UPDATE OR DELETE ON mailboxes
  FOR EACH ROW EXECUTE FUNCTION deliverd_mailboxes_notify();

CREATE TRIGGER mailboxes_truncate_notify AFTER TRUNCATE ON mailboxes
  FOR EACH STATEMENT EXECUTE FUNCTION deliverd_mailboxes_notify();
