import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { sql } from 'kysely';
import { Client } from 'pg';
import { createDb } from '../../src/db/database';
import { MIGRATION_LOCK_ID, knownMigrations, migrateToLatest } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';

/**
 * A migration runner that finds another one holding the migration lock (src/db/migrate.ts) —
 * an operator's `npm run migrate` while a rollout's migration Job runs — waits for it, and
 * says so once, naming the holder, instead of waiting in silence.
 */

const REPO_ROOT = path.resolve(__dirname, '../..');
const WAITING = 'waiting for another migrator';

const databases: TestDatabase[] = [];
const roles: string[] = [];
afterAll(async () => {
  await Promise.all(databases.map((database) => database.destroy()));
  // A role is the cluster's, not a database's: dropped once the databases it owns are gone.
  const admin = new Client({ connectionString: process.env.SW_TEST_ADMIN_URL });
  await admin.connect();
  try {
    for (const role of roles) await admin.query(`DROP ROLE IF EXISTS ${role}`);
  } finally {
    await admin.end();
  }
});

async function database(migrated: boolean): Promise<TestDatabase> {
  const created = await createTestDatabase(1, { migrated });
  databases.push(created);
  return created;
}

/**
 * A role of its own owning the database and its public schema, as a managed database's
 * application role does (no superuser); its connection string. Dropped after the file.
 */
async function ownedByOwnRole(target: TestDatabase): Promise<string> {
  const suffix = randomBytes(4).toString('hex');
  const role = `sw_migrator_${suffix}`;
  const password = `pw_${suffix}`;
  roles.push(role);
  const name = new URL(target.url).pathname.slice(1);
  await sql.raw(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`).execute(target.db);
  await sql.raw(`ALTER DATABASE ${name} OWNER TO ${role}`).execute(target.db);
  await sql.raw(`ALTER SCHEMA public OWNER TO ${role}`).execute(target.db);
  const asRole = new URL(target.url);
  asRole.username = role;
  asRole.password = password;
  return asRole.toString();
}

/** Another migrator: a session of its own holding the migration lock until release(). */
async function holdMigrationLock(url: string): Promise<{ pid: number; release(): Promise<void> }> {
  const client = new Client({ connectionString: url, application_name: 'rollout-migrate-job' });
  await client.connect();
  const { rows } = await client.query<{ pid: number }>(
    `SELECT pg_backend_pid() AS pid, pg_advisory_lock(${MIGRATION_LOCK_ID})`,
  );
  return {
    pid: rows[0]!.pid,
    async release() {
      await client.query(`SELECT pg_advisory_unlock(${MIGRATION_LOCK_ID})`);
      await client.end();
    },
  };
}

/** What a logger given to migrateToLatest says, as messages. */
function recordingLogger(): { logger: ReturnType<typeof createLogger>; messages: string[] } {
  const messages: string[] = [];
  const logger = createLogger('info', {
    write: (line: string) => void messages.push((JSON.parse(line) as { msg: string }).msg),
  });
  return { logger, messages };
}

async function appliedMigrations(target: TestDatabase): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'kysely_migration'`.execute(
    target.db,
  );
  if (rows[0]!.n === 0) return 0;
  const applied = await sql<{ n: number }>`SELECT count(*)::int AS n FROM kysely_migration`.execute(
    target.db,
  );
  return applied.rows[0]!.n;
}

test('When another migrator holds the migration lock, then npm run migrate says once that it waits for it, naming its pid, and migrates once it lets go', async () => {
  const target = await database(false);
  const holder = await holdMigrationLock(target.url);
  let released = false;
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/db/migrate-cli.ts'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', DATABASE_URL: target.url, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    await eventually(() => stdout.includes(WAITING), `"${WAITING}" in: ${stdout}${stderr}`);
    const waiting = stdout
      .split('\n')
      .filter((line) => line.includes(WAITING))
      .map((line) => JSON.parse(line) as { msg: string; lock: string; holder: { pid: number } });
    expect(waiting).toHaveLength(1);
    expect(waiting[0]!.msg).toContain(`pid ${holder.pid} (application rollout-migrate-job`);
    expect(waiting[0]).toMatchObject({ lock: MIGRATION_LOCK_ID, holder: { pid: holder.pid } });
    // Still waiting: nothing applied behind the holder's back.
    expect(child.exitCode).toBeNull();
    expect(await appliedMigrations(target)).toBe(0);

    await holder.release();
    released = true;
    expect(await exited).toBe(0);
    const known = await knownMigrations();
    expect(stdout).toContain(`applied ${known.length} migrations to the database`);
    expect(stdout.split(WAITING)).toHaveLength(2);
    expect(await appliedMigrations(target)).toBe(known.length);
  } finally {
    if (!released) await holder.release();
    child.kill();
  }
}, 60_000);

