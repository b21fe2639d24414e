import { sql } from 'kysely';
import request from 'supertest';
import { recordEvents } from '../../src/messages/record-events';
import { removeExpiredMessages } from '../../src/retention/retention.repository';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

const DAY = 86_400_000;
let t: TestApp;
const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

/**
 * A consumer reading the retained history below retention's expiry mark while retention keeps
 * removing what it has already read: removals behind its position cost it nothing, so they
 * must never make it 410 — refused for them, it would start over into the same removals, over
 * and over. The removal steps stay a row or two meanwhile (each covers those below it).
 */
test('When retention removes, between every page, events a history reader has already passed, then it reads on to the end without a 410', async () => {
  const now = Date.now();
  const at = (days: number) => new Date(now - days * DAY);
  await recordEvents(t.database.db, [
    statusEvent('queued', { messageId: 'kept', receivedAt: at(40) }),
  ]);
  // Expire one by one, oldest first: behind the reader by the time each goes.
  for (const [id, days] of [
    ['read-1', 25],
    ['read-2', 24],
    ['read-3', 23],
  ] as const) {
    await recordEvents(t.database.db, [
      statusEvent('failed', { messageId: id, receivedAt: at(days) }),
    ]);
  }
  // Replayed late: the expiry mark lies after all of the above once it goes.
  await recordEvents(t.database.db, [
    statusEvent('failed', { messageId: 'replayed', receivedAt: at(36), source: 'replay' }),
  ]);
  await recordEvents(t.database.db, [
    statusEvent('delivered', { messageId: 'kept', receivedAt: at(0) }),
  ]);
  expect((await removeExpiredMessages(t.database.db, at(35), 10)).messages).toBe(1);

  const read: string[] = [];
  // Each page waits for its event: another test file's open transaction on the same server can
  // hold the feed back for a moment.
  let path = '/v1/events?limit=1&wait=10';
  for (let page = 0; read.length < 5 && page < 20; page++) {
    const answer = await get(path);
    expect([read, answer.status]).toEqual([read, 200]);
    const events = answer.body.data as Array<{ message_id: string; status: string }>;
    read.push(...events.map((event) => `${event.message_id} ${event.status}`));
    path = `/v1/events?limit=1&wait=10&after=${encodeURIComponent(answer.body.next_cursor)}`;
    // Once the reader has passed one, retention's next step removes it (the oldest expired).
    if (!events[0]?.message_id.startsWith('read-')) continue;
    expect((await removeExpiredMessages(t.database.db, at(22), 1)).messages).toBe(1);
    const { rows } = await sql<{ rows: string }>`
      SELECT count(*) AS rows FROM sw_status_feed_removals`.execute(t.database.db);
    expect(Number(rows[0]!.rows)).toBeLessThanOrEqual(2);
  }
  expect(read).toEqual([
    'kept queued',
    'read-1 failed',
    'read-2 failed',
    'read-3 failed',
    'kept delivered',
  ]);
});
