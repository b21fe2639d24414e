import { sql } from 'kysely';
import type { CompiledQuery } from 'kysely';
import { AppError } from '../errors';
import type { Db } from './database';
import { IN_OUR_TRANSACTION, answerWithin } from './kysely-pool';
import { sqlState } from './write-failure';

/**
 * How long one statement of the query API may run. The pool carries no statement timeout (the
 * write path must never see a COMMIT cut short, src/db/database.ts), and without
 * DATABASE_READ_URL the reads share it with the callbacks' commits: a list the indexes serve
 * badly (two senders and two statuses in `order=created`, where none match: a walk of the whole
 * created index, seconds at a few million messages) would otherwise hold its connection for
 * as long as it runs, and a few of them at once leave the commits waiting for the pool. Far
 * above what any read needs (milliseconds, bench/scale.ts).
 */
export const READ_STATEMENT_TIMEOUT_MS = 5_000;

/**
 * Runs `work` in a transaction whose statements are cancelled after `timeoutMs` (57014; SET
 * LOCAL: this transaction only, so it holds behind PgBouncer in transaction mode and on a hot
 * standby too), on top of the BEGIN's lock_timeout (db/kysely-pool.ts).
 */
export async function withinStatementTimeout<T>(
  db: Db,
  timeoutMs: number,
  work: (trx: Db) => Promise<T>,
): Promise<T> {
  return boundedTransaction(db, timeoutMs, work, (query) => query);
}

/**
 * How much longer than its statement timeout a read waits on the client's side for any answer
 * at all (db/kysely-pool.ts answerWithin, db/database.ts READER_QUERY_TIMEOUT_MS): past it the
 * server is not enforcing the timeout — it stopped answering — and the read fails as the
 * database unavailable (503 + Retry-After) instead of waiting for TCP keepalive.
 */
export const ANSWER_MARGIN_MS = 2_000;

/**
 * `query` marked as a read whose connection waits at most ANSWER_MARGIN_MS past its statement
 * timeout for any answer (db/kysely-pool.ts answerWithin): every read of the query API, whether
 * in readWithin or in a transaction of its own.
 */
export function markedAsRead<R>(
  query: CompiledQuery<R>,
  statementTimeoutMs = READ_STATEMENT_TIMEOUT_MS,
): CompiledQuery<R> {
  return answerWithin(query, statementTimeoutMs + ANSWER_MARGIN_MS);
}

/**
 * Runs `read` within `timeoutMs` (withinStatementTimeout), and gives up on its connection
 * `ANSWER_MARGIN_MS` later (db/kysely-pool.ts answerWithin): only reads, never a transaction
 * that writes, whose COMMIT may succeed after the client stopped waiting. A read cancelled by
 * the server is a 503 `query_timeout`, not an outage: the database is fine, the question is
 * too costly.
 */
export async function readWithin<T>(
  db: Db,
  timeoutMs: number,
  read: (trx: Db) => Promise<T>,
): Promise<T> {
  try {
    return await boundedTransaction(db, timeoutMs, read, (query) => markedAsRead(query, timeoutMs));
  } catch (error) {
    throw asQueryTimeout(error, timeoutMs);
  }
}

/** withinStatementTimeout, its first statement (which carries the BEGIN) passed through `mark`. */
async function boundedTransaction<T>(
  db: Db,
  timeoutMs: number,
  work: (trx: Db) => Promise<T>,
  mark: (query: CompiledQuery) => CompiledQuery,
): Promise<T> {
  return db.transaction().execute(async (trx) => {
    // Conditioned on our transaction, so it may travel with the BEGIN (db/kysely-pool.ts).
    const bound = sql`SELECT set_config('statement_timeout', ${String(timeoutMs)}, true)
                      WHERE ${sql.raw(IN_OUR_TRANSACTION)}`;
    await trx.executeQuery(mark(bound.compile(trx)));
    return work(trx);
  });
}

/**
 * A read cancelled by its statement timeout (57014 query_canceled: nothing else cancels the
 * query API's reads) as the 503 `query_timeout` it answers; any other error as it is.
 */
export function asQueryTimeout(error: unknown, timeoutMs: number): unknown {
  if (sqlState(error) !== '57014') return error;
  return new AppError(
    503,
    'query_timeout',
    `The query did not finish within ${timeoutMs / 1000} s: narrow it (a shorter time window, fewer filter values) and retry`,
    undefined,
    { 'Retry-After': '5' },
  );
}
