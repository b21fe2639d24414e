import { randomUUID } from 'node:crypto';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { eventually } from '../helpers/eventually';
import { listenInternal, startCountedFeedApp } from './support/counted-feed-app';
import type { CountedFeedApp } from './support/counted-feed-app';

/**
 * Every commit wakes every waiting long-poll. Each used to read its page at once: with a few
 * hundred consumers, that many statements queued for the pool the callbacks' commits take
 * their connections from. Now a few reads run at once per process and consumers at the same
 * position share one (src/feed/feed-reads.ts).
 */

const CONSUMERS = 100;

let app: CountedFeedApp;
let internal: Awaited<ReturnType<typeof listenInternal>>;
beforeAll(async () => {
  // Long-polls look on their own only every minute: every read counted below is the commit's.
  app = await startCountedFeedApp({ feedPollMs: 60_000 });
  await eventually(() => app.t.feedSignal.listening(), 'the feed signal listening');
  internal = await listenInternal(app.t);
}, 120_000);
afterAll(async () => {
  await internal?.close();
  await app?.close();
});

const get = (path: string) => internal.get(path);

test('When a hundred long-polls wait at the end of the feed and an event commits, then they all get it from a few shared reads, not a read each', async () => {
  const end = await get('/v1/events?after=now');
  const cursor = end.body['next_cursor'] as string;
  const polls = Array.from({ length: CONSUMERS }, () =>
    get(`/v1/events?after=${encodeURIComponent(cursor)}&wait=20`),
  );
  // Every long-poll made its first look and waits: no read for a second.
  const settled = async () => {
    let last = -1;
    while (app.reads.statements !== last) {
      last = app.reads.statements;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  };
  await settled();
  app.reads.statements = 0;
  app.reads.mostInUse = 0;

  const id = randomUUID();
  await recordEvents(app.writer.db, [statusEvent('sent', { messageId: id })], {
    onCommitted: app.t.feedSignal.committed,
  });
  const answers = await Promise.all(polls);

  for (const answer of answers) {
    expect(answer.status).toBe(200);
    expect((answer.body['data'] as Array<{ message_id: string }>).map((e) => e.message_id)).toEqual(
      [id],
    );
  }
  console.log(
    `${CONSUMERS} long-polls woken by one commit: ${app.reads.statements} page reads, ${app.reads.mostInUse} at once`,
  );
  // A quarter of DATABASE_POOL_MAX (10) at once, and the rest shared: before, one per consumer.
  expect(app.reads.mostInUse).toBeLessThanOrEqual(2);
  expect(app.reads.statements).toBeLessThan(10);
}, 60_000);

test('When a hundred consumers start from after=now at once (every dashboard after a deploy), then the end is read a few at a time, not all at once on the pool', async () => {
  // Nothing else reads meanwhile: the long-polls of the test above have all answered.
  app.reads.statements = 0;
  app.reads.mostInUse = 0;
  const answers = await Promise.all(
    Array.from({ length: CONSUMERS }, () => get('/v1/events?after=now')),
  );
  for (const answer of answers) {
    expect(answer.status).toBe(200);
    expect(answer.body['data']).toEqual([]);
    expect(typeof answer.body['next_cursor']).toBe('string');
  }
  console.log(
    `${CONSUMERS} consumers starting from after=now: ${app.reads.statements} reads, ${app.reads.mostInUse} at once`,
  );
  // A quarter of DATABASE_POOL_MAX (10) at once, however many ask: before, as many as the pool
  // had. (How many reads are shared depends on how the requests arrive: not asserted.)
  expect(app.reads.mostInUse).toBeLessThanOrEqual(2);
}, 60_000);
