import { sql } from 'kysely';
import type { Selectable } from 'kysely';
import type { Db, RelayJobsTable } from '../db/database';

/** All SQL of the relay outbox's read and delivery side (the write side: messages/relay-outbox.ts). */

export type RelayJobRow = Selectable<RelayJobsTable>;
export type RelayState = RelayJobRow['state'];

/**
 * Claims up to `limit` due jobs for `leaseMs`, skipping rows another replica is claiming
 * (SKIP LOCKED) or holds a lease on, jobs of hosts in `blockedHosts`, and every job of a
 * message whose earlier job is still pending: a message's jobs go out one at a time, in order.
 * Nothing stays locked during the HTTP call; the lease keeps other replicas off, and a replica
 * that dies mid-call only delays the job until its lease runs out (at least once).
 */
export async function claimDueJobs(
  db: Db,
  limit: number,
  leaseMs: number,
  blockedHosts: readonly string[],
): Promise<RelayJobRow[]> {
  const { rows } = await sql<RelayJobRow>`
    WITH due AS (
      SELECT j.id FROM relay_jobs j
      WHERE j.state = 'pending' AND j.next_attempt_at <= now()
        AND (j.lease_until IS NULL OR j.lease_until < now())
        AND j.host <> ALL(${[...blockedHosts]}::text[])
        AND NOT EXISTS (
          SELECT 1 FROM relay_jobs p
          WHERE p.message_id = j.message_id AND p.state = 'pending' AND p.id < j.id)
      ORDER BY j.next_attempt_at, j.id
      LIMIT ${limit}
      FOR UPDATE SKIP LOCKED)
    UPDATE relay_jobs r SET lease_until = now() + ${leaseMs} * interval '1 millisecond'
    FROM due WHERE r.id = due.id
    RETURNING r.*`.execute(db);
  return rows.sort((a, b) => a.id - b.id);
}

/** Gives claimed jobs back untouched (their host had no room, or this replica stops). */
export async function releaseJobs(db: Db, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return;
  await sql`UPDATE relay_jobs SET lease_until = NULL WHERE id = ANY(${[...ids]}::bigint[])`.execute(
    db,
  );
}

/** What one attempt came to, as the worker writes it back. */
export interface AttemptOutcome {
  id: number;
  state: 'delivered' | 'pending' | 'dead';
  /** pending: wait before the next attempt. */
  delayMs: number | null;
  status: number | null;
  error: string | null;
  /** keep it, clear it (delivered), or replace it (dead: without the message body), base64. */
  payload: { keep: true } | { keep: false; base64: string | null };
}

/**
 * Writes the outcomes of many attempts in one statement and one commit: a commit per relay
 * would cost the database more than the relays themselves. Not a named statement (see
 * messages/relay-outbox.ts): planned with its values, the join is on the primary key.
 */
export async function recordOutcomes(db: Db, outcomes: readonly AttemptOutcome[]): Promise<void> {
  if (outcomes.length === 0) return;
  const rows = outcomes.map((o) => ({
    id: o.id,
    state: o.state,
    delay_ms: o.delayMs,
    status: o.status,
    error: o.error,
    keep_payload: o.payload.keep,
    payload: o.payload.keep ? null : o.payload.base64,
  }));
  await sql`
    UPDATE relay_jobs r SET
      state = o.state,
      attempts = r.attempts + 1,
      next_attempt_at = CASE WHEN o.state = 'pending'
        THEN now() + o.delay_ms * interval '1 millisecond' ELSE r.next_attempt_at END,
      lease_until = NULL,
      last_status = o.status,
      last_error = o.error,
      delivered_at = CASE WHEN o.state = 'delivered' THEN now() ELSE r.delivered_at END,
      updated_at = now(),
      payload = CASE WHEN o.keep_payload THEN r.payload ELSE decode(o.payload, 'base64') END
    FROM json_to_recordset(${JSON.stringify(rows)}::json) AS o(id bigint, state text,
      delay_ms double precision, status integer, error text, keep_payload boolean, payload text)
    WHERE r.id = o.id`.execute(db);
}

/** Dead → pending, due now, with a fresh retry schedule. Undefined: no such job; null: not dead. */
export async function retryDeadJob(db: Db, id: number): Promise<RelayJobRow | null | undefined> {
  const updated = await db
    .updateTable('relay_jobs')
    .set({ state: 'pending', attempts: 0, next_attempt_at: sql`now()`, updated_at: sql`now()` })
    .where('id', '=', id)
    .where('state', '=', 'dead')
    .returningAll()
    .executeTakeFirst();
  if (updated) return updated;
  const exists = await db
    .selectFrom('relay_jobs')
    .select('id')
    .where('id', '=', id)
    .executeTakeFirst();
  return exists ? null : undefined;
}

export interface RelayFilter {
  state?: RelayState;
  messageId?: string;
}

/** Newest first, keyset-paginated on id (the primary key; message_id, id; the dead index). */
export async function listRelayJobs(
  db: Db,
  filter: RelayFilter,
  limit: number,
  beforeId?: number,
): Promise<RelayJobRow[]> {
  let query = db.selectFrom('relay_jobs').selectAll();
  if (filter.state) query = query.where('state', '=', filter.state);
  if (filter.messageId) query = query.where('message_id', '=', filter.messageId);
  if (beforeId !== undefined) query = query.where('id', '<', beforeId);
  return query.orderBy('id', 'desc').limit(limit).execute();
}

export interface OutboxStats {
  pending: number;
  dead: number;
  /** Age of the oldest pending job in seconds; 0 when none. */
  oldestPendingSeconds: number;
  /** When the next pending job is due, in ms from now (negative: overdue); null when none. */
  nextDueInMs: number | null;
}

export async function outboxStats(db: Db): Promise<OutboxStats> {
  const { rows } = await sql<{
    pending: string;
    dead: string;
    oldest: number | null;
    next_due: number | null;
  }>`SELECT
      (SELECT count(*) FROM relay_jobs WHERE state = 'pending') AS pending,
      (SELECT count(*) FROM relay_jobs WHERE state = 'dead') AS dead,
      (SELECT extract(epoch FROM now() - min(created_at))::float8
         FROM relay_jobs WHERE state = 'pending') AS oldest,
      (SELECT (extract(epoch FROM min(next_attempt_at) - now()) * 1000)::float8
         FROM relay_jobs WHERE state = 'pending') AS next_due`.execute(db);
  const row = rows[0]!;
  return {
    pending: Number(row.pending),
    dead: Number(row.dead),
    oldestPendingSeconds: row.oldest ?? 0,
    nextDueInMs: row.next_due,
  };
}
