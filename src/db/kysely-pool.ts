import { CompiledQuery } from 'kysely';
import type { PostgresPool, PostgresPoolClient } from 'kysely';
import type { Pool, PoolClient, QueryConfig } from 'pg';
import { sqlState } from './write-failure';

/**
 * The pg pool as Kysely sees it, with two things Kysely cannot ask node-postgres for.
 *
 * 1. Named prepared statements for the hot write path. node-postgres sends every query as an
 * unnamed statement that PostgreSQL parses and plans again each time; for the group-commit
 * statements that was about a third of PostgreSQL's work per batch (measured: 80 → 63 µs of
 * server CPU per event at 14 events per batch). A named statement is parsed and planned once
 * per connection and then only bound and executed.
 *
 * Kysely has no notion of statement names, so the pool handed to it looks up each query's
 * SQL text here and names the ones that were declared with `preparedStatement`. Only fixed
 * SQL texts belong here: every distinct text stays prepared on every connection for its life.
 *
 * 2. A transaction's BEGIN travels with its first statement (node-postgres pipeline mode,
 * `pipeline: true` on the pool): one round trip instead of two, during which the connection
 * would otherwise wait for the event loop of a busy service. A transaction that ends before
 * its first statement sends nothing at all. But the two are separate messages, and a BEGIN
 * can fail before it runs (a cancel, or a statement_timeout that fired at the very end of the
 * connection's previous statement, is delivered on it): the statement behind it then runs on
 * its own and commits alone. So only a statement that does nothing outside our transaction —
 * its text holds the IN_OUR_TRANSACTION condition, true only after our BEGIN ran — rides
 * with the BEGIN; before any other the BEGIN is sent alone and its answer awaited.
 *
 * 3. A transaction's COMMIT can travel with its last statement (`lastInTransaction`): one
 * round trip less again. If that statement fails, PostgreSQL answers the COMMIT of the now aborted
 * transaction with ROLLBACK (no error), and the statement's error is what the caller sees; if
 * the statement succeeds and the COMMIT fails, Kysely's commit() rejects with that error.
 * Only for a statement after which the transaction's callback does nothing that could throw:
 * the COMMIT is already on its way.
 *
 * 4. A connection that refused a write as read-only (25006) is closed when it is released,
 * not handed out again. After a failover a new connection can land on a server that no longer
 * takes writes (the demoted primary back as a replica under the old address, or the old address
 * while DNS still names it), and such a session stays read-only for its whole life, while the
 * write path treats 25006 as an outage (db/database-unavailable.ts) and retries on the same pool:
 * the idle connection released last is handed out next, and one the spool's replay uses every
 * second never reaches idleTimeoutMillis. The spool would grow long after the new primary took
 * over. Closed, the next attempt connects afresh to wherever the address now leads. Reads keep
 * working on a read-only server meanwhile: only a refused write closes a connection.
 *
 * 5. Every transaction is bounded while it waits for us: its BEGIN carries SET LOCAL
 * idle_in_transaction_session_timeout. A replica paused in the middle of a transaction (a
 * SIGSTOP, a frozen VM, a node gone without closing its sockets) otherwise kept its row locks
 * and its transaction id for as long as PostgreSQL took to notice (hours with default TCP
 * keepalives): every other replica's callbacks for those messages went to the spool, the
 * change feed's cursor stopped for every consumer. The timeout counts only time PostgreSQL
 * waits for the client, never a statement or a COMMIT at work, so unlike a statement timeout
 * it cannot cut a COMMIT short. SET LOCAL, not a startup parameter: PgBouncer refuses unknown
 * startup parameters, and a session SET does not follow a client in transaction mode.
 *
 * 6. The same BEGIN sets lock_timeout LOCAL, unless the session's own (an operator's, on the
 * role or database) is shorter: a transaction of ours waits that long at most for one lock,
 * then fails with 55P03, which every writer takes for a transient failure (write-failure.ts).
 * Without it a row lock held by someone else (an operator's session left open in a transaction
 * after a `SELECT … FOR UPDATE` or an UPDATE of one message) made writes wait for as long as
 * it was held: the live batch went to the spool at its commit timeout, and the replay then
 * stopped on that message's event, abandoning one more waiting connection per replay timeout
 * until the pool ran out, while no other message was stored and /readyz showed nothing wrong.
 * Failing the wait lets the replay store the rest of its chunk and retry the locked event
 * (spool.retrying: 55P03), and every abandoned statement ends by itself. It bounds only waits
 * for a lock, never a statement at work or a COMMIT: a batch that may still commit stays one.
 *
 * 7. A connection on which a query ran out of the pool's `query_timeout` (the reader pool's,
 * db/database.ts: a server that stopped answering), or of a read's own (8.), is closed when it
 * is released, never handed out again: its query may still be under way, or its answer on its
 * way, and the next query sent on it would read that answer as its own — or wait behind it for
 * ever. node-postgres destroys a pipelined connection itself then, but only asynchronously: the
 * release comes first. Until the release, anything more asked on it fails with the same error at
 * once, and Kysely's ROLLBACK (the server rolls back when the connection closes) sends nothing,
 * so the caller sees the timeout, not a failed rollback.
 *
 * 8. A query marked with `answerWithin` makes every query of its checkout (the BEGIN sent with
 * it, the statements, the COMMIT or ROLLBACK), until the connection's release, wait that long
 * at most for an answer, as the reader pool's `query_timeout` does for all of its queries (7.
 * then applies). For the query API's reads on the writer's pool, which carries no
 * query_timeout (db/database.ts: a COMMIT of the write path that may still succeed must never
 * be taken for failed): their statement timeout is the server's to enforce, and a primary that
 * stops answering on open connections (a partition, a frozen VM) enforces nothing — the read
 * waited for TCP keepalive, minutes, and the dashboard got no answer at all. Only reads are
 * marked, never a transaction that writes. On a pool with a query_timeout of its own the mark
 * changes nothing.
 *
 * 9. The same BEGIN pins, LOCAL, the settings that would change what our statements mean if an
 * operator set them otherwise on the role or the database (PINNED_SETTINGS).
 *
 * Behind PgBouncer in transaction mode, named statements need PgBouncer ≥ 1.21 with
 * `max_prepared_statements` set.
 */
