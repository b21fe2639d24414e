import { eventually } from '../helpers/eventually';
import { listenInternal, startCountedFeedApp } from './support/counted-feed-app';
import type { CountedFeedApp } from './support/counted-feed-app';

/**
 * A long-poll that nothing wakes still looks on its own now and then (a hint can be lost). Each
 * used to look on its own timer, so that idle consumers on one replica read a page each per
 * look interval — 400 consumers, 400 statements a second on a quiet service. They now look on
 * one tick of the process, together, and their reads join (src/feed/feed-reads.ts).
 */

const CONSUMERS = 60;
const LOOK_MS = 500;
const WATCH_MS = 5_000;

let app: CountedFeedApp;
let internal: Awaited<ReturnType<typeof listenInternal>>;
beforeAll(async () => {
  app = await startCountedFeedApp({ feedPollMs: LOOK_MS });
  await eventually(() => app.t.feedSignal.listening(), 'the feed signal listening');
  internal = await listenInternal(app.t);
}, 120_000);
afterAll(async () => {
  await internal?.close();
  await app?.close();
});

const get = (path: string) => internal.get(path);

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
  // Each on its own timer: about CONSUMERS × intervals (600; 715 measured over 15 intervals).
  // Together: a tick costs the reads a quarter of DATABASE_POOL_MAX runs at once (2) and the one
  // the rest join — twice that when a slow read on a loaded machine makes some miss a tick, and
  // more when long-polls' first looks (not shared) land late, after the count began (77 seen in
  // a CI pass on Node 24). A fifth of one read per consumer per look still tells them apart.
  expect(looks).toBeLessThan((CONSUMERS * intervals) / 5);
  const answers = await Promise.all(polls);
  for (const answer of answers) {
    expect(answer.status).toBe(200);
    expect(answer.body['data']).toEqual([]);
  }
}, 60_000);
