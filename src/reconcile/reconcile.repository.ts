import { sql } from 'kysely';
import type { Db } from '../db/database';
import type { Api } from '../messages/statuses';

/**
 * The sweep's SQL over `messages` (DESIGN §11). The predicate below is the one of
 * messages_sweep_idx (db/migrations/0004), so the sweep reads an index of just the messages it
 * may still look up: not final, not stuck, not an MMS at `sent` (final: MMS has no receipts).
 */
const SWEEPABLE = sql`status_rank < 50 AND NOT stuck AND (kind IS DISTINCT FROM 'mms' OR status <> 'sent')`;

/**
 * How old a message's last event must be for its next lookup: the schedule's step after the
 * lookups it had (sweep_step). A message that had as many lookups as the schedule has steps, or
 * more — RECONCILE_SCHEDULE was shortened since — waits the last step, is looked up once more
 * and then stuck (sweep-policy.ts); indexing past the array's end would give NULL, and the
 * message would never be looked up, stuck or counted again.
 */
function nextStepMs(schedule: readonly number[]) {
  return sql`(${[...schedule]}::bigint[])[LEAST(sweep_step + 1, ${schedule.length}::int)]`;
}

export interface ClaimedMessage {
  id: string;
  api: Api;
  projectId: string;
  status: string;
  errorCode: string | null;
  step: number;
  /** What its last lookup left on it (`unauthorized`, `HTTP 503`, …), or null. */
  sweepError: string | null;
  /**
   * Its last lookup was put off (postpone: the same step tried again), not recorded as a step:
   * it was still leased for the retry when this claim took it.
   */
  retried: boolean;
  lastEventAt: Date;
  /** The lease this replica claimed it under, to the millisecond: what its writes check. */
  lease: Date;
}

/**
 * Claims up to `limit` messages due for their next lookup, for `leaseMs`: replicas share the
 * sweep, and a message is never looked up by two at once (SKIP LOCKED while claiming, the
 * lease after). Only projects with credentials are claimed.
 */
export async function claimDueMessages(
  db: Db,
  options: {
    limit: number;
    leaseMs: number;
    schedule: readonly number[];
    projects: readonly string[];
  },
): Promise<ClaimedMessage[]> {
  const { rows } = await sql<{
    id: string;
    api: Api;
    project_id: string;
    status: string;
    error_code: string | null;
    sweep_step: number;
    sweep_error: string | null;
    last_event_at: Date;
    sweep_lease_until: Date;
    retried: boolean;
  }>`
    WITH due AS (
      -- A lease left on a message is a postponement's (recordStep and release clear it), or,
      -- rarely, that of a replica that died mid-lookup.
      SELECT id, sweep_lease_until IS NOT NULL AS retried FROM messages
      WHERE ${SWEEPABLE}
        AND last_event_at <= now() - ${options.schedule[0] ?? 0} * interval '1 millisecond'
        AND last_event_at <= now() - ${nextStepMs(options.schedule)} * interval '1 millisecond'
        AND (sweep_lease_until IS NULL OR sweep_lease_until < now())
        AND project_id = ANY(${[...options.projects]}::text[])
      ORDER BY last_event_at
      LIMIT ${options.limit}
      FOR UPDATE SKIP LOCKED)
    -- To the millisecond: what a Date holds, so that the lookup's writes can name the lease.
    UPDATE messages m
    SET sweep_lease_until = date_trunc('milliseconds', now() + ${options.leaseMs} * interval '1 millisecond')
    FROM due WHERE m.id = due.id
    RETURNING m.id, m.api, m.project_id, m.status, m.error_code, m.sweep_step, m.sweep_error,
      m.last_event_at, m.sweep_lease_until, due.retried`.execute(db);
  return rows
    .map((row) => ({
      id: row.id,
      api: row.api,
      projectId: row.project_id,
      status: row.status,
      errorCode: row.error_code,
      step: row.sweep_step,
      sweepError: row.sweep_error,
      retried: row.retried,
      lastEventAt: row.last_event_at,
      lease: row.sweep_lease_until,
    }))
    .sort((a, b) => a.lastEventAt.getTime() - b.lastEventAt.getTime());
}

/**
 * The `custom_variables` the message's native callbacks echoed (the newest that carried them),
 * or null: SignalWire's message log does not give them, and the callback a lookup stands in for
 * must carry them like the others (apps match callbacks to their records by them).
 */
export async function echoedCustomVariables(db: Db, id: string): Promise<unknown> {
  const row = await db
    .selectFrom('status_events')
    .select(sql<unknown>`raw -> 'custom_variables'`.as('custom_variables'))
    .where('message_id', '=', id)
    .where(sql<boolean>`raw ? 'custom_variables'`)
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row?.custom_variables ?? null;
}

/**
 * The message's status and error code as they are now. A lookup takes time (up to
 * SIGNALWIRE_TIMEOUT_MS): the callback SignalWire was late with may have been recorded
 * meanwhile, and an answer judged against the claim's older state would record it again.
 */