const namesBySql = new Map<string, string>();

/**
 * True only inside a transaction this pool began (2. above): its BEGIN sets the flag LOCAL, so
 * it is gone at the transaction's end, and absent when the BEGIN did not run. A statement whose
 * every write is conditioned on it may travel with the BEGIN.
 */
export const IN_OUR_TRANSACTION = "current_setting('sw_status.in_transaction', true) = 'on'";

export type PreparedStatement = (parameters: readonly unknown[]) => CompiledQuery;

/** Declares a fixed SQL text as a named statement; call the result with its parameters. */
export function preparedStatement(name: string, text: string): PreparedStatement {
  const existing = namesBySql.get(text);
  if (existing !== undefined && existing !== name) {
    throw new Error(`the same SQL is already prepared as ${existing}`);
  }
  namesBySql.set(text, name);
  return (parameters) => CompiledQuery.raw(text, [...parameters]);
}

/**
 * Marks a query as its transaction's last statement: the COMMIT is sent right behind it (see
 * 3. above). The mark travels in the SQL text, the one thing of a query that reaches the pool,
 * and is taken off before the text is sent. (An AsyncLocalStorage would carry it too, but on
 * Node 20 one in use puts a hook on every promise the process creates: measured, about 6 µs
 * more server CPU per callback in the HTTP layer alone.)
 */
export function lastInTransaction(query: CompiledQuery): CompiledQuery {
  return CompiledQuery.raw(query.sql + COMMIT_FOLLOWS, [...query.parameters]);
}

const COMMIT_FOLLOWS = '\n-- sw-status: COMMIT follows';

/**
 * Marks a read: its connection waits at most `ms` for each answer until its release (8. above).
 * In the SQL text too, as lastInTransaction's mark, and taken off before the text is sent.
 */
export function answerWithin<R>(query: CompiledQuery<R>, ms: number): CompiledQuery<R> {
  const text = `${ANSWER_WITHIN}${Math.round(ms)} ms\n${query.sql}`;
  return CompiledQuery.raw(text, [...query.parameters]) as CompiledQuery<R>;
}

const ANSWER_WITHIN = '-- sw-status: answer within ';

/**
 * How long a transaction of ours may wait for us (5. above): far beyond any gap between two
 * statements of one transaction here (a fold, an event-loop turn under load), short enough
 * that a frozen replica's locks go within a spool replay's round.
 */
export const IDLE_IN_TRANSACTION_TIMEOUT_MS = 30_000;

/**
 * How long a transaction of ours may wait for one lock (6. above): far beyond any wait for
 * another batch of the write path (a commit's time), shorter than the spool replay's timeout
 * (group-commit-recorder.ts), so a replay write meeting a held lock fails by itself first. A
 * migration that needs another bound sets its own.
 */
export const LOCK_TIMEOUT_MS = 10_000;

