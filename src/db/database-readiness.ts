import { sql } from 'kysely';
import type { Logger } from '../logger';
import type { Db } from './database';
import { describeSchema, isCompatible, judgeSchema, readSchema } from './schema-version';
import type { SchemaVerdict } from './schema-version';
import { withTimeout } from './with-timeout';

/**
 * The database half of readiness: a pod is not ready until it has reached its database once
 * and found a schema it can run on. After that, an outage keeps it ready (the outage spool
 * acknowledges callbacks durably; taking every replica out of the load balancer would lose
 * them), but a schema it cannot run on — a migration too new for it, applied while it runs —
 * takes it out.
 *
 * Each check asks whether the database takes writes and reads the schema (five tiny queries:
 * read-only, applied migrations, schema marker, the newest event's transaction id — beyond the
 * cluster's next one, the database was restored from another cluster and is not rebased yet,
 * which counts as a migration missing — write privileges)
 * through the service's own pool, so a wrong host, database, password or TLS setting, or a
 * hot standby, fails here exactly as it would for a callback. A
 * check never outlasts `timeoutMs` (the kubelet's probe gives up after 2 s); concurrent
 * probes share one check. Until the first good verdict the database is also checked every
 * `intervalMs` without waiting for a probe, so the log says at once what is wrong.
 */
export interface DatabaseReadiness {
  /** `knownDown`: the write path already knows the database is unreachable; skip the query. */
  check(options?: { knownDown?: boolean }): Promise<DatabaseReadinessReport>;
  /**
   * Starts the background checks: every `intervalMs` until the schema is found compatible, then
   * every `recheckMs`, so that what schemaSuitable says stays current without probes.
   */
  start(): void;
  stop(): void;
  /**
   * Whether the last schema seen is one this release may write to. The background workers
   * (relay, reconciliation, retention, stats folding) pause while it is not (`too_old`,
   * `too_new`, or not seen yet: the database not reached since start), as the pod leaves the
   * load balancer.
   */
  schemaSuitable(): boolean;
}

export interface DatabaseReadinessReport {
  /** Whether the database answered this check. */
  database: 'ok' | 'unreachable';
  /** False until a compatible schema has been seen, and while the last one seen is not. */
  ready: boolean;
  /** The last schema seen; `unknown` until the database has been reached. */
  schema: SchemaVerdict | { state: 'unknown' };
  /** Why the pod is not ready, in one line; absent when it is. */
  reason?: string;
}

export interface DatabaseReadinessOptions {
  db: Db;
  logger: Logger;
  /** The migrations this release ships (src/db/migrate.ts knownMigrations). */
  known: readonly string[];
  /** The privileges asked of DATABASE_URL's user (writesFor the settings); WRITES by default. */
  writes?: readonly Write[];
  timeoutMs?: number;
  intervalMs?: number;
  /** Between two background checks once the schema is compatible (a newer release may come). */
  recheckMs?: number;
  /**
   * How long a judging query that has not answered is waited on by later checks (default: the
   * pool's idle timeout, 30 s). Past it a check sends a new one, on another connection: one
   * that went silent after a failover (the old host gone) would otherwise be waited on until
   * TCP gives up on it, minutes — and by then the pool has closed its other idle connections
   * to that host, so the new query reaches the new one.
   */
  shareQueryMs?: number;
}

/** Judging queries left running past their checks' timeouts: connections held at most. */
const MAX_UNANSWERED = 3;

