import { cliLogLevel, redactSecrets } from '../config';
import { Client } from 'pg';
import type { Pool, PoolClient } from 'pg';
import { createLogger } from '../logger';
import { invokedAs } from '../process/invoked-as';
import { cliDatabaseUrl } from './cli-database-url';
import { createDb } from './database';
import { startEmbeddedPostgres } from './embedded-postgres';
import { knownMigrations, migrateReachable } from './migrate';
import { describeSchema, judgeSchema, readSchema } from './schema-version';
import { signalExitCode } from '../process/signal-exit-code';

/**
 * `npm run migrate` / `node dist/db/migrate-cli.js`: applies db/migrations to DATABASE_URL.
 * It needs only DATABASE_URL (and optionally LOG_LEVEL), not the service's full production
 * configuration, so a migration Job or `docker run` carries no unrelated secrets.
 * Without DATABASE_URL outside production it migrates the local embedded PostgreSQL — unless
 * a running sw-status holds it, which is said in one line (that one migrates when it starts).
 * Every outcome is one log line: what was applied, or that there was nothing to apply. Waiting
 * behind another migrator (a rollout's migration Job) is said once, after a moment, naming it.
 */
async function main(): Promise<void> {
  const logger = createLogger(cliLogLevel('info'));
  const url = cliDatabaseUrl();
  // The embedded server's own start line would only repeat what the result line says.
  const embedded = url
    ? undefined
    : await startEmbeddedPostgres(logger.child({}, { level: 'warn' }), {
        command: invokedAs(),
        refusalHint: 'it applies migrations itself when it starts',
      });
  const target = url ?? embedded!.url;
  const { db, pool } = createDb(target, 1);
  const stopOnSignal = endSessionsOnSignal(pool, target, logger);
  const where = embedded ? `the embedded PostgreSQL in ${embedded.dataDir}` : 'the database';
  try {
    const applied = await migrateReachable(db, url, { logger });
    const known = await knownMigrations();
    const latest = known.at(-1);
    const verdict = judgeSchema(known, await readSchema(db));
    if (verdict.state === 'ahead') {
      // A rollback's migration Job: the database is at a newer release's migration, not ours.
      logger.info({ latest }, `nothing to migrate: ${where}: ${describeSchema(verdict)}`);
    } else if (applied.length === 0) {
      logger.info({ latest }, `nothing to migrate: ${where} is already at ${latest}`);
    } else {
      logger.info(
        { applied, latest },
        `applied ${applied.length} migration${applied.length === 1 ? '' : 's'} to ${where}: ${applied.join(', ')}`,
      );
    }
  } finally {
    stopOnSignal.dispose();
    await db.destroy();
    await embedded?.stop();
  }
}

/**
 * SIGTERM (a Job past its deadline, a deleted pod) or SIGINT (Ctrl-C). The statement under
 * way is PostgreSQL's work, not this process's: were the process simply to die, its session
 * would carry on — an index build waiting for old snapshots, holding the migration lock — and
 * finish with the migration unrecorded, the next runner waiting behind it and the release's
 * pods unready. So the migrating session is ended first: its transaction rolls back (a
 * concurrent index build stops, left INVALID, which the next run drops and builds again), the
 * lock goes with it, and the run fails saying so. As PID 1 in a container, Node ignores
 * SIGTERM unless it listens for it.
 */
