import { ApiError, FEED_PAGE_LIMIT } from '../../src/page/client/api-client';
import type { ApiClient } from '../../src/page/client/api-client';
import { startLive } from '../../src/page/client/live';
import type { LiveState, Retrying } from '../../src/page/client/live';
import { retryDelayMs } from '../../src/page/client/schedule';
import type { Environment } from '../../src/page/client/schedule';
import type { FeedPage } from '../../src/page/client/wire';
import { eventually } from '../relay/support';

/**
 * The page's live updates without a browser: a scripted tab (visible or hidden, online or not)
 * and an API whose answers the test releases one by one, so what is asked, and when, is seen
 * exactly.
 */

interface FakeTab {
  hidden: boolean;
  online: boolean;
  env: Environment;
  set(state: { hidden?: boolean; online?: boolean }): void;
}

function fakeTab(hidden = false, online = true): FakeTab {
  const listeners = new Set<() => void>();
  const tab: FakeTab = {
    hidden,
    online,
    env: {
      hidden: () => tab.hidden,
      online: () => tab.online,
      onChange(listener: () => void) {
        listeners.add(listener);
        return () => listeners.delete(listener);
      },
    },
    set(state: { hidden?: boolean; online?: boolean }) {
      Object.assign(tab, state);
      for (const listener of [...listeners]) listener();
    },
  };
  return tab;
}

interface Call {
  after: string;
  wait: number;
  /** When it was asked (Date.now()). */
  at: number;
  answer(page: Partial<FeedPage>): void;
  fail(error: unknown): void;
}

