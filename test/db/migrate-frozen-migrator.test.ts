import { spawn } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { sql } from 'kysely';
import { Client } from 'pg';
import { IDLE_SESSION_MS, knownMigrations, migrateToLatest } from '../../src/db/migrate';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';

/**
 * (src/db/migrate.ts, IDLE_SESSION_MS.) A migration Job whose process stops answering without closing its socket (a frozen or lost
 * node; here SIGSTOP) while 0010's concurrent build waits for a long report. The build then
 * finishes on its own, and its session sits idle — outside any transaction, so the
 * idle_in_transaction_session_timeout every service transaction carries does not apply —
 * holding the session-level migration lock. The retried Job (a new pod) waits behind it until
 * TCP keepalive gives up on the lost peer (about 2 h 11 min with Linux defaults) or, for a
 * frozen one, for ever; the new release's pods stay unready meanwhile. The migrator's session
 * now ends after IDLE_SESSION_MS idle, and the retry goes on.
 */

const REPO_ROOT = path.resolve(__dirname, '../..');
const databases: TestDatabase[] = [];
afterAll(async () => {
  await Promise.all(databases.map((database) => database.destroy()));
});

test(
  'When the migrator freezes after its index build began, then soon after the build finished another migrator can take the lock and complete the migration',
  async () => {
    const target = await createTestDatabase(3);
    databases.push(target);
    await sql`DROP INDEX relay_jobs_host_due_idx`.execute(target.db);
    await sql`DROP INDEX relay_jobs_delivered_idx`.execute(target.db);
    await sql`DROP TABLE relay_hosts`.execute(target.db);
    await sql`DELETE FROM kysely_migration WHERE name >= '0010'`.execute(target.db);

    const report = new Client({ connectionString: target.url });
    await report.connect();
    await report.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    await report.query('SELECT count(*) FROM messages');
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/db/migrate-cli.ts'], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', DATABASE_URL: target.url, LOG_LEVEL: 'info' },
      stdio: ['ignore', 'ignore', 'ignore'],
    });
    try {
      await eventually(async () => {
        const { rows } = await sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_stat_progress_create_index
        WHERE datname = current_database()`.execute(target.db);
        return rows[0]!.n > 0;
      }, 'the index build under way');
      child.kill('SIGSTOP'); // the node freezes / is lost: its socket stays open
      await report.query('COMMIT'); // the report ends; the build goes on and finishes
      const migrating = migrateToLatest(target.db); // the Job's retry
      const outcome = await Promise.race([
        migrating.then(() => 'migrated'),
        sleep(IDLE_SESSION_MS + 20_000).then(() => 'still waiting for the frozen migrator’s lock'),
      ]);
      const { rows } = await sql<{ state: string; query: string }>`
      SELECT a.state, left(a.query, 60) AS query FROM pg_locks l JOIN pg_stat_activity a USING (pid)
      WHERE l.locktype = 'advisory' AND l.granted AND a.pid <> pg_backend_pid()
        AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`.execute(
        target.db,
      );
      expect({ outcome, lockHolders: rows }).toEqual({ outcome: 'migrated', lockHolders: [] });
      expect(await knownMigrations()).toHaveLength(
        (
          await sql<{ n: number }>`SELECT count(*)::int AS n FROM kysely_migration`.execute(
            target.db,
          )
        ).rows[0]!.n,
      );
    } finally {
      child.kill('SIGKILL');
      child.kill('SIGCONT');
      await report.end().catch(() => undefined);
      // The frozen migrator's session, so the database can be dropped.
      await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()`.execute(target.db);
    }
  },
  IDLE_SESSION_MS + 60_000,
);