export function createDatabaseReadiness(options: DatabaseReadinessOptions): DatabaseReadiness {
  const { db, logger, known, writes = WRITES } = options;
  const timeoutMs = options.timeoutMs ?? 1_500;
  const intervalMs = options.intervalMs ?? 5_000;
  const recheckMs = options.recheckMs ?? 30_000;
  const shareQueryMs = options.shareQueryMs ?? 30_000;

  let verdict: SchemaVerdict | undefined;
  let lastError: string | undefined;
  /** Why the database cannot be used although it answered (read-only, missing privileges). */
  let lastUnusable: string | undefined;
  let lastLogged: string | undefined;
  let inFlight: Promise<DatabaseReadinessReport> | undefined;
  // The judging queries still running, past a check's timeout too: a database that stopped
  // answering on an open connection holds them until TCP gives up, and the next checks wait
  // for the newest one instead of taking a connection each (a few probes would hold the pool)
  // — for shareQueryMs, then a new one is sent, MAX_UNANSWERED at most.
  const unanswered = new Set<Promise<SchemaVerdict>>();
  let newest: { query: Promise<SchemaVerdict>; since: number } | undefined;

  const judging = (): Promise<SchemaVerdict> => {
    // Monotonic: with the wall clock stepped back, a hung query would be shared for the step.
    const now = performance.now();
    if (
      newest &&
      unanswered.has(newest.query) &&
      (now - newest.since < shareQueryMs || unanswered.size >= MAX_UNANSWERED)
    ) {
      return newest.query;
    }
    const query = judgeWritable(db, known, writes);
    unanswered.add(query);
    const forget = (): void => void unanswered.delete(query);
    query.then(forget, forget);
    newest = { query, since: now };
    return query;
  };
  let timer: NodeJS.Timeout | undefined;

  /** One log line per change of what is wrong (not one per probe). */
  const say = (key: string, log: () => void): void => {
    if (key === lastLogged) return;
    lastLogged = key;
    log();
  };

  const report = (database: 'ok' | 'unreachable'): DatabaseReadinessReport => {
    if (!verdict) {
      return {
        database,
        ready: false,
        schema: { state: 'unknown' },
        reason:
          lastUnusable ??
          `the database has not been reached since start (${lastError ?? 'no answer'})`,
      };
    }
    const ready = isCompatible(verdict);
    return {
      database,
      ready,
      schema: verdict,
      ...(!ready && { reason: describeSchema(verdict) }),
    };
  };

  const run = async (): Promise<DatabaseReadinessReport> => {
    try {
      verdict = await withTimeout(judging(), timeoutMs);
      lastError = undefined;
      lastUnusable = undefined;
      const line = describeSchema(verdict);
      say(`schema ${line}`, () => {
        if (isCompatible(verdict!)) logger.info({ schema: verdict }, line);
        else logger.error({ schema: verdict }, line);
      });
      return report('ok');
    } catch (error) {
      lastError = errorCode(error);
      lastUnusable = unusable.has(error as Error) ? (error as Error).message : undefined;
      if (!verdict) {
        say(`unreached ${lastError}`, () =>
          logger.warn(
            { err: errorMessage(error), code: lastError },
            lastUnusable
              ? 'database cannot be written: the pod stays unready until it can'
              : 'database not reached yet: the pod stays unready until it is',
          ),
        );
      }
      return report('unreachable');
    }
  };

  const check = (): Promise<DatabaseReadinessReport> => {
    inFlight ??= run().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };

  const tick = (): void => {
    void check().then(() => {
      if (timer === undefined) return; // stopped meanwhile
      timer = schedule(verdict && isCompatible(verdict) ? recheckMs : intervalMs);
    });
  };
  const schedule = (ms: number): NodeJS.Timeout => setTimeout(tick, ms).unref();

  return {
    check(options = {}) {
      if (options.knownDown) return Promise.resolve(report('unreachable'));
      return check();
    },
    start() {
      if (timer !== undefined) return;
      timer = setTimeout(tick, 0).unref();
    },
    stop() {
      clearTimeout(timer);
      timer = undefined;
    },
    schemaSuitable: () => verdict !== undefined && isCompatible(verdict),
  };
}

/** Errors of ours: the database answered, but this release cannot write to it. */
const unusable = new WeakSet<Error>();
function unusableError(code: string, message: string): Error {
  const error = Object.assign(new Error(message), { code });
  unusable.add(error);
  return error;
}

