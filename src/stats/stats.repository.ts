import { sql } from 'kysely';
import type { Db } from '../db/database';
import { IN_OUR_TRANSACTION, lastInTransaction, preparedStatement } from '../db/kysely-pool';
import { READ_STATEMENT_TIMEOUT_MS, markedAsRead } from '../db/read-timeout';
import { FINAL_WITHIN_MS, latencyBucketFloors, contributionOfRow } from '../messages/rollup';
import type { Api } from '../messages/statuses';
import type { Bucket, CountRow, LatencyRow, Range, SeriesRow, StatsPlan } from './stats-summary';

/**
 * The stats rollups' SQL (tables: db/migrations/0003, and the narrow ones derived from them by
 * triggers, 0009; written by the write path as deltas, src/messages/record-events.repository.ts).
 */

// The advisory lock that lets one replica at a time fold deltas (or rebuild): an arbitrary
// constant, 'swst' in ASCII.
const ROLLUP_LOCK = 0x73777374;

const toDate = (ms: number) => new Date(ms);

interface RollupRow {
  part: 'counts' | 'latency' | 'series';
  series_start: Date | null;
  api: string | null;
  status: string | null;
  error_code: string | null;
  latency_bucket: number | null;
  messages: string;
  conflicts: string | null;
  final_within_10s: string | null;
}

// The narrow rollups of a window, as one statement; `$9` the api filter (or NULL), `$10` the
// series bucket. Parts: the counts by key, the histogram, and (second text) the series.
const ROLLUP_PIECES = `
  WITH counts AS (
    SELECT hour AS t, api, status, error_code, messages, conflicts, final_within_10s
    FROM stats_hour_counts WHERE hour >= $1 AND hour < $2
    UNION ALL
    SELECT minute, api, status, error_code, messages, conflicts, final_within_10s
    FROM stats_minute_counts
    WHERE (minute >= $3 AND minute < $4) OR (minute >= $5 AND minute < $6)
    UNION ALL
    SELECT minute, api, status, error_code, messages, conflicts, final_within_10s
    FROM stats_deltas WHERE minute >= $7 AND minute < $8
  ), latency AS (
    SELECT api, latency_bucket, messages FROM stats_hour_latency WHERE hour >= $1 AND hour < $2
    UNION ALL
    SELECT api, latency_bucket, messages FROM stats_minute_latency
    WHERE (minute >= $3 AND minute < $4) OR (minute >= $5 AND minute < $6)
    UNION ALL
    SELECT api, latency_bucket, messages FROM stats_deltas
    WHERE minute >= $7 AND minute < $8 AND latency_bucket >= 0
  ), filtered AS (
    SELECT * FROM counts WHERE $9::text[] IS NULL OR api = ANY($9::text[])
  )
  SELECT 'counts' AS part, NULL::timestamptz AS series_start, api, status, error_code,
         NULL::smallint AS latency_bucket, sum(messages) AS messages,
         sum(conflicts) AS conflicts, sum(final_within_10s) AS final_within_10s
  FROM filtered GROUP BY api, status, error_code
  UNION ALL
  SELECT 'latency', NULL, NULL, NULL, NULL, latency_bucket, sum(messages), NULL, NULL
  FROM latency WHERE $9::text[] IS NULL OR api = ANY($9::text[])
  GROUP BY latency_bucket`;
const READ_ROLLUPS = preparedStatement('sw_status_stats_rollups', ROLLUP_PIECES);
// With a bucket, `filtered` is read twice and PostgreSQL computes it once (materialised).
const READ_ROLLUPS_WITH_SERIES = preparedStatement(
  'sw_status_stats_rollups_series',
  `${ROLLUP_PIECES}
  UNION ALL
  SELECT 'series', date_trunc($10::text, t, 'UTC'), NULL, status, NULL, NULL, sum(messages),
         NULL, NULL
  FROM filtered GROUP BY 2, status`,
);

/**
 * The rollup counts of a plan's whole minutes and hours, in ONE statement (one snapshot): a
 * delta is either still in stats_deltas or already folded into the rollups, never both. Reads
 * the narrow rollups (db/migrations/0009): the counts by key (their latencyBucket is -1: the
 * histogram comes apart), the latency histogram, and — only when a bucket is asked — the
 * series by bucket start and status, from the same counts.
 *
 * A prepared statement (planning its six scans cost as much as running them), run with
 * parallel workers off: PostgreSQL would otherwise start two workers for a statement that
 * needs ~2 ms, and starting them cost more CPU than the statement itself (measured at 10 M
 * events: 8 ms with workers, 4 ms without, EXPLAIN ANALYZE), and with the query API's statement
 * timeout (db/read-timeout.ts). Both are set for this transaction only (SET LOCAL), so they
 * hold behind PgBouncer in transaction mode too.
 */
