-- delivery_events keeps [postgres] events_retention_days; older rows are removed in batches.
-- When a job's rows go, its last outcome stays here for as long again, so the API can tell
-- "aged out" from "never seen". No recipient, no reply text: erasure has nothing to find here
-- beyond the account, which erase_account removes.
CREATE TABLE delivery_event_tombstones (
  job_id         text NOT NULL,
  account        text NOT NULL,
  last_status    text NOT NULL,
  last_event_at  timestamptz NOT NULL,
  aged_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, account)
);
CREATE INDEX delivery_event_tombstones_aged_idx ON delivery_event_tombstones (aged_at);
