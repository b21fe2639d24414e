import { Kysely, PostgresDialect, sql } from 'kysely';
import type { ColumnType, Generated } from 'kysely';
import { Client, Pool, types } from 'pg';
import type { ClientConfig } from 'pg';
import type { Logger } from '../logger';
import { kyselyPool } from './kysely-pool';
import { ANSWER_MARGIN_MS, READ_STATEMENT_TIMEOUT_MS } from './read-timeout';
import { WRITER_STATE_SQL, standbyOnly } from './standby-only';
import type { WriterState } from './standby-only';
import { CANNOT_SET_UP_CONNECTION } from './database-unavailable';
import { withTimeout } from './with-timeout';

// bigint (int8) columns such as status_events.seq come back as strings by default; seq stays
// far below 2^53, so numbers are safe and easier for clients.
types.setTypeParser(types.builtins.INT8, (value) => Number(value));

type Timestamp = ColumnType<Date, Date | string, Date | string>;

export interface MessagesTable {
  id: string;
  api: 'cxml' | 'native';
  project_id: string | null;
  from: string | null;
  to: string | null;
  kind: 'sms' | 'mms' | null;
  body: string | null;
  status: string;
  raw_status: string;
  status_rank: number;
  status_provider_timestamp: Timestamp | null;
  status_received_at: Timestamp;
  error_code: string | null;
  error_message: string | null;
  conflict: boolean;
  num_segments: number | null;
  num_media: number | null;
  ref: string | null;
  sent_via_proxy: boolean;
  client_status_callback: string | null;
  created_at: Timestamp;
  updated_at: Timestamp;
  last_event_at: Timestamp;
  first_terminal_at: Timestamp | null;
  // applied_tx (xid8) is not in this type: set by its column default on insert and by
  // RECORD_BATCH, read as text by messages.repository.ts (MessageRow) for the query API's ETags.
}

/**
 * Reconciliation sweep state of a message (db/migrations/0004; src/reconcile). Apart from the
 * write path's reset when a new event moves a message (SAVE_FOLD, record-events.repository.ts),
 * only the sweep writes it.
 */
export interface MessageSweepColumns {
  stuck: ColumnType<boolean, boolean | undefined, boolean>;
  sweep_step: ColumnType<number, number | undefined, number>;
  sweep_lease_until: Timestamp | null;
  sweep_checked_at: Timestamp | null;
  sweep_error: string | null;
}

export interface StatusEventsTable {
  seq: Generated<number>;
  message_id: string;
  api: 'cxml' | 'native';
  status: string;
  raw_status: string;
  error_code: string | null;
  error_message: string | null;
  source: 'proxy' | 'callback' | 'reconcile' | 'replay';
  provider_timestamp: Timestamp | null;
  received_at: Timestamp;
  dedupe_key: Buffer;
  raw: ColumnType<unknown, string, string>;
  /** xid8 as text: the writing transaction, the change feed's order (db/migrations/0003). */
  tx: ColumnType<string, never, never>;
  /** The message's status right after this event (null for events stored before 0003). */
  message_status: string | null;
}

/** The relay outbox (db/migrations/0004; src/relay). */
export interface RelayJobsTable {
  id: Generated<number>;
  message_id: string;
  event_seq: number | null;
  url: string;
  host: string;
  method: 'POST' | 'GET';
  content_type: string | null;
  payload: Buffer | null;
  signing_key_ref: string | null;
  state: ColumnType<'pending' | 'delivered' | 'dead', string | undefined, string>;
  attempts: ColumnType<number, number | undefined, number>;
  next_attempt_at: ColumnType<Date, Date | string | undefined, Date | string>;
  lease_until: Timestamp | null;
  last_status: number | null;
  last_error: string | null;
  created_at: ColumnType<Date, Date | string | undefined, Date | string>;
  updated_at: ColumnType<Date, Date | string | undefined, Date | string>;
  delivered_at: Timestamp | null;
}

/** Relay destination hosts every real attempt at which has failed since the last delivery (0012). */
export interface RelayHostsTable {
  host: string;
  failing_since: Timestamp;
  last_failure_at: Timestamp;
  last_error: string | null;
}

export interface Database {
  messages: MessagesTable & MessageSweepColumns;
  status_events: StatusEventsTable;
  relay_jobs: RelayJobsTable;
  relay_hosts: RelayHostsTable;
}

export type Db = Kysely<Database>;

export interface DatabaseHandle {
  db: Db;
  pool: Pool;
}

