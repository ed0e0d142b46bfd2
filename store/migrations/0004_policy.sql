-- Sending policy (issue 6). Per-mailbox overrides of the [policy] defaults: NULL means "use the
-- daemon's default", so changing a default reaches every mailbox that never overrode it.
ALTER TABLE mailboxes
  ADD COLUMN ramp_start        integer CHECK (ramp_start >= 0),
  ADD COLUMN ramp_step         integer CHECK (ramp_step >= 0),
  ADD COLUMN ramp_max          integer CHECK (ramp_max >= 0),
  ADD COLUMN warmup_start      date,
  ADD COLUMN min_gap_s         integer CHECK (min_gap_s >= 0),
  ADD COLUMN per_hour          integer CHECK (per_hour >= 0),
  ADD COLUMN per_minute        integer CHECK (per_minute >= 0),
  ADD COLUMN timezone          text,
  -- Sending window in the mailbox's time zone: bit 0 = Monday … bit 6 = Sunday; hours [start, end).
  ADD COLUMN window_days       integer CHECK (window_days BETWEEN 0 AND 127),
  ADD COLUMN window_start_hour integer CHECK (window_start_hour BETWEEN 0 AND 23),
  ADD COLUMN window_end_hour   integer CHECK (window_end_hour BETWEEN 1 AND 24),
  -- Set after repeated AUTH failures; only an operator clears it (unlike paused, set by the bounce guard).
  ADD COLUMN disabled          boolean NOT NULL DEFAULT false;

-- Every change to the suppression list is announced, so each daemon's in-memory copy follows at
-- once. Payload: "I|<sha256 hex>|<account>" or "D|…"; the account goes last since it may hold '|'.
CREATE FUNCTION deliverd_suppressions_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM pg_notify('deliverd_suppressions', 'I|' || encode(NEW.address_sha256, 'hex') || '|' || NEW.account);
    RETURN NEW;
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('deliverd_suppressions', 'D|' || encode(OLD.address_sha256, 'hex') || '|' || OLD.account);
    RETURN OLD;
  ELSE
    PERFORM pg_notify('deliverd_suppressions', 'D|' || encode(OLD.address_sha256, 'hex') || '|' || OLD.account);
    PERFORM pg_notify('deliverd_suppressions', 'I|' || encode(NEW.address_sha256, 'hex') || '|' || NEW.account);
    RETURN NEW;
  END IF;
END
$$;

CREATE TRIGGER suppressions_notify AFTER INSERT OR UPDATE OR DELETE ON suppressions
  FOR EACH ROW EXECUTE FUNCTION deliverd_suppressions_notify();

-- TRUNCATE fires no row triggers: announce it so daemons reload the whole list.
CREATE FUNCTION deliverd_suppressions_truncate_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('deliverd_suppressions', 'T||');
  RETURN NULL;
END
$$;

CREATE TRIGGER suppressions_truncate_notify AFTER TRUNCATE ON suppressions
  FOR EACH STATEMENT EXECUTE FUNCTION deliverd_suppressions_truncate_notify();
