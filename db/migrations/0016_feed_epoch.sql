-- The database the change feed's cursors were issued on, for the feed reset (src/feed/feed-epoch.ts).
--
-- Why: a cursor is a transaction id of this database. After a failover to an asynchronous
-- standby that lost transactions, a point-in-time recovery, or a restore into another cluster,
-- the new primary hands out ids LOWER than cursors consumers already hold. The feed refuses
-- such a cursor (410) only while it lies beyond the snapshot's xmax; once the counter passes
-- it (seconds on a busy primary) it was accepted, and its consumer silently skipped every event
-- committed with an id in the gap.
--
-- One row: the cluster's system identifier, the timeline and the database's oid as the
-- primary last saw them. A primary that finds them changed records a feed reset, a removal
-- step at a position beyond every event (sw_status_feed_removals, 0013): every cursor issued
-- before it is refused 410 cursor_expired (read the current state, follow from after=now),
-- every cursor issued after it carries the new step. No row: the first check notes it, no
-- reset. A planned switchover changes the timeline too: its consumers resync once.
--
-- Additive (a new table, nothing else locked): older releases neither read nor write it
-- (oldest_reader unchanged). Safe to run again (IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS sw_status_feed_epoch (
  one               boolean PRIMARY KEY DEFAULT true CHECK (one),
  system_identifier text        NOT NULL,  -- pg_control_system(): another value, another cluster
  timeline          bigint      NOT NULL,  -- from pg_walfile_name: a promotion or PITR moves it
  database_oid      oid         NOT NULL,  -- pg_database: a restore into another database
  noted_at          timestamptz NOT NULL DEFAULT now()
);
