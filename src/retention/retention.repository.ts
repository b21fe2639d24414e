import { sql } from 'kysely';
import type { Db } from '../db/database';
import { REMOVAL_STEP, REMOVAL_STEPS_LOCK } from '../db/removal-steps';
import { contributionOfRow, deltaRow, rollupSums } from '../messages/rollup';
import type { StoredRollupFacts } from '../messages/rollup';
import { TERMINAL_RANK } from '../messages/statuses';

/**
 * The SQL of retention (DESIGN §13). Each step is one short transaction over a bounded batch
 * (a lock, then the removal): it takes row locks on the few messages it removes and
 * nothing else, so ingest and queries go on. SKIP LOCKED: a message a writer holds (a new
 * event is arriving for it right now) is left for a later step. Replicas take turns: a step
 * runs only with an advisory lock (tried, never waited for), so a replica whose turn it is not
 * removes nothing this round instead of queueing behind the other's step on the feed's expiry
 * mark. The lock also makes the steps one at a time, each begun after the last committed: the
 * feed's removal steps (below) are numbered in commit order by it.
 */

// Retention's lock is the removal steps' (src/db/removal-steps.ts): its steps record them.
const RETENTION_LOCK = REMOVAL_STEPS_LOCK;

/**
 * The most events, and the most relay jobs, one step removes. A step is bounded in messages
 * (`batch`) AND in rows: one message with a huge history (a sender that called back for one
 * id over and over) would otherwise make one step a transaction deleting all of it, for as
 * long as that takes; while it holds its transaction id the change feed delivers nothing
 * committed after it began (src/feed/feed.repository.ts), for every consumer. Such a message
 * goes over several steps instead, back to back (a step that reaches this bound counts as full:
 * retention.ts runs the next one); between them it is still there, expired, counted in the
 * stats, part of its history already gone, as if removed early. 500 messages of
 * ordinary history (a handful of events each) stay well below it.
 */
export const EVENTS_PER_STEP = 10_000;

export interface RemovedCounts {
  messages: number;
  status_events: number;
  relay_jobs: number;
}

/**
 * Removes up to `batch` messages whose last activity is before `horizon`, oldest first (read
 * backwards along messages_activity_idx), with their events and relay jobs, takes their
 * contributions out of the stats rollups, and records the newest event removed for the change
 * feed's cursor check — one transaction. Two records:
 * - the removal step (sw_status_feed_removals, db/migrations/0013): the next step number with
 *   that position, the rows at or below it dropped (a monotonic stack, see the migration).
 *   The number is the latest one plus one: the advisory lock lets no other step run until this
 *   one has committed, so numbers follow commit order (a snapshot that sees a step sees every
 *   earlier one), and were two ever to run at once, the primary key would fail the second
 *   rather than let it reuse a number;
 * - the expiry mark (sw_status_retention, db/migrations/0008), raised to it if higher: the
 *   previous release judges cursors by the mark alone, and during a rolling upgrade its pods
 *   read it, and judge the cursors they issued, against removals made by this one.
 *
 * The first statement takes the turn and locks the messages (SKIP LOCKED; READ COMMITTED
 * rechecks `last_event_at` on a row a writer changed meanwhile). The next ones, under snapshots
 * taken once those locks are held, remove what they own: their events and relay jobs (at most
 * EVENTS_PER_STEP of each), then the messages left without either. In one statement with
 * the lock, the events and relay jobs would be found under the snapshot taken before the
 * locks: those a writer committed for a message between that snapshot and the lock (an event
 * whose receive time leaves the message expired: a spooled callback replayed late) would stay
 * behind, owned by no message, never removed. From the lock on, a writer of a new event waits
 * for this step (RECORD_BATCH locks the message), and an event it inserted meanwhile is not
 * seen here: it stays, and the write path, finding the message row gone once this commits,
 * creates the message anew from it — history older than the horizon is gone, the new event
 * is not.
 *
 * The stats (DESIGN §6: counts equal a scan of the tables): each removed message's
 * contribution, as src/messages/rollup.ts computes it from the row (as the rebuild does), goes
 * into stats_deltas negated, in the transaction that removes the message. A window before the
 * horizon then counts what is retained, whether a piece of it is read from the rollups, the
 * deltas or the messages, and `npm run stats:rebuild` changes nothing.
 *
 * A proxied message removed before its send is over (RETENTION_DAYS below
 * CALLBACK_TOKEN_TTL_DAYS: a handset off for days, a receipt SignalWire sends late) leaves its
 * caller's own status callback behind as a send intent (send-intents.ts), in the statement that
 * removes it: its callback token is still valid, and the late receipt it brings creates the
 * message anew from the callback alone (DESIGN §2). The write path takes the URL from the
 * intent for such a message, as it does for a callback that beat the proxy's record of its
 * send (record-events.ts withSendIntents), so the receipt is still relayed (DESIGN §10). See
 * leftIntents for which messages, and for how long.
 *
 * `tokenTtlDays` is CALLBACK_TOKEN_TTL_DAYS: intents are left only for sends whose token is
 * still valid. Without it, for every such message removed (the ones whose token has expired
 * are then already expired intents, removed by the next sends: send-intents.ts).
 */
export async function removeExpiredMessages(
  db: Db,
  horizon: Date,
  batch: number,
  tokenTtlDays?: number,
): Promise<RemovedCounts> {
  // A caller's transaction (a test holding a step open) is used as it is.
  if (db.isTransaction) return removeStep(db, horizon, batch, tokenTtlDays);
  return db
    .transaction()
    .setIsolationLevel('read committed')
    .execute((trx) => removeStep(trx, horizon, batch, tokenTtlDays));
}

