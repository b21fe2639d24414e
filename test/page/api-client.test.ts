import {
  answeredStatus,
  ApiError,
  createApiClient,
  FEED_DEADLINE_GRACE_MS,
  isUnauthorized,
  NoAnswerError,
  READ_DEADLINE_MS,
  UnsendableTokenError,
} from '../../src/page/client/api-client';
import { createServerClock } from '../../src/page/client/server-clock';
import { windows } from '../../src/page/client/view-model';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen } from '../proxy/support';

/**
 * The page's API client against the real query API over a socket (Node's fetch standing in
 * for the browser's, on the page's origin): revalidation with ETags, a refused token, a 404.
 */

let t: TestApp;
let server: { url: string; close(): Promise<void> };
const requests: Array<{ path: string; ifNoneMatch: string | null; status: number }> = [];

beforeAll(async () => {
  t = await createTestApp();
  server = await listen(t.internalApp);
});
afterAll(async () => {
  await server.close();
  await t.close();
});

/** fetch on the service's origin, as the page's relative URLs resolve in the browser. */
const originFetch = (async (path: string, init?: RequestInit) => {
  const res = await fetch(`${server.url}${path}`, init);
  requests.push({
    path,
    ifNoneMatch: new Headers(init?.headers).get('If-None-Match'),
    status: res.status,
  });
  return res;
}) as typeof fetch;

