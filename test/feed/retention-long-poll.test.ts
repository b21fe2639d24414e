import { sql } from 'kysely';
import request from 'supertest';
import { createDb } from '../../src/db/database';
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
 * Retention (src/retention) removing events past a consumer's position while its long-poll
 * waits — an old message's events replayed from a spool and removed at once — must not let the
 * feed step over them: the request, or the next one, answers 410 cursor_expired.
 */
test('When retention removes an event while a long-poll waits, then it is not skipped silently: the request or the next one says cursor_expired', async () => {
  const first = await get('/v1/events?after=now');
  expect(first.status).toBe(200);
  const cursor = first.body.next_cursor as string;

  const blocker = createDb(t.database.url, 1);
  const poll = get(`/v1/events?after=${encodeURIComponent(cursor)}&wait=6`).then((r) => r);
  let release!: () => void;
  let began!: () => void;
  const holding = new Promise<void>((resolve) => (began = resolve));
  const held = blocker.db.transaction().execute(async (trx) => {
    // An open transaction with an id: holds the feed's horizon.
    await sql`SELECT pg_current_xact_id()`.execute(trx);
    began();
    await new Promise<void>((resolve) => (release = resolve));
  });
  try {
    // The horizon is held before the event commits (a fixed pause alone could run out first on
    // a loaded machine: the long-poll would then be woken with the event before its removal).
    await holding;
    // Time for the long-poll to be waiting.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    await recordEvents(
      t.database.db,
      [
        statusEvent('failed', {
          messageId: 'replayed-1',
          receivedAt: new Date(Date.now() - 40 * DAY),
          source: 'replay',
        }),
      ],
      { onCommitted: t.feedSignal.committed },
    );
    const removed = await removeExpiredMessages(t.database.db, new Date(Date.now() - 30 * DAY), 10);
    expect(removed.status_events).toBe(1);
  } finally {
    release();
    await held;
    await blocker.db.destroy();
  }
  const answer = await poll;
  if (answer.status === 410) return; // told within the request: fine
  expect(answer.status).toBe(200);
  expect(answer.body.data).toEqual([]);
  const next = await get(`/v1/events?after=${encodeURIComponent(answer.body.next_cursor)}`);
  expect(next.status).toBe(410);
});

/**
 * A consumer without a cursor asks for the retained history: events retention removed before it
 * began are none of its business. An older open transaction holding the feed back made its
 * first look find nothing, and its next look, at the held-back position, was judged against
 * those old removals as if it had missed them.
 */
test('When a long-poll without a cursor starts while an older transaction holds the feed back, then events removed before it began make neither it nor its cursor 410', async () => {
  const blocker = createDb(t.database.url, 1);
  let release!: () => void;
  let began!: () => void;
  const holding = new Promise<void>((resolve) => (began = resolve));
  const held = blocker.db.transaction().execute(async (trx) => {
    await sql`SELECT pg_current_xact_id()`.execute(trx);
    began();
    await new Promise<void>((resolve) => (release = resolve));
  });
  try {
    await holding;
    // Removed after the held transaction began: the removal mark lies beyond the horizon.
    await recordEvents(t.database.db, [
      statusEvent('failed', {
        messageId: 'removed-before-start',
        receivedAt: new Date(Date.now() - 40 * DAY),
        source: 'replay',
      }),
    ]);
    const removed = await removeExpiredMessages(t.database.db, new Date(Date.now() - 30 * DAY), 10);
    expect(removed.status_events).toBe(1);

    const answer = await get('/v1/events?wait=2');
    expect(answer.status).toBe(200);
    expect(answer.body.data).toEqual([]);
    // Nor does the cursor it was handed, below that removal while the feed is held back.
    const next = await get(`/v1/events?after=${encodeURIComponent(answer.body.next_cursor)}`);
    expect(next.status).toBe(200);
  } finally {
    release();
    await held;
    await blocker.db.destroy();
  }
});
