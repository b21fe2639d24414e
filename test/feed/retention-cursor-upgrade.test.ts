import request from 'supertest';
import { feedCursors } from '../../src/feed/feed-cursor';
import type { FeedPosition } from '../../src/feed/feed-cursor';
import { recordEvents } from '../../src/messages/record-events';
import { removeExpiredMessages } from '../../src/retention/retention.repository';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, TEST_TOKEN_SECRET, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

const DAY = 86_400_000;
let t: TestApp;
const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });
const cursors = feedCursors([TEST_TOKEN_SECRET]);

beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

/** The feed position of a message's only event. */
async function positionOf(messageId: string): Promise<FeedPosition> {
  const row = await t.database.db
    .selectFrom('status_events')
    .select(['tx', 'seq'])
    .where('message_id', '=', messageId)
    .executeTakeFirstOrThrow();
  return { tx: String(row.tx), seq: Number(row.seq) };
}

/**
 * A rolling upgrade: pods of the previous version issued `tx.seq.removedTx.removedSeq` to
 * consumers below the expiry mark (no removal step). This version reads them, judges them by
 * the mark as that version did, and hands back its own form, with the step.
 */
test('When a consumer below the expiry mark comes with a cursor of the previous version, then it is read, judged by the mark, and answered with a cursor carrying the removal step', async () => {
  const at = (days: number) => new Date(Date.now() - days * DAY);
  await recordEvents(t.database.db, [
    statusEvent('queued', { messageId: 'kept', receivedAt: at(40) }),
  ]);
  await recordEvents(t.database.db, [
    statusEvent('failed', { messageId: 'next', receivedAt: at(10) }),
  ]);
  for (const [id, days] of [
    ['replayed', 36],
    ['replayed-later', 20],
  ] as const) {
    await recordEvents(t.database.db, [
      statusEvent('failed', { messageId: id, receivedAt: at(days), source: 'replay' }),
    ]);
  }
  await recordEvents(t.database.db, [
    statusEvent('delivered', { messageId: 'kept', receivedAt: at(0) }),
  ]);
  const mark = await positionOf('replayed');
  expect((await removeExpiredMessages(t.database.db, at(35), 10)).messages).toBe(1);

  const previous = cursors.encode(await positionOf('kept'), mark);
  expect(Buffer.from(previous.split('.')[0]!, 'base64url').toString().split('.')).toHaveLength(4);
  // wait: another test file's open transaction on the server can hold the feed back a moment.
  const answer = await get(`/v1/events?limit=1&wait=10&after=${encodeURIComponent(previous)}`);
  expect(answer.status).toBe(200);
  expect(answer.body.data.map((event: { message_id: string }) => event.message_id)).toEqual([
    'next',
  ]);
  expect(cursors.decode(answer.body.next_cursor)).toEqual({
    ...(await positionOf('next')),
    removedSeen: mark,
    removalStep: expect.any(Number),
  });

  // A removal beyond the mark moves it past that cursor's position: 410, as before.
  expect((await removeExpiredMessages(t.database.db, at(15), 10)).messages).toBe(1);
  const expired = await get(`/v1/events?limit=1&after=${encodeURIComponent(previous)}`);
  expect([expired.status, expired.body.error?.code]).toEqual([410, 'cursor_expired']);
});
