--! no-transaction
-- The relay's claim host by host (DESIGN §10: a slow or failing destination never delays the
-- others; src/relay/relay.repository.ts, claimDueJobs). Runs outside a transaction (the first
-- line) so the index is built CONCURRENTLY: callbacks keep being recorded and relayed during
-- the build, which reads relay_jobs twice and waits for transactions already running.
--
-- Why: the claim took due jobs in due order (relay_jobs_due_idx), so the jobs of a host with no
-- free slot — paused by its circuit breaker, or slow — were read past on every claim: with a
-- backlog of 300 000 jobs for one host, 100-150 ms of every claim. Per host, pending jobs in due
-- order let the claim walk the hosts (one descent each) and read only the first due jobs of
-- each. relay_jobs_due_idx stays: the outbox's statistics read it (pending jobs, the next due).
-- One more index entry per relay job written (and per retry): 20 MB per 360 000 pending jobs.
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
    WHERE c.relname = 'relay_jobs_host_due_idx' AND NOT i.indisvalid
      AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'relay_jobs'::regclass));
BEGIN
  IF leftover IS NOT NULL THEN
    -- Not CONCURRENTLY (not allowed in a DO block): an invalid index is never read, and the
    -- drop holds its lock for milliseconds; lock_timeout fails it rather than queue writers.
    EXECUTE format('DROP INDEX %s', leftover);
  END IF;
END
$$;

-- No lock_timeout for the build: it waits for every transaction older than it, whatever
-- table they read (a backup, a long report), and lock_timeout would cancel that wait after 5 s
-- and fail the migration. Waiting blocks no reads or writes: the build's own lock (SHARE
-- UPDATE EXCLUSIVE) conflicts only with schema changes and VACUUM.
-- Zero, not RESET: RESET returns to the role's or the database's default, and an operator's
-- shorter lock_timeout or statement_timeout there (honoured by the service) would cancel the
-- build's wait just the same. The runner's RESET ALL after this file ends both.
SET lock_timeout = 0;
SET statement_timeout = 0;

CREATE INDEX CONCURRENTLY IF NOT EXISTS relay_jobs_host_due_idx
  ON relay_jobs (host, next_attempt_at, id) WHERE state = 'pending';
