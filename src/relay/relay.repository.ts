import { sql } from 'kysely';
import type { RawBuilder, Selectable } from 'kysely';
import type { Db, RelayJobsTable } from '../db/database';
import { lastInTransaction } from '../db/kysely-pool';
import { withinStatementTimeout } from '../db/read-timeout';
import { projectSigningKeyRefSql } from '../messages/project-signing-key';

/** All SQL of the relay outbox's read and delivery side (the write side: messages/relay-outbox.ts). */

export type RelayJobRow = Selectable<RelayJobsTable>;
export type RelayState = RelayJobRow['state'];

/** A job claimed to be sent, with its message's project (the signing key is chosen by it). */
export interface ClaimedJobRow extends RelayJobRow {
  project_id: string | null;
  /**
   * For a job whose reference names no key configured now (none: no signature chose one; or
   * one rotated away), when the claim was asked for it: the key that verified the newest signed
   * callback of its message's project (messages/project-signing-key.ts); else null.
   */
  project_key_ref: string | null;
}

/** How many due jobs one claim takes, in all and per destination host. */
export interface ClaimLimits {
  limit: number;
  /** Jobs of one host a claim may take, for hosts not in `caps`. */
  perHost: number;
  /** Hosts that may be given fewer (0: none: its circuit is open, or it holds enough already). */
  caps: ReadonlyMap<string, number>;
}

/**
 * Claims up to `limit` due jobs for `leaseMs`, at most each host's cap, skipping rows another
 * replica is claiming (SKIP LOCKED) or holds a lease on, and every job of a message whose
 * earlier job is still pending, or another of whose jobs is leased: a message's jobs go out one
 * at a time, in order. Nothing stays locked during the HTTP call; the lease keeps other
 * replicas off, and a replica that dies mid-call only delays the job until its lease runs out
 * (at least once).
 *
 * Host by host (DESIGN §10: one host never delays the others): each host with due jobs gets an
 * equal share of the claim (up to its cap), oldest jobs first, and the shares are interleaved
 * — every host's oldest, then every host's second, … — so an older backlog of one host never
 * fills a claim. The hosts with pending jobs are walked on relay_jobs_host_due_idx (0010), one
 * index descent each, and only the first due jobs of the hosts taking part are read: a claim
 * costs about the number of hosts with pending jobs (~7 ms with 30, ~21 ms with 2 500, measured
 * with 300 000 jobs pending), never a paused or slow host's backlog, which a scan in due order
 * read past on every claim (100-150 ms for those 300 000 jobs).
 */
