import { sql } from 'kysely';
import { checkFeedEpoch } from '../../src/feed/feed-epoch';
import { createLogger } from '../../src/logger';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * The epoch check runs every 10 s on every pod. When nothing changed it should be a read: it
 * already holds the removal steps' advisory lock (REMOVAL_STEPS_LOCK), which serialises every
 * check. Its `SELECT … FROM sw_status_feed_epoch FOR UPDATE` locks the row anyway: a row lock
 * is a write — a transaction id assigned, the tuple's xmax set, a heap-lock and a commit WAL
 * record — so an idle primary now writes WAL every 10 s per pod (with archive_timeout set,
 * a WAL segment switched and archived every archive_timeout for ever), where
 * src/db/standby-only.ts relies on "an idle primary writes nothing".
 */

let t: TestApp;
const logger = createLogger('silent');
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

test('When the epoch is checked and found unchanged, then the check writes nothing (no row lock, no transaction id)', async () => {
  await checkFeedEpoch(t.database.db, logger); // noted (or unchanged)
  await sql`VACUUM sw_status_feed_epoch`.execute(t.database.db).catch(() => undefined);
  const before = await sql<{ xmax: string }>`
    SELECT xmax::text AS xmax FROM sw_status_feed_epoch`.execute(t.database.db);
  expect(await checkFeedEpoch(t.database.db, logger)).toBe('unchanged');
  const after = await sql<{ xmax: string }>`
    SELECT xmax::text AS xmax FROM sw_status_feed_epoch`.execute(t.database.db);
  // A read leaves the row as it was; a row lock stamps the locker's transaction id on it.
  expect(after.rows[0]!.xmax).toBe(before.rows[0]!.xmax);
});
