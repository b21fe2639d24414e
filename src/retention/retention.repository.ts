import { sql } from 'kysely';
import type { Db } from '../db/database';
import { contributionOfRow, deltaRow, rollupSums } from '../messages/rollup';
import type { StoredRollupFacts } from '../messages/rollup';

/**
 * The SQL of retention (DESIGN §13). Each step is one short transaction over a bounded batch
 * (two statements: lock, then remove): it takes row locks on the few messages it removes and
 * nothing else, so ingest and queries go on. SKIP LOCKED: a message a writer holds (a new
 * event is arriving for it right now) is left for a later step. Replicas take turns: a step
 * runs only with an advisory lock (tried, never waited for), so a replica whose turn it is not
 * removes nothing this round instead of queueing behind the other's step on the feed's expiry
 * mark.
 */

// An arbitrary constant, distinct from the stats rollups' (src/stats/stats.repository.ts).
const RETENTION_LOCK = 0x53575245; // 'SWRE' in ASCII

export interface RemovedCounts {
  messages: number;
  status_events: number;
  relay_jobs: number;
}

/**
 * Removes up to `batch` messages whose last activity is before `horizon`, oldest first (read
 * backwards along messages_activity_idx), with their events and relay jobs, takes their
 * contributions out of the stats rollups, and raises the feed's expiry mark
 * (sw_status_retention, db/migrations/0008) to the newest event removed — one transaction.
 *
 * Two statements, in this order. The first takes the turn and locks the messages (SKIP LOCKED;
 * READ COMMITTED rechecks `last_event_at` on a row a writer changed meanwhile). The second,
 * under a snapshot taken once those locks are held, removes what they own. In one statement,
 * the events and relay jobs would be found under the snapshot taken before the locks: those a
 * writer committed for a message between that snapshot and the lock (an event whose receive
 * time leaves the message expired: a spooled callback replayed late) would stay behind, owned by
 * no message, never removed. From the lock on, a writer of a new event waits for this step
 * (RECORD_BATCH locks the message), and an event it inserted meanwhile is not seen here: it
 * stays, and the write path, finding the message row gone once this commits, creates the
 * message anew from it — history older than the horizon is gone, the new event is not.
 *
 * The stats (DESIGN §6: counts equal a scan of the tables): each removed message's
 * contribution, as src/messages/rollup.ts computes it from the row (as the rebuild does), goes
 * into stats_deltas negated, in the transaction that removes the message. A window before the
 * horizon then counts what is retained, whether a piece of it is read from the rollups, the
 * deltas or the messages, and `npm run stats:rebuild` changes nothing.
 */
export async function removeExpiredMessages(
  db: Db,
  horizon: Date,
  batch: number,
): Promise<RemovedCounts> {
  // A caller's transaction (a test holding a step open) is used as it is.
  if (db.isTransaction) return removeStep(db, horizon, batch);
  return db
    .transaction()
    .setIsolationLevel('read committed')
    .execute((trx) => removeStep(trx, horizon, batch));
}

async function removeStep(trx: Db, horizon: Date, batch: number): Promise<RemovedCounts> {
  const { rows: doomed } = await sql<StoredRollupFacts & { id: string }>`
    WITH turn AS MATERIALIZED (
      SELECT pg_try_advisory_xact_lock(${RETENTION_LOCK}) AS mine
    )
    SELECT id, created_at, first_terminal_at, api, status, error_code, conflict FROM messages
    WHERE (SELECT mine FROM turn) AND last_event_at < ${horizon}
    ORDER BY last_event_at, id
    LIMIT ${batch}
    FOR UPDATE SKIP LOCKED`.execute(trx);
  if (doomed.length === 0) return { messages: 0, status_events: 0, relay_jobs: 0 };

  const ids = doomed.map((message) => message.id);
  const uncounted = rollupSums();
  for (const message of doomed) uncounted.add(contributionOfRow(message), -1);
  const deltas = uncounted.nonZero().map(deltaRow);
  const { rows } = await sql<{ messages: string; status_events: string; relay_jobs: string }>`
    WITH events AS (
      DELETE FROM status_events WHERE message_id = ANY(${ids}::text[])
      RETURNING tx, seq
    ), jobs AS (
      DELETE FROM relay_jobs WHERE message_id = ANY(${ids}::text[])
      RETURNING 1
    ), gone AS (
      DELETE FROM messages WHERE id = ANY(${ids}::text[])
      RETURNING 1
    ), newest AS (
      SELECT tx, seq FROM events ORDER BY tx DESC, seq DESC LIMIT 1
    ), mark AS (
      UPDATE sw_status_retention r SET removed_tx = newest.tx, removed_seq = newest.seq
      FROM newest WHERE (r.removed_tx, r.removed_seq) < (newest.tx, newest.seq)
    ), uncounted AS (
      INSERT INTO stats_deltas (minute, api, status, error_code, latency_bucket, messages,
        conflicts, final_within_10s)
      SELECT to_timestamp(r.minute / 1000), r.api, r.status, r.error_code, r.latency_bucket,
             r.messages, r.conflicts, r.final_within_10s
      FROM json_to_recordset(${JSON.stringify(deltas)}::json) AS r(minute double precision,
        api text, status text, error_code text, latency_bucket smallint, messages integer,
        conflicts integer, final_within_10s integer)
    )
    SELECT (SELECT count(*) FROM gone) AS messages,
           (SELECT count(*) FROM events) AS status_events,
           (SELECT count(*) FROM jobs) AS relay_jobs`.execute(trx);
  const row = rows[0]!;
  return {
    messages: Number(row.messages),
    status_events: Number(row.status_events),
    relay_jobs: Number(row.relay_jobs),
  };
}

/**
 * Removes up to `batch` relay jobs delivered before `horizon` (RELAY_KEEP_DELIVERED_DAYS),
 * oldest delivery first: a delivered job only documents what went out.
 */
export async function removeDeliveredRelayJobs(
  db: Db,
  horizon: Date,
  batch: number,
): Promise<number> {
  const { rows } = await sql<{ removed: string }>`
    WITH doomed AS (${deliveredBefore(horizon, batch)}), gone AS (
      DELETE FROM relay_jobs j USING doomed WHERE j.id = doomed.id RETURNING 1
    )
    SELECT count(*) AS removed FROM gone`.execute(db);
  return Number(rows[0]!.removed);
}

/**
 * The delivered jobs a step removes, along relay_jobs_delivered_idx (0011): a round that finds
 * none due reads the index's first entry, not the table (it runs every minute on every replica).
 */
export function deliveredBefore(horizon: Date, batch: number) {
  return sql<{ id: string }>`
    SELECT id FROM relay_jobs
    WHERE state = 'delivered' AND delivered_at < ${horizon}
    ORDER BY delivered_at
    LIMIT ${batch}
    FOR UPDATE SKIP LOCKED`;
}
