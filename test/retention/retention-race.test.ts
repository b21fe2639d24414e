import { sql } from 'kysely';
import request from 'supertest';
import { createDb } from '../../src/db/database';
import { recordEvents } from '../../src/messages/record-events';
import { removeExpiredMessages } from '../../src/retention/retention.repository';
import { foldDeltas } from '../../src/stats/stats.repository';
import { statusEvent } from '../factories';
import { sleepingInDatabase } from '../helpers/eventually';
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
    // The step has locked its row and is in the (slowed) delete.
    await sleepingInDatabase(t.database.db, 'the retention step in its slowed delete');
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

test('When a callback commits for an old message after a retention step began but before the step locked that message, then no event or relay job of it is left without its message', async () => {
  // Both last active 40 days ago; `first` comes first in the step's order. The late event for
  // `second` is as old (a spooled callback replayed late keeps its receive time): the message
  // stays expired, and the step removes it — with every event and relay job it has by then.
  const old = new Date(Date.now() - 40 * DAY);
  const first = 'orphan-first';
  const second = 'orphan-second';
  await recordEvents(t.database.db, [
    statusEvent('sent', { messageId: first, receivedAt: old }),
    statusEvent('sent', { messageId: second, receivedAt: new Date(old.getTime() + 1_000) }),
  ]);
  await sql`UPDATE messages SET client_status_callback = 'https://app.example.com/cb'
            WHERE id = ${second}`.execute(t.database.db);

  // The step is slowed while it removes `first`, i.e. before it reaches `second` (its
  // messages are deleted first, one by one: see the planner settings below).
  await sql`CREATE FUNCTION test_slow_first() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF OLD.id = 'orphan-first' THEN PERFORM pg_sleep(1); END IF;
              RETURN OLD;
            END $$`.execute(t.database.db);
  await sql`CREATE TRIGGER test_slow_first BEFORE DELETE ON messages
            FOR EACH ROW EXECUTE FUNCTION test_slow_first()`.execute(t.database.db);

  // At scale the step's deletes walk its messages one by one (nested loops over the indexes);
  // on these tiny tables the planner would hash them all first. Its connection plans as at scale.
  const name = sql.id(new URL(t.database.url).pathname.slice(1));
  await sql`ALTER DATABASE ${name} SET enable_hashjoin = off`.execute(t.database.db);
  await sql`ALTER DATABASE ${name} SET enable_mergejoin = off`.execute(t.database.db);
  const retentionDb = createDb(t.database.url, 1);
  try {
    const step = removeExpiredMessages(retentionDb.db, new Date(Date.now() - 30 * DAY), 10);
    // Committed while the step is busy with `first` (in its trigger's sleep); `second` is not
    // locked yet.
    await sleepingInDatabase(t.database.db, 'the retention step removing `first`');
    await expect(
      recordEvents(t.database.db, [
        statusEvent('delivered', {
          messageId: second,
          receivedAt: new Date(old.getTime() + 2_000),
          relay: { method: 'POST', contentType: 'application/json', body: 'e30=', keyRef: null },
        }),
      ]),
    ).resolves.toEqual(['recorded']);
    expect((await step).messages).toBe(2);
  } finally {
    await retentionDb.db.destroy();
    await sql`ALTER DATABASE ${name} RESET ALL`.execute(t.database.db);
    await sql`DROP TRIGGER test_slow_first ON messages`.execute(t.database.db);
  }

  // Whichever came first — the step's lock (the event waits, then creates its message anew) or
  // the event's commit (the step removes it with the message) — every event and relay job left
  // has its message.
  const { rows } = await sql<{ events: number; jobs: number }>`
    SELECT (SELECT count(*)::int FROM status_events e WHERE message_id IN (${first}, ${second})
              AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = e.message_id)) AS events,
           (SELECT count(*)::int FROM relay_jobs j WHERE message_id IN (${first}, ${second})
              AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = j.message_id)) AS jobs`.execute(
    t.database.db,
  );
  expect(rows[0]).toEqual({ events: 0, jobs: 0 });
});