export async function claimDueJobs(
  db: Db,
  claim: ClaimLimits,
  leaseMs: number,
  /**
   * `knownKeyRefs`, given with several keys bound to no project: the fingerprints of the keys
   * configured now; a job whose reference names none of them (none, or a key rotated away)
   * gets its project's key (keyed, below).
   */
  options: { knownKeyRefs?: readonly string[] } = {},
): Promise<ClaimedJobRow[]> {
  const known = options.knownKeyRefs ?? null;
  const { rows } = await sql<ClaimedJobRow>`
    WITH RECURSIVE hosts(host, first_due) AS (
        (SELECT host, next_attempt_at FROM relay_jobs
         WHERE state = 'pending' ORDER BY host, next_attempt_at LIMIT 1)
      UNION ALL
        SELECT later.host, later.next_attempt_at FROM hosts h CROSS JOIN LATERAL (
          SELECT j.host, j.next_attempt_at FROM relay_jobs j
          WHERE j.state = 'pending' AND j.host > h.host
          ORDER BY j.host, j.next_attempt_at LIMIT 1) later
    ), room AS (
      -- The hosts with due jobs that may take some, those waiting longest first: a claim
      -- reads the jobs of no more hosts than it has room for jobs.
      SELECT h.host, COALESCE(c.cap, ${claim.perHost}::int) AS cap
      FROM hosts h
        LEFT JOIN unnest(${[...claim.caps.keys()]}::text[], ${[...claim.caps.values()]}::int[])
          AS c(host, cap) ON c.host = h.host
      WHERE h.first_due <= now() AND COALESCE(c.cap, ${claim.perHost}::int) > 0
      ORDER BY h.first_due
      LIMIT ${claim.limit}
    ), share AS (
      SELECT ceil(${claim.limit}::numeric / GREATEST(count(*), 1))::int AS n FROM room
    ), candidates AS (
      -- A host's first due jobs, in the order of relay_jobs_host_due_idx. The host is matched
      -- as an array: an equality would make it redundant in the ORDER BY, and the planner,
      -- taking every host's jobs to be spread evenly over time, may then walk
      -- relay_jobs_due_idx past every other host's due jobs instead. The rows-read test in
      -- test/relay/claim.test.ts says if a PostgreSQL release plans it differently.
      SELECT c.id FROM room CROSS JOIN share CROSS JOIN LATERAL (
        SELECT j.id, j.next_attempt_at,
          row_number() OVER (ORDER BY j.host, j.next_attempt_at, j.id) AS turn
        FROM relay_jobs j
        WHERE j.state = 'pending' AND j.host = ANY(ARRAY[room.host])
          AND j.next_attempt_at <= now()
          AND (j.lease_until IS NULL OR j.lease_until < now())
          -- Nor while another job of its message is out (leased): a dead job retried through
          -- the API is pending again below a later job that may be being sent.
          AND NOT EXISTS (
            SELECT 1 FROM relay_jobs p
            WHERE p.message_id = j.message_id AND p.state = 'pending' AND p.id <> j.id
              AND (p.id < j.id OR p.lease_until >= now()))
        ORDER BY j.host, j.next_attempt_at, j.id
        LIMIT LEAST(room.cap, share.n)) c
      ORDER BY c.turn, c.next_attempt_at, c.id
      LIMIT ${claim.limit}
    ), due AS (
      -- Locked here, not while choosing: only the jobs claimed are locked (and written), and the
      -- conditions are checked again on a row another replica changed meanwhile.
      SELECT j.id FROM relay_jobs j
      WHERE j.id IN (SELECT id FROM candidates)
        AND j.state = 'pending' AND (j.lease_until IS NULL OR j.lease_until < now())
      FOR UPDATE OF j SKIP LOCKED
    ), claimed AS (
    -- To the millisecond: what a Date holds, so that the outcome can name the lease exactly.
    UPDATE relay_jobs r
    SET lease_until = date_trunc('milliseconds', now() + ${leaseMs} * interval '1 millisecond')
    FROM due WHERE r.id = due.id
    -- The message's project picks the signing key of a job no verified signature chose one for
    -- (signing.ts relaySigningKey): one primary-key look per job claimed. A project never
    -- changes (record-events.ts refusedProjects); a message already removed has none.
    RETURNING r.*, (SELECT m.project_id FROM messages m WHERE m.id = r.message_id) AS project_id
    ), keyed AS (
      -- With several keys bound to no project (options.knownKeyRefs), the key of the newest
      -- signed callback of each project among those jobs: once per project, not per job, and
      -- only for jobs whose reference names no key configured now (token-admitted callbacks,
      -- or a key rotated away), none otherwise.
      SELECT p.project_id, ${projectSigningKeyRefSql(sql.ref('p.project_id'), known ?? [])} AS project_key_ref
      FROM (SELECT DISTINCT project_id FROM claimed
            WHERE ${known !== null}::boolean AND project_id IS NOT NULL
              AND (signing_key_ref IS NULL OR NOT signing_key_ref = ANY(${known ?? []}::text[]))) p)
    SELECT c.*, k.project_key_ref
    FROM claimed c LEFT JOIN keyed k ON k.project_id = c.project_id`.execute(db);
  return rows.sort((a, b) => a.id - b.id);
}

