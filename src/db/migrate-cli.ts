import { createLogger } from '../logger';
import { invokedAs } from '../process/invoked-as';
import { cliDatabaseUrl } from './cli-database-url';
import { createDb } from './database';
import { startEmbeddedPostgres } from './embedded-postgres';
import { SqlFileMigrationProvider, migrateReachable } from './migrate';

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
  const logger = createLogger(process.env.LOG_LEVEL || 'info');
  const url = cliDatabaseUrl();
  // The embedded server's own start line would only repeat what the result line says.
  const embedded = url
    ? undefined
    : await startEmbeddedPostgres(logger.child({}, { level: 'warn' }), {
        command: invokedAs(),
        refusalHint: 'it applies migrations itself when it starts',
      });
  const { db } = createDb(url ?? embedded!.url, 1);
  const where = embedded ? `the embedded PostgreSQL in ${embedded.dataDir}` : 'the database';
  try {
    const applied = await migrateReachable(db, url, { logger });
    const latest = Object.keys(await new SqlFileMigrationProvider().getMigrations())
      .sort()
      .at(-1);
    if (applied.length === 0) {
      logger.info({ latest }, `nothing to migrate: ${where} is already at ${latest}`);
    } else {
      logger.info(
        { applied, latest },
        `applied ${applied.length} migration${applied.length === 1 ? '' : 's'} to ${where}: ${applied.join(', ')}`,
      );
    }
  } finally {
    await db.destroy();
    await embedded?.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
