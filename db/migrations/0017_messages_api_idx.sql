--! no-transaction
-- The `api` filter of `GET /v1/messages` (DESIGN §6: ?api=cxml|native, in either order;
-- src/messages/messages.repository.ts, listMessages). Runs outside a transaction (the first
-- line) so the indexes are built CONCURRENTLY: callbacks keep being recorded and messages looked
-- up during the build, which reads messages twice per index and waits for transactions already
-- running.
--
-- Why: 0007 dropped messages_api_idx on the assumption of an even mix of the two APIs ("on
-- average one row skipped per row returned"). Real deployments use one API almost entirely, so
-- a page of the other one walked messages_activity_idx (or messages_created_idx) and skipped
-- every message of the common API: 200 001 rows read for 5 native messages among 200 000 in
-- test/api/messages-list-api-filter.test.ts, the whole table on every poll of a dashboard's
-- "native" tab (DESIGN §4: no sequential scan at 10 million events; 503 query_timeout at
-- scale). One index per order, each a single range per value: a page reads in proportion to
-- the page whatever the mix.
--
-- * messages_api_idx (api, last_event_at DESC, id DESC): the activity order, as in 0001.
-- * messages_api_created_idx (api, created_at DESC, id DESC): the created order.
--
-- The cost: one more index entry each per message update that is not HOT (every insert, and
-- every update that moves last_event_at, which is indexed already by messages_activity_idx and
-- the per-column indexes), so no update that was HOT stops being one: `api` never changes and
-- created_at is indexed by messages_created_idx. Measured in docs/scaling.md.
--
-- Additive: older releases neither read nor mind them (oldest_reader unchanged). Safe to run
-- again (the runner does after a crash): an index an interrupted concurrent build left INVALID
-- is dropped and built anew; a valid one is kept (IF NOT EXISTS).
SET lock_timeout = '5s';

DO $$
DECLARE
  leftover regclass;
BEGIN
  -- In its table's schema, where CREATE INDEX puts it: an index of that name in another schema
  -- (a second sw-status in the same database, mid-build) is not this one's to judge or drop.
  FOR leftover IN
    SELECT i.indexrelid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    WHERE c.relname IN ('messages_api_idx', 'messages_api_created_idx') AND NOT i.indisvalid
      AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = 'messages'::regclass)
  LOOP
    -- Not CONCURRENTLY (not allowed in a DO block): an invalid index is never read, and the
    -- drop holds its lock for milliseconds; lock_timeout fails it rather than queue writers.
    EXECUTE format('DROP INDEX %s', leftover);
  END LOOP;
END
$$;

-- No lock_timeout for the builds (see 0010): waiting for older transactions blocks nothing.
-- Zero, not RESET: RESET returns to the role's or the database's default, and an operator's
-- shorter lock_timeout or statement_timeout there (honoured by the service) would cancel the
-- builds' waits just the same. The runner's RESET ALL after this file ends both.
SET lock_timeout = 0;
SET statement_timeout = 0;

CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_api_idx
  ON messages (api, last_event_at DESC, id DESC);

CREATE INDEX CONCURRENTLY IF NOT EXISTS messages_api_created_idx
  ON messages (api, created_at DESC, id DESC);
