import { sql } from 'kysely';
import request from 'supertest';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { startCountedFeedApp } from './support/counted-feed-app';
import type { CountedFeedApp } from './support/counted-feed-app';

/**
 * A filtered page looks at a bounded number of events (FILTERED_SCAN in
 * src/feed/feed.routes.ts), then answers with what it found and a cursor after what it looked
 * at, so that a rare status cannot make one request read the whole history. A long-poll did
 * not: while nothing matched it read the next events at once, page after page, so one request
 * with a rare status and no cursor read the whole history (10 M events: 20 000 statements)
 * before it waited.
 */

const EVENTS = 30_000;

let app: CountedFeedApp;
beforeAll(async () => {
  app = await startCountedFeedApp();
  await sql`
    INSERT INTO status_events (message_id, api, status, raw_status, source, received_at,
      dedupe_key, raw, message_status)
    SELECT 'bulk-' || i, 'cxml', 'queued', 'queued', 'callback', now(),
      sha256(convert_to('bulk-' || i, 'UTF8')), '{}', 'queued'
    FROM generate_series(1, ${EVENTS}) i`.execute(app.writer.db);
}, 120_000);
afterAll(async () => {
  await app?.close();
});

const get = (path: string) =>
  request(app.t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

test('When a long-poll filters on a status no stored event has, then it answers after one bounded look, as without wait, not after reading the whole history', async () => {
  app.reads.statements = 0;
  const plain = await get('/v1/events?status=read').expect(200);
  const looked = app.reads.statements;

  app.reads.statements = 0;
  const started = Date.now();
  const polled = await get('/v1/events?status=read&wait=20').expect(200);
  console.log(
    `statements: ${looked} without wait, ${app.reads.statements} with wait=20, over ${EVENTS} events none of which matches`,
  );
  expect(polled.body.data).toEqual([]);
  // The same look and the same cursor after it (the first FILTERED_SCAN events), at once.
  expect(app.reads.statements).toBe(looked);
  expect(polled.body.next_cursor).toBe(plain.body.next_cursor);
  // Far below the 20 s wait: answered after the look, not at the end of the wait. (With a 5 s
  // wait and a 4.5 s bound, a look slowed by a loaded machine had half a second of room; the
  // long wait costs nothing when the answer comes after the look.)
  expect(Date.now() - started).toBeLessThan(10_000);
}, 60_000);
