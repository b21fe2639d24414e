import request from 'supertest';
import { feedCursors } from '../../src/feed/feed-cursor';
import { recordEvents } from '../../src/messages/record-events';
import { removeExpiredMessages } from '../../src/retention/retention.repository';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, TEST_TOKEN_SECRET, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

const DAY = 86_400_000;
let t: TestApp;
const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });
const after = (cursor: string) =>
  get(`/v1/events?limit=10&wait=10&after=${encodeURIComponent(cursor)}`);
const ids = (answer: request.Response) =>
  (answer.body.data as Array<{ message_id: string }>).map((event) => event.message_id);

beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

/**
 * Feed positions are not ordered by age: an event replayed late from a spool comes after newer
 * ones. Retention's expiry mark is the newest event ever removed, so a later removal below it
 * does not move it, and a consumer between the two (one that began without `after`, reading
 * the retained history) skipped the removed event without a word. The removal steps
 * (sw_status_feed_removals) say which removals came after the consumer was judged.
 */
test('When retention removes an event between a history reader’s cursor and an earlier, higher removal, then that reader gets 410 and one already past the event does not', async () => {
  const now = Date.now();
  // A message first seen 40 days ago and active today: retained, its first event oldest.
  await recordEvents(t.database.db, [
    statusEvent('queued', { messageId: 'kept', receivedAt: new Date(now - 40 * DAY) }),
  ]);
  await recordEvents(t.database.db, [
    statusEvent('failed', { messageId: 'victim', receivedAt: new Date(now - 33 * DAY) }),
  ]);
  // Received 36 days ago, replayed from a spool after victim's event committed.
  await recordEvents(t.database.db, [
    statusEvent('failed', {
      messageId: 'replayed',
      receivedAt: new Date(now - 36 * DAY),
      source: 'replay',
    }),
  ]);
  await recordEvents(t.database.db, [
    statusEvent('delivered', { messageId: 'kept', receivedAt: new Date(now) }),
  ]);
  // At 35 days 'replayed' goes: the mark is its event, after victim's; victim stays.
  expect(await removeExpiredMessages(t.database.db, new Date(now - 35 * DAY), 10)).toEqual({
    messages: 1,
    status_events: 1,
    relay_jobs: 0,
  });

  // Two readers of the retained history, one event a page: one stops before victim's event,
  // the other just after it.
  const first = await get('/v1/events?limit=1&wait=10');
  expect([first.status, ids(first)]).toEqual([200, ['kept']]);
  const before = first.body.next_cursor as string;
  const second = await get(`/v1/events?limit=1&wait=10&after=${encodeURIComponent(before)}`);
  expect([second.status, ids(second)]).toEqual([200, ['victim']]);
  const past = second.body.next_cursor as string;

  // Then victim expires too: after the first reader's position, below the mark.
  expect((await removeExpiredMessages(t.database.db, new Date(now - 30 * DAY), 10)).messages).toBe(
    1,
  );

  const missed = await after(before);
  expect([missed.status, missed.body.error?.code]).toEqual([410, 'cursor_expired']);
  const fine = await after(past);
  expect([fine.status, ids(fine)]).toEqual([200, ['kept']]);
  // Below the mark, a cursor says which removal step its reader was judged against; past every
  // removal, it is the short form every version reads.
  const cursors = feedCursors([TEST_TOKEN_SECRET]);
  expect(cursors.decode(before).removalStep).toEqual(expect.any(Number));
  expect(cursors.decode(fine.body.next_cursor)).toEqual({
    tx: expect.any(String),
    seq: expect.any(Number),
  });
});
