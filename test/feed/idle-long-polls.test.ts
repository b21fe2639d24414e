import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createFastServer } from '../../src/http/fast-server';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { eventually } from '../ingest/support/eventually';
import { startCountedFeedApp } from './support/counted-feed-app';
import type { CountedFeedApp } from './support/counted-feed-app';

/**
 * A long-poll that nothing wakes still looks on its own now and then (a hint can be lost). Each
 * used to look on its own timer, so that idle consumers on one replica read a page each per
 * look interval — 400 consumers, 400 statements a second on a quiet service. They now look on
 * one tick of the process, together, and their reads join (src/feed/feed-reads.ts).
 */

const CONSUMERS = 60;
const LOOK_MS = 200;
const WATCH_MS = 3_000;

let app: CountedFeedApp;
let server: Server;
beforeAll(async () => {
  app = await startCountedFeedApp({ feedPollMs: LOOK_MS });
  await eventually(() => app.t.feedSignal.listening(), 'the feed signal listening');
  server = createFastServer(app.t.internalApp);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
}, 120_000);
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await app?.close();
});

async function get(path: string) {
  const { port } = server.address() as AddressInfo;
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    headers: { authorization: `Bearer ${TEST_API_TOKEN}` },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

test('When many long-polls wait on a quiet service, then their own looks are shared reads, a few per look interval, not one per consumer', async () => {
  const end = await get('/v1/events?after=now');
  const cursor = end.body['next_cursor'] as string;
  const polls = Array.from({ length: CONSUMERS }, () =>
    get(`/v1/events?after=${encodeURIComponent(cursor)}&wait=${(WATCH_MS * 3) / 1000}`),
  );
  // Every long-poll made its first look: the first read of each is not counted.
  await eventually(() => app.reads.statements >= 1, 'the first looks');
  await new Promise((resolve) => setTimeout(resolve, 2 * LOOK_MS));
  app.reads.statements = 0;
  await new Promise((resolve) => setTimeout(resolve, WATCH_MS));
  const looks = app.reads.statements;

  const intervals = WATCH_MS / LOOK_MS;
  console.log(
    `${CONSUMERS} idle long-polls over ${WATCH_MS} ms (a look every ${LOOK_MS} ms): ${looks} page reads`,
  );
  // Each on its own timer: about CONSUMERS × intervals (900). Together: the reads one tick costs
  // (a quarter of DATABASE_POOL_MAX at once, 2, and the one the rest join) per interval.
  expect(looks).toBeLessThanOrEqual(intervals * 4);
  const answers = await Promise.all(polls);
  for (const answer of answers) {
    expect(answer.status).toBe(200);
    expect(answer.body['data']).toEqual([]);
  }
}, 60_000);