/**
 * How long one of the worker's writes (releaseJobs, recordOutcomes, noteFailingHosts,
 * forgetRecoveredHosts) may take, waits for rows included. As plain statements they had no
 * lock_timeout (that comes with our transactions' BEGIN, db/kysely-pool.ts) nor any statement
 * timeout: while another session held a job's or a host's row (an operator's `SELECT … FOR
 * UPDATE` left open), the outcome writes — one statement for all outcomes at a time — waited
 * for as long as it was held, every relay's outcome behind them, and the relay's stop() at
 * shutdown with them. The job writes no longer wait for a job's row at all (they skip a held
 * one: MINE); cancelled (57014) for any other reason, a write fails as any other: the jobs'
 * leases run out and they are sent again (at least once), a host's evidence waits for the next
 * batch. Far above what a batch by primary key takes; within the half of the lease's slack kept
 * for writing an outcome (relay-worker.ts), so a write that gives up does so before its leases
 * run out.
 */
export const RELAY_WRITE_TIMEOUT_MS = 5_000;

/**
 * Runs one of the worker's writes within RELAY_WRITE_TIMEOUT_MS, the COMMIT sent with it
 * (db/kysely-pool.ts): one round trip more than the plain statement took, not two.
 */
async function relayWrite<R>(db: Db, statement: RawBuilder<R>): Promise<R[]> {
  const { rows } = await withinStatementTimeout(db, RELAY_WRITE_TIMEOUT_MS, (trx) =>
    trx.executeQuery(lastInTransaction(statement.compile(trx))),
  );
  return rows as R[];
}

/**
 * A job row `r` still pending under the lease `o.lease_ms` (epoch ms) it was claimed under: the
 * one condition on which a replica may write what came of its claim (releaseJobs,
 * recordOutcomes). Claims set leases to the millisecond, what a Date holds.
 */
const stillLeased = sql`r.state = 'pending'
  AND date_trunc('milliseconds', r.lease_until) = to_timestamp(o.lease_ms / 1000)`;

/**
 * `mine`: the jobs of `o` (a write's jobs as rows, with `id` and `lease_ms`) still under the
 * lease this replica claimed them under, locked — all but those another session holds (SKIP
 * LOCKED: an operator's `SELECT … FOR UPDATE` left open, a long transaction). The job writes
 * never wait for a row: a batch of outcomes that waited for one held row gave up on all of
 * them at RELAY_WRITE_TIMEOUT_MS, and every relay of the batch, delivered to its app already,
 * was sent again once its lease ran out. A held job alone is left to its lease (`held`), and
 * sent again then: what at least once allows. Nothing else holds a leased job's row for
 * longer than a statement: claims and expiry skip leased rows before locking, redaction only
 * touches delivered and dead ones.
 */
const MINE = sql`mine AS (
      SELECT r.id FROM relay_jobs r JOIN o ON r.id = o.id
      WHERE ${stillLeased}
      FOR UPDATE OF r SKIP LOCKED)`;

/** `held`: the jobs of `o` still this replica's that `mine` skipped: another session holds them. */
const HELD = sql`held AS (
      SELECT o.id FROM o JOIN relay_jobs r ON r.id = o.id
      WHERE ${stillLeased} AND o.id NOT IN (SELECT id FROM mine))`;

/**
 * Gives claimed jobs back untouched (their host had no room, or this replica stops) — each only
 * while it still holds the lease this replica claimed it under: one that ran out and was
 * claimed by another replica is that replica's now, and clearing its lease would let a third
 * send it meanwhile and drop its outcome (recordOutcomes). One another session holds (MINE)
 * keeps its lease until it runs out.
 */
