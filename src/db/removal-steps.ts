import { sql } from 'kysely';

/**
 * The change feed's removal steps (sw_status_feed_removals, db/migrations/0013): what a cursor
 * is judged against (src/feed/feed.routes.ts). Written by retention's steps
 * (src/retention/retention.repository.ts) and by the feed reset (src/feed/feed-epoch.ts), so it
 * lives here, below both.
 */

/**
 * The advisory lock under which removal steps are recorded, one at a time, each begun after
 * the last committed: the step numbers follow commit order. Retention's own lock (an arbitrary
 * constant, distinct from the stats rollups': src/stats/stats.repository.ts).
 */
export const REMOVAL_STEPS_LOCK = 0x53575245; // 'SWRE' in ASCII

/**
 * A removal step recorded, as two CTEs for a statement whose CTE `newest` holds the position
 * (tx, seq): the rows at or below it dropped (the monotonic stack), then a row with the next
 * step number, the latest one plus one (the DELETE and the INSERT share the statement's
 * snapshot: max(step) still sees the rows dropped, and the new row is not among them). Only
 * under REMOVAL_STEPS_LOCK.
 */
export const REMOVAL_STEP = sql`covered AS (
      DELETE FROM sw_status_feed_removals s USING newest
      WHERE (s.removed_tx, s.removed_seq) <= (newest.tx, newest.seq)
    ), step AS (
      INSERT INTO sw_status_feed_removals (step, removed_tx, removed_seq)
      SELECT coalesce((SELECT max(step) FROM sw_status_feed_removals), 0) + 1, tx, seq
      FROM newest
    )`;

/**
 * The largest xid8, which no transaction ever gets: the feed reset's position (beyond every
 * event), left alone by the rebase after a restore (transaction-id-rebase.ts).
 */
export const NEVER_ISSUED_TX = (2n ** 64n - 1n).toString();