/** A privilege on a table: what has_table_privilege is asked. */
export type Write = readonly [table: string, privilege: 'SELECT' | 'INSERT' | 'UPDATE' | 'DELETE'];

/** Every privilege of `privileges` on each of `tables`. */
const on = (tables: readonly string[], ...privileges: Array<Write[1]>): Write[] =>
  tables.flatMap((table) => privileges.map((privilege) => [table, privilege] as const));

/**
 * What every replica runs on DATABASE_URL's database, whatever its settings: table, privilege.
 * Read off the SQL, not guessed — a privilege missing here let a pod be ready while the write
 * path failed 42501 on every callback. PostgreSQL asks SELECT of an INSERT … ON CONFLICT on its
 * conflict target and the columns its DO UPDATE reads, of a RETURNING, of an UPDATE or DELETE
 * whose WHERE reads the table, and UPDATE of a `FOR UPDATE` lock; a trigger's statements run
 * with the privileges of the user whose statement fired it.
 * - Callbacks, lookups' results and sends (src/messages/record-events.repository.ts, both
 *   recorders: directRecorder and the group commit): upserts of messages (SELECT for their
 *   conflict target, WHERE and RETURNING) and status_events (SELECT for RETURNING and the
 *   lookup repeats, messages/lookup-repeats.ts), stats deltas appended, relay jobs enqueued
 *   (relay-outbox.ts, reading the event's seq), send intents read and dropped, texts redacted
 *   (messages/redaction.ts).
 * - The send proxy's intents (src/messages/send-intents.ts: the expiry clean-up locks the rows
 *   it deletes — `FOR UPDATE` needs UPDATE — and a delete by ref reads the column).
 * - The stats compactor (src/stats/stats.repository.ts foldDeltas): deltas deleted RETURNING
 *   them, upserted into stats_minutes and stats_hours and rows that came down to zero deleted;
 *   its statement triggers (migration 0009) upsert and delete the same in the four narrow
 *   rollups, as this user.
 * - The relay worker (src/relay/relay.repository.ts: claims, outcomes, leases; the expiry's
 *   failing hosts in relay_hosts; a redacted message's relay copies, relay-redaction.ts).
 * - The sweep (src/reconcile/reconcile.repository.ts: claims and records its steps on
 *   messages, reads the events).
 * - Retention's removal steps and mark, which every change feed page reads
 *   (src/feed/feed.repository.ts: sw_status_feed_removals and sw_status_retention; a user
 *   granted table by table before migration 0013 made every page a 500 on a ready pod), and the
 *   database the feed's cursors were issued on, which the primary notes and checks to reset the
 *   feed after a failover or restore (src/feed/feed-epoch.ts; the reset is a removal step).
 * - The reads (READ_TABLES in db/standby-only.ts), served here when there is no
 *   DATABASE_READ_URL: their SELECTs are all above.
 * Retention's own deletes are asked only where it runs (writesFor). Asked of has_table_privilege,
 * never by trying a write and rolling it back: every check would burn a transaction id and leave
 * a dead row.
 */
export const WRITES: readonly Write[] = [
  ...on(['messages', 'status_events'], 'SELECT', 'INSERT', 'UPDATE'),
  ...on(['stats_deltas'], 'SELECT', 'INSERT', 'DELETE'),
  ...on(
    [
      'stats_minutes',
      'stats_hours',
      'stats_minute_counts',
      'stats_minute_latency',
      'stats_hour_counts',
      'stats_hour_latency',
    ],
    'SELECT',
    'INSERT',
    'UPDATE',
    'DELETE',
  ),
  ...on(['relay_jobs'], 'SELECT', 'INSERT', 'UPDATE'),
  ...on(['relay_hosts', 'send_intents'], 'SELECT', 'INSERT', 'UPDATE', 'DELETE'),
  ...on(['sw_status_feed_removals'], 'SELECT', 'INSERT', 'DELETE'),
  ...on(['sw_status_retention'], 'SELECT'),
  ...on(['sw_status_feed_epoch'], 'SELECT', 'INSERT', 'UPDATE'),
];