export async function releaseJobs(
  db: Db,
  jobs: ReadonlyArray<{ id: number; lease: Date }>,
): Promise<void> {
  if (jobs.length === 0) return;
  const rows = jobs.map((job) => ({ id: job.id, lease_ms: job.lease.getTime() }));
  await relayWrite(
    db,
    sql`
    WITH o AS (
      SELECT * FROM json_to_recordset(${JSON.stringify(rows)}::json)
        AS o(id bigint, lease_ms double precision)
    ), ${MINE}
    UPDATE relay_jobs r SET lease_until = NULL
    FROM o JOIN mine ON mine.id = o.id
    WHERE r.id = o.id AND ${stillLeased}`,
  );
}

/** What one attempt came to, as the worker writes it back. */
export interface AttemptOutcome {
  id: number;
  /**
   * The lease the attempt was made under (the claimed row's lease_until): the outcome is
   * written only while the job still holds it, so a replica that lost the job (its database
   * stalled past the lease, another replica claimed it) cannot overwrite what happened since.
   */
  lease: Date;
  state: 'delivered' | 'pending' | 'dead';
  /**
   * A request was made (false: the job expired without one, claimExpiredJobs): only requests
   * count in `attempts`.
   */
  attempted: boolean;
  /** pending: wait before the next attempt. */
  delayMs: number | null;
  status: number | null;
  error: string | null;
  /**
   * keep it, clear it (delivered), or replace it (dead: without the message body), base64.
   * `ifRedacted` (STORE_BODY=true, leaving pending): what replaces it instead when the message
   * has been redacted (its body `''`, src/messages/redaction.ts) by the time the outcome is
   * written — a relay pending at the redaction went out with the text SignalWire sent, and is
   * kept as a redaction leaves a relay (src/relay/relay-redaction.ts), not with that text.
   */
  payload:
    { keep: true; ifRedacted?: { base64: string | null } } | { keep: false; base64: string | null };
}

/**
 * Writes the outcomes of many attempts in one statement and one commit: a commit per relay
 * would cost the database more than the relays themselves. An outcome whose lease the job no
 * longer holds is not written (the job was claimed again: its newer attempt decides), nor one
 * whose row another session holds (MINE): returned, the ids of those, left to their lease.
 * Not a named statement (see messages/relay-outbox.ts): planned with its values, the join is
 * on the primary key.
 *
 * `recovered` (its hosts: those a relay of the batch was delivered to): the same statement
 * brings forward those hosts' jobs held back by an app's Retry-After (429 or 503) beyond their
 * schedule's step, to that step (now, when it has passed): an app that said "back tomorrow"
 * from a maintenance page over a few minutes' deploy answers again, and that message's relays
 * — its later callbacks queue behind them — go out then, not a day later, as a paused host's
 * go out once its circuit's trial succeeds. Never sooner than the schedule: a host that
 * rate-limits some relays while it takes others sees each retried no faster than without a
 * Retry-After. Bounded: RETRY_AFTER_LOOK jobs per host, the latest due first (the longest
 * held), one walk down relay_jobs_host_due_idx; a host with no job due later costs one index
 * descent. A job another session holds is left as it is (SKIP LOCKED), as is one being sent.
 */