test('When the migration lock is free, then migrating says nothing about waiting', async () => {
  const target = await database(false);
  const { logger, messages } = recordingLogger();
  expect(await migrateToLatest(target.db, undefined, { logger })).toEqual(await knownMigrations());
  expect(messages).toEqual([]);
});

test('When another migrator lets go of the lock within a moment, then nothing is said about waiting', async () => {
  const target = await database(true);
  const holder = await holdMigrationLock(target.url);
  const { logger, messages } = recordingLogger();
  const migrating = migrateToLatest(target.db, undefined, { logger });
  await new Promise((resolve) => setTimeout(resolve, 500));
  await holder.release();
  expect(await migrating).toEqual([]);
  expect(messages).toEqual([]);
});

test('When the migrating role may not read pg_locks (as on some managed databases), then it still waits for the holder, says so without naming it, and migrates', async () => {
  const target = await database(false);
  // pg_locks closed to the role. REVOKE touches only this database's catalog.
  const migrator = createDb(await ownedByOwnRole(target), 1);
  const holder = await holdMigrationLock(target.url);
  let released = false;
  try {
    await sql.raw('REVOKE SELECT ON pg_catalog.pg_locks FROM PUBLIC').execute(target.db);
    await expect(sql`SELECT count(*) FROM pg_locks`.execute(migrator.db)).rejects.toMatchObject({
      code: '42501',
    });

    const { logger, messages } = recordingLogger();
    const migrating = migrateToLatest(migrator.db, undefined, { logger });
    const settled = migrating.then(
      () => 'migrated',
      () => 'failed',
    );
    await eventually(() => messages.length > 0, 'a notice that it waits');
    expect(messages).toEqual(['waiting for another migrator holding the migration lock']);
    expect(await Promise.race([settled, sleep(300).then(() => 'waiting')])).toBe('waiting');
    expect(await appliedMigrations(target)).toBe(0);

    await holder.release();
    released = true;
    expect(await migrating).toEqual(await knownMigrations());
    expect(messages).toHaveLength(1);
  } finally {
    if (!released) await holder.release();
    await migrator.db.destroy();
  }
}, 60_000);

/**
 * A migrator stopped (SIGTERM, then SIGINT) while its concurrent index build waits for a long
 * report: its session must end with it, leaving no build running and the lock free; the next
 * run applies everything. `migratorUrl`: whom the migrator connects as.
 */
async function stopMidBuild(target: TestDatabase, migratorUrl: string): Promise<void> {
  // A long report: a transaction holding a snapshot, which a concurrent index build waits for.
  const report = new Client({ connectionString: target.url });
  await report.connect();
  await report.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
  await report.query('SELECT 1');
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/db/migrate-cli.ts'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', DATABASE_URL: migratorUrl, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  try {
    const building = async () => {
      const { rows } = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_stat_progress_create_index
        WHERE datname = current_database()`.execute(target.db);
      return rows[0]!.n > 0;
    };
    await eventually(building, `an index build under way; the migrator said: ${output}`);
    child.kill('SIGTERM');
    // An impatient second signal must not kill it before the session is ended (Node's default
    // action: no exit code). Both are pending at once: the lower-numbered SIGINT may come first.
    child.kill('SIGINT');
    const code = await exited;
    expect([130, 143]).toContain(code);
    expect(output).toContain(`migration stopped by ${code === 130 ? 'SIGINT' : 'SIGTERM'}`);
    expect(output).not.toContain('may still hold the migration lock');
    // The session is gone, and the migration lock with it, though the report still runs.
    await eventually(async () => !(await building()), 'the index build to stop');
    const { rows } = await sql<{ n: number }>`
      SELECT count(*)::int AS n FROM pg_locks
      WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`.execute(
      target.db,
    );
    expect(rows[0]!.n).toBe(0);
  } finally {
    child.kill('SIGKILL');
    await report.query('ROLLBACK');
    await report.end();
  }
  const { logger } = recordingLogger();
  const known = await knownMigrations();
  await migrateToLatest(target.db, undefined, { logger });
  expect(await appliedMigrations(target)).toBe(known.length);
  const { rows: invalid } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM pg_index WHERE NOT indisvalid`.execute(target.db);
  expect(invalid[0]!.n).toBe(0);
}

test('When a migration Job is stopped (SIGTERM, then SIGINT) while an index build waits, then the build’s session ends with it, the lock is free, and the next run applies everything', async () => {
  const target = await database(false);
  await stopMidBuild(target, target.url);
}, 60_000);

test('When the stopped migrator’s role may not read pg_stat_activity (as on some managed databases), then its session still ends with it', async () => {
  const target = await database(false);
  const asRole = await ownedByOwnRole(target);
  await sql.raw('REVOKE SELECT ON pg_catalog.pg_stat_activity FROM PUBLIC').execute(target.db);
  await stopMidBuild(target, asRole);
}, 60_000);
