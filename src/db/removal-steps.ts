import { sql } from 'kysely';
import type { RawBuilder } from 'kysely';

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

/** The next step number: the latest one plus one. */
const NEXT_STEP = sql`coalesce((SELECT max(step) FROM sw_status_feed_removals), 0) + 1`;

/**
 * A removal step recorded, as two CTEs for a statement whose CTE `newest` holds the position
 * (tx, seq): the rows at or below it dropped (the monotonic stack), then a row numbered `number`
 * (the DELETE and the INSERT share the statement's snapshot: max(step) still sees the rows
 * dropped, and the new row is not among them). Only under REMOVAL_STEPS_LOCK.
 */
function removalStep(number: RawBuilder<unknown>) {
  return sql`covered AS (
      DELETE FROM sw_status_feed_removals s USING newest
      WHERE (s.removed_tx, s.removed_seq) <= (newest.tx, newest.seq)
    ), step AS (
      INSERT INTO sw_status_feed_removals (step, removed_tx, removed_seq)
      SELECT ${number}, tx, seq FROM newest
    )`;
}

/** Retention's removal step: numbered the latest plus one. */
export const REMOVAL_STEP = removalStep(NEXT_STEP);

/**
 * The feed reset's step (src/feed/feed-epoch.ts): numbered at least the clock in microseconds,
 * not just the latest plus one. A reset follows a restore, a point-in-time recovery or a
 * failover that lost transactions — which rolled this table back too, so the latest step here
 * can be lower than the steps cursors already carry, and a reset numbered after it would refuse
 * none of them (a cursor is refused by a step above its own). No cursor carries a step from
 * the future: the clock (16 digits, within a cursor's step) puts the reset above them all;
 * retention's steps after it go on from it.
 */
export const RESET_STEP = removalStep(
  sql`greatest(${NEXT_STEP}, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)`,
);

/**
 * The largest xid8, which no transaction ever gets: the feed reset's position (beyond every
 * event), left alone by the rebase after a restore (transaction-id-rebase.ts).
 */
export const NEVER_ISSUED_TX = (2n ** 64n - 1n).toString();