export async function recordOutcomes(
  db: Db,
  outcomes: readonly AttemptOutcome[],
  recovered?: { hosts: readonly string[]; schedule: readonly number[] },
): Promise<Set<number>> {
  if (outcomes.length === 0) return new Set();
  const hosts = [...new Set(recovered?.hosts ?? [])];
  // The wait the schedule set after k attempts: step k (1-based), what released jobs keep.
  const steps = [...(recovered?.schedule ?? [])];
  const rows = outcomes.map((o) => ({
    id: o.id,
    lease_ms: o.lease.getTime(),
    state: o.state,
    attempted: o.attempted,
    delay_ms: o.delayMs,
    status: o.status,
    error: o.error,
    keep_payload: o.payload.keep,
    unless_redacted: o.payload.keep && o.payload.ifRedacted !== undefined,
    payload: o.payload.keep ? (o.payload.ifRedacted?.base64 ?? null) : o.payload.base64,
  }));
  const held = await relayWrite(
    db,
    sql<{ id: string }>`
    WITH o AS (
      SELECT * FROM json_to_recordset(${JSON.stringify(rows)}::json) AS o(id bigint,
        lease_ms double precision, state text, attempted boolean, delay_ms double precision,
        status integer, error text, keep_payload boolean, unless_redacted boolean, payload text)
    ), ${MINE}, ${HELD}, written AS (
    UPDATE relay_jobs r SET
      state = o.state,
      attempts = r.attempts + CASE WHEN o.attempted THEN 1 ELSE 0 END,
      next_attempt_at = CASE WHEN o.state = 'pending'
        THEN now() + o.delay_ms * interval '1 millisecond' ELSE r.next_attempt_at END,
      lease_until = NULL,
      last_status = o.status,
      last_error = o.error,
      delivered_at = CASE WHEN o.state = 'delivered' THEN now() ELSE r.delivered_at END,
      updated_at = now(),
      payload = CASE
        WHEN o.keep_payload AND NOT (o.unless_redacted AND EXISTS (
          SELECT 1 FROM messages m WHERE m.id = r.message_id AND m.body = ''))
        THEN r.payload ELSE decode(o.payload, 'base64') END
    FROM o JOIN mine ON mine.id = o.id
    WHERE r.id = o.id AND ${stillLeased}
    ), waiting AS (
      -- The host matched as an array, as claimDueJobs matches it: the walk stays on
      -- relay_jobs_host_due_idx, never relay_jobs_due_idx past every host's jobs.
      SELECT j.id FROM pg_catalog.unnest(${hosts}::text[]) AS h(host) CROSS JOIN LATERAL (
        SELECT j.id, j.attempts, j.last_status, j.updated_at, j.next_attempt_at
        FROM relay_jobs j
        WHERE j.state = 'pending' AND j.host = ANY(ARRAY[h.host]) AND j.next_attempt_at > now()
        ORDER BY j.host DESC, j.next_attempt_at DESC, j.id DESC
        LIMIT ${RETRY_AFTER_LOOK}) j
      WHERE j.last_status IN (429, 503) AND j.id NOT IN (SELECT id FROM o)
        -- Its outcome was written at updated_at, due next_attempt_at: later than the step.
        AND j.next_attempt_at > j.updated_at
          + (${steps}::float8[])[j.attempts] * interval '1 millisecond'
    ), releasable AS (
      SELECT r.id FROM relay_jobs r
      WHERE r.id IN (SELECT id FROM waiting)
        AND r.state = 'pending' AND (r.lease_until IS NULL OR r.lease_until < now())
      FOR UPDATE OF r SKIP LOCKED
    ), released AS (
    -- updated_at kept: the step is reckoned from it, and it still says when the answer came.
    UPDATE relay_jobs r SET next_attempt_at = LEAST(r.next_attempt_at, GREATEST(now(),
      r.updated_at + (${steps}::float8[])[r.attempts] * interval '1 millisecond'))
    FROM releasable WHERE r.id = releasable.id)
    -- held reads the rows as the statement began: before written changed them.
    SELECT id FROM held`,
  );
  return new Set(held.map((row) => Number(row.id)));
}

/** Jobs of a host a delivery to it looks at for a Retry-After to end (recordOutcomes). */
export const RETRY_AFTER_LOOK = 100;

/** A host a request to which failed (relay_hosts.last_error: how). */
export interface HostFailure {
  host: string;
  error: string | null;
}

/**
 * The hosts in relay_hosts (failing now, as far as the replicas know), each with whether it
 * has failed every real attempt for at least `windowMs`, and recently: whether its jobs may
 * expire (claimExpiredJobs checks it again for each).
 */
export async function relayHosts(
  db: Db,
  windowMs: number,
): Promise<Array<{ host: string; expiring: boolean }>> {
  const window = sql`${windowMs} * interval '1 millisecond'`;
  const { rows } = await sql<{ host: string; expiring: boolean }>`
    SELECT host,
      failing_since <= now() - ${window} AND last_failure_at > now() - ${window} AS expiring
    FROM relay_hosts ORDER BY host`.execute(db);
  return rows;
}

