import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { Registry } from 'prom-client';
import request from 'supertest';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import { createRetention } from '../../src/retention/retention';
import { foldDeltas, rebuildRollups } from '../../src/stats/stats.repository';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Retention and GET /v1/stats (DESIGN §6: counts equal a scan of the tables; §13: retention
 * removes whole messages). Once retention has removed a message, no stats window counts it:
 * not from the rollups, not from the deltas still unfolded, not after a rebuild — and a message
 * a late callback creates anew is counted once, not twice.
 */

const DAY = 86_400_000;
let t: TestApp;

beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

/** The truth from a scan of `messages`: how many first seen in the window, by status. */
async function scan(since: Date, until: Date) {
  const { rows } = await sql<{ status: string; n: number }>`
    SELECT status, count(*)::int AS n FROM messages
    WHERE created_at >= ${since} AND created_at < ${until} GROUP BY status`.execute(t.database.db);
  return {
    total: rows.reduce((sum, row) => sum + row.n, 0),
    by_status: Object.fromEntries(rows.map((row) => [row.status, row.n])),
  };
}

async function statsOf(since: Date, until: Date) {
  const res = await get(
    `/v1/stats?created_since=${since.toISOString()}&created_until=${until.toISOString()}`,
  ).expect(200);
  const body = res.body as { total: number; by_status: Record<string, number>; conflicts: number };
  return {
    total: body.total,
    by_status: Object.fromEntries(Object.entries(body.by_status).filter(([, n]) => n !== 0)),
  };
}

test('When retention removes messages, then /v1/stats stops counting them (equal to a scan, before and after a fold, and unchanged by a rebuild), and a message a late callback creates anew counts once', async () => {
  // Old messages, 40 days ago in whole minutes (the rollups' part) and mid-minute, with a
  // latency, an error code and a conflict among them; recent ones 2 days ago.
  const old = new Date(Math.floor((Date.now() - 40 * DAY) / 60_000) * 60_000 + 7_000);
  const recent = new Date(Date.now() - 2 * DAY);
  const oldIds = Array.from({ length: 6 }, () => randomUUID());
  await recordEvents(t.database.db, [
    ...oldIds.flatMap((messageId, i) => [
      statusEvent('sent', { messageId, receivedAt: new Date(old.getTime() + i * 20_000) }),
      statusEvent(i % 2 ? 'delivered' : 'undelivered', {
        messageId,
        receivedAt: new Date(old.getTime() + i * 20_000 + 3_000),
        errorCode: i % 2 ? null : '30003',
      }),
    ]),
    statusEvent('delivered', { receivedAt: recent }),
    statusEvent('failed', { receivedAt: new Date(recent.getTime() + 1_000), errorCode: '30007' }),
  ]);
  // Some deltas folded into the rollups, some still pending: both must lose the removed ones.
  await foldDeltas(t.database.db);
  await recordEvents(t.database.db, [
    statusEvent('sent', { receivedAt: new Date(old.getTime() + 500) }),
  ]);

  const since = new Date(old.getTime() - DAY);
  const until = new Date(Date.now() + 60_000);
  const before = await statsOf(since, until);
  expect(before).toEqual(await scan(since, until));
  expect(before.total).toBe(9);

  const retention = createRetention({
    db: t.database.db,
    logger: createLogger('silent'),
    registry: new Registry(),
    options: { retentionDays: 30, pauseMs: 0 },
  })!;
  expect((await retention.runOnce()).messages).toBe(7);

  const retained = await scan(since, until);
  expect(retained.total).toBe(2);
  expect(await statsOf(since, until)).toEqual(retained);
  // The old days alone: nothing is left of them.
  expect((await statsOf(since, new Date(old.getTime() + DAY))).total).toBe(0);
  await foldDeltas(t.database.db);
  expect(await statsOf(since, until)).toEqual(retained);

  // A callback for a removed message creates it anew (README: "Dedupe"): counted once.
  await recordEvents(t.database.db, [statusEvent('read', { messageId: oldIds[1]! })]);
  await foldDeltas(t.database.db);
  const now = await scan(since, until);
  expect(now.total).toBe(3);
  expect(await statsOf(since, until)).toEqual(now);

  // A rebuild recounts the same messages: nothing changes.
  await rebuildRollups(t.database.db);
  expect(await statsOf(since, until)).toEqual(now);
});