/** The pg pool as Kysely sees it (see above). */
export function kyselyPool(
  pool: Pool,
  {
    idleInTransactionTimeoutMs = IDLE_IN_TRANSACTION_TIMEOUT_MS,
    lockTimeoutMs = LOCK_TIMEOUT_MS,
  }: { idleInTransactionTimeoutMs?: number; lockTimeoutMs?: number } = {},
): PostgresPool {
  // Sent in the same simple-protocol message as the transaction's BEGIN (5. and 6. above).
  const settings = [
    ...tighterTimeouts({
      idle_in_transaction_session_timeout: Math.round(idleInTransactionTimeoutMs),
      lock_timeout: Math.round(lockTimeoutMs),
    }),
    ...PINNED_SETTINGS,
  ];
  const bound = `SELECT ${settings.join(', ')}; SET LOCAL sw_status.in_transaction = 'on'`;
  // The reader pool's query_timeout bounds every query already: a read's mark adds nothing.
  const ownQueryTimeout = Boolean(pool.options.query_timeout);
  // One wrapper per connection, so Kysely keeps one connection object per pg client.
  const wrappers = new WeakMap<PoolClient, PostgresPoolClient>();
  return {
    async connect() {
      const client = await pool.connect();
      let wrapper = wrappers.get(client);
      if (!wrapper) {
        wrapper = wrap(client, bound, ownQueryTimeout);
        wrappers.set(client, wrapper);
      }
      return wrapper;
    },
    end: () => pool.end(),
  };
}

/**
 * Each timeout SET LOCAL to its bound unless the session's own (set on the role or the database
 * by an operator) is shorter already: that one stays — an operator's stricter
 * idle_in_transaction_session_timeout or lock_timeout is never loosened inside our transactions.
 * Both are in whole milliseconds, shown with a unit ('100ms', '1s', '1min'), 0 when off; one
 * SELECT sets both (a statement less in every BEGIN than one each). A SELECT, so a REPEATABLE
 * READ transaction takes its snapshot here, right before its first statement, not at it: the
 * one such transaction (stats rebuildRollups) holds its lock from before its BEGIN.
 */
function tighterTimeouts(bounds: Record<string, number>): string[] {
  return Object.entries(bounds).map(
    ([name, ms]) =>
      `set_config('${name}', CASE WHEN current_setting('${name}')::interval ` +
      `BETWEEN interval '1 ms' AND interval '${ms} ms' THEN current_setting('${name}') ELSE '${ms}' END, true)`,
  );
}

/**
 * Settings that change what our statements mean, pinned LOCAL in every transaction whatever the
 * role or database says (9. above). array_nulls: the write path sends its batches as array
 * literals with NULL unquoted (messages/record-events.repository.ts arrayElement); with
 * `array_nulls = off` — a backward-compatibility setting an operator or an old dump can leave
 * on the database — PostgreSQL reads that NULL as the text 'NULL', and as a syntax error in a
 * number or time array: nearly every genuine callback was refused with a 400.
 */
const PINNED_SETTINGS = [`set_config('array_nulls', 'on', true)`];

interface Corkable {
  cork(): void;
  uncork(): void;
}

/** The answer to a statement that needed no round trip. */
function nothingSent(): Promise<unknown> {
  return Promise.resolve({ rows: [], rowCount: 0, command: 'BEGIN' });
}

/** read_only_sql_transaction: a write on a session that cannot write. */
const READ_ONLY = '25006';

/** node-postgres's error for a query past its query_timeout (it has no code). */
function isQueryTimeout(error: unknown): boolean {
  return error instanceof Error && error.message === 'Query read timeout';
}

