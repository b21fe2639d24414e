import { cpSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import { MIGRATIONS_DIR, SqlFileMigrationProvider, migrateToLatest } from '../../src/db/migrate';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * Two migration runners at once on one database (two migration Jobs of quick successive
 * releases, or several non-production replicas that migrate at start on one DATABASE_URL):
 * migrateToLatest's lock (src/db/migrate.ts) makes them take turns, so each file is applied
 * once and with the migrator its kind needs — a no-transaction file never inside a transaction.
 */

let work: string;
const databases: TestDatabase[] = [];

beforeAll(() => {
  work = mkdtempSync(path.join(os.tmpdir(), 'sw-status-migrate-concurrent-'));
});
afterAll(async () => {
  await Promise.all(databases.map((database) => database.destroy()));
  rmSync(work, { recursive: true, force: true });
});

test('When two runners migrate a database one transactional and one no-transaction file behind, then both succeed and every file is applied once', async () => {
  const target = await createTestDatabase(2, { migrated: false });
  databases.push(target);
  // The database as the previous release left it: everything up to 0008.
  const previous = mkdtempSync(path.join(work, 'previous-'));
  cpSync(MIGRATIONS_DIR, previous, { recursive: true });
  unlinkSync(path.join(previous, '0009_stats_narrow_rollups.sql'));
  unlinkSync(path.join(previous, '0010_relay_jobs_host_idx.sql'));
  unlinkSync(path.join(previous, '0011_relay_jobs_delivered_idx.sql'));
  unlinkSync(path.join(previous, '0012_relay_hosts.sql'));
  unlinkSync(path.join(previous, '0013_feed_removal_steps.sql'));
  unlinkSync(path.join(previous, '0014_messages_sweep_due_idx.sql'));
  unlinkSync(path.join(previous, '0015_messages_stuck_created_idx.sql'));
  unlinkSync(path.join(previous, '0016_feed_epoch.sql'));
  unlinkSync(path.join(previous, '0017_messages_api_idx.sql'));
  unlinkSync(path.join(previous, '0018_stats_rollups_search_path.sql'));
  await migrateToLatest(target.db, previous);

  // This release: 0009, 0012, 0013, 0016 and 0018 (transactional), 0010, 0011, 0014, 0015 and 0017
  // (no-transaction) pending, two runners at once, each with its own pool as two processes
  // would have.
  const a = createDb(target.url, 2);
  const b = createDb(target.url, 2);
  try {
    const results = await Promise.allSettled([
      migrateToLatest(a.db, MIGRATIONS_DIR),
      migrateToLatest(b.db, MIGRATIONS_DIR),
    ]);
    const failures = results
      .filter((result): result is PromiseRejectedResult => result.status === 'rejected')
      .map((result) => String((result.reason as Error).message));
    expect(failures).toEqual([]);
    const applied = results.flatMap((result) =>
      result.status === 'fulfilled' ? result.value : [],
    );
    expect(applied.sort()).toEqual([
      '0009_stats_narrow_rollups',
      '0010_relay_jobs_host_idx',
      '0011_relay_jobs_delivered_idx',
      '0012_relay_hosts',
      '0013_feed_removal_steps',
      '0014_messages_sweep_due_idx',
      '0015_messages_stuck_created_idx',
      '0016_feed_epoch',
      '0017_messages_api_idx',
      '0018_stats_rollups_search_path',
    ]);
    const { rows } = await sql<{ valid: boolean }>`
      SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE c.relname = 'relay_jobs_host_due_idx'`.execute(target.db);
    expect(rows).toEqual([{ valid: true }]);
  } finally {
    await a.db.destroy();
    await b.db.destroy();
  }
});

test('When a no-transaction file fails inside a transaction, then its own error is reported, not the aborted transaction', async () => {
  const target = await createTestDatabase(1);
  databases.push(target);
  const dir = mkdtempSync(path.join(work, 'failing-'));
  writeFileSync(
    path.join(dir, '9000_failing.sql'),
    `--! no-transaction
SET lock_timeout = '5s';
SELECT 1 / 0;`,
  );
  const { '9000_failing': failing } = await new SqlFileMigrationProvider(dir).getMigrations();

  // Where the runner once put such a file when another runner raced it: the settings reset
  // after the failure fails too in the aborted transaction, and must not take its place.
  await expect(target.db.transaction().execute((trx) => failing!.up(trx))).rejects.toThrow(
    /division by zero/,
  );
});