export async function readRollups(
  db: Db,
  plan: StatsPlan,
  filter: { apis?: readonly string[]; bucket?: Bucket },
  statementTimeoutMs = READ_STATEMENT_TIMEOUT_MS,
): Promise<{ counts: CountRow[]; latency: LatencyRow[]; series: SeriesRow[] }> {
  const apis = filter.apis?.length ? [...filter.apis] : null;
  const none: Range = [0, 0];
  const hours = plan.hours ?? none;
  const minutesA = plan.minutes[0] ?? none;
  const minutesB = plan.minutes[1] ?? none;
  const deltas = plan.deltas ?? none;
  const parameters = [
    ...[hours, minutesA, minutesB, deltas].flatMap(([from, to]) => [toDate(from), toDate(to)]),
    apis,
  ];
  const { rows } = await db.transaction().execute(async (trx) => {
    // Conditioned on our transaction, so it may travel with the BEGIN (db/kysely-pool.ts); and
    // its connection gives up on an answer a margin after the statement timeout, as readWithin's.
    const settings = sql`SELECT set_config('max_parallel_workers_per_gather', '0', true),
                                set_config('statement_timeout', ${String(statementTimeoutMs)}, true)
                         WHERE ${sql.raw(IN_OUR_TRANSACTION)}`;
    await trx.executeQuery(markedAsRead(settings.compile(trx), statementTimeoutMs));
    return trx.executeQuery<RollupRow>(
      lastInTransaction(
        filter.bucket
          ? READ_ROLLUPS_WITH_SERIES([...parameters, filter.bucket])
          : READ_ROLLUPS(parameters),
      ),
    );
  });
  const counts: CountRow[] = [];
  const latency: LatencyRow[] = [];
  const series: SeriesRow[] = [];
  for (const row of rows) {
    if (row.part === 'counts') {
      counts.push({
        api: row.api!,
        status: row.status!,
        errorCode: row.error_code!,
        latencyBucket: -1,
        messages: Number(row.messages),
        conflicts: Number(row.conflicts),
        finalWithin10s: Number(row.final_within_10s),
      });
    } else if (row.part === 'latency') {
      latency.push({ latencyBucket: row.latency_bucket!, messages: Number(row.messages) });
    } else {
      series.push({
        start: row.series_start!.getTime(),
        status: row.status!,
        messages: Number(row.messages),
      });
    }
  }
  return { counts, latency, series };
}

/**
 * The messages first seen in the part-minutes at a window's edges, counted one by one with
 * the write path's own contribution function (messages_created_idx: a range scan).
 */
export async function readEdges(
  db: Db,
  edges: readonly Range[],
  filter: { apis?: readonly Api[] },
): Promise<{ counts: CountRow[]; series: SeriesRow[] }> {
  if (edges.length === 0) return { counts: [], series: [] };
  const apis = filter.apis?.length ? [...filter.apis] : null;
  const [a, b = a] = edges as [Range, Range?];
  const messages = await db
    .selectFrom('messages')
    .select(['created_at', 'api', 'status', 'error_code', 'conflict', 'first_terminal_at'])
    .where((eb) =>
      eb.or([
        eb.and([eb('created_at', '>=', toDate(a[0])), eb('created_at', '<', toDate(a[1]))]),
        eb.and([eb('created_at', '>=', toDate(b![0])), eb('created_at', '<', toDate(b![1]))]),
      ]),
    )
    .$if(apis !== null, (query) => query.where('api', 'in', apis!))
    .execute();
  const counts: CountRow[] = [];
  const series: SeriesRow[] = [];
  for (const message of messages) {
    counts.push(contributionOfRow(message));
    series.push({ start: message.created_at.getTime(), status: message.status, messages: 1 });
  }
  return { counts, series };
}

/**
 * The narrow rollups (counts and latency, which GET /v1/stats reads) are kept by triggers on the
 * wide ones (db/migrations/0009). A session whose session_replication_role is `replica` — left
 * on the role or the database after a migration with AWS DMS or pglogical, which tell you to set
 * it on the target — fires no ordinary triggers: a fold would move deltas into the wide rollups
 * only, and the stats would lose those messages for good. So folds and rebuilds refuse while it
 * is so; the deltas wait (the stats read them unfolded meanwhile), and are folded once it is
 * `origin` again.
 */