/** The same server and credentials, another database. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/**
 * How long the reader pool (DATABASE_READ_URL) waits for any answer from its server, on the
 * client's side: a little above the reads' statement timeout (read-timeout.ts), which the
 * server enforces — and a standby that stopped answering altogether (a partition, a hung VM, a
 * host gone without a reset) enforces nothing. Without it a list or a feed page waited for
 * ever, holding its turn of the read gate. node-postgres's query_timeout fails the query with
 * "Query read timeout" (counted as the database unavailable: a 503 with Retry-After) and, the
 * query having been sent on a pipelined connection, destroys that connection; kysely-pool.ts
 * makes sure it is closed, never handed out again. Only the reader pool has one: on the
 * writer's, a client-side timeout would make the write path take for failed a COMMIT that may
 * still succeed (see keepAlive below); the query API's reads there carry their own
 * (read-timeout.ts readWithin, db/kysely-pool.ts answerWithin).
 */
export const READER_QUERY_TIMEOUT_MS = READ_STATEMENT_TIMEOUT_MS + ANSWER_MARGIN_MS;

export interface ReaderOptions {
  /** DATABASE_URL's database. */
  writer: Db;
  /** Told once when the reader starts being refused, and when it is served again. */
  logger?: Logger;
  /** How often each connection is checked (db/standby-only.ts); tests shorten it. */
  checkEveryMs?: number;
  /** How far behind the primary the standby may be (MAX_REPLICA_LAG_MS); tests shorten it. */
  maxLagMs?: number;
  /** READER_QUERY_TIMEOUT_MS; tests shorten it. */
  queryTimeoutMs?: number;
  /** Told at each check how far behind the primary the reader is (createReaderDb keeps it). */
  onLag?: (seconds: number) => void;
}

export function createDb(
  connectionString: string,
  maxConnections = 10,
  {
    idleInTransactionTimeoutMs,
    lockTimeoutMs,
    reader,
  }: {
    /** How long a transaction may wait for this process (db/kysely-pool.ts); tests shorten it. */
    idleInTransactionTimeoutMs?: number;
    /** How long a transaction may wait for one lock (db/kysely-pool.ts); tests shorten it. */
    lockTimeoutMs?: number;
    /** Set when this is DATABASE_READ_URL's database (db/standby-only.ts). */
    reader?: ReaderOptions;
  } = {},
): DatabaseHandle {
  const queryTimeoutMs = reader && (reader.queryTimeoutMs ?? READER_QUERY_TIMEOUT_MS);
  const pool = new Pool({
    connectionString,
    // A file the connection string names, unreadable at a new connection, fails only that
    // connection (see clientOrFailure).
    Client: clientOrFailure as unknown as new () => Client,
    max: maxConnections,
    ...(queryTimeoutMs !== undefined && { query_timeout: queryTimeoutMs }),
    // Fail fast when the database is gone: the ingest path answers 503 (or spools) instead of
    // holding SignalWire's request past its 5 s read timeout.
    connectionTimeoutMillis: 2_000,
    // Lets a transaction's BEGIN travel with its first statement (db/kysely-pool.ts).
    pipeline: true,
    idleTimeoutMillis: 30_000,
    // TCP keepalive: a connection waiting for an answer from a database that stopped
    // answering altogether (a partition, a host gone after a failover) fails within minutes and
    // leaves the pool, where without it nothing would ever end it — e.g. one the feed-lag
    // scrape stopped waiting for (feed/feed-metrics.ts). It ends only connections whose peer no
    // longer answers at the TCP level, never a slow query, so it cannot cut short a COMMIT that
    // PostgreSQL is still carrying out. A query or statement timeout could, and would make the
    // write path treat as failed a batch that may yet commit: none is set on this pool; what
    // must not wait (the scrape) bounds its own wait.
    keepAlive: true,
    // The first probe after 30 s of silence (Node's default, 0, leaves the OS's 2 h); the OS's
    // probe interval and count follow (about 11 more minutes on Linux).
    keepAliveInitialDelayMillis: 30_000,
  });
  // An idle client losing its connection (database restart) emits 'error' on the pool; without
  // a listener that would crash the process.
  pool.on('error', () => undefined);
  // node-postgres also emits 'error' on a client that loses its connection while checked out
  // between two statements (a database restart sends 57P01 to every session); pg-pool listens
  // only while a client is idle. Unhandled, that event kills the process. The failure still
  // reaches the caller through its next query, and pg-pool discards the broken client.
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
    // Queued before the query it was opened for (pg-pool emits this first).
    if (notIsoDates.has(client)) client.query('SET DateStyle = ISO').catch(() => undefined);
  });
  const wrapped = kyselyPool(pool, {
    ...(idleInTransactionTimeoutMs && { idleInTransactionTimeoutMs }),
    ...(lockTimeoutMs && { lockTimeoutMs }),
  });
  // One question to DATABASE_URL's server at a time, later checks joining it: withTimeout does
  // not cancel it, so a primary that stops answering would otherwise collect one stuck query
  // (and connection of the write path's pool) per check.
  let asking: Promise<WriterState> | undefined;
  const askWriter = (): Promise<WriterState> =>
    (asking ??= writerState(reader!.writer).finally(() => {
      asking = undefined;
    }));
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({
      pool: reader
        ? standbyOnly(wrapped, {
            writerState: () => withTimeout(askWriter(), queryTimeoutMs!, 'DATABASE_URL: no answer'),
            logger: reader.logger,
            ...(reader.checkEveryMs !== undefined && { checkEveryMs: reader.checkEveryMs }),
            ...(reader.maxLagMs !== undefined && { maxLagMs: reader.maxLagMs }),
            ...(reader.onLag && { onLag: reader.onLag }),
          })
        : wrapped,
    }),
  });
  return { db, pool };
}