test('When stats are polled and nothing changed, then the second answer is a 304 with the first body', async () => {
  const api = createApiClient(TEST_API_TOKEN, originFetch);
  const { day } = windows(Date.now());
  const first = await api.stats(day);
  const second = await api.stats(day);
  expect(first.changed).toBe(true);
  expect(second).toEqual({ body: first.body, changed: false });
  const [a, b] = requests.slice(-2);
  expect(a).toMatchObject({ ifNoneMatch: null, status: 200 });
  expect(b).toMatchObject({ ifNoneMatch: expect.stringMatching(/^(W\/)?"/), status: 304 });
});

test('When the token is wrong, then the client says so with an ApiError 401', async () => {
  const api = createApiClient('not-a-token', originFetch);
  const error = await api.stats({}).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ApiError);
  expect(isUnauthorized(error)).toBe(true);
});

test('When the token holds a character no header can carry, then the client says the token is no good (as a 401) and sends nothing, not a network failure', async () => {
  // Headers.set throws a TypeError for it, as fetch does for a lost connection: the page took
  // it for one and said "Connection lost, retrying…" for ever.
  const sent: string[] = [];
  const counting = (async (path: string, init?: RequestInit) => {
    sent.push(path);
    return originFetch(path, init);
  }) as typeof fetch;
  const api = createApiClient('test\u2013api\u2013token', counting);
  const errors = await Promise.all([
    api.stats({}).catch((e: unknown) => e),
    api.message('SM1').catch((e: unknown) => e),
    api.events('now', 0).catch((e: unknown) => e),
  ]);
  for (const error of errors) {
    expect(error).toBeInstanceOf(UnsendableTokenError);
    expect(isUnauthorized(error)).toBe(true);
    expect(answeredStatus(error)).toBeUndefined();
  }
  expect(sent).toEqual([]);
});

test('When a message is unknown, then the lookup answers null; the feed gives a cursor from now', async () => {
  const api = createApiClient(TEST_API_TOKEN, originFetch);
  expect(await api.message('SM-nothing-here')).toBeNull();
  // A dot segment: the URL would name the list (/v1/messages/), not a message.
  expect(await api.message('.')).toBeNull();
  const page = await api.events('now', 0);
  expect(page.data).toEqual([]);
  expect(page.next_cursor).toEqual(expect.any(String));
});

test('When the browser’s clock is five minutes slow, then after one answer serverNow() is the service’s now (server-clock.ts)', async () => {
  const minute = 60_000;
  const slow = () => Date.now() - 5 * minute;
  const api = createApiClient(TEST_API_TOKEN, originFetch, createServerClock(slow));
  expect(Date.now() - api.serverNow()).toBeGreaterThan(4 * minute);
  const began = Date.now();
  await api.stats({});
  // The answer's own time on a loaded machine adds to the estimate's error (Date has whole
  // seconds): allowed for, as the clock-offset metric's test does; minutes are what it is about.
  const took = Date.now() - began;
  expect(Math.abs(Date.now() - api.serverNow())).toBeLessThan(2_500 + took);
});

test('When the page has run for many minutes, then an unchanged list is still revalidated (304, not drawn again): answers in use are the last to be forgotten', async () => {
  const api = createApiClient(TEST_API_TOKEN, originFetch);
  const start = Date.now() - 30 * 60_000;
  const redrawn: string[] = [];
  // The page's refresh (main.ts) once a minute for 12 minutes: the two stats windows move
  // every minute, two new answers to keep each time, past the 16 the client keeps.
  for (let minute = 0; minute < 12; minute++) {
    const asked = windows(start + minute * 60_000);
    const [, , failures, stuck, relays] = await Promise.all([
      api.stats(asked.day),
      api.stats(asked.hour),
      api.messages({ status: 'failed,undelivered', limit: '10' }),
      api.messages({ stuck: 'true', limit: '10' }),
      api.deadRelays(),
    ]);
    if (minute === 0) continue;
    if (failures.changed) redrawn.push(`minute ${minute}: failures`);
    if (stuck.changed) redrawn.push(`minute ${minute}: stuck`);
    if (relays.changed) redrawn.push(`minute ${minute}: dead relays`);
  }
  expect(redrawn).toEqual([]);
});

/** A service that stopped answering without closing the connection: only an abort ends it. */
const hungFetch = ((_path: string, init?: RequestInit) =>
  new Promise<Response>((_resolve, reject) => {
    const signal = init?.signal;
    signal?.addEventListener('abort', () => reject(signal.reason as Error));
  })) as typeof fetch;

/** The promise's outcome once settled, else 'pending'. */
function outcome(promise: Promise<unknown>): () => unknown {
  let settled: unknown = 'pending';
  promise.then(
    (value) => (settled = value),
    (error: unknown) => (settled = error),
  );
  return () => settled;
}

describe('when the service stops answering', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  test('When a read gets no answer, then it fails after 15 s as no answer (no status: a lost connection)', async () => {
    const api = createApiClient(TEST_API_TOKEN, hungFetch);
    const stats = outcome(api.stats({}));
    const lookup = outcome(api.message('SM1', new AbortController().signal));
    await jest.advanceTimersByTimeAsync(READ_DEADLINE_MS - 1);
    expect([stats(), lookup()]).toEqual(['pending', 'pending']);
    await jest.advanceTimersByTimeAsync(1);
    expect(stats()).toBeInstanceOf(NoAnswerError);
    expect(lookup()).toBeInstanceOf(NoAnswerError);
    expect(answeredStatus(stats())).toBeUndefined();
  });

  test('When a long-poll gets no answer, then it fails its wait plus 10 s after it was asked', async () => {
    const api = createApiClient(TEST_API_TOKEN, hungFetch);
    const page = outcome(api.events('now', 25, new AbortController().signal));
    await jest.advanceTimersByTimeAsync(25_000 + FEED_DEADLINE_GRACE_MS - 1);
    expect(page()).toBe('pending');
    await jest.advanceTimersByTimeAsync(1);
    expect(page()).toBeInstanceOf(NoAnswerError);
  });

  test('When the caller cancels a request, then it ends at once, as cancelled, not as no answer', async () => {
    const api = createApiClient(TEST_API_TOKEN, hungFetch);
    const abort = new AbortController();
    const page = outcome(api.events('now', 25, abort.signal));
    abort.abort();
    await jest.advanceTimersByTimeAsync(0);
    expect(page()).toMatchObject({ name: 'AbortError' });
    expect(page()).not.toBeInstanceOf(NoAnswerError);
  });
});
