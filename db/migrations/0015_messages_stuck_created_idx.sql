--! no-transaction
-- The stuck count of `GET /v1/stats` (DESIGN §6: stuck messages first seen in the window;
-- src/stats/stats.repository.ts, countStuck). Runs outside a transaction (the first line) so the
-- index is built CONCURRENTLY: callbacks keep being recorded and messages looked up during the
-- build, which reads messages twice and waits for transactions already running.
--
-- Why: the count filters `stuck AND created_at in [since, until)`, and no index served both.
-- messages_stuck_idx (0004) holds the stuck messages by last_event_at, and messages_created_idx
-- (0003) every message by created_at: so PostgreSQL read every stuck message ever kept (they
-- accumulate until retention removes them: a stuck message waits for an event that never
-- comes), or every message of the window, or the whole table — on every stats request, which
-- the status page polls (40 000 rows to find 3 in test/stats/stuck-count-cost.test.ts; DESIGN
-- §4: no sequential scan at 10 million events). Stuck messages by created_at: the count reads
-- only the window's stuck messages.
--
-- Keyed on created_at alone, not (api, created_at): the unfiltered count (the status page's)
-- then reads one range; the `api` filter is applied to the window's stuck messages, few by
-- nature. With api first, the unfiltered count would read every stuck message ever kept again
-- (no skip scan before PostgreSQL 18), to spare the filtered one a handful of rows.
--
-- The cost: one entry per stuck message, written by the update that marks it stuck or that a new
-- event makes unstuck. Both columns are indexed already — created_at by messages_created_idx,
-- stuck in the predicates of messages_sweep_idx, messages_stuck_idx and messages_sweep_due_idx —
-- so no update that was HOT stops being one, and a message inserted (never stuck) only has the
-- predicate checked.
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
    WHERE c.relname = 'messages_stuck_created_idx' AND NOT i.indisvalid
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

-- The predicate is countStuck's (`stuck = true`), which the planner matches to `WHERE stuck`.
CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_stuck_created_idx
  ON messages (created_at)
  WHERE stuck;