export async function currentState(
  db: Db,
  id: string,
): Promise<{ status: string; errorCode: string | null } | undefined> {
  const row = await db
    .selectFrom('messages')
    .select(['status', 'error_code'])
    .where('id', '=', id)
    .executeTakeFirst();
  return row && { status: row.status, errorCode: row.error_code };
}

/**
 * The message still under the lease this replica claimed it under: the one condition on which
 * a lookup may write what came of it. One whose lease ran out (a replica paused, a lookup or a
 * database slower than the lease) may since be another replica's: clearing or moving that
 * replica's lease would let a third look the message up at the same time (DESIGN §11).
 */
const STILL_LEASED = (message: ClaimedMessage) =>
  sql`date_trunc('milliseconds', sweep_lease_until) = ${message.lease}`;

/**
 * The message has had no event since the claim: its last event is the one the claim saw (to the
 * millisecond, what the claim's Date holds).
 */
const UNMOVED = (message: ClaimedMessage) =>
  sql`date_trunc('milliseconds', last_event_at) = ${message.lastEventAt}`;

/**
 * Records a lookup that moved the message to its next step (maybe stuck). The step and stuck
 * flag only apply while the message is where the lookup found it: an event recorded meanwhile
 * (by this lookup, or a callback) has restarted the schedule. Nothing is written once the lease
 * is another's (STILL_LEASED).
 *
 * `kind` is what the lookup's answer says the message is, for a message whose kind no event
 * told (a native message known from its callbacks alone: they carry neither media nor kind).
 * An MMS at `sent` is final (it has no receipts): it is then neither stuck nor swept again.
 */
export async function recordStep(
  db: Db,
  message: ClaimedMessage,
  step: number,
  stuck: boolean,
  error: string | null,
  kind: 'sms' | 'mms' | null = null,
): Promise<void> {
  const finalMms = sql`(COALESCE(kind, ${kind}) = 'mms' AND status = 'sent')`;
  await sql`
    UPDATE messages SET
      kind = COALESCE(kind, ${kind}),
      -- A kind learned changes the message's answer: its ETag must change (messages.routes.ts).
      updated_at = CASE WHEN kind IS NULL AND ${kind}::text IS NOT NULL THEN now() ELSE updated_at END,
      sweep_lease_until = NULL,
      sweep_checked_at = now(),
      sweep_error = ${error},
      sweep_step = CASE WHEN ${UNMOVED(message)} THEN ${step}::smallint ELSE sweep_step END,
      stuck = CASE WHEN ${UNMOVED(message)}
        THEN ${stuck} AND status_rank < 50 AND NOT ${finalMms} ELSE stuck END
    WHERE id = ${message.id} AND ${STILL_LEASED(message)}`.execute(db);
}

/**
 * A lookup that failed for a reason of its own: the same step is tried after `retryMs` (while
 * the lease is still this replica's: STILL_LEASED).
 */
export async function postpone(
  db: Db,
  message: ClaimedMessage,
  retryMs: number,
  error: string,
): Promise<void> {
  await sql`
    UPDATE messages SET sweep_lease_until = now() + ${retryMs} * interval '1 millisecond',
      sweep_checked_at = now(), sweep_error = ${error}
    WHERE id = ${message.id} AND ${STILL_LEASED(message)}`.execute(db);
}

/**
 * Gives a claimed message back without a lookup (its project's lookups were paused meanwhile):
 * any replica may claim it at once, its sweep state untouched (while the lease is still this
 * replica's: STILL_LEASED).
 */
export async function release(db: Db, message: ClaimedMessage): Promise<void> {
  await sql`
    UPDATE messages SET sweep_lease_until = NULL
    WHERE id = ${message.id} AND ${STILL_LEASED(message)}`.execute(db);
}

export interface SweepStats {
  /** Messages due for a lookup now, of the projects with credentials (the ones swept). */
  due: number;
  /** How long the longest-waiting due message has been due, in seconds. */
  oldestDueSeconds: number;
  stuck: number;
}

export async function sweepStats(
  db: Db,
  schedule: readonly number[],
  projects: readonly string[],
): Promise<SweepStats> {
  const { rows } = await sql<{ due: number; oldest: number | null; stuck: number }>`
    WITH due AS (
      SELECT now() - last_event_at - ${nextStepMs(schedule)} * interval '1 millisecond' AS late
      FROM messages
      WHERE ${SWEEPABLE}
        AND last_event_at <= now() - ${schedule[0] ?? 0} * interval '1 millisecond'
        AND project_id = ANY(${[...projects]}::text[]))
    SELECT
      (SELECT count(*) FROM due WHERE late >= interval '0') AS due,
      (SELECT extract(epoch FROM max(late))::float8 FROM due WHERE late >= interval '0') AS oldest,
      (SELECT count(*) FROM messages WHERE stuck) AS stuck`.execute(db);
  const row = rows[0]!;
  return { due: Number(row.due), oldestDueSeconds: row.oldest ?? 0, stuck: Number(row.stuck) };
}
