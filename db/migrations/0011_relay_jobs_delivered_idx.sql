--! no-transaction
-- Retention of delivered relay jobs (RELAY_KEEP_DELIVERED_DAYS; src/retention,
-- removeDeliveredRelayJobs). Runs outside a transaction (the first line) so the index is built
-- CONCURRENTLY: callbacks keep being recorded and relayed during the build.
--
-- Why: the cleanup asks for delivered jobs older than its horizon, and no index held
-- delivered_at: every round, every minute on every replica, read the whole table to find
-- nothing (78 ms at 300 000 jobs, and growing with the table). Delivered jobs by delivery time
-- let it read only the ones it removes. One more index entry per job delivered (a relay job's
-- delivery is already a non-HOT update: its state is indexed).
--
-- Additive: older releases neither read nor mind it (oldest_reader unchanged). Safe to run again
-- (the runner does after a crash): an index an interrupted concurrent build left INVALID is
-- dropped and built anew; a valid one is kept (IF NOT EXISTS).
SET lock_timeout = '5s';

DO $$
DECLARE
  -- In its table's schema, where CREATE INDEX puts it: an index of that name in another schema
  -- (a second sw-status in the same database, mid-build) is not this one's to judge or drop.
  leftover regclass := (
    SELECT i.indexrelid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE c.relname = 'relay_jobs_delivered_idx' AND NOT i.indisvalid
      AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'relay_jobs'::regclass));
BEGIN
  IF leftover IS NOT NULL THEN
    -- Not CONCURRENTLY (not allowed in a DO block): an invalid index is never read, and the
    -- drop holds its lock for milliseconds; lock_timeout fails it rather than queue writers.
    EXECUTE format('DROP INDEX %s', leftover);
  END IF;
END
$$;

-- No lock_timeout for the build (see 0010): waiting for older transactions blocks nothing.
-- Zero, not RESET: RESET returns to the role's or the database's default, and an operator's
-- shorter lock_timeout or statement_timeout there (honoured by the service) would cancel the
-- build's wait just the same. The runner's RESET ALL after this file ends both.
SET lock_timeout = 0;
SET statement_timeout = 0;

CREATE INDEX CONCURRENTLY IF NOT EXISTS relay_jobs_delivered_idx
  ON relay_jobs (delivered_at) WHERE state = 'delivered';
