import { sql } from 'kysely';
import request from 'supertest';
import { createDb } from '../../src/db/database';
import { recordEvents } from '../../src/messages/record-events';
import { removeExpiredMessages } from '../../src/retention/retention.repository';
import { foldDeltas } from '../../src/stats/stats.repository';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * A callback recorded for a message while a retention step is removing it.
 * The retention statement locks the message (doomed … FOR UPDATE) before it deletes it; a
 * writer arriving in that window finds the row locked, not deleted, so RECORD_BATCH's
 * `created` (ON CONFLICT DO NOTHING) skips it and `existing` (ON CONFLICT DO UPDATE) waits;
 * when retention commits, PostgreSQL retries the speculative insert, which now succeeds, and the
 * new row comes back through `existing`. It must count as created (src/messages/
 * record-events.repository.ts), or no +1 rollup delta is written for it and its next move
 * takes a count below zero.
 *
 * The window is widened here with a test-only BEFORE DELETE trigger on messages (pg_sleep):
 * the real removeExpiredMessages statement, just slower between its lock and its delete.
 */

const DAY = 86_400_000;
let t: TestApp;

beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

async function scanCount(since: Date, until: Date): Promise<number> {
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM messages WHERE created_at >= ${since} AND created_at < ${until}`.execute(
    t.database.db,
  );
  return rows[0]!.n;
}

test('When a callback is recorded while retention removes its message, then the re-created message is counted in /v1/stats (stats equal a scan)', async () => {
  const id = 'race-1';
  const old = new Date(Date.now() - 40 * DAY);
  await recordEvents(t.database.db, [statusEvent('sent', { messageId: id, receivedAt: old })]);

  await sql`CREATE FUNCTION test_slow_delete() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(1.5); RETURN OLD; END $$`.execute(t.database.db);
  await sql`CREATE TRIGGER test_slow_delete BEFORE DELETE ON messages
            FOR EACH ROW EXECUTE FUNCTION test_slow_delete()`.execute(t.database.db);

  const retentionDb = createDb(t.database.url, 1);
  try {
    const step = removeExpiredMessages(retentionDb.db, new Date(Date.now() - 30 * DAY), 10);
    // Let the step lock its row and enter the (slowed) delete.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const late = recordEvents(t.database.db, [
      statusEvent('delivered', { messageId: id, providerTimestamp: new Date() }),
    ]);
    expect((await step).messages).toBe(1);
    expect(await late).toEqual(['recorded']);
  } finally {
    await retentionDb.db.destroy();
  }
  await sql`DROP TRIGGER test_slow_delete ON messages`.execute(t.database.db);

  // The message is there again, made from the late event.
  const { rows } = await sql<{
    status: string;
  }>`SELECT status FROM messages WHERE id = ${id}`.execute(t.database.db);
  expect(rows).toEqual([{ status: 'delivered' }]);

  await foldDeltas(t.database.db);
  const since = new Date(Date.now() - 3_600_000);
  const until = new Date(Date.now() + 60_000);
  const stats = await request(t.internalApp)
    .get(`/v1/stats?created_since=${since.toISOString()}&created_until=${until.toISOString()}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  expect(stats.status).toBe(200);
  const scanned = await scanCount(since, until);
  expect(scanned).toBe(1);
  expect({ total: stats.body.total, delivered: stats.body.by_status.delivered }).toEqual({
    total: scanned,
    delivered: 1,
  });
});

test('When that re-created message moves on, then no status count in /v1/stats goes negative', async () => {
  // Continues the message above: a `read` moves it (−1 delivered, +1 read in the deltas).
  await recordEvents(t.database.db, [statusEvent('read', { messageId: 'race-1' })]);
  await foldDeltas(t.database.db);
  const since = new Date(Date.now() - 3_600_000);
  const until = new Date(Date.now() + 60_000);
  const stats = await request(t.internalApp)
    .get(`/v1/stats?created_since=${since.toISOString()}&created_until=${until.toISOString()}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  const negative = Object.entries(stats.body.by_status as Record<string, number>).filter(
    ([, n]) => n < 0,
  );
  expect({ total: stats.body.total, negative }).toEqual({ total: 1, negative: [] });
});