const TRIGGERS_OFF = sql<boolean>`current_setting('session_replication_role') = 'replica'`;

export class TriggersOffError extends Error {
  constructor() {
    super(
      "session_replication_role is 'replica' for sw-status's sessions (set on its role or its " +
        'database): PostgreSQL fires no triggers then, and the stats rollups are kept by triggers, ' +
        'so stats deltas are not folded (GET /v1/stats stays exact, reading them unfolded, but ' +
        'slows as they pile up). Reset it — ALTER ROLE <role> RESET session_replication_role ' +
        '(or ALTER DATABASE …) — and restart the pods: a session keeps the setting it began with.',
    );
    this.name = 'TriggersOffError';
  }
}

/**
 * Folds the deltas committed so far into the minute and hour rollups, unless another replica
 * is doing it (then returns null). The DELETE … RETURNING takes exactly the deltas this
 * statement's snapshot sees, so one written meanwhile waits for the next round. Rollup rows
 * that came down to zero are removed. Returns how many deltas were folded.
 */
export async function foldDeltas(db: Db): Promise<number | null> {
  return db.transaction().execute(async (trx) => {
    const { rows } = await sql<{
      locked: boolean;
      triggers_off: boolean;
      moved: string;
      minutes: Date[] | null;
    }>`
      WITH lock AS MATERIALIZED (
        SELECT pg_try_advisory_xact_lock(${ROLLUP_LOCK}) AS locked, ${TRIGGERS_OFF} AS triggers_off
      ),
      moved AS (DELETE FROM stats_deltas WHERE (SELECT locked AND NOT triggers_off FROM lock) RETURNING *),
      sums AS (
        SELECT minute, api, status, error_code, latency_bucket, sum(messages) AS messages,
               sum(conflicts) AS conflicts, sum(final_within_10s) AS final_within_10s
        FROM moved GROUP BY 1, 2, 3, 4, 5
      ), minutes AS (
        INSERT INTO stats_minutes AS r
        SELECT * FROM sums ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (minute, api, status, error_code, latency_bucket) DO UPDATE SET
          messages = r.messages + excluded.messages, conflicts = r.conflicts + excluded.conflicts,
          final_within_10s = r.final_within_10s + excluded.final_within_10s
      ), hours AS (
        INSERT INTO stats_hours AS r
        SELECT date_trunc('hour', minute, 'UTC'), api, status, error_code, latency_bucket,
               sum(messages), sum(conflicts), sum(final_within_10s)
        FROM sums GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (hour, api, status, error_code, latency_bucket) DO UPDATE SET
          messages = r.messages + excluded.messages, conflicts = r.conflicts + excluded.conflicts,
          final_within_10s = r.final_within_10s + excluded.final_within_10s
      )
      SELECT (SELECT locked FROM lock) AS locked, (SELECT triggers_off FROM lock) AS triggers_off,
             (SELECT count(*) FROM moved) AS moved,
             (SELECT pg_catalog.array_agg(DISTINCT minute) FROM sums) AS minutes`.execute(trx);
    const { locked, triggers_off, moved, minutes } = rows[0]!;
    if (triggers_off) throw new TriggersOffError();
    if (!locked) return null;
    if (minutes?.length) {
      // In a statement of its own: the one above cannot see its own upserts.
      await sql`
        WITH m AS (DELETE FROM stats_minutes WHERE minute = ANY(${minutes}::timestamptz[])
                     AND messages = 0)
        DELETE FROM stats_hours
        WHERE hour = ANY(SELECT date_trunc('hour', t, 'UTC') FROM pg_catalog.unnest(${minutes}::timestamptz[]) t)
          AND messages = 0`.execute(trx);
    }
    return Number(moved);
  });
}