function endSessionsOnSignal(
  pool: Pool,
  url: string,
  logger: ReturnType<typeof createLogger>,
): { dispose(): void } {
  // Each connection's backend, as PostgreSQL names it: asked on the connection itself before
  // anything else runs on it (node-postgres's processID is no backend pid behind PgBouncer,
  // whose cancel key it is), with its start time where pg_stat_activity may be read, so that a
  // pid since reused by another session is not ended.
  const sessions = new Map<PoolClient, Promise<Session | undefined>>();
  const onConnect = (client: PoolClient): void => {
    const pid = client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid').then(
      ({ rows }) => rows[0]?.pid,
      () => undefined,
    );
    const started = client
      .query<{ started: string | null }>(
        'SELECT backend_start::text AS started FROM pg_stat_activity WHERE pid = pg_backend_pid()',
      )
      .then(
        ({ rows }) => rows[0]?.started ?? null,
        () => null,
      );
    sessions.set(
      client,
      Promise.all([pid, started]).then(([id, at]) =>
        id === undefined ? undefined : { pid: id, started: at },
      ),
    );
  };
  const onRemove = (client: PoolClient): void => void sessions.delete(client);
  pool.on('connect', onConnect);
  pool.on('remove', onRemove);
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interruptedBy !== undefined) {
      // Again (npm run forwards Ctrl-C, so one press can come twice): the default action would
      // kill the process before the session is ended; the deadline below still holds.
      logger.info({ signal }, 'stopping: ending the migrating session');
      return;
    }
    // Ending the session waits on the database: one that stopped answering must not keep the
    // process from exiting.
    setTimeout(() => {
      logger.error(
        'the migrating session could not be ended in time; it may still hold the migration lock',
      );
      process.exit();
    }, END_SESSION_WITHIN_MS);
    process.exitCode = signalExitCode(signal);
    interruptedBy = signal;
    logger.error(
      { signal },
      `migration stopped by ${signal}: ending its database session, so that nothing of the ` +
        'migration under way stays behind holding the migration lock; nothing unfinished is ' +
        'recorded: run the migration again',
    );
    // The migration's next step then fails on the ended session and main() cleans up (the
    // embedded server too). Not connected yet: nothing to end, nothing begun.
    if (sessions.size === 0) process.exit();
    void Promise.all(sessions.values())
      .then((found) =>
        endSessions(
          url,
          found.filter((session) => session !== undefined),
        ),
      )
      .then((ended) => {
        if (ended === 0) {
          logger.error(
            'the migrating session could not be identified and ended; it may still hold the migration lock',
          );
          process.exit();
        }
      })
      .catch((error: unknown) => {
        logger.error(
          { err: redactSecrets(error instanceof Error ? error.message : String(error)) },
          'could not end the migrating session; it may still hold the migration lock',
        );
        process.exit();
      });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return {
    dispose() {
      pool.off('connect', onConnect);
      pool.off('remove', onRemove);
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    },
  };
}

interface Session {
  pid: number;
  /** backend_start, as text; null where pg_stat_activity may not be read. */
  started: string | null;
}

const END_SESSION_WITHIN_MS = 10_000;

/** The signal that stopped the migration, if one did: the process exits with its code. */
let interruptedBy: NodeJS.Signals | undefined;

/**
 * pg_terminate_backend, from a session of its own (a role may end its own sessions), of each
 * session still the one found at connect; how many were ended.
 */
async function endSessions(url: string, sessions: Session[]): Promise<number> {
  if (sessions.length === 0) return 0;
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    // Matched by start time where it is known (pg_stat_activity readable), else by pid alone.
    const known = sessions.every((session) => session.started !== null);
    const { rows } = await client.query<{ ended: number }>(
      known
        ? `SELECT count(*) FILTER (WHERE pg_terminate_backend(a.pid))::int AS ended
           FROM pg_stat_activity a
           JOIN unnest($1::int[], $2::text[]) AS s(pid, started)
             ON a.pid = s.pid AND a.backend_start = s.started::timestamptz`
        : `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS ended
           FROM pg_catalog.unnest($1::int[]) AS pid`,
      known
        ? [sessions.map((session) => session.pid), sessions.map((session) => session.started)]
        : [sessions.map((session) => session.pid)],
    );
    return rows[0]?.ended ?? 0;
  } finally {
    await client.end();
  }
}

main().catch((error: unknown) => {
  // Stopped by a signal: said already; the error is only the ended session's.
  if (interruptedBy !== undefined) process.exit();
  // Defence in depth: no message known to carry a secret, but one from a driver might.
  console.error(redactSecrets(error instanceof Error ? error.message : String(error)));
  process.exit(1);
});
