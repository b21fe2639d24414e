import { promises as fs } from 'node:fs';
import path from 'node:path';
import { Migrator, sql } from 'kysely';
import type { Kysely, Migration, MigrationProvider, MigrationResultSet } from 'kysely';
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
 * The first line that marks a migration to run outside a transaction: CREATE INDEX
 * CONCURRENTLY and DROP INDEX CONCURRENTLY refuse to run inside one. Such a file must be safe
 * to run again from the top (IF NOT EXISTS, IF EXISTS): a crash between two of its statements,
 * or between its last statement and its record in kysely_migration, runs it again.
 */
export const NO_TRANSACTION_MARKER = '--! no-transaction';

/** Whether a migration's text opens with the no-transaction marker. */
export function isNonTransactional(text: string): boolean {
  return text.trimStart().split('\n', 1)[0]!.trim() === NO_TRANSACTION_MARKER;
}

/**
 * Plain SQL files, applied in file-name order; each file is one migration. Kysely's
 * Migrator records them in kysely_migration and takes a lock, so concurrent replicas
 * starting at once apply each file exactly once. Before each file the compatibility marker
 * (src/db/schema-version.ts) is made to exist, so a migration that breaks older releases can
 * say so in plain SQL.
 *
 * A non-transactional file runs statement by statement (a multi-statement query string would
 * be one implicit transaction); session settings it makes (SET lock_timeout) are reset after it.
 */
export class SqlFileMigrationProvider implements MigrationProvider {
  constructor(private readonly dir: string = MIGRATIONS_DIR) {}

  async getMigrations(): Promise<Record<string, Migration>> {
    const migrations: Record<string, Migration> = {};
    for (const name of await knownMigrations(this.dir)) {
      const text = await fs.readFile(path.join(this.dir, `${name}.sql`), 'utf8');
      migrations[name] = isNonTransactional(text)
        ? {
            up: async (db) => {
              await CREATE_SCHEMA_MARKER.execute(db);
              try {
                for (const statement of splitStatements(text)) await sql.raw(statement).execute(db);
              } finally {
                await sql`RESET ALL`.execute(db);
              }
            },
          }
        : {
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
 * SQL text split into statements at semicolons outside quotes, dollar quotes and comments.
 * Only for the no-transaction files this repository writes; the result keeps comments.
 */
export function splitStatements(text: string): string[] {
  const statements: string[] = [];
  let start = 0;
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    const dollar = /^\$[A-Za-z_]*\$/.exec(rest)?.[0];
    if (rest.startsWith('--')) i = until(text, '\n', i);
    else if (rest.startsWith('/*')) i = until(text, '*/', i + 2);
    else if (text[i] === "'" || text[i] === '"') i = until(text, text[i]!, i + 1);
    else if (dollar) i = until(text, dollar, i + dollar.length);
    else if (text[i] === ';') {
      statements.push(text.slice(start, i + 1));
      start = ++i;
    } else i++;
  }
  statements.push(text.slice(start));
  return statements.filter((statement) => !/^\s*$/.test(withoutComments(statement)));
}

/** The index just past the next `end` at or after `from` (the text's end when none). */
function until(text: string, end: string, from: number): number {
  const found = text.indexOf(end, from);
  return found === -1 ? text.length : found + end.length;
}

function withoutComments(statement: string): string {
  return statement.replace(/--[^\n]*/g, '').replace(/\/\*[\s\S]*?\*\//g, '');
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
  // Kysely runs every pending migration in one transaction, or none in any. Without a file
  // marked no-transaction pending, that is kept: a failure leaves nothing half-applied. With
  // one, files are applied one at a time (migrateUp: the next pending one, under Kysely's
  // lock, so racing replicas never apply a file twice), each transactional file in its own
  // transaction with its record in kysely_migration.
  const provider = new SqlFileMigrationProvider(dir);
  const nonTransactional = await nonTransactionalMigrations(known, dir);
  const inTransaction = new Migrator({ db, provider });
  const pending = (await inTransaction.getMigrations())
    .filter((migration) => migration.executedAt === undefined)
    .map((migration) => migration.name);
  if (!pending.some((name) => nonTransactional.has(name))) {
    return succeeded(await inTransaction.migrateToLatest());
  }
  const alone = new Migrator({ db, provider, disableTransactions: true });
  const applied: string[] = [];
  for (const name of pending) {
    // Another replica may have applied `name` meanwhile: migrateUp then applies the next one,
    // and one of the other kind still works (a transactional file's text is one implicit
    // transaction; a concurrent index build refuses to run in one, and the next start retries).
    const migrator = nonTransactional.has(name) ? alone : inTransaction;
    applied.push(...succeeded(await migrator.migrateUp()));
  }
  return applied;
}

async function nonTransactionalMigrations(
  known: readonly string[],
  dir: string = MIGRATIONS_DIR,
): Promise<Set<string>> {
  const texts = await Promise.all(
    known.map((name) => fs.readFile(path.join(dir, `${name}.sql`), 'utf8')),
  );
  return new Set(known.filter((_, i) => isNonTransactional(texts[i]!)));
}

/** The names a migrator run applied; its error, thrown. */
function succeeded({ error, results }: MigrationResultSet): string[] {
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
