--! no-transaction
-- The reconciliation sweep's claim and its statistics by project and step (DESIGN §11;
-- src/reconcile/reconcile.repository.ts, claimDueMessages, sweepStats). Runs outside a
-- transaction (the first line) so the index is built CONCURRENTLY: callbacks keep being
-- recorded and messages looked up during the build, which reads messages twice and waits for
-- transactions already running.
--
-- Why: the claim walked messages_sweep_idx (last_event_at) oldest first and kept the messages
-- whose next step was due and whose project has credentials. Every message older than the first
-- step but waiting for a later one (with the default 10m,1h,6h,24h: one at its 24 h step that is
-- 6–24 h old), and every message of a project without credentials, was read past — index and
-- heap — on every claim of every replica and by every statistics round: at a few million
-- messages a day, 10⁵–10⁶ rows per claim. By project, step and age of the last event, the claim
-- reads one range per (project with credentials, step): only due messages.
--
-- The cost: sweep_step becomes an indexed column, so a lookup that completes a step is no
-- longer a HOT update (at most RECONCILE_RATE per replica per second; a postponement or a
-- lease, which change no indexed column, still are).
--
-- messages_sweep_idx is kept for now, though this release reads only the new index: the
-- release before claims through it, and during the rollout (its pods still sweeping) or after
-- an image rollback it would otherwise claim by a sequential scan of messages on every poll of
-- every replica — exactly when something already went wrong. It costs one entry per update of
-- a message the sweep may look up. A later release drops it (expand, then contract).
-- oldest_reader unchanged.
--
-- Safe to run again (the runner does after a crash): an index an interrupted concurrent build
-- left INVALID is dropped and built anew; a valid one is kept (IF NOT EXISTS).
SET lock_timeout = '5s';

DO $$
DECLARE
  -- In its table's schema, where CREATE INDEX puts it: an index of that name in another schema
  -- (a second sw-status in the same database, mid-build) is not this one's to judge or drop.
  leftover regclass := (
    SELECT i.indexrelid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE c.relname = 'messages_sweep_due_idx' AND NOT i.indisvalid
      AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'messages'::regclass));
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

-- The predicate is the sweep's (SWEEPABLE in reconcile.repository.ts, and messages_sweep_idx's).
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_sweep_due_idx
  ON messages (project_id, sweep_step, last_event_at)
  WHERE status_rank < 50 AND NOT stuck AND (kind IS DISTINCT FROM 'mms' OR status <> 'sent');
