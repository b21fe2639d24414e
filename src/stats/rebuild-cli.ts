import { cliLogLevel, redactSecrets } from '../config';
import { cliDatabaseUrl, namingUnreachable } from '../db/cli-database-url';
import { createDb } from '../db/database';
import { startEmbeddedPostgres } from '../db/embedded-postgres';
import { createLogger } from '../logger';
import { rebuildRollups } from './stats.repository';
import { signalExitCode } from '../process/signal-exit-code';

/**
 * `npm run stats:rebuild` / `node dist/stats/rebuild-cli.js`: recounts the stats rollups from
 * the messages table (DATABASE_URL, like `npm run migrate`). Run it once after a rolling
 * upgrade to this version: replicas of the older version wrote no rollup deltas meanwhile.
 * Safe while the service runs; other replicas' deltas keep applying on top.
 */
async function main(): Promise<void> {
  const logger = createLogger(cliLogLevel('info'));
  process.on('SIGTERM', (signal) => stop(signal, logger));
  process.on('SIGINT', (signal) => stop(signal, logger));
  const url = cliDatabaseUrl();
  const embedded = url ? undefined : await startEmbeddedPostgres(logger);
  const { db } = createDb(url ?? embedded!.url, 1);
  try {
    const result = await rebuildRollups(db, (line) => logger.info(line)).catch((error: unknown) => {
      throw namingUnreachable(error, url);
    });
    logger.info(result, 'stats rollups rebuilt');
  } finally {
    await db.destroy();
    await embedded?.stop();
  }
}

/**
 * SIGTERM (a Job past its deadline, a deleted pod) or SIGINT (Ctrl-C): the rebuild is one
 * transaction, which PostgreSQL rolls back when the connection closes — as it does when the
 * process ends — so the process just ends, leaving the rollups as they were. As PID 1 in a
 * container, Node ignores SIGTERM unless it listens for it (see db/migrate-cli.ts).
 */
function stop(signal: NodeJS.Signals, logger: ReturnType<typeof createLogger>): void {
  logger.error(
    { signal },
    `rebuild stopped by ${signal}: its transaction rolls back, the rollups stay as they were; run it again`,
  );
  process.exit(signalExitCode(signal));
}

main().catch((error: unknown) => {
  // Defence in depth: no message known to carry a secret, but one from a driver might.
  console.error(redactSecrets(error instanceof Error ? error.message : String(error)));
  process.exit(1);
});
