import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrate';
import { checkFeedEpoch, createFeedEpochCheck } from '../../src/feed/feed-epoch';
import { createTestDatabase } from '../helpers/test-database';
import { createLogger } from '../../src/logger';
import { createDisposablePostgres } from '../ingest/support/disposable-postgres';
import type { DisposablePostgres } from '../ingest/support/disposable-postgres';

/**
 * A restore of the data directory itself — a volume / VM / ZFS snapshot rolled back, a
 * Kubernetes VolumeSnapshot restored, a pg_basebackup copy started without recovery.signal —
 * comes up by crash recovery: same system identifier, same timeline, same database oid. The
 * transaction counter goes back to the snapshot's, exactly the case the feed reset exists for
 * (README "The feed reset": "Transaction ids can go back on the same deployment: … a
 * restore"), yet checkFeedEpoch finds nothing changed and never resets: once the counter passes
 * the cursors consumers hold, they skip every event committed in the gap. A pod running across
 * the restore (it reconnects) saw the higher transaction counter before: it finds it went back
 * and resets (src/feed/feed-epoch.ts). With every pod stopped, `npm run feed:reset`
 * (feed-reset-cli.test.ts).
 */

let pg: DisposablePostgres | undefined;
let handle: DatabaseHandle | undefined;
let snapshotDir: string | undefined;
const logger = createLogger('silent');
// One pod's check, as startFeedEpochChecks runs it: its memory outlives the database's restart.
const check = createFeedEpochCheck();

afterAll(async () => {
  await handle?.db.destroy().catch(() => undefined);
  await pg?.destroy();
  if (snapshotDir) rmSync(snapshotDir, { recursive: true, force: true });
});

async function xmax(db: DatabaseHandle['db']): Promise<bigint> {
  const { rows } = await sql<{ xmax: string }>`
    SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax`.execute(db);
  return BigInt(rows[0]!.xmax);
}

test('When the data directory is restored from a snapshot taken earlier (same cluster, same timeline), then a pod that ran before finds the transaction ids went back and resets the feed', async () => {
  pg = await createDisposablePostgres();
  handle = createDb(pg.url, 2);
  await migrateToLatest(handle.db);
  expect(await check(handle.db, logger)).toBe('noted');
  await handle.db.destroy();

  // The snapshot (the server stopped, as a crash-consistent copy would be).
  await pg.stop();
  snapshotDir = mkdtempSync(path.join(os.tmpdir(), 'feed-snapshot-'));
  execFileSync('cp', ['-a', pg.dataDir, path.join(snapshotDir, 'pg')]);
  await pg.start();

  // Life goes on: transactions, and a consumer's cursor at the feed's end.
  handle = createDb(pg.url, 2);
  for (let i = 0; i < 200; i++) await sql`SELECT pg_current_xact_id()`.execute(handle.db);
  const cursorTx = await xmax(handle.db);
  expect(await check(handle.db, logger)).toBe('unchanged');
  await handle.db.destroy();

  // The operator rolls the volume back to the snapshot.
  await pg.stop();
  rmSync(pg.dataDir, { recursive: true, force: true });
  execFileSync('cp', ['-a', path.join(snapshotDir, 'pg'), pg.dataDir]);
  await pg.start();

  handle = createDb(pg.url, 2);
  // The ids went back: the consumer's cursor lies beyond, and new events will reuse its ids.
  expect(await xmax(handle.db)).toBeLessThan(cursorTx);
  expect(await check(handle.db, logger)).toBe('reset');
}, 120_000);

test('When a pod that saw a higher transaction counter finds no epoch noted (a restore to before migration 0016, migrated again), then it resets rather than only noting', async () => {
  const t = await createTestDatabase(2);
  try {
    // The pod ran before the restore: it saw a counter far beyond this database's.
    const memory = { highestXmax: 2n ** 40n };
    expect(await checkFeedEpoch(t.db, logger, memory)).toBe('reset');
    // Noted now, and the pod remembers the counter as it is: the next round finds nothing.
    expect(await checkFeedEpoch(t.db, logger, memory)).toBe('unchanged');
    // A pod that saw nothing (started after the restore) only notes a missing epoch.
    await sql`DELETE FROM sw_status_feed_epoch`.execute(t.db);
    expect(await checkFeedEpoch(t.db, logger, {})).toBe('noted');
  } finally {
    await t.destroy();
  }
});
