import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { createDb } from '../../src/db/database';
import { recordEvents } from '../../src/messages/record-events';
import { foldDeltas, rebuildRollups } from '../../src/stats/stats.repository';
import { statusEvent } from '../factories';
import { sleepingInDatabase } from '../helpers/eventually';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * `npm run stats:rebuild` while the service runs (src/stats/rebuild-cli.ts: "safe while the
 * service runs"): every replica folds deltas every few seconds, so a rebuild may well start
 * while a fold is committing.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

async function scanTotal(since: Date, until: Date): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM messages
    WHERE created_at >= ${since} AND created_at < ${until}`.execute(t.database.db);
  return rows[0]!.n;
}

test('When the rebuild starts while a replica is folding deltas, then it waits for the fold and succeeds, and the stats still equal a scan', async () => {
  const at = new Date('2027-06-01T10:00:30Z');
  await recordEvents(
    t.database.db,
    Array.from({ length: 5 }, (_, i) =>
      statusEvent(i % 2 ? 'delivered' : 'sent', {
        messageId: randomUUID(),
        receivedAt: new Date(at.getTime() + i * 60_000),
      }),
    ),
  );
  // A fold slowed down (a test-only trigger), so that it is still running when the rebuild
  // starts: the real foldDeltas statement, just slower before it commits.
  // (Not the rebuild's own writes: it runs in REPEATABLE READ.)
  await sql`CREATE FUNCTION test_slow_fold() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF current_setting('transaction_isolation') = 'read committed' THEN
                PERFORM pg_sleep(1);
              END IF;
              RETURN NULL;
            END $$`.execute(t.database.db);
  await sql`CREATE TRIGGER test_slow_fold AFTER INSERT ON stats_minutes
            FOR EACH STATEMENT EXECUTE FUNCTION test_slow_fold()`.execute(t.database.db);
  const folder = createDb(t.database.url, 1);
  try {
    const fold = foldDeltas(folder.db);
    // The fold is in its slowed commit, holding the rollups' lock.
    await sleepingInDatabase(t.database.db, 'the fold in its slowed commit');
    const rebuild = rebuildRollups(t.database.db);
    expect(await fold).toBeGreaterThan(0);
    await expect(rebuild).resolves.toMatchObject({ messages: 5 });
  } finally {
    await folder.db.destroy();
    await sql`DROP TRIGGER test_slow_fold ON stats_minutes`.execute(t.database.db);
  }

  const since = new Date('2027-06-01T00:00:00Z');
  const until = new Date('2027-06-02T00:00:00Z');
  const res = await request(t.internalApp)
    .get(`/v1/stats?created_since=${since.toISOString()}&created_until=${until.toISOString()}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .expect(200);
  expect(res.body.total).toBe(await scanTotal(since, until));
  expect(res.body.total).toBe(5);
});
