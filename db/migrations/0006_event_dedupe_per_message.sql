--! no-transaction
-- A leaner write path, part 1 (additive): the unique index the write path now deduplicates on,
-- and room on `messages` pages for HOT updates. Runs outside a transaction (the first line) so
-- the index is built CONCURRENTLY: writes and reads go on during the build, which reads the
-- table twice (about 1 s per million events here) and waits for transactions already running.
--
-- Why (message_id, dedupe_key): the write path found an event by its dedupe key alone (a
-- global unique index) and a message's history by (message_id, seq) — two random index
-- writes per event. The dedupe key is sha256 over the message id and the event's identity
-- (src/messages/status-event.ts), so per message it is exactly as unique, and one index now
-- serves both: ON CONFLICT (message_id, dedupe_key), and a message's history and the feed's
-- fold by message_id (a message has a handful of events: sorting them by seq is free).
-- It is also the shape partitioning or sharding by message id needs: a unique key must
-- include the partition / distribution key (docs/scaling.md).
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
    WHERE c.relname = 'status_events_message_dedupe_idx' AND NOT i.indisvalid
      AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'status_events'::regclass));
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

CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS status_events_message_dedupe_idx
  ON status_events (message_id, dedupe_key);

-- A message row is updated once or twice per batch that moves it. Leaving 10% of each page
-- free lets an update that changes no indexed column (the write path's lock-and-stamp of
-- applied_tx, reconciliation's sweep columns) stay on the page as a HOT update: no index
-- entry written. Applies to pages written from now on (existing ones are not rewritten);
-- takes a SHARE UPDATE EXCLUSIVE lock, which blocks no reads or writes.
ALTER TABLE messages SET (fillfactor = 90);