/**
 * Records that requests to these hosts failed (relay_hosts): stamped now, and failing since
 * now unless they were already failing — a row last stamped more than `windowMs` ago is old
 * news (the relay was stopped, or its host had no due relays): its failing starts again.
 * Rows are locked in host order, as forgetRecoveredHosts locks them, so two replicas'
 * statements never wait for each other in a cycle.
 */
export async function noteFailingHosts(
  db: Db,
  failures: readonly HostFailure[],
  windowMs: number,
): Promise<void> {
  if (failures.length === 0) return;
  await relayWrite(
    db,
    sql`
    INSERT INTO relay_hosts AS h (host, failing_since, last_failure_at, last_error)
    SELECT f.host, now(), now(), f.error
    FROM json_to_recordset(${JSON.stringify(failures)}::json) AS f(host text, error text)
    ORDER BY f.host
    ON CONFLICT (host) DO UPDATE SET
      failing_since = CASE WHEN h.last_failure_at < now() - ${windowMs} * interval '1 millisecond'
        THEN now() ELSE h.failing_since END,
      last_failure_at = now(),
      last_error = excluded.last_error`,
  );
}

/** A request to each of these hosts was delivered: they are not failing (relay_hosts). */
export async function forgetRecoveredHosts(db: Db, hosts: readonly string[]): Promise<void> {
  if (hosts.length === 0) return;
  await relayWrite(
    db,
    sql`
    DELETE FROM relay_hosts WHERE host IN (
      SELECT host FROM relay_hosts WHERE host = ANY(${[...hosts]}::text[])
      ORDER BY host FOR UPDATE)`,
  );
}

/** Expiry's view of the host of a job it claimed. */
export interface ExpiredJobRow extends RelayJobRow {
  host_failing_since: Date;
  host_last_error: string | null;
}

/** Where a walk through one host's pending jobs got to (relay_jobs_host_due_idx order). */
export interface ExpiryCursor {
  /** As PostgreSQL wrote it: to the microsecond (a Date's milliseconds would walk in place). */
  dueAt: string;
  id: number;
}

/**
 * Looks at up to `limit` pending jobs of one host, after `after` in due order, and claims
 * (leases, as claimDueJobs does) those whose retry schedule has run out while their host kept
 * failing, for the worker to make dead without another request. Returns them, and where the
 * walk got to (null: the end of the host's jobs; the next walk starts from the beginning).
 *
 * Why: a host paused by a replica's circuit breaker has its jobs not claimed, so they never
 * used up their schedule (DESIGN §10: retried on RELAY_RETRY_SCHEDULE, then dead). Nothing
 * here asks a breaker, which is each replica's own; a job expires only when the database shows
 * all of:
 * - its host has failed every real attempt, from any replica, since `failing_since`
 *   (relay_hosts: a delivery to it ends that), and failed again within the last `windowMs`
 *   (older news says nothing of now: the relay was stopped, or had nothing due for it);
 * - it is its message's next job (no earlier job pending), unleased;
 * - what its schedule still holds has passed, and `windowMs` more, since the later of: when it
 *   could first have been sent (its own due time, or when its message's previous job left
 *   pending — a message's later jobs do not age while they wait behind its earlier ones), and
 *   when its host began failing. So its host failed all through what would have been the
 *   rest of its schedule, where every attempt would have failed too. A host that fails some
 *   requests but delivers others never counts as failing for long: a backlog waiting for a
 *   slow app does not expire, however long it waits.
 * `remainingMs[k]`: what the schedule still holds after k attempts (its last is 0).
 *
 * A walk, not the host's first jobs each time: a message's later job keeps the due time it
 * was written with, so due order is not expiry order, and the first jobs of a host could be
 * ones not expiring for hours while older ones behind them are long overdue.
 */
