import { sql } from 'kysely';
import { Registry } from 'prom-client';
import request from 'supertest';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import { createRetention } from '../../src/retention/retention';
import { removeExpiredMessages } from '../../src/retention/retention.repository';
import { foldDeltas } from '../../src/stats/stats.repository';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Retention's steps are bounded in rows, not only in messages: one message with a huge
 * history (a sender that called back for one id over and over) must not make one step a
 * transaction that deletes all of it. Such a transaction holds a transaction id for as long as
 * it runs, and the change feed delivers nothing committed after it started until it ends
 * (src/feed/feed.repository.ts: events below the snapshot's xmin) — every consumer stalls.
 */

const DAY = 86_400_000;
const HUGE = 30_000;
let t: TestApp;

beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

test('When an expired message has tens of thousands of events, then each retention step removes a bounded part of them and of its relay jobs, and one round still removes the message whole (no event or relay job left behind, stats equal a scan)', async () => {
  const old = new Date(Date.now() - 40 * DAY);
  await recordEvents(t.database.db, [
    statusEvent('sent', { messageId: 'huge', receivedAt: old }),
    statusEvent('delivered', { messageId: 'small-1', receivedAt: new Date(old.getTime() + 1) }),
    statusEvent('failed', {
      messageId: 'small-2',
      receivedAt: new Date(old.getTime() + 2),
      errorCode: '30007',
    }),
    statusEvent('delivered', { messageId: 'recent', receivedAt: new Date() }),
  ]);
  // The huge history, written directly (as many callbacks would have left it).
  await sql`
    INSERT INTO status_events (message_id, api, status, raw_status, source, received_at,
      dedupe_key, raw, message_status)
    SELECT 'huge', 'cxml', 'sent', 'sent', 'callback', ${old},
      sha256(convert_to('huge' || i, 'UTF8')), '{}', 'sent'
    FROM generate_series(1, ${HUGE}) i`.execute(t.database.db);
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, state, delivered_at)
    SELECT 'huge', 'https://app.example.com/cb', 'https://app.example.com', 'POST', 'delivered',
      ${old}
    FROM generate_series(1, ${HUGE}) i`.execute(t.database.db);
  await foldDeltas(t.database.db);

  const horizon = new Date(Date.now() - 30 * DAY);
  const step = await removeExpiredMessages(t.database.db, horizon, 500);
  expect(step.status_events).toBeLessThanOrEqual(10_000);
  expect(step.status_events).toBeGreaterThan(0);
  expect(step.relay_jobs).toBeLessThanOrEqual(10_000);

  // The rest goes in the same round, back to back, not a step a minute.
  const retention = createRetention({
    db: t.database.db,
    logger: createLogger('silent'),
    registry: new Registry(),
    options: { retentionDays: 30, pauseMs: 0 },
  })!;
  const round = await retention.runOnce();
  expect(step.messages + round.messages).toBe(3);
  expect(step.status_events + round.status_events).toBe(HUGE + 3);
  expect(step.relay_jobs + round.relay_jobs).toBe(HUGE);

  const { rows } = await sql<{ messages: number; events: number; jobs: number; removed: string }>`
    SELECT (SELECT count(*)::int FROM messages) AS messages,
           (SELECT count(*)::int FROM status_events) AS events,
           (SELECT count(*)::int FROM relay_jobs) AS jobs,
           (SELECT removed_seq::text FROM sw_status_retention) AS removed`.execute(t.database.db);
  expect({ messages: rows[0]!.messages, events: rows[0]!.events, jobs: rows[0]!.jobs }).toEqual({
    messages: 1,
    events: 1,
    jobs: 0,
  });
  const newestRemoved = await sql<{ seq: string }>`
    SELECT max(seq)::text AS seq FROM status_events WHERE message_id <> 'recent'`.execute(
    t.database.db,
  );
  expect(newestRemoved.rows[0]!.seq).toBeNull();
  expect(Number(rows[0]!.removed)).toBeGreaterThan(0);

  await foldDeltas(t.database.db);
  const res = await request(t.internalApp)
    .get(
      `/v1/stats?created_since=${new Date(old.getTime() - DAY).toISOString()}&created_until=${new Date(Date.now() + 60_000).toISOString()}`,
    )
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .expect(200);
  expect({ total: res.body.total, delivered: res.body.by_status.delivered }).toEqual({
    total: 1,
    delivered: 1,
  });
});
