import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Migrator, sql } from 'kysely';
import type { Kysely, Migration, MigrationProvider } from 'kysely';
import { StartupError } from '../process/startup-error';
import { isDatabaseUnavailable } from './database-unavailable';
import {
  CREATE_SCHEMA_MARKER,
  describeSchema,
  isCompatible,
  judgeSchema,
  readSchema,
} from './schema-version';

/** db/migrations at the repository root, whether running from src/ (tsx) or dist/ (node). */
export const MIGRATIONS_DIR = path.resolve(__dirname, '..', '..', 'db', 'migrations');

/** The migrations this release ships, by name (file name without `.sql`), in order. */
export async function knownMigrations(dir: string = MIGRATIONS_DIR): Promise<string[]> {
  const files = (await fs.readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  return files.map((file) => file.replace(/\.sql$/, ''));
}

/**
 * Plain SQL files, applied in file-name order; each file is one migration. Kysely's
 * Migrator records them in kysely_migration and takes a lock, so concurrent replicas
 * starting at once apply each file exactly once. Before each file the compatibility marker
 * (src/db/schema-version.ts) is made to exist, in the same transaction, so a migration that
 * breaks older releases can say so in plain SQL.
 */
export class SqlFileMigrationProvider implements MigrationProvider {
  constructor(private readonly dir: string = MIGRATIONS_DIR) {}

  async getMigrations(): Promise<Record<string, Migration>> {
    const migrations: Record<string, Migration> = {};
    for (const name of await knownMigrations(this.dir)) {
      const text = await fs.readFile(path.join(this.dir, `${name}.sql`), 'utf8');
      migrations[name] = {
        up: async (db) => {
          await CREATE_SCHEMA_MARKER.execute(db);
          await sql.raw(text).execute(db);
        },
      };
    }
    return migrations;
  }
}

/**
 * Applies the pending migrations and returns their names. A database ahead of this release
 * (a newer release migrated it) is left alone when its migrations mark this release as still
 * safe — a rollback's migration Job then succeeds with nothing to do — and refused otherwise.
 */
export async function migrateToLatest<T>(db: Kysely<T>, dir?: string): Promise<string[]> {
  const known = await knownMigrations(dir);
  const verdict = judgeSchema(known, await readSchema(db));
  if (verdict.state === 'ahead') return [];
  if (!isCompatible(verdict) && verdict.state !== 'too_old') {
    throw new Error(describeSchema(verdict));
  }
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