export async function claimExpiredJobs(
  db: Db,
  options: {
    host: string;
    after: ExpiryCursor | null;
    limit: number;
    windowMs: number;
    remainingMs: readonly number[];
    leaseMs: number;
  },
): Promise<{ jobs: ExpiredJobRow[]; next: ExpiryCursor | null; looked: number }> {
  const { host, after, limit, windowMs, remainingMs, leaseMs } = options;
  const window = sql`${windowMs} * interval '1 millisecond'`;
  const last = remainingMs.length - 1;
  // The row comparison on the whole key of relay_jobs_host_due_idx: one index descent to the
  // cursor, then the next rows in order.
  const { rows: slice } = await sql<{
    id: number;
    due_at: string;
    failing_since: string;
    expired: boolean;
  }>`
    WITH host AS (
      SELECT host, failing_since FROM relay_hosts
      WHERE host = ${host}
        AND failing_since <= now() - ${window} AND last_failure_at > now() - ${window}
    )
    SELECT j.id, j.next_attempt_at::text AS due_at, h.failing_since::text AS failing_since,
      (j.lease_until IS NULL OR j.lease_until < now())
        AND NOT EXISTS (
          SELECT 1 FROM relay_jobs p
          WHERE p.message_id = j.message_id AND p.state = 'pending' AND p.id < j.id)
        AND GREATEST(j.next_attempt_at, h.failing_since, (
              SELECT max(p.updated_at) FROM relay_jobs p
              WHERE p.message_id = j.message_id AND p.id < j.id))
            + (${[...remainingMs]}::float8[])[LEAST(j.attempts, ${last}) + 1]
              * interval '1 millisecond'
            + ${window} <= now() AS expired
    FROM host h CROSS JOIN LATERAL (
      SELECT j.id, j.message_id, j.attempts, j.next_attempt_at, j.lease_until
      FROM relay_jobs j
      WHERE j.state = 'pending' AND j.host = h.host
        AND (j.host, j.next_attempt_at, j.id)
          > (h.host, ${after?.dueAt ?? '-infinity'}::timestamptz, ${after?.id ?? 0}::bigint)
      ORDER BY j.host, j.next_attempt_at, j.id
      LIMIT ${limit}) j
    ORDER BY j.next_attempt_at, j.id`.execute(db);
  const end = slice.at(-1);
  const next = slice.length < limit || !end ? null : { dueAt: end.due_at, id: end.id };
  const looked = slice.length;
  const ids = slice.filter((row) => row.expired).map((row) => row.id);
  if (ids.length === 0) return { jobs: [], next, looked };
  // Locked and checked again here: another replica may have claimed one, or a retried job
  // (POST /v1/relays/:id/retry) may stand before one again; and the host's row must be the one
  // judged above, still recent. A delivery since removed it (no row: nothing is claimed), and
  // a failure after that made a new one, failing since then.
  const { rows } = await sql<ExpiredJobRow>`
    WITH expired AS (
      SELECT j.id FROM relay_jobs j
      WHERE j.id = ANY(${ids}::bigint[])
        AND j.state = 'pending' AND (j.lease_until IS NULL OR j.lease_until < now())
        AND NOT EXISTS (
          SELECT 1 FROM relay_jobs p
          WHERE p.message_id = j.message_id AND p.state = 'pending' AND p.id < j.id)
      FOR UPDATE OF j SKIP LOCKED)
    UPDATE relay_jobs r
    SET lease_until = date_trunc('milliseconds', now() + ${leaseMs} * interval '1 millisecond')
    FROM expired, relay_hosts h
    WHERE r.id = expired.id AND h.host = r.host
      AND h.failing_since = ${slice[0]!.failing_since}::timestamptz
      AND h.last_failure_at > now() - ${window}
    RETURNING r.*, h.failing_since AS host_failing_since, h.last_error AS host_last_error`.execute(
    db,
  );
  return { jobs: rows.sort((a, b) => a.id - b.id), next, looked };
}

