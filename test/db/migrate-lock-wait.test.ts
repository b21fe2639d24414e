import { spawn } from 'node:child_process';
import path from 'node:path';
import { sql } from 'kysely';
import { Client } from 'pg';
import { MIGRATION_LOCK_ID, knownMigrations, migrateToLatest } from '../../src/db/migrate';
import { createLogger } from '../../src/logger';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../ingest/support/eventually';

/**
 * A migration runner that finds another one holding the migration lock (src/db/migrate.ts) —
 * an operator's `npm run migrate` while a rollout's migration Job runs — waits for it, and
 * says so once, naming the holder, instead of waiting in silence.
 */

const REPO_ROOT = path.resolve(__dirname, '../..');
const WAITING = 'waiting for another migrator';

const databases: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(databases.map((database) => database.destroy()));
});

async function database(migrated: boolean): Promise<TestDatabase> {
  const created = await createTestDatabase(1, { migrated });
  databases.push(created);
  return created;
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
