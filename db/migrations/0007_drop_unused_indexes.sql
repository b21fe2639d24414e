--! no-transaction
-- A leaner write path, part 2 (contract): the indexes 0006 made redundant, and one no query
-- needs. Each one dropped is a random write less per event (or per message change).
--
-- * status_events_dedupe_key_key (the global UNIQUE on dedupe_key): replaced by
--   status_events_message_dedupe_idx. Releases before this one deduplicate with
--   ON CONFLICT (dedupe_key), which fails without it: they are marked too old first
--   (oldest_reader, src/db/schema-version.ts) and leave the load balancer (/readyz) instead of
--   answering callbacks with errors. This release's code uses the new index from 0006 on.
--   The migration Job applies 0006 and 0007 together, so during a rolling update from a
--   build before 0006 its pods leave the load balancer as soon as 0007 lands, before the new
--   ones are ready. No release has shipped the old shape (0.1.0 is the first); once releases
--   exist, a contract step like this one ships in the release after its expand step (0006).
-- * status_events_message_idx (message_id, seq): a message's history and the feed's fold
--   read by message_id through status_events_message_dedupe_idx.
-- * messages_api_idx (api, last_event_at, id): `api` has two values, so an ?api= page walks
--   messages_activity_idx and skips the other API's rows — on average one row skipped per row
--   returned — where the index cost a write on every message change.
--
-- Safe to run again (IF EXISTS). Dropping the constraint takes an ACCESS EXCLUSIVE lock for
-- milliseconds (catalogue only); lock_timeout fails the migration rather than queue every
-- writer behind a long transaction — the next start retries it.
UPDATE sw_status_schema SET oldest_reader = GREATEST(oldest_reader, 6);

SET lock_timeout = '5s';

ALTER TABLE status_events DROP CONSTRAINT IF EXISTS status_events_dedupe_key_key;
DROP INDEX CONCURRENTLY IF EXISTS status_events_message_idx;
DROP INDEX CONCURRENTLY IF EXISTS messages_api_idx;
