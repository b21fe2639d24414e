import { createLogger } from '../logger';
import { createDb } from './database';
import { migrateToLatest } from './migrate';
import { startEmbeddedPostgres } from './embedded-postgres';

/**
 * `npm run migrate` / `node dist/db/migrate-cli.js`: applies db/migrations to DATABASE_URL.
 * It needs only DATABASE_URL (and optionally LOG_LEVEL), not the service's full production
 * configuration, so a migration Job or `docker run` carries no unrelated secrets.
 * Without DATABASE_URL outside production it migrates the local embedded PostgreSQL.
 */
async function main(): Promise<void> {
  const logger = createLogger(process.env.LOG_LEVEL || 'info');
  const url = process.env.DATABASE_URL || undefined;
  if (!url && process.env.NODE_ENV === 'production') {
    throw new Error('DATABASE_URL: required when NODE_ENV=production');
  }
  if (url && !/^postgres(ql)?:\/\//.test(url)) {
    throw new Error('DATABASE_URL: must be a postgres:// connection string');
  }
  const embedded = url ? undefined : await startEmbeddedPostgres(logger);
  const { db } = createDb(url ?? embedded!.url, 1);
  try {
    const applied = await migrateToLatest(db);
    logger.info({ applied }, applied.length ? 'migrations applied' : 'database already up to date');
  } finally {
    await db.destroy();
    await embedded?.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