function wrap(client: PoolClient, bound: string, ownQueryTimeout: boolean): PostgresPoolClient {
  // Kysely's BEGIN (`begin`, or `start transaction isolation level …`), until the transaction's
  // first statement takes it along.
  let beginDeferred: string | null = null;
  // This session refused a write as read-only (4. above): it leaves the pool at its release.
  let readOnly = false;
  // A query on this connection ran out of query_timeout (7. above): it leaves the pool.
  let timedOut: Error | null = null;
  const noteTimeout = (error: unknown): never => {
    if (isQueryTimeout(error)) timedOut ??= error as Error;
    throw error;
  };
  // How long each answer may take until the release, once a query marked so came (8. above).
  let answerWithinMs: number | undefined;
  // node-postgres reads a query's own query_timeout before the pool's (Client.query); its
  // types do not list it.
  const timed = (text: string, values?: unknown[]): QueryConfig =>
    ({ text, values, query_timeout: answerWithinMs }) as QueryConfig;
  const raw = (text: string): Promise<unknown> =>
    client.query(answerWithinMs === undefined ? text : timed(text)).catch(noteTimeout);
  // The COMMIT sent with the transaction's last statement, until Kysely asks for it.
  let commitSent: Promise<unknown> | null = null;
  // node-postgres's callback form, in a promise of our own, not its promise form: under load
  // the promise form (a Query made without a callback) makes V8 pretenure the result's row
  // container, so every row, string and Date a read returns survives two young-generation
  // collections and is promoted. Measured on the change feed's pages: 2–3.5 MB surviving
  // each scavenge and 5–8 ms pauses, against ~50 kB and about 1 ms with a callback
  // (bench/pg-query-survival.ts, bench/feed-gc-probe.ts).
  const send = (text: string, values: unknown[]): Promise<unknown> => {
    const name = namesBySql.get(text);
    return new Promise((resolve, reject) => {
      const done = (error: Error | undefined, result: unknown) => {
        if (!error) return resolve(result);
        if (sqlState(error) === READ_ONLY) readOnly = true;
        if (isQueryTimeout(error)) timedOut ??= error;
        reject(error);
      };
      if (name === undefined && answerWithinMs === undefined) client.query(text, values, done);
      else client.query({ ...timed(text, values), name }, done);
    });
  };
  const query = (textOrCursor: unknown, parameters: readonly unknown[] = []): unknown => {
    // A cursor (streamed results) is passed through as Kysely built it; node-postgres refuses
    // it in pipeline mode, and nothing here streams.
    if (typeof textOrCursor !== 'string') return client.query(textOrCursor as never);
    if (textOrCursor.startsWith(ANSWER_WITHIN)) {
      const end = textOrCursor.indexOf(' ms\n', ANSWER_WITHIN.length);
      if (!ownQueryTimeout) {
        answerWithinMs = Number(textOrCursor.slice(ANSWER_WITHIN.length, end));
      }
      return query(textOrCursor.slice(end + ' ms\n'.length), parameters);
    }
    if (timedOut !== null) {
      return textOrCursor === 'rollback' ? nothingSent() : Promise.reject(timedOut);
    }
    if (textOrCursor === 'begin' || textOrCursor.startsWith('start transaction')) {
      beginDeferred = textOrCursor;
      return nothingSent();
    }
    if (commitSent !== null && (textOrCursor === 'commit' || textOrCursor === 'rollback')) {
      const commit = commitSent;
      commitSent = null;
      // After a failed last statement the COMMIT rolled back: a rollback has nothing to add.
      return textOrCursor === 'commit' ? commit : commit.then(nothingSent, nothingSent);
    }
    const begin = beginDeferred;
    beginDeferred = null;
    if (begin !== null && (textOrCursor === 'rollback' || textOrCursor === 'commit')) {
      return nothingSent();
    }
    if (begin !== null && !textOrCursor.includes(IN_OUR_TRANSACTION)) {
      // Not safe behind a BEGIN that might not run (2. above): the BEGIN first, on its own.
      return raw(`${begin}; ${bound}`).then(() => query(textOrCursor, parameters));
    }
    const last = textOrCursor.endsWith(COMMIT_FOLLOWS);
    const text = last ? textOrCursor.slice(0, -COMMIT_FOLLOWS.length) : textOrCursor;
    const commit = last && begin === null;
    if (begin === null && !commit) return send(text, [...parameters]);
    // What leaves together leaves in one write (one system call), when pg's socket is reachable.
    const socket = (client as unknown as { connection?: { stream?: Partial<Corkable> } }).connection
      ?.stream;
    socket?.cork?.();
    let began: Promise<unknown> = Promise.resolve();
    let result: Promise<unknown>;
    try {
      if (begin !== null) began = raw(`${begin}; ${bound}`);
      result = send(text, [...parameters]);
      if (commit) {
        const sent = raw('commit');
        // Kysely asks for it next; until then a failure must not go unhandled.
        sent.catch(() => undefined);
        commitSent = sent;
      }
    } finally {
      socket?.uncork?.();
    }
    return began.then(
      () => result,
      (error: unknown) => {
        result.catch(() => undefined);
        throw error;
      },
    );
  };
  return {
    query: query as PostgresPoolClient['query'],
    // pg-pool gives a client a new release function at each checkout: look it up each time.
    release: () => {
      beginDeferred = null;
      commitSent = null;
      answerWithinMs = undefined;
      // An error given to release makes pg-pool close the connection instead of keeping it.
      client.release(
        timedOut ?? (readOnly ? new Error('the session refused a write as read-only') : undefined),
      );
    },
  };
}
