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
 * "No `after` → from the oldest retained event" (DESIGN §6). Retention removes whole messages,
 * so the events it removes interleave in the feed with retained ones: a message first seen 40
 * days ago and active today keeps its old first event, older in feed order than the newest
 * removed event. A consumer that starts after the removal and reads from the start is handed a
 * cursor below that removal mark on its first page; it missed nothing it could have seen, so
 * following it is no 410 — until retention removes more after it.
 */
test('When a consumer starts without a cursor after retention removed a message between a retained message’s events, then it reads the retained history without a 410, and a later removal after its cursor is still a 410', async () => {
  const old = Date.now() - 40 * DAY;
  await recordEvents(t.database.db, [
    statusEvent('queued', { messageId: 'kept', receivedAt: new Date(old) }),
  ]);
  await recordEvents(t.database.db, [
    statusEvent('failed', { messageId: 'gone', receivedAt: new Date(old + 1_000) }),
  ]);
  await recordEvents(t.database.db, [
    statusEvent('queued', { messageId: 'kept-too', receivedAt: new Date(old + 2_000) }),
  ]);
  await recordEvents(t.database.db, [
    statusEvent('failed', { messageId: 'gone-later', receivedAt: new Date(old + 3_000) }),
  ]);
  await recordEvents(t.database.db, [
    statusEvent('delivered', { messageId: 'kept', receivedAt: new Date() }),
    statusEvent('delivered', { messageId: 'kept-too', receivedAt: new Date() }),
  ]);
  // 'gone' goes now; 'gone-later' stays until the second step (its last activity is newer).
  const horizon = (days: number) => new Date(Date.now() - days * DAY);
  await t.database.db
    .updateTable('messages')
    .set({ last_event_at: horizon(20) })
    .where('id', '=', 'gone-later')
    .execute();
  expect(await removeExpiredMessages(t.database.db, horizon(30), 10)).toEqual({
    messages: 1,
    status_events: 1,
    relay_jobs: 0,
  });

  // Each page waits for its event: another test's open transaction on the same server holds
  // the feed back for a moment (it reads only what no running transaction can still precede).
  const cursors: string[] = [];
  const statuses: string[] = [];
  let path = '/v1/events?limit=1&wait=10';
  for (let request = 0; statuses.length < 3 && request < 20; request++) {
    const answer = await get(path);
    expect(answer.status).toBe(200);
    for (const event of answer.body.data as Array<{ status: string }>) {
      statuses.push(event.status);
      cursors.push(answer.body.next_cursor);
    }
    path = `/v1/events?limit=1&wait=10&after=${encodeURIComponent(answer.body.next_cursor)}`;
  }
  // kept's queued, kept-too's queued, gone-later's failed: 'gone' was never there to be seen.
  expect(statuses).toEqual(['queued', 'queued', 'failed']);

  // The first cursor lies before gone-later's event. Retention removes it: a consumer still
  // there would miss it, and is told; one past it is not.
  const after = (cursor: string) =>
    get(`/v1/events?limit=1&wait=10&after=${encodeURIComponent(cursor)}`);
  expect((await after(cursors[0]!)).status).toBe(200);
  expect(await removeExpiredMessages(t.database.db, horizon(10), 10)).toEqual({
    messages: 1,
    status_events: 1,
    relay_jobs: 0,
  });
  const expired = await after(cursors[0]!);
  expect(expired.status).toBe(410);
  expect(expired.body.error.code).toBe('cursor_expired');
  const past = await after(cursors[2]!);
  expect(past.status).toBe(200);
  expect(past.body.data.map((event: { status: string }) => event.status)).toEqual(['delivered']);
});