/**
 * RETENTION_DAYS (src/retention/retention.repository.ts removeExpiredMessages): a message
 * removed with its events and relay jobs, the feed's expiry mark moved. Its stats deltas, the
 * send intents it leaves and its removal step are in WRITES.
 */
export const RETENTION_WRITES: readonly Write[] = [
  ...on(['messages', 'status_events', 'relay_jobs'], 'DELETE'),
  ...on(['sw_status_retention'], 'UPDATE'),
];

/** RELAY_KEEP_DELIVERED_DAYS (removeDeliveredRelayJobs): delivered relay jobs removed. */
export const DELIVERED_RELAYS_WRITES: readonly Write[] = on(['relay_jobs'], 'DELETE');

/** What a replica with these settings runs on DATABASE_URL's database: what readiness asks. */
export function writesFor(settings: {
  retentionDays?: number | undefined;
  relayKeepDeliveredDays?: number | undefined;
}): readonly Write[] {
  const writes = [
    ...WRITES,
    ...(settings.retentionDays !== undefined ? RETENTION_WRITES : []),
    ...(settings.relayKeepDeliveredDays !== undefined ? DELIVERED_RELAYS_WRITES : []),
  ];
  return writes.filter(
    ([table, privilege], index) =>
      writes.findIndex((write) => write[0] === table && write[1] === privilege) === index,
  );
}

/**
 * The schema's verdict, once the database has shown it takes this release's writes. Reached
 * but unable to write, a database is as good as unreachable for the write path, which spools
 * or refuses every callback:
 * - read-only: DATABASE_URL naming a hot standby, a failover that left the address on the
 *   demoted primary (25006 is an outage for the write path: db/database-unavailable.ts).
 *   `transaction_read_only` is on in every session of a standby (pg_is_in_recovery()) and
 *   wherever default_transaction_read_only is;
 * - a user that may read but not write (a reporting user's credentials in the Secret).
 * A pod that has never seen its database writable is not ready, so such a DATABASE_URL stops a
 * rollout; later, this counts as an outage. The privileges are asked only of a schema this
 * release runs on (on another, the tables may not exist, and the verdict says what is wrong).
 */
async function judgeWritable(
  db: Db,
  known: readonly string[],
  writes: readonly Write[],
): Promise<SchemaVerdict> {
  const { rows } = await sql<{
    read_only: string;
  }>`SELECT current_setting('transaction_read_only') AS read_only`.execute(db);
  if (rows[0]?.read_only === 'on') {
    throw unusableError(
      '25006',
      'the database is read-only (a hot standby, or default_transaction_read_only): ' +
        'DATABASE_URL must lead to the primary',
    );
  }
  const verdict = judgeSchema(known, await readSchema(db));
  if (!isCompatible(verdict)) return verdict;
  const { rows: privileges } = await sql<{ user: string; granted: boolean[] }>`
    SELECT current_user AS user, ARRAY[${sql.join(
      writes.map(([table, privilege]) => sql`has_table_privilege(${table}, ${privilege})`),
    )}] AS granted`.execute(db);
  const missing = writes.filter((_write, index) => privileges[0]?.granted[index] !== true);
  if (missing.length > 0) {
    throw unusableError(
      '42501',
      `the database user ${privileges[0]?.user ?? ''} lacks privileges every replica uses: ` +
        `${missing.map(([table, privilege]) => `${privilege} on ${table}`).join(', ')} ` +
        'not granted',
    );
  }
  return verdict;
}

/** A short, secret-free name for the failure: errno or SQLSTATE code, else the error's name. */
function errorCode(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && code !== '') return code;
  return error instanceof Error ? error.name : 'error';
}

/** node-postgres and Node errors name hosts and users, never passwords. */
function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