/**
 * Forgets hosts not seen failing for `windowMs`: relay_hosts holds the hosts failing now.
 * Rows another statement holds are skipped (they are being stamped, so not quiet), and the
 * rest are locked in host order, as noteFailingHosts and forgetRecoveredHosts lock them.
 */
export async function forgetQuietHosts(db: Db, windowMs: number): Promise<void> {
  await sql`DELETE FROM relay_hosts WHERE host IN (
      SELECT host FROM relay_hosts
      WHERE last_failure_at < now() - ${windowMs} * interval '1 millisecond'
      ORDER BY host FOR UPDATE SKIP LOCKED)`.execute(db);
}

/** What a retry did: the relay retried, or why not. */
export type RetryOutcome =
  | { retried: RelayJobRow }
  | { refused: 'delivered' }
  /**
   * A worker holds it (an attempt, or its expiry): its outcome would overwrite the retry.
   * `leaseLeftMs`: measured on the database's clock, which set the lease — this replica's
   * own clock may be seconds or minutes off it.
   */
  | { refused: 'being_attempted'; leaseLeftMs: number };

/**
 * A relay retried by an operator (DESIGN §10): a dead one is pending again, due now, with a
 * fresh retry schedule; a pending one is brought forward — due now, its attempts kept — so
 * that once its app answers again its backlog need not wait hours for the next scheduled
 * attempt (the SwStatusRelayBacklog runbook). The worker's rules still hold: a message's
 * relays go out in order, and a host whose circuit is open gets its one trial request. A
 * pending relay a worker holds is not retried: the attempt's (or the expiry's) outcome, written
 * under its lease, would undo the retry after it was answered; its answer says when the lease
 * ends. Undefined: no such job.
 *
 * One transaction whose statements are cancelled after `timeoutMs` (57014), on top of the
 * BEGIN's lock_timeout (55P03, db/kysely-pool.ts 6.). Asked by a dashboard on the primary's
 * pool, the one the callbacks' commits take their connections from: a plain statement waited
 * for as long as another session held the job's row (an operator's `SELECT … FOR UPDATE` left
 * open, a non-concurrent index build on relay_jobs), and kept its connection after its caller
 * had gone; ten of them took the whole pool.
 */
export async function retryJob(
  db: Db,
  id: number,
  timeoutMs: number,
): Promise<RetryOutcome | undefined> {
  return withinStatementTimeout(db, timeoutMs, async (trx) => {
    // One statement for both states: a worker writing the relay dead (its last attempt failed)
    // while this waits for the row is seen as dead when PostgreSQL checks the row again, and
    // revived — two statements missed it between them and called it delivered.
    const retried = await trx
      .updateTable('relay_jobs')
      .set({
        state: 'pending',
        attempts: sql`CASE WHEN state = 'dead' THEN 0 ELSE attempts END`,
        next_attempt_at: sql`CASE WHEN state = 'dead' THEN now() ELSE least(next_attempt_at, now()) END`,
        updated_at: sql`now()`,
      })
      .where('id', '=', id)
      .where((eb) =>
        eb.or([
          eb('state', '=', 'dead'),
          eb.and([
            eb('state', '=', 'pending'),
            eb.or([eb('lease_until', 'is', null), eb('lease_until', '<', sql<Date>`now()`)]),
          ]),
        ]),
      )
      .returningAll()
      .executeTakeFirst();
    if (retried) return { retried };
    const job = await trx
      .selectFrom('relay_jobs')
      .select([
        'state',
        sql<number | null>`(extract(epoch FROM lease_until - clock_timestamp()) * 1000)::float8`.as(
          'lease_left_ms',
        ),
      ])
      .where('id', '=', id)
      .executeTakeFirst();
    if (!job) return undefined;
    return job.state === 'pending' && job.lease_left_ms !== null
      ? { refused: 'being_attempted', leaseLeftMs: job.lease_left_ms }
      : { refused: 'delivered' };
  });
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