function fakeApi() {
  const feed: Call[] = [];
  let refreshes = 0;
  let refreshError: unknown;
  const api = {
    events: (after: string, wait: number) =>
      new Promise<FeedPage>((resolve, reject) => {
        feed.push({
          after,
          wait,
          at: Date.now(),
          answer: (page) => resolve({ data: [], next_cursor: `${after}+`, ...page }),
          fail: reject,
        });
      }),
  } as unknown as ApiClient;
  return {
    api,
    feed,
    refresh: async () => {
      refreshes += 1;
      if (refreshError) throw refreshError;
    },
    refreshes: () => refreshes,
    failRefreshes(error: unknown) {
      refreshError = error;
    },
  };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

function start(tab: FakeTab, server: ReturnType<typeof fakeApi>, fresh = false) {
  const states: LiveState[] = [];
  const events: number[] = [];
  let refused = 0;
  const live = startLive({
    api: server.api,
    env: tab.env,
    refresh: server.refresh,
    fresh,
    onEvents: (batch) => events.push(batch.length),
    onState: (state) => states.push(state),
    onUnauthorized: () => (refused += 1),
  });
  return { live, states, events, refused: () => refused };
}

test('When the tab is hidden, then nothing is asked until it is visible again, and then it catches up', async () => {
  const tab = fakeTab(true);
  const server = fakeApi();
  const { live, states } = start(tab, server);
  await settle();
  expect(server.feed).toHaveLength(0);
  expect(server.refreshes()).toBe(0);
  expect(states).toEqual(['paused']);

  tab.set({ hidden: false });
  await settle();
  expect(server.refreshes()).toBe(1);
  expect(server.feed.map((c) => [c.after, c.wait])).toEqual([['now', 0]]);
  expect(states[states.length - 1]).toBe('live');
  live.stop();
});

test('When the browser is offline, then nothing is asked until it is back online', async () => {
  const tab = fakeTab(false, false);
  const server = fakeApi();
  const { live, states } = start(tab, server);
  await settle();
  expect(server.feed).toHaveLength(0);
  expect(states).toEqual(['offline']);
  tab.set({ online: true });
  await settle();
  expect(server.feed).toHaveLength(1);
  live.stop();
});

test('When the feed is followed, then there is one long-poll at a time, each after the last one answered', async () => {
  const tab = fakeTab();
  const server = fakeApi();
  const { live, events } = start(tab, server);
  await settle();
  server.feed[0]!.answer({ next_cursor: 'c1' });
  await settle();
  expect(server.feed.map((c) => [c.after, c.wait])).toEqual([
    ['now', 0],
    ['c1', 25],
  ]);
  await settle();
  expect(server.feed).toHaveLength(2); // still waiting on the open long-poll

  const event = { seq: 1, message_id: 'm1' } as FeedPage['data'][number];
  server.feed[1]!.answer({ data: [event, event], next_cursor: 'c2' });
  await settle();
  expect(events).toEqual([2]);
  // The next one a second after the last one was asked (see below).
  await eventually(() => server.feed.length === 3);
  expect(server.feed.map((c) => c.after)).toEqual(['now', 'c1', 'c2']);

  // Hidden while a long-poll is open: it may finish, but no new one starts (not even after a
  // full page, which is otherwise followed at once).
  tab.set({ hidden: true });
  server.feed[2]!.answer({ data: Array(FEED_PAGE_LIMIT).fill(event), next_cursor: 'c3' });
  await settle();
  expect(server.feed).toHaveLength(3);
  tab.set({ hidden: false });
  await settle();
  expect(server.feed.map((c) => c.after)).toEqual(['now', 'c1', 'c2', 'c3']);
  live.stop();
});

test('When the wall clock steps back an hour during a long-poll, then the next long-poll and the refresh the events ask for still come within seconds', async () => {
  // NTP correcting a laptop after sleep, a VM resumed: the pauses are on the monotonic clock.
  const tab = fakeTab();
  const server = fakeApi();
  const { live, states } = start(tab, server);
  const realNow = Date.now.bind(Date);
  try {
    await settle();
    server.feed[0]!.answer({ next_cursor: 'c1' });
    await eventually(() => server.feed.length === 2);
    jest.spyOn(Date, 'now').mockImplementation(() => realNow() - 3_600_000);
    const event = { seq: 1, message_id: 'm1' } as FeedPage['data'][number];
    server.feed[1]!.answer({ data: [event], next_cursor: 'c2' });
    // The long-poll a second after the last was asked; the refresh five after the last one.
    await eventually(() => server.feed.length === 3, 5_000);
    await eventually(() => server.refreshes() > 1, 10_000);
  } finally {
    jest.restoreAllMocks();
    live.stop();
  }
  expect(server.feed.map((c) => c.after)).toEqual(['now', 'c1', 'c2']);
  expect(states.at(-1)).toBe('live');
});

test('When events arrive, then the panels are refreshed once for the burst, not once per event', async () => {
  const tab = fakeTab();
  const server = fakeApi();
  const { live } = start(tab, server);
  await settle();
  expect(server.refreshes()).toBe(1);
  server.feed[0]!.answer({ next_cursor: 'c1' });
  await settle();
  const event = { seq: 1, message_id: 'm1' } as FeedPage['data'][number];
  // A full page, then the rest of the burst at once.
  server.feed[1]!.answer({ data: Array(FEED_PAGE_LIMIT).fill(event), next_cursor: 'c2' });
  await settle();
  server.feed[2]!.answer({ data: [event], next_cursor: 'c3' });
  await settle();
  expect(server.refreshes()).toBe(1);
  // After the settle pause that the first event started (here also the five seconds events
  // leave between refreshes), one refresh for both.
  await eventually(() => server.refreshes() > 1);
  await settle();
  expect(server.refreshes()).toBe(2);
  live.stop();
});

test('When events keep arriving, then the panels are refreshed at most once every five seconds, not a second after every page of them', async () => {
  // A refresh is four requests: one a second on a busy service, with the feed's own request a
  // second, was about 240 a minute per tab, and five tabs filled the token's default budget.
  jest.useFakeTimers();
  try {
    const tab = fakeTab();
    const server = fakeApi();
    const { live } = start(tab, server, true);
    await jest.advanceTimersByTimeAsync(0);
    server.feed[0]!.answer({ next_cursor: 'c0' });
    const event = { seq: 1, message_id: 'm1' } as FeedPage['data'][number];
    const refreshedAt: number[] = [];
    let seen = server.refreshes();
    const began = Date.now();
    // A page with an event every second for a minute, as the feed gives on a busy service.
    for (let second = 1; second <= 60; second += 1) {
      await jest.advanceTimersByTimeAsync(1_000);
      server.feed[server.feed.length - 1]!.answer({ data: [event], next_cursor: `c${second}` });
      await jest.advanceTimersByTimeAsync(0);
      if (server.refreshes() > seen) {
        seen = server.refreshes();
        refreshedAt.push(Date.now() - began);
      }
    }
    // It still follows the events: the first refresh a settle pause after the first of them.
    expect(refreshedAt[0]).toBeLessThanOrEqual(2_000);
    const gaps = refreshedAt.slice(1).map((at, i) => at - refreshedAt[i]!);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(5_000);
    expect(refreshedAt.length).toBeGreaterThanOrEqual(10);
    live.stop();
  } finally {
    jest.useRealTimers();
  }
});

test('When a page of events is not full, then the next long-poll starts a second after the last one did, not at once; a full page is followed at once', async () => {
  // The server answers a long-poll as soon as one event is there: asking again at once would
  // cost a request per commit on a busy service, and 429s from the token's budget.
  const tab = fakeTab();
  const server = fakeApi();
  const { live } = start(tab, server, true);
  await settle();
  server.feed[0]!.answer({ next_cursor: 'c1' });
  await settle();
  const event = { seq: 1, message_id: 'm1' } as FeedPage['data'][number];
  server.feed[1]!.answer({ data: [event], next_cursor: 'c2' });
  await settle();
  expect(server.feed).toHaveLength(2);
  await eventually(() => server.feed.length === 3);
  expect(server.feed[2]!.at - server.feed[1]!.at).toBeGreaterThanOrEqual(990);

  // Catching up: a full page says more are waiting.
  server.feed[2]!.answer({ data: Array(FEED_PAGE_LIMIT).fill(event), next_cursor: 'c3' });
  await settle();
  expect(server.feed.map((c) => c.after)).toEqual(['now', 'c1', 'c2', 'c3']);
  live.stop();
});

test('When the page is stopped while the feed backs off after an error, then the back-off ends at once and leaves no timer behind', async () => {
  jest.useFakeTimers();
  try {
    const tab = fakeTab();
    const server = fakeApi();
    const { live } = start(tab, server, true);
    await jest.advanceTimersByTimeAsync(0);
    server.feed[0]!.fail(new ApiError(503, 'Service Unavailable'));
    await jest.advanceTimersByTimeAsync(0);
    // The feed's back-off and the panels' 30 s wait.
    expect(jest.getTimerCount()).toBe(2);
    live.stop();
    await jest.advanceTimersByTimeAsync(0);
    expect(jest.getTimerCount()).toBe(0);
    expect(server.feed).toHaveLength(1);
  } finally {
    jest.useRealTimers();
  }
});

test('When the first load failed, then the page does not say live before a refresh has succeeded', async () => {
  const tab = fakeTab();
  const server = fakeApi();
  server.failRefreshes(new ApiError(503, 'Service Unavailable'));
  const { live, states } = start(tab, server, false);
  await eventually(() => states.length > 0);
  // The page's own message (what the service answered) was not overwritten with "Live".
  expect(states).toEqual(['reconnecting']);
  server.failRefreshes(undefined);
  await eventually(() => states.includes('live'));
  live.stop();
});

test('When the panels were just loaded, then the feed starts at once and the panels wait for events', async () => {
  const tab = fakeTab();
  const server = fakeApi();
  const { live } = start(tab, server, true);
  await settle();
  expect(server.feed).toHaveLength(1);
  expect(server.refreshes()).toBe(0);
  server.feed[0]!.answer({ next_cursor: 'c1' });
  await settle();
  const event = { seq: 1, message_id: 'm1' } as FeedPage['data'][number];
  server.feed[1]!.answer({ data: [event], next_cursor: 'c2' });
  await eventually(() => server.refreshes() === 1);
  live.stop();
});

test.each([
  [410, 'events after this cursor were removed by retention'],
  [400, 'the cursor is not one this API issued'],
])(
  'When the feed answers %s for the cursor, then the page reads the state anew and follows the feed from now, not the dead cursor forever',
  async (status, message) => {
    const tab = fakeTab();
    const server = fakeApi();
    const { live, states } = start(tab, server, true);
    await settle();
    server.feed[0]!.answer({ next_cursor: 'c1' });
    await settle();
    server.feed[1]!.fail(new ApiError(status, message));
    // After a short pause (below), the next request starts over, and is not a long-poll.
    await eventually(() => server.feed.length === 3);
    expect(server.feed.map((call) => call.after)).toEqual(['now', 'c1', 'now']);
    expect(server.feed[2]!.wait).toBe(0);
    // The panels are read anew (the feed's gap is covered by their state), once.
    await eventually(() => server.refreshes() === 1);
    expect(states).not.toContain('reconnecting');
    live.stop();
  },
);

/** With fake timers: moves the clock on until the feed has been asked `count` times; when. */
async function untilAsked(server: ReturnType<typeof fakeApi>, count: number): Promise<number> {
  for (let waited = 0; server.feed.length < count; waited += 10) {
    if (waited > 120_000) throw new Error(`the feed was not asked ${count} times`);
    await jest.advanceTimersByTimeAsync(10);
  }
  return Date.now();
}

test('When cursors are refused again and again (replicas on different CALLBACK_TOKEN_SECRETs during a rotation), then the page pauses before starting over, longer each time, until a cursor is taken', async () => {
  // Behind a load balancer, a replica on the new secret signs cursors that one still on the
  // old secret refuses (400 invalid_cursor), and the request from `now` is answered at once:
  // without a pause a tab went round that circle as fast as the round trips allowed.
  jest.useFakeTimers();
  const random = jest.spyOn(Math, 'random').mockReturnValue(0.999_999);
  try {
    const tab = fakeTab();
    const server = fakeApi();
    const { live, states } = start(tab, server, true);
    let cursors = 0;
    /** Refuses the open long-poll's cursor; how long until the page starts over from now. */
    const refuse = async (): Promise<number> => {
      const asked = server.feed.length;
      server.feed[asked - 1]!.fail(new ApiError(400, 'invalid cursor'));
      const refusedAt = Date.now();
      const askedAt = await untilAsked(server, asked + 1);
      const fromNow = server.feed[server.feed.length - 1]!;
      expect([fromNow.after, fromNow.wait]).toEqual(['now', 0]);
      fromNow.answer({ next_cursor: `c${++cursors}` });
      await untilAsked(server, server.feed.length + 1);
      return askedAt - refusedAt;
    };
    await untilAsked(server, 1);
    server.feed[0]!.answer({ next_cursor: 'c0' });
    await untilAsked(server, 2);
    expect([await refuse(), await refuse(), await refuse()]).toEqual([1_000, 2_000, 4_000]);
    expect(states).not.toContain('reconnecting');

    // A cursor taken (a long-poll answered) ends the run: the next refusal pauses as the first.
    server.feed[server.feed.length - 1]!.answer({ next_cursor: 'taken' });
    await untilAsked(server, server.feed.length + 1);
    expect(await refuse()).toBe(1_000);
    live.stop();
  } finally {
    random.mockRestore();
    jest.useRealTimers();
  }
});

test('When long-polls are answered at once without events (a draining replica), then each next one starts a second after the last did, and one that waited is followed at once', async () => {
  // A replica that got SIGTERM closes its feed signal: every long-poll it gets is answered at
  // once with an empty page and the same cursor. Asked again at once, one tab sent 99
  // requests in 3 s to it (behind a port-forward, every request goes to that replica).
  jest.useFakeTimers();
  try {
    const tab = fakeTab();
    const server = fakeApi();
    const { live } = start(tab, server, true);
    await jest.advanceTimersByTimeAsync(0);
    server.feed[0]!.answer({ next_cursor: 'c1' });
    await jest.advanceTimersByTimeAsync(0);
    // The first long-poll comes at once after the request from `now`.
    expect(server.feed.map((call) => [call.after, call.wait])).toEqual([
      ['now', 0],
      ['c1', 25],
    ]);
    for (let n = 1; n <= 3; n += 1) {
      server.feed[n]!.answer({ next_cursor: 'c1' });
      await untilAsked(server, n + 2);
    }
    const gaps = server.feed.slice(2).map((call, i) => call.at - server.feed[i + 1]!.at);
    expect(gaps).toEqual([1_000, 1_000, 1_000]);

    // A long-poll that did wait (no event for 25 s) is followed at once: no extra wait.
    await jest.advanceTimersByTimeAsync(25_000);
    server.feed[4]!.answer({ next_cursor: 'c2' });
    await jest.advanceTimersByTimeAsync(0);
    expect(server.feed).toHaveLength(6);
    expect(server.feed[5]!.at - server.feed[4]!.at).toBe(25_000);
    live.stop();
  } finally {
    jest.useRealTimers();
  }
});

test('When the feed refuses even a request from now with 400, then the page backs off like after any failure instead of asking again at once', async () => {
  const tab = fakeTab();
  const server = fakeApi();
  const { live, states } = start(tab, server, true);
  await settle();
  server.feed[0]!.fail(new ApiError(400, 'the request is invalid'));
  await eventually(() => states.includes('reconnecting'));
  // The first retry comes after a back-off of at least half a second, not at once.
  await settle();
  expect(server.feed).toHaveLength(1);
  live.stop();
});

test('When the feed fails, then the page says why and when it asks again, and that request answers at once instead of long-polling', async () => {
  const tab = fakeTab();
  const server = fakeApi();
  const reports: Array<[LiveState, Retrying | undefined]> = [];
  const live = startLive({
    api: server.api,
    env: tab.env,
    refresh: server.refresh,
    fresh: true,
    onEvents: () => {},
    onState: (state, retrying) => reports.push([state, retrying]),
    onUnauthorized: () => {},
  });
  await settle();
  server.feed[0]!.answer({ next_cursor: 'c1' });
  await settle();
  expect(server.feed[1]!.wait).toBe(25);
  const busy = new ApiError(503, 'busy', 50);
  const failedAt = performance.now();
  server.feed[1]!.fail(busy);
  await eventually(() => server.feed.length === 3);
  const [state, retrying] = reports[reports.length - 1]!;
  expect(state).toBe('reconnecting');
  expect(retrying?.error).toBe(busy);
  expect(retrying!.at).toBeGreaterThanOrEqual(failedAt + 50);
  // Same cursor, no wait: a service that answers again is seen to at once.
  expect([server.feed[2]!.after, server.feed[2]!.wait]).toEqual(['c1', 0]);
  server.feed[2]!.answer({ next_cursor: 'c2' });
  await eventually(() => reports[reports.length - 1]![0] === 'live');
  await eventually(() => server.feed.length === 4);
  expect([server.feed[3]!.after, server.feed[3]!.wait]).toEqual(['c2', 25]);
  live.stop();
});

test('When the API refuses the token, then both loops stop and the page is told once', async () => {
  const tab = fakeTab();
  const server = fakeApi();
  const { live, refused } = start(tab, server);
  await settle();
  server.feed[0]!.fail(new ApiError(401, 'Unauthorized'));
  await settle();
  expect(refused()).toBe(1);
  tab.set({ hidden: true });
  tab.set({ hidden: false });
  await settle();
  expect(server.feed).toHaveLength(1);
  expect(server.refreshes()).toBe(1);
  live.stop();
});

test('When requests keep failing, then retries back off exponentially to a minute, with jitter, and honour Retry-After', () => {
  const low = () => 0;
  const high = () => 0.999_999;
  expect([1, 2, 3, 4, 5, 6, 7, 8, 20].map((n) => retryDelayMs(n, 0, high))).toEqual([
    1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000,
  ]);
  expect(retryDelayMs(3, 0, low)).toBe(2_000);
  expect(retryDelayMs(1, 30_000, high)).toBe(30_000);
});