/**
 * Recounts every rollup from the `messages` table: after a rolling upgrade (replicas of an
 * older version wrote no deltas), or if the rollups were ever doubted. One REPEATABLE READ
 * transaction: the old rollups go and the recount takes their place in one snapshot, so deltas
 * committed meanwhile stay and apply on top.
 *
 * The counting is PostgreSQL's, one GROUP BY over `messages` (db/migrations/0003 counted the
 * first rollups the same way): the rebuild runs in a pod beside the service (512 MiB, Node's
 * heap about 256 MiB), and counting in the process held one object per rollup key of the whole
 * history until the end (~360 bytes each: 800 000 messages at the scale benchmark's 50 keys a
 * minute, eleven days, did not fit). A key is computed as rollup.ts's contributionOf computes
 * it, from the same whole milliseconds JavaScript reads (node-postgres truncates microseconds);
 * the latency bucket by width_bucket over latencyBucketFloors, found from latencyBucket
 * itself, so no second logarithm has to agree with JavaScript's at a bucket's edge.
 *
 * The rollup lock is taken on the connection BEFORE the transaction begins, so the snapshot is
 * taken once no fold can be running. Taken inside it, the snapshot would come first (a
 * REPEATABLE READ transaction takes it at its first statement, the lock's own): a fold
 * committing while the rebuild waited would have deleted deltas that snapshot still sees, and
 * the rebuild's own DELETE of them would fail (could not serialize access).
 */
export async function rebuildRollups(
  db: Db,
  log: (line: string) => void = () => undefined,
): Promise<{ messages: number; keys: number }> {
  return db.connection().execute(async (connection) => {
    const { rows } = await sql<{ off: boolean }>`SELECT ${TRIGGERS_OFF} AS off`.execute(connection);
    if (rows[0]!.off) throw new TriggersOffError();
    await sql`SELECT pg_advisory_lock(${ROLLUP_LOCK})`.execute(connection);
    try {
      return await recount(connection, log);
    } finally {
      await sql`SELECT pg_advisory_unlock(${ROLLUP_LOCK})`.execute(connection);
    }
  });
}

function recount(db: Db, log: (line: string) => void): Promise<{ messages: number; keys: number }> {
  return db
    .transaction()
    .setIsolationLevel('repeatable read')
    .execute(async (trx) => {
      await sql`DELETE FROM stats_deltas`.execute(trx);
      await sql`DELETE FROM stats_minutes`.execute(trx);
      await sql`DELETE FROM stats_hours`.execute(trx);
      log('counting messages');
      // In time order, so that a window's rows sit together on disk.
      const { rows } = await sql<{ keys: string; messages: string }>`
        WITH facts AS (
          SELECT date_trunc('minute', created_at, 'UTC') AS minute, api, status,
                 coalesce(error_code, '') AS error_code, conflict,
                 CASE WHEN first_terminal_at IS NOT NULL THEN greatest(0, round(1000 * extract(
                   epoch FROM date_trunc('milliseconds', first_terminal_at)
                                - date_trunc('milliseconds', created_at))))::bigint
                 END AS latency_ms
          FROM messages
        ), counted AS (
          INSERT INTO stats_minutes
          SELECT minute, api, status, error_code,
                 CASE WHEN latency_ms IS NULL THEN -1
                      ELSE width_bucket(latency_ms, ${latencyBucketFloors()}::bigint[]) END,
                 count(*), count(*) FILTER (WHERE conflict),
                 count(*) FILTER (WHERE latency_ms <= ${FINAL_WITHIN_MS})
          FROM facts GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
          RETURNING messages
        )
        SELECT count(*) AS keys, coalesce(sum(messages), 0) AS messages FROM counted`.execute(trx);
      await sql`
        INSERT INTO stats_hours
        SELECT date_trunc('hour', minute, 'UTC'), api, status, error_code, latency_bucket,
               sum(messages), sum(conflicts), sum(final_within_10s)
        FROM stats_minutes GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5`.execute(trx);
      return { messages: Number(rows[0]!.messages), keys: Number(rows[0]!.keys) };
    });
}

/**
 * Messages reconciliation gave up on (DESIGN §11: `messages.stuck`), first seen in the window:
 * one range of messages_stuck_created_idx (stuck messages by created_at, migration 0015), so only
 * the window's stuck messages are read, the `api` filter applied to those few. Not
 * messages_stuck_idx (by last_event_at: every stuck message ever kept) nor messages_created_idx
 * (every message of the window).
 */
export async function countStuck(
  db: Db,
  since: number,
  until: number,
  filter: { apis?: readonly Api[] },
): Promise<number> {
  let query = db
    .selectFrom('messages')
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .where('stuck', '=', true)
    .where('created_at', '>=', new Date(since))
    .where('created_at', '<', new Date(until));
  if (filter.apis?.length) query = query.where('api', 'in', filter.apis);
  const row = await query.executeTakeFirstOrThrow();
  return Number(row.count);
}
