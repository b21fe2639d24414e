import { sql } from 'kysely';
import type { Db } from '../db/database';

/**
 * The SQL of retention (DESIGN §13). Each step is one statement, one transaction, a bounded
 * batch: it takes row locks on the few messages it removes and nothing else, so ingest and
 * queries go on. SKIP LOCKED: a message a writer holds (a new event is arriving for it right
 * now) is left for a later step. Replicas take turns: a step runs only with an advisory lock
 * (tried, never waited for), so a replica whose turn it is not removes nothing this round
 * instead of queueing behind the other's step on the feed's expiry mark.
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
 * backwards along messages_activity_idx), with their events and relay jobs, and raises the
 * feed's expiry mark (sw_status_retention, db/migrations/0008) to the newest event removed,
 * in the same transaction.
 *
 * An event arriving for a message while it is removed: its own insert is not seen by this
 * statement, so it stays, and the write path, finding the message row gone once this commits,
 * creates the message anew from it — history older than the horizon is gone, the new event
 * is not.
 */
export async function removeExpiredMessages(
  db: Db,
  horizon: Date,
  batch: number,
): Promise<RemovedCounts> {
  const { rows } = await sql<{ messages: string; status_events: string; relay_jobs: string }>`
    WITH turn AS MATERIALIZED (
      SELECT pg_try_advisory_xact_lock(${RETENTION_LOCK}) AS mine
    ), doomed AS (
      SELECT id FROM messages
      WHERE (SELECT mine FROM turn) AND last_event_at < ${horizon}
      ORDER BY last_event_at, id
      LIMIT ${batch}
      FOR UPDATE SKIP LOCKED
    ), events AS (
      DELETE FROM status_events e USING doomed WHERE e.message_id = doomed.id
      RETURNING e.tx, e.seq
    ), jobs AS (
      DELETE FROM relay_jobs j USING doomed WHERE j.message_id = doomed.id
      RETURNING 1
    ), gone AS (
      DELETE FROM messages m USING doomed WHERE m.id = doomed.id
      RETURNING 1
    ), newest AS (
      SELECT tx, seq FROM events ORDER BY tx DESC, seq DESC LIMIT 1
    ), mark AS (
      UPDATE sw_status_retention r SET removed_tx = newest.tx, removed_seq = newest.seq
      FROM newest WHERE (r.removed_tx, r.removed_seq) < (newest.tx, newest.seq)
    )
    SELECT (SELECT count(*) FROM gone) AS messages,
           (SELECT count(*) FROM events) AS status_events,
           (SELECT count(*) FROM jobs) AS relay_jobs`.execute(db);
  const row = rows[0]!;
  return {
    messages: Number(row.messages),
    status_events: Number(row.status_events),
    relay_jobs: Number(row.relay_jobs),
  };
}

/**
 * Removes up to `batch` relay jobs delivered before `horizon` (RELAY_KEEP_DELIVERED_DAYS),
 * oldest first along the primary key: a delivered job only documents what went out.
 */
export async function removeDeliveredRelayJobs(
  db: Db,
  horizon: Date,
  batch: number,
): Promise<number> {
  const { rows } = await sql<{ removed: string }>`
    WITH doomed AS (
      SELECT id FROM relay_jobs
      WHERE state = 'delivered' AND delivered_at < ${horizon}
      ORDER BY id
      LIMIT ${batch}
      FOR UPDATE SKIP LOCKED
    ), gone AS (
      DELETE FROM relay_jobs j USING doomed WHERE j.id = doomed.id RETURNING 1
    )
    SELECT count(*) AS removed FROM gone`.execute(db);
  return Number(rows[0]!.removed);
}
