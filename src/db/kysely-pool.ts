import { CompiledQuery } from 'kysely';
import type { PostgresPool, PostgresPoolClient } from 'kysely';
import type { Pool, PoolClient } from 'pg';

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
 * its first statement sends nothing at all.
 *
 * Behind PgBouncer in transaction mode, named statements need PgBouncer ≥ 1.21 with
 * `max_prepared_statements` set.
 */
const namesBySql = new Map<string, string>();

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

/** The pg pool as Kysely sees it (see above). */
export function kyselyPool(pool: Pool): PostgresPool {
  // One wrapper per connection, so Kysely keeps one connection object per pg client.
  const wrappers = new WeakMap<PoolClient, PostgresPoolClient>();
  return {
    async connect() {
      const client = await pool.connect();
      let wrapper = wrappers.get(client);
      if (!wrapper) {
        wrapper = wrap(client);
        wrappers.set(client, wrapper);
      }
      return wrapper;
    },
    end: () => pool.end(),
  };
}

interface Corkable {
  cork(): void;
  uncork(): void;
}

/** The answer to a statement that needed no round trip. */
function nothingSent(): Promise<unknown> {
  return Promise.resolve({ rows: [], rowCount: 0, command: 'BEGIN' });
}

function wrap(client: PoolClient): PostgresPoolClient {
  let beginDeferred = false;
  const send = (text: string, values: unknown[]): Promise<unknown> => {
    const name = namesBySql.get(text);
    return name === undefined ? client.query(text, values) : client.query({ name, text, values });
  };
  const query = (textOrCursor: unknown, parameters: readonly unknown[] = []): unknown => {
    // A cursor (streamed results) is passed through as Kysely built it; node-postgres refuses
    // it in pipeline mode, and nothing here streams.
    if (typeof textOrCursor !== 'string') return client.query(textOrCursor as never);
    if (textOrCursor === 'begin') {
      beginDeferred = true;
      return nothingSent();
    }
    if (!beginDeferred) return send(textOrCursor, [...parameters]);
    beginDeferred = false;
    if (textOrCursor === 'rollback' || textOrCursor === 'commit') return nothingSent();
    // Both leave in one write (one system call), when pg's socket is reachable.
    const socket = (client as unknown as { connection?: { stream?: Partial<Corkable> } }).connection
      ?.stream;
    socket?.cork?.();
    let began: Promise<unknown>;
    let result: Promise<unknown>;
    try {
      began = client.query('begin');
      result = send(textOrCursor, [...parameters]);
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
      beginDeferred = false;
      client.release();
    },
  };
}
