import { loadConfig } from '../config';
import { createLogger } from '../logger';
import { createDb } from './database';
import { migrateToLatest } from './migrate';
import { startEmbeddedPostgres } from './embedded-postgres';

/** `npm run migrate` / `node dist/db/migrate-cli.js`: applies db/migrations to DATABASE_URL. */
async function main(): Promise<void> {
  const config = loadConfig();
  const logger = createLogger(config.logLevel);
  const embedded = config.databaseUrl ? undefined : await startEmbeddedPostgres(logger);
  const { db } = createDb(config.databaseUrl ?? embedded!.url, 1);
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