/**
 * The pool's new client. node-postgres reads the files the connection string names (sslrootcert,
 * sslcert, sslkey) in `new Client()`, synchronously, at each new connection, and pg-pool creates
 * clients inside its own callbacks too (a waiting query served after another connection failed):
 * a file gone missing while the service runs (the CA's optional ConfigMap deleted, a rotation
 * leaving no file a moment) was thrown there, uncaught, and the process exited. Such a throw
 * becomes a client whose connect() fails with it instead: a connection that could not be made,
 * an outage for the write path (database-unavailable.ts: callbacks are spooled), its code
 * (ENOENT) in /readyz. Called with `new` by pg-pool, which takes the object returned.
 */
function clientOrFailure(config: ClientConfig): Client {
  try {
    return watchDateStyle(new Client(config));
  } catch (cause) {
    const failure = Object.assign(
      new Error(`${CANNOT_SET_UP_CONNECTION}: ${(cause as Error).message}`, { cause }),
      { code: (cause as { code?: unknown }).code },
    );
    const unconnectable = new Client({ ...config, connectionString: undefined });
    unconnectable.connect = ((callback?: (error: Error) => void) => {
      if (!callback) return Promise.reject(failure);
      process.nextTick(callback, failure);
      return undefined;
    }) as Client['connect'];
    return unconnectable;
  }
}

/**
 * The connections whose server reported a DateStyle other than ISO output when they opened.
 * node-postgres reads a timestamp only in ISO output: a database or role whose DateStyle an
 * operator set otherwise (`ALTER DATABASE … SET datestyle = 'SQL, DMY'`, a managed service's
 * parameter group) made every timestamp it read null — every read of the query API, the feed
 * and the stats failed while callbacks were still stored and pods stayed ready. Such a
 * connection is given `SET DateStyle = ISO` before its first query. A statement, not a start-up
 * option: PgBouncer before 1.20 refuses the `options` start-up parameter, and it tracks
 * DateStyle, so the setting follows the client in transaction mode too. Only where needed: a
 * SET pins the session to its client in some proxies (RDS Proxy).
 */
const notIsoDates = new WeakSet<Client>();

function watchDateStyle(client: Client): Client {
  // The server reports DateStyle (a GUC_REPORT setting) while the connection opens.
  (client as unknown as { connection: NodeJS.EventEmitter }).connection.on(
    'parameterStatus',
    ({ parameterName, parameterValue }: { parameterName: string; parameterValue: string }) => {
      if (parameterName !== 'DateStyle') return;
      if (parameterValue.startsWith('ISO')) notIsoDates.delete(client);
      else notIsoDates.add(client);
    },
  );
  return client;
}

/**
 * DATABASE_READ_URL's handle (DESIGN §13): a hot standby of `writer`'s database that follows it
 * (or that database itself), refused once it is neither (db/standby-only.ts). Its connections
 * wait at most READER_QUERY_TIMEOUT_MS for an answer.
 */
export function createReaderDb(
  connectionString: string,
  maxConnections: number | undefined,
  writer: Db,
  options: Omit<ReaderOptions, 'writer'> = {},
): ReaderHandle {
  let lag: number | undefined;
  const handle = createDb(connectionString, maxConnections, {
    reader: {
      ...options,
      writer,
      onLag: (seconds) => {
        lag = seconds;
        options.onLag?.(seconds);
      },
    },
  });
  return { ...handle, lagSeconds: () => lag };
}

/** DATABASE_READ_URL's handle, with how far behind the primary it was at its last check. */
export interface ReaderHandle extends DatabaseHandle {
  /**
   * Seconds since the primary had written what this server has yet to replay (db/standby-only.ts
   * lagSeconds), as of the last check of one of its connections; undefined before the first.
   */
  lagSeconds(): number | undefined;
}

async function writerState(db: Db): Promise<WriterState> {
  const { rows } = await sql<WriterState>`${sql.raw(WRITER_STATE_SQL)}`.execute(db);
  return rows[0]!;
}
