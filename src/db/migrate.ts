import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Migrator, sql } from 'kysely';
import type { Kysely, Migration, MigrationProvider } from 'kysely';
import { StartupError } from '../process/startup-error';
import { isDatabaseUnavailable } from './database-unavailable';

/** db/migrations at the repository root, whether running from src/ (tsx) or dist/ (node). */
export const MIGRATIONS_DIR = path.resolve(__dirname, '..', '..', 'db', 'migrations');

/**
 * Plain SQL files, applied in file-name order; each file is one migration. Kysely's
 * Migrator records them in kysely_migration and takes a lock, so concurrent replicas
 * starting at once apply each file exactly once.
 */
export class SqlFileMigrationProvider implements MigrationProvider {
  constructor(private readonly dir: string = MIGRATIONS_DIR) {}

  async getMigrations(): Promise<Record<string, Migration>> {
    const files = (await fs.readdir(this.dir)).filter((f) => f.endsWith('.sql')).sort();
    const migrations: Record<string, Migration> = {};
    for (const file of files) {
      const text = await fs.readFile(path.join(this.dir, file), 'utf8');
      migrations[file.replace(/\.sql$/, '')] = {
        up: async (db) => {
          await sql.raw(text).execute(db);
        },
      };
    }
    return migrations;
  }
}

export async function migrateToLatest<T>(db: Kysely<T>, dir?: string): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new SqlFileMigrationProvider(dir) });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error instanceof Error ? error : new Error(String(error));
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/**
 * migrateToLatest for the commands a person runs (`npm start`, `npm run migrate`): a database
 * that cannot be reached is said in one line naming DATABASE_URL's host and port, not a stack.
 * `url` is DATABASE_URL (undefined: the embedded server, whose failures are bugs).
 */
export async function migrateReachable<T>(
  db: Kysely<T>,
  url: string | undefined,
): Promise<string[]> {
  try {
    return await migrateToLatest(db);
  } catch (error) {
    if (!url || !isDatabaseUnavailable(error)) throw error;
    const { hostname, port } = new URL(url);
    throw new StartupError(
      `DATABASE_URL: cannot reach the database at ${hostname}:${port || 5432} (${error instanceof Error ? error.message : String(error)})`,
      { cause: error },
    );
  }
}
