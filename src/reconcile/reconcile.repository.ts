import { sql } from 'kysely';
import type { RawBuilder } from 'kysely';
import type { Db } from '../db/database';
import { lastInTransaction } from '../db/kysely-pool';
import { withinStatementTimeout } from '../db/read-timeout';
import { projectSigningKeyRef } from '../messages/project-signing-key';
import type { Api } from '../messages/statuses';

/**
 * The sweep's SQL over `messages` (DESIGN §11). The predicate below is the one of
 * messages_sweep_due_idx (db/migrations/0014), so the sweep reads an index of just the messages
 * it may still look up: not final, not stuck, not an MMS at `sent` (final: MMS has no receipts).
 */
const SWEEPABLE = sql`status_rank < 50 AND NOT stuck AND (kind IS DISTINCT FROM 'mms' OR status <> 'sent')`;

/**
 * The lookups of the schedule, each read as one range of messages_sweep_due_idx per project:
 * the messages that had `step` lookups since their last event, due once that event is `waitMs`
 * old.
 *
 * A message that had as many lookups as the schedule has steps, or more — RECONCILE_SCHEDULE was
 * shortened since — waits the last step, is looked up once more and then stuck
 * (sweep-policy.ts). Those are one range of their own (`past`: `step` lookups or more): rare,
 * and gone once looked up.
 *
 * A message whose last event is older than several steps (the sweep was off, or its project's
 * credentials were added later) is due again right after each lookup, and spends its lookups
 * back to back. Spacing them by the gap between steps needs the index keyed on the time each is
 * due: filtered after this range, the messages waiting out their gap were all read on every
 * claim, a backlog's worth.
 */
interface SweepStep {
  step: number;
  waitMs: number;
}

function sweepSteps(schedule: readonly number[]): { exact: SweepStep[]; past: SweepStep[] } {
  const exact = schedule.map((waitMs, step) => ({ step, waitMs }));
  const last = exact.at(-1);
  const past = last ? [{ ...last, step: schedule.length }] : [];
  return { exact, past };
}

/** The steps as rows `s(step, wait_ms)`, for a lateral join. */
function stepRows(steps: readonly SweepStep[]) {
  return sql`unnest(${steps.map((s) => s.step)}::int[], ${steps.map((s) => s.waitMs)}::bigint[])
    AS s(step, wait_ms)`;
}

/**
 * The messages of step row `s` (stepRows) whose last event is old enough: the index range, all
 * of them due. For one exact step, an equality, so that the range comes in last_event_at order
 * and a claim stops at its limit; past the last step, a range.
 */
function stepRange(exact: boolean) {
  return sql`${exact ? sql`sweep_step = s.step` : sql`sweep_step >= s.step`}
    AND last_event_at <= now() - s.wait_ms * interval '1 millisecond'`;
}

/** When the message of step row `s` became due. */
const DUE_SINCE = sql`last_event_at + s.wait_ms * interval '1 millisecond'`;

/**
 * What marks a claim's lease: it ends one microsecond past a whole millisecond (the
 * millisecond is what names it: a Date holds no more, STILL_LEASED), a postponement's on a
 * whole millisecond. A lease is left on a message by a postponement (recordStep and release
 * clear it), but also by a claim whose writes never came (a replica that died mid-lookup, a
 * write or a release that ran out of SWEEP_WRITE_TIMEOUT_MS on a row another session held):
 * read as a postponement's, such a lease made the next lookup's single 503 count as the
 * message's step, and a message at its last step stuck (reconcile-worker.ts ownFailure).
 */
const CLAIM_MARK = sql`interval '1 microsecond'`;

/**
 * The lease left on a message is a postponement's (not a claim's: CLAIM_MARK) — unless its last
 * lookup came before its last event: a new event restarts the schedule
 * (record-events.repository.ts) but leaves the lease, which a replica may be using; the
 * postponement was of a step the message no longer is at.
 */
const RETRIED = sql`sweep_lease_until IS NOT NULL
  AND sweep_lease_until <> date_trunc('milliseconds', sweep_lease_until) + ${CLAIM_MARK}
  AND NOT COALESCE(sweep_checked_at < last_event_at, false)`;

const UNLEASED = sql`(sweep_lease_until IS NULL OR sweep_lease_until < now())`;

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
   * it was still leased for the retry when this claim took it, and no event came since.
   */
  retried: boolean;
  lastEventAt: Date;
  /** The lease this replica claimed it under, to the millisecond: what its writes check. */
  lease: Date;
}

