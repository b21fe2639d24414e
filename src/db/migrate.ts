import { promises as fs } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Migrator, sql } from 'kysely';
import type { Kysely, Migration, MigrationProvider, MigrationResultSet } from 'kysely';
import type { Logger } from '../logger';
import { StartupError } from '../process/startup-error';
import { isDatabaseUnavailable } from './database-unavailable';
import {
  CREATE_SCHEMA_MARKER,
  describeSchema,
  isCompatible,
  judgeSchema,
  readSchema,
} from './schema-version';
import { warnWhereSchemasOpenToAll } from './schema-privileges';
import { rebaseTransactionIds } from './transaction-id-rebase';
import { sqlState } from './write-failure';

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
 * Migrator records them in kysely_migration; migrateToLatest's lock makes concurrent replicas
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
              } catch (error) {
                // The statement's error is the one to report: were the file ever run inside a
                // transaction, RESET ALL would fail too ("current transaction is aborted") and,
                // thrown from a finally, would hide it.
                await sql`RESET ALL`.execute(db).catch(() => undefined);
                throw error;
              }
              await sql`RESET ALL`.execute(db);
              await boundIdleSession(db);
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
 * The session-level advisory lock every migrateToLatest holds, on one connection, from reading
 * the schema to its last file: two runners at once (two release Jobs, replicas migrating at
 * start) take turns, and the second finds nothing left to do. A fixed key of this service's own
 * (Kysely's Migrator takes its own lock, inside this one, on the same connection).
 */
export const MIGRATION_LOCK_ID = '7391520648820133001';
const MIGRATION_LOCK_KEY = sql.lit(BigInt(MIGRATION_LOCK_ID));

export interface MigrateOptions {
  /**
   * Told once, when another runner has held the migration lock for LOCK_NOTICE_MS, who that
   * is: an operator's `npm run migrate` behind a rollout's migration Job otherwise waits in
   * silence. Told, too, what a rebase of a restored database moved.
   */
  logger?: Pick<Logger, 'info' | 'warn'>;
}

/**
 * Applies the pending migrations and returns their names. A database ahead of this release
 * (a newer release migrated it) is left alone when its migrations mark this release as still
 * safe — a rollback's migration Job then succeeds with nothing to do — and refused otherwise.
 * Then, still under the lock, a database restored from another cluster has its stored
 * transaction ids rebased (src/db/transaction-id-rebase.ts; nothing to do, one index probe,
 * on any other), so that every path that migrates — the migration Job, `npm run migrate`, a
 * start that migrates — also repairs a restored database.
 */
export async function migrateToLatest<T>(
  db: Kysely<T>,
  dir?: string,
  { logger }: MigrateOptions = {},
): Promise<string[]> {
  const known = await knownMigrations(dir);
  const nonTransactional = await nonTransactionalMigrations(known, dir);
  // Kysely's Migrator locks each of its runs, but the choice below (one transaction for all,
  // or file by file, each in a transaction or not) is made from what is pending: that must not
  // change between the choice and the run, or another runner's progress makes migrateUp apply
  // a no-transaction file inside a transaction, where CREATE INDEX CONCURRENTLY fails. Hence
  // one lock around the whole run, and everything read under it. Everything runs on the one
  // connection that holds the lock (a session lock belongs to its connection), which also lets
  // a pool of one connection migrate.
  return db.connection().execute(async (connection) => {
    await lockMigrations(connection, logger);
    let failed = false;
    try {
      await boundIdleSession(connection);
      const applied = await migrateLocked(connection, known, nonTransactional, dir);
      await rebaseTransactionIds(connection, { logger });
      return applied;
    } catch (error) {
      failed = true;
      throw error;
    } finally {
      // The connection goes back to the pool: the lock must not go with it, nor the idle
      // bound (the pool keeps idle connections). After a failure the migration's error is the
      // one reported, not a second one from here.
      await sql`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY})`
        .execute(connection)
        .then(() => unboundIdleSession(connection))
        .catch((error: unknown) => {
          if (!failed) throw error;
        });
    }
  });
}

/**
 * Takes the migration lock, asking again every LOCK_POLL_MS while another runner holds it. Not
 * pg_advisory_lock: a session waiting in it is inside a statement, with a snapshot, and the
 * holder's CREATE INDEX CONCURRENTLY waits for every older snapshot to end — PostgreSQL sees a
 * deadlock and aborts one of the two. Between two tries the session holds no snapshot (nor
 * across the short look at who holds the lock).
 */
async function lockMigrations<T>(db: Kysely<T>, logger?: Pick<Logger, 'info'>): Promise<void> {
  const started = Date.now();
  let told = !logger;
  for (;;) {
    const { rows } = await sql<{ locked: boolean }>`
      SELECT pg_try_advisory_lock(${MIGRATION_LOCK_KEY}) AS locked`.execute(db);
    if (rows[0]?.locked) return;
    if (!told && Date.now() - started >= LOCK_NOTICE_MS) {
      // Not found: the holder let go since the try; the next try most likely succeeds. Only a
      // notice: a role that may not read pg_locks (a managed database) migrates all the same.
      const holder = await migrationLockHolder(db).catch(() => {
        told = true;
        logger!.info('waiting for another migrator holding the migration lock');
        return undefined;
      });
      if (holder) {
        told = true;
        logger!.info(
          { lock: MIGRATION_LOCK_ID, holder },
          `waiting for another migrator: ${describeLockHolder(holder)} holds the migration lock ` +
            `(advisory lock ${MIGRATION_LOCK_ID}); migrating once it is done`,
        );
      }
    }
    await sleep(LOCK_POLL_MS);
  }
}

/**
 * A migrator whose process freezes or whose node is lost leaves its session open, and the
 * session holds the migration lock (a session lock: no transaction timeout ends it) — the
 * retried migration Job would wait behind it until TCP keepalive gives up on the peer (2 h by
 * Linux defaults), or for ever for a frozen one, the new release's pods unready meanwhile. The
 * migrator is never idle for long between its statements (the lock loop's pauses are
 * LOCK_POLL_MS), so PostgreSQL ends a session idle for IDLE_SESSION_MS: a long statement (an
 * index build waiting for a backup) is not idle, and does not count.
 * idle_session_timeout exists from PostgreSQL 14; an older server keeps the old behaviour.
 */
export const IDLE_SESSION_MS = 30_000;

async function boundIdleSession<T>(db: Kysely<T>): Promise<void> {
  await sql`
    SELECT set_config('idle_session_timeout', ${String(IDLE_SESSION_MS)}, false)
    WHERE current_setting('server_version_num')::int >= 140000`.execute(db);
}

async function unboundIdleSession<T>(db: Kysely<T>): Promise<void> {
  await sql`
    SELECT set_config('idle_session_timeout', reset_val, false) FROM pg_settings
    WHERE name = 'idle_session_timeout'`.execute(db);
}

// Migrations are rare and take seconds: a quarter of a second later is soon enough.
const LOCK_POLL_MS = 250;
// A runner that waits this long is behind another one's work, not a moment's overlap.
const LOCK_NOTICE_MS = 2_000;

/** The session holding the migration lock, as pg_locks and pg_stat_activity show it. */
interface LockHolder {
  pid: number;
  /**
   * Null where pg_stat_activity hides another role's session from this one (no
   * pg_read_all_stats); '' when the holder set no application_name.
   */
  application_name: string | null;
  user: string | null;
  client_addr: string | null;
  backend_start: Date | null;
}

/**
 * Who holds the migration lock, or undefined when nobody does (any more). An advisory lock on
 * one bigint key is the pg_locks row with objsubid 1, the key's high half in classid and low
 * half in objid, in the current database.
 */
async function migrationLockHolder<T>(db: Kysely<T>): Promise<LockHolder | undefined> {
  const key = BigInt(MIGRATION_LOCK_ID);
  const high = Number(key >> BigInt(32));
  const low = Number(key & BigInt(0xffffffff));
  const { rows } = await sql<LockHolder>`
    SELECT l.pid, a.application_name, a.usename AS user, host(a.client_addr) AS client_addr,
           a.backend_start
    FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND l.classid = ${high}::oid AND l.objid = ${low}::oid
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    LIMIT 1`.execute(db);
  return rows[0];
}

function describeLockHolder(holder: LockHolder): string {
  const details = [
    holder.application_name ? `application ${holder.application_name}` : undefined,
    holder.user ? `user ${holder.user}` : undefined,
    holder.client_addr ? `from ${holder.client_addr}` : undefined,
    holder.backend_start ? `connected since ${holder.backend_start.toISOString()}` : undefined,
  ].filter((detail) => detail !== undefined);
  return `PostgreSQL backend pid ${holder.pid}${details.length > 0 ? ` (${details.join(', ')})` : ''}`;
}

/** migrateToLatest's work, on the connection that holds the migration lock. */
async function migrateLocked<T>(
  db: Kysely<T>,
  known: readonly string[],
  nonTransactional: ReadonlySet<string>,
  dir: string | undefined,
): Promise<string[]> {
  // The migrations' verdict: a restored database (rebased after them) is migrated as any other.
  const verdict = judgeSchema(known, { ...(await readSchema(db)), restored: false });
  if (verdict.state === 'ahead') return [];
  if (!isCompatible(verdict) && verdict.state !== 'too_old') {
    throw new Error(describeSchema(verdict));
  }
  // Kysely runs every pending migration in one transaction, or none in any. Without a file
  // marked no-transaction pending, that is kept: a failure leaves nothing half-applied. With
  // one, files are applied one at a time, each transactional file in its own transaction with
  // its record in kysely_migration, each no-transaction file outside any.
  const provider = new SqlFileMigrationProvider(dir);
  // Kysely looks for its kysely_migration table in every schema the role can see, then reads it
  // unqualified: in a database shared with another application that migrates with Kysely in a
  // schema of its own, a fresh install found that one, did not create its own, and failed.
  // Named here: where this service's history is (migrationSchema), else the schema the
  // migrations create their tables in (search_path's first).
  const migrationTableSchema = await migrationSchema(db, known);
  const inTransaction = new Migrator({ db, provider, migrationTableSchema });
  const pending = async (): Promise<string[]> =>
    (await inTransaction.getMigrations())
      .filter((migration) => migration.executedAt === undefined)
      .map((migration) => migration.name);
  if (!(await pending()).some((name) => nonTransactional.has(name))) {
    return succeeded(await inTransaction.migrateToLatest());
  }
  const alone = new Migrator({ db, provider, migrationTableSchema, disableTransactions: true });
  const applied: string[] = [];
  // The next pending file is read again before each step: migrateUp applies whatever is
  // really next, and the migrator must be the one for that file.
  for (let next = (await pending())[0]; next !== undefined; next = (await pending())[0]) {
    const migrator = nonTransactional.has(next) ? alone : inTransaction;
    const step = succeeded(await migrator.migrateUp());
    // Never loop on a file Kysely does not see as pending (a runner of another kind at work).
    if (step.length === 0) throw new Error(`migration ${next} is pending but was not applied`);
    applied.push(...step);
  }
  return applied;
}

/**
 * The schema of this service's kysely_migration table: the first on search_path whose table
 * holds one of this release's migrations (an install's history, wherever search_path has put
 * a schema before it since — a schema named after the role, PostgreSQL's secure schema
 * pattern, created after the install), else, on a fresh install, the schema unqualified names
 * are created in (current_schema()); undefined with neither. Not any table of that name:
 * another application on the same database that migrates with Kysely keeps one too.
 */
async function migrationSchema<T>(
  db: Kysely<T>,
  known: readonly string[],
): Promise<string | undefined> {
  const history = await historySchema(db, known);
  if (history !== undefined) return history;
  const { rows } = await sql<{ schema: string | null }>`SELECT current_schema() AS schema`.execute(
    db,
  );
  return rows[0]?.schema ?? undefined;
}

/** The first schema on search_path whose kysely_migration holds one of `known`, if any. */
async function historySchema<T>(
  db: Kysely<T>,
  known: readonly string[],
): Promise<string | undefined> {
  const { rows: candidates } = await sql<{ schema: string }>`
    SELECT s.name AS schema
    FROM pg_catalog.unnest(current_schemas(false)) WITH ORDINALITY AS s(name, ord)
    WHERE to_regclass(pg_catalog.format('%I.kysely_migration', s.name)) IS NOT NULL
    ORDER BY s.ord`.execute(db);
  for (const { schema } of candidates) {
    const { rows } = await sql<{ ours: boolean }>`
      SELECT EXISTS (
        SELECT 1 FROM ${sql.id(schema, 'kysely_migration')} WHERE name = ANY(${[...known]})
      ) AS ours`.execute(db);
    if (rows[0]?.ours) return schema;
  }
  return undefined;
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
 * that cannot be reached is said in one line naming DATABASE_URL's host and port, not a stack;
 * so is one where another application already keeps a table of a name this service's first
 * install would create (a DATABASE_URL left in the shell by another project), refused before
 * anything is created in it. `url` is DATABASE_URL (undefined: the embedded server, whose
 * failures are bugs).
 */
export async function migrateReachable<T>(
  db: Kysely<T>,
  url: string | undefined,
  options: MigrateOptions = {},
): Promise<string[]> {
  try {
    if (url) await refuseOtherEncodings(db, url, options.logger);
    if (url && options.logger) await warnWhereSchemasOpenToAll(db, options.logger);
    if (url) await refuseForeignTables(db, url);
    return await migrateToLatest(db, undefined, options);
  } catch (error) {
    if (!url) throw error;
    if (isDatabaseUnavailable(error)) {
      throw new StartupError(
        `DATABASE_URL: cannot reach ${databaseAt(url)} (${error instanceof Error ? error.message : String(error)})`,
        { cause: error },
      );
    }
    // What the check before could not see (an index or sequence of the same name): said the
    // same way, though the migration's own bookkeeping tables may be left in that database.
    if (isDuplicateTable(error) && !(await hasOurHistory(db).catch(() => true))) {
      throw new StartupError(
        `DATABASE_URL: ${databaseNamed(url)} already holds a relation sw-status's migrations ` +
          `create (${error instanceof Error ? error.message : String(error)}), not sw-status's: give ` +
          'sw-status a database (or schema) of its own (kysely_migration and kysely_migration_lock ' +
          'may have been left in it).',
        { cause: error },
      );
    }
    throw error;
  }
}

/**
 * sw-status stores text as SignalWire sends it — names, error messages, raw callbacks in any
 * script — so its database must be UTF8. In LATIN1 (or WIN1252, EUC_JP…) such text cannot be
 * stored at all (the migrations' own comments already fail, with a conversion error that names
 * no encoding); in SQL_ASCII (what initdb picks under a POSIX locale: many old clusters) bytes
 * pass unchecked, and a JSON escape of a non-ASCII character is refused. A fresh install is
 * refused with the fix; a database already migrated is warned about, not stopped: its
 * release's rollout must not fail on what ran before it.
 */
async function refuseOtherEncodings<T>(
  db: Kysely<T>,
  url: string,
  logger: MigrateOptions['logger'],
): Promise<void> {
  const { rows } = await sql<{ server_encoding: string }>`SHOW server_encoding`.execute(db);
  const encoding = rows[0]?.server_encoding;
  if (encoding === undefined || encoding === 'UTF8') return;
  const problem = `DATABASE_URL: ${databaseNamed(url)} is encoded ${encoding}, not UTF8`;
  const fix =
    "sw-status needs a UTF8 database (CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0; " +
    'README "PostgreSQL for sw-status")';
  if (!(await hasOurHistory(db))) throw new StartupError(`${problem}: ${fix}.`);
  logger?.warn(
    { encoding },
    `${problem}: text SignalWire sends in other scripts may be refused. ${fix}: move the data into one (pg_dump, then restore into a UTF8 database).`,
  );
}

/** SQLSTATE duplicate_table: CREATE of a relation (table, index, sequence) whose name is taken. */
const DUPLICATE_TABLE = '42P07';

function isDuplicateTable(error: unknown): boolean {
  return sqlState(error) === DUPLICATE_TABLE;
}

/**
 * On a fresh install (no migration of ours applied), a table of a name the migrations create
 * that is already in the schema they create tables in is another application's: refused
 * before anything is created. Tables are looked at before the history: a replica installing at
 * the same moment commits each table with its history record, so a table of ours seen here
 * has its record seen after.
 */
async function refuseForeignTables<T>(db: Kysely<T>, url: string): Promise<void> {
  const names = await tablesCreated();
  const { rows } = await sql<{ name: string }>`
    SELECT t.name FROM pg_catalog.unnest(${names}::text[]) WITH ORDINALITY AS t(name, ord)
    WHERE to_regclass(pg_catalog.format('%I.%I', current_schema(), t.name)) IS NOT NULL
    ORDER BY t.ord LIMIT 1`.execute(db);
  const taken = rows[0]?.name;
  if (taken === undefined || (await hasOurHistory(db))) return;
  throw new StartupError(
    `DATABASE_URL: ${databaseNamed(url)} already holds a table "${taken}" that is not ` +
      "sw-status's: give sw-status a database (or schema) of its own.",
  );
}

/** The tables this release's migrations create unconditionally (not IF NOT EXISTS). */
async function tablesCreated(dir: string = MIGRATIONS_DIR): Promise<string[]> {
  const names: string[] = [];
  for (const name of await knownMigrations(dir)) {
    const text = withoutComments(await fs.readFile(path.join(dir, `${name}.sql`), 'utf8'));
    for (const match of text.matchAll(/\bCREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?!IF\b)"?(\w+)"?/gi)) {
      names.push(match[1]!.toLowerCase());
    }
  }
  return names;
}

/** Whether a kysely_migration on search_path holds one of this release's migrations. */
async function hasOurHistory<T>(db: Kysely<T>): Promise<boolean> {
  return (await historySchema(db, await knownMigrations())) !== undefined;
}

/**
 * Where DATABASE_URL points, as node-postgres reads it: libpq's `user@/db?host=…&port=…` form
 * (a Unix socket directory, say) gives its host and port as parameters, and is no WHATWG URL
 * until a host is put in (pg-connection-string does the same). Never the userinfo.
 */
export function databaseAt(url: string): string {
  const address = databaseAddress(url);
  return address ? `the database at ${address.host}:${address.port}` : 'the database';
}

/**
 * databaseAt with the database's name, for a line that says which database a command writes
 * into (`the database sw_status at db.internal:5432`): host, port and name only — never the
 * userinfo or a parameter (`password=`). A URL without a name gives databaseAt's words.
 */
export function databaseNamed(url: string): string {
  const address = databaseAddress(url);
  if (!address?.name) return databaseAt(url);
  return `the database ${address.name} at ${address.host}:${address.port}`;
}

/** Put where `user@/db` has no host, so that it parses (as pg-connection-string does). */
const NO_HOST = '___DUMMY___';

function databaseAddress(url: string): { host: string; port: string; name: string } | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url.replace('@/', `@${NO_HOST}/`));
  } catch {
    return undefined;
  }
  // No host at all (`user@/db`): node-postgres connects to localhost.
  const host =
    parsed.searchParams.get('host') ??
    (parsed.hostname === NO_HOST ? 'localhost' : parsed.hostname);
  const port = parsed.searchParams.get('port') ?? parsed.port;
  let name = parsed.pathname.slice(1);
  try {
    name = decodeURIComponent(name);
  } catch {
    // Not percent-encoded as a whole: the name as written.
  }
  return { host, port: port || '5432', name };
}
