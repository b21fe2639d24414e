-- Retention's removal steps, for the change feed's cursor check (src/feed/feed.routes.ts).
--
-- Why: sw_status_retention (0008) keeps one expiry mark, the newest event ever removed. Feed
-- positions are not ordered by age (a spool replayed late, group-commit batches committing out
-- of order), so a removal can land between a consumer's position and an earlier, higher mark
-- without moving it, and the consumer skipped those events without a 410.
--
-- Each retention step that removes events gets the next step number (under retention's
-- advisory lock, so numbers follow commit order and every snapshot sees a prefix of them) and
-- records the newest event it removed. A cursor carries the newest step its consumer was judged
-- against; it has missed events iff a later step removed one beyond its position. Only the
-- steps that can still answer that are kept, as a monotonic stack: a step deletes every row
-- whose position is at or below its own, which a later cursor check finds through the new row
-- anyway. The rows left have positions descending as steps ascend: typically one row. The
-- newest row carries the numbering (the next step is its number plus one): delete none by hand
-- (a rebase after a restore may set removed_tx to 0, as for sw_status_retention).
--
-- Additive (a new table, nothing else locked): older releases neither read nor write it
-- (oldest_reader unchanged) and keep maintaining sw_status_retention, which this release keeps
-- maintaining too. Safe to run again (IF NOT EXISTS).
CREATE TABLE IF NOT EXISTS sw_status_feed_removals (
  step        bigint PRIMARY KEY,   -- 1, 2, …: the retention step, in commit order
  removed_tx  xid8   NOT NULL,      -- (tx, seq) of the newest event that step removed
  removed_seq bigint NOT NULL
);