/**
 * The due messages of `projects` at `steps` (all exact, or all past the last step): one lateral
 * read per (project, step) of messages_sweep_due_idx, which holds only messages the sweep may
 * still look up, by project, step and age — so what is read is what is due, never the messages
 * waiting for a later step, nor those of projects without credentials. `select` is each read's
 * select list; with `claim`, each read gives its oldest up to the claim's limit, of those not
 * leased (a claimed or postponed lookup's).
 *
 * Each read must stay a subquery of its own (a LIMIT or an aggregate in it): flattened into a
 * join, the planner may read all sweepable messages in one scan and join them to the steps.
 * Past the last step a claim takes them by step, then age — the index's order: ordered by age
 * alone, the planner may walk messages_activity_idx from the oldest message of all instead,
 * reading past every message of every project (test/reconcile/claim-reads-due-only.test.ts).
 */
function dueMessages(
  projects: readonly string[],
  steps: readonly SweepStep[],
  exact: boolean,
  select: RawBuilder<unknown>,
  claim?: { limit: number },
) {
  const order = exact ? sql`last_event_at` : sql`sweep_step, last_event_at`;
  return sql`
    SELECT c.* FROM unnest(${[...projects]}::text[]) AS p(project_id)
      CROSS JOIN ${stepRows(steps)}
      CROSS JOIN LATERAL (
        SELECT ${select} FROM messages
        WHERE ${SWEEPABLE} AND project_id = p.project_id AND ${stepRange(exact)}
        ${claim ? sql`AND ${UNLEASED} ORDER BY ${order} LIMIT ${claim.limit}` : sql``}) c`;
}

/**
 * Claims up to `limit` messages due for their next lookup, oldest last event first, for
 * `leaseMs`: replicas share the sweep, and a message is never looked up by two at once (SKIP
 * LOCKED while claiming, the lease after). Only projects with credentials are claimed.
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
  const { exact, past } = sweepSteps(options.schedule);
  const select = sql`id, sweep_step, last_event_at`;
  const claim = { limit: options.limit };
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
    WITH candidates AS (
      ${dueMessages(options.projects, exact, true, select, claim)}
      UNION ALL
      ${dueMessages(options.projects, past, false, select, claim)}
      ORDER BY last_event_at
      LIMIT ${options.limit}
    ), due AS (
      -- Locked here, not while choosing: only the messages claimed are locked (and written), and
      -- on a row another replica or an event changed meanwhile the conditions are checked again
      -- (its step and last event as chosen, not leased). One another replica is claiming is
      -- skipped, not replaced: this claim is short by it, and the next turn goes on.
      SELECT id, ${RETRIED} AS retried FROM messages
      WHERE (id, sweep_step, last_event_at) IN (SELECT id, sweep_step, last_event_at FROM candidates)
        AND ${SWEEPABLE} AND ${UNLEASED}
      FOR UPDATE SKIP LOCKED)
    -- To the millisecond: what a Date holds, so that the lookup's writes can name the lease;
    -- and the claim's mark, so that a lease it leaves is not taken for a postponement's.
    UPDATE messages m
    SET sweep_lease_until = date_trunc('milliseconds', now() + ${options.leaseMs} * interval '1 millisecond')
      + ${CLAIM_MARK}
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
 * else those its send set (the proxy's record keeps them: proxy/send-event.ts), or null:
 * SignalWire's message log does not give them, and the callback a lookup stands in for must
 * carry them like the others (apps match callbacks to their records by them). What SignalWire
 * echoed wins over the send's copy, even when the proxy's record was written after it.
 */