async function removeStep(
  trx: Db,
  horizon: Date,
  batch: number,
  tokenTtlDays: number | undefined,
): Promise<RemovedCounts> {
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
  // Their events and relay jobs first, at most EVENTS_PER_STEP of each, in the doomed
  // messages' order (the lateral joins walk them one by one, and the LIMIT ends the walk),
  // recording the newest event removed as a removal step (REMOVAL_STEP) and in the feed's
  // expiry mark.
  const { rows: removed } = await sql<{ status_events: string; relay_jobs: string }>`
    WITH events AS (
      DELETE FROM status_events WHERE seq IN (
        SELECT e.seq FROM pg_catalog.unnest(${ids}::text[]) AS d(id)
        CROSS JOIN LATERAL (SELECT seq FROM status_events WHERE message_id = d.id) e
        LIMIT ${EVENTS_PER_STEP})
      RETURNING tx, seq
    ), jobs AS (
      DELETE FROM relay_jobs WHERE id IN (
        SELECT j.id FROM pg_catalog.unnest(${ids}::text[]) AS d(id)
        CROSS JOIN LATERAL (SELECT id FROM relay_jobs WHERE message_id = d.id) j
        LIMIT ${EVENTS_PER_STEP})
      RETURNING 1
    ), newest AS (
      SELECT tx, seq FROM events ORDER BY tx DESC, seq DESC LIMIT 1
    ), ${REMOVAL_STEP}, mark AS (
      UPDATE sw_status_retention r SET removed_tx = newest.tx, removed_seq = newest.seq
      FROM newest WHERE (r.removed_tx, r.removed_seq) < (newest.tx, newest.seq)
    )
    SELECT (SELECT count(*) FROM events) AS status_events,
           (SELECT count(*) FROM jobs) AS relay_jobs`.execute(trx);
  const statusEvents = Number(removed[0]!.status_events);
  const relayJobs = Number(removed[0]!.relay_jobs);

  // Below both bounds, the statement took every event and relay job the doomed messages have.
  // At a bound, only the messages it emptied go now; the others (a huge history) stay, expired
  // and whole in the stats, and the next step goes on with them.
  let emptied = doomed;
  if (statusEvents >= EVENTS_PER_STEP || relayJobs >= EVENTS_PER_STEP) {
    const { rows: left } = await sql<{ id: string }>`
      SELECT d.id FROM pg_catalog.unnest(${ids}::text[]) AS d(id)
      WHERE EXISTS (SELECT 1 FROM status_events e WHERE e.message_id = d.id)
         OR EXISTS (SELECT 1 FROM relay_jobs j WHERE j.message_id = d.id)`.execute(trx);
    const unfinished = new Set(left.map((row) => row.id));
    emptied = doomed.filter((message) => !unfinished.has(message.id));
  }
  if (emptied.length === 0) {
    return { messages: 0, status_events: statusEvents, relay_jobs: relayJobs };
  }

  const gone = emptied.map((message) => message.id);
  const uncounted = rollupSums();
  for (const message of emptied) uncounted.add(contributionOfRow(message), -1);
  const deltas = uncounted.nonZero().map(deltaRow);
  const { rows } = await sql<{ messages: string }>`
    WITH gone AS (
      DELETE FROM messages WHERE id = ANY(${gone}::text[])
      RETURNING ref, client_status_callback, status_rank, created_at
    ), intents AS (${leftIntents(tokenTtlDays)}
    ), uncounted AS (
      INSERT INTO stats_deltas (minute, api, status, error_code, latency_bucket, messages,
        conflicts, final_within_10s)
      SELECT to_timestamp(r.minute / 1000), r.api, r.status, r.error_code, r.latency_bucket,
             r.messages, r.conflicts, r.final_within_10s
      FROM json_to_recordset(${JSON.stringify(deltas)}::json) AS r(minute double precision,
        api text, status text, error_code text, latency_bucket smallint, messages integer,
        conflicts integer, final_within_10s integer)
    )
    SELECT (SELECT count(*) FROM gone) AS messages`.execute(trx);
  const row = rows[0]!;
  return {
    messages: Number(row.messages),
    status_events: statusEvents,
    relay_jobs: relayJobs,
  };
}

/**
 * The send intents the removed messages (`gone`: their rows as deleted) leave behind: one for
 * each message sent through the proxy (it has a ref) with a client callback, whose send is not
 * over (below TERMINAL_RANK: no final status yet, so a receipt may still come), and whose
 * callback token may still be valid. Set-based, in the removal's statement: no round trip per
 * message, and the intent exists exactly when the message no longer does.
 *
 * Its created_at is the message's, the time of its send (its token was minted just before it):
 * an intent expires CALLBACK_TOKEN_TTL_DAYS after its created_at (send-intents.ts), so this one
 * lives as long as its token can still bring a callback, and not a whole TTL from now. An
 * intent already there for the ref (the send's own, or one left by an earlier removal of the
 * message recreated since) is kept: DO NOTHING, without a conflict target (ref is the table's
 * only unique key), which would need SELECT on send_intents of retention's user.
 */
function leftIntents(tokenTtlDays: number | undefined) {
  const tokenMayBeValid =
    tokenTtlDays === undefined
      ? sql`true`
      : sql`created_at > now() - make_interval(days => ${tokenTtlDays}::integer)`;
  return sql`
      INSERT INTO send_intents (ref, client_status_callback, created_at)
      SELECT ref, client_status_callback, created_at FROM gone
      WHERE ref IS NOT NULL AND client_status_callback IS NOT NULL
        AND status_rank < ${TERMINAL_RANK} AND ${tokenMayBeValid}
      ON CONFLICT DO NOTHING`;
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