export async function echoedCustomVariables(db: Db, id: string): Promise<unknown> {
  const row = await db
    .selectFrom('status_events')
    .select(sql<unknown>`raw -> 'custom_variables'`.as('custom_variables'))
    .where('message_id', '=', id)
    .where(sql<boolean>`raw ? 'custom_variables'`)
    .orderBy(sql`source = 'proxy'`)
    .orderBy('seq', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row?.custom_variables ?? null;
}

/**
 * The signing key the message's callbacks were relayed under (the newest relay job that names
 * one: the key that verified SignalWire's signature), or null. The callback a lookup stands in
 * for is signed with it, so an app that validates with its own project's key — several projects
 * sharing one sw-status — accepts it like the message's other relays. With none for the message
 * (every callback lost, or their relay jobs already removed): the key of its project's newest
 * relays (messages/project-signing-key.ts: with keys listed unbound, nothing else tells which
 * one the project's app validates with); with none there either, null: the relay then picks as
 * for any relay no signature chose a key for (signing.ts relaySigningKey).
 */
export async function relaySigningKeyRef(db: Db, id: string): Promise<string | null> {
  const own = await db
    .selectFrom('relay_jobs')
    .select('signing_key_ref')
    .where('message_id', '=', id)
    .where('signing_key_ref', 'is not', null)
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
  if (own) return own.signing_key_ref;
  // A message without an app's callback is never relayed: no key to look for.
  const message = await db
    .selectFrom('messages')
    .select('project_id')
    .where('id', '=', id)
    .where('client_status_callback', 'is not', null)
    .executeTakeFirst();
  if (!message?.project_id) return null;
  return projectSigningKeyRef(db, message.project_id);
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
 * How long one of a lookup's writes to its message (recordStep, postpone, release) may take,
 * waits for the message's row included. Written as plain statements they had no lock_timeout
 * (that comes with our transactions' BEGIN, db/kysely-pool.ts) nor any statement timeout, and
 * waited for as long as another session held the row (an operator's `SELECT … FOR UPDATE` left
 * open, a long transaction): the sweep's one loop stopped for every message, and its stop() —
 * which the shutdown awaits before the recorder drains — never returned. Each now runs in a
 * transaction cancelled after this (57014; a held lock fails it), and the worker takes the
 * failure as any other write's: the lease runs out and the message is looked up again. Far
 * above what a one-row update by primary key takes, or a commit of the write path holding the
 * row; short enough that a shutdown still has its drain after the wait.
 */
export const SWEEP_WRITE_TIMEOUT_MS = 3_000;

/**
 * Runs one of the sweep's writes to a message within SWEEP_WRITE_TIMEOUT_MS, the COMMIT sent
 * with it (db/kysely-pool.ts): one round trip more than the plain statement took, not two.
 */
function sweepWrite(db: Db, statement: RawBuilder<unknown>): Promise<unknown> {
  return withinStatementTimeout(db, SWEEP_WRITE_TIMEOUT_MS, (trx) =>
    trx.executeQuery(lastInTransaction(statement.compile(trx))),
  );
}

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
  await sweepWrite(
    db,
    sql`
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
    WHERE id = ${message.id} AND ${STILL_LEASED(message)}`,
  );
}

/**
 * A lookup that failed for a reason of its own: the same step is tried after `retryMs` (while
 * the lease is still this replica's: STILL_LEASED). Its lease ends on a whole millisecond,
 * never with a claim's mark (CLAIM_MARK): the next claim reads it as retried.
 */
export async function postpone(
  db: Db,
  message: ClaimedMessage,
  retryMs: number,
  error: string,
): Promise<void> {
  await sweepWrite(
    db,
    sql`
    UPDATE messages SET
      sweep_lease_until = date_trunc('milliseconds', now() + ${retryMs} * interval '1 millisecond'),
      sweep_checked_at = now(), sweep_error = ${error}
    WHERE id = ${message.id} AND ${STILL_LEASED(message)}`,
  );
}

/**
 * Gives a claimed message back without a lookup (its project's lookups were paused meanwhile):
 * any replica may claim it at once, its sweep state untouched (while the lease is still this
 * replica's: STILL_LEASED).
 */
export async function release(db: Db, message: ClaimedMessage): Promise<void> {
  await sweepWrite(
    db,
    sql`
    UPDATE messages SET sweep_lease_until = NULL
    WHERE id = ${message.id} AND ${STILL_LEASED(message)}`,
  );
}

export interface SweepStats {
  /** Messages due for a lookup now, of the projects with credentials (the ones swept). */
  due: number;
  /** How long the longest-waiting due message has been due, in seconds. */
  oldestDueSeconds: number;
  stuck: number;
}

/**
 * The sweep's backlog, counted with the claim's conditions (dueMessages) and reading only due
 * messages; a postponed or leased one is due all the same.
 */
export async function sweepStats(
  db: Db,
  schedule: readonly number[],
  projects: readonly string[],
): Promise<SweepStats> {
  const { exact, past } = sweepSteps(schedule);
  const select = sql`count(*) AS due, min(${DUE_SINCE}) AS since`;
  const { rows } = await sql<{ due: number; oldest: number | null; stuck: number }>`
    WITH due AS (
      ${dueMessages(projects, exact, true, select)}
      UNION ALL
      ${dueMessages(projects, past, false, select)})
    SELECT
      (SELECT sum(due) FROM due) AS due,
      (SELECT extract(epoch FROM now() - min(since))::float8 FROM due) AS oldest,
      (SELECT count(*) FROM messages WHERE stuck) AS stuck`.execute(db);
  const row = rows[0]!;
  return { due: Number(row.due), oldestDueSeconds: row.oldest ?? 0, stuck: Number(row.stuck) };
}
