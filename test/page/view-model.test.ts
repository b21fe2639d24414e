import {
  errorRows,
  errorSummary,
  lookupGaveUpText,
  lookupNews,
  lookupRetryingText,
  messageFromHash,
  messageHash,
  overviewFigures,
  stuckNow,
  retryingText,
  statsNews,
  statusRows,
  throughput,
  timeline,
  toldAfter,
  updatedText,
  windows,
} from '../../src/page/client/view-model';
import type { HistoryEntry, Message, Stats } from '../../src/page/client/wire';

/** The status page's pure view model: what each panel shows for an API answer. */

const stats = (overrides: Partial<Stats> = {}): Stats => ({
  created_since: '2026-01-01T00:00:00.000Z',
  created_until: '2026-01-02T00:00:00.000Z',
  total: 8,
  by_status: { unknown: 0, queued: 0, sent: 1, delivered: 4, undelivered: 2, failed: 1, read: 0 },
  delivery_rate: 4 / 7,
  by_error: [
    { api: 'cxml', error_code: '30003', error_reason: 'Destination handset unreachable', count: 2 },
    { api: 'native', error_code: 'new_code', error_reason: null, count: 1 },
  ],
  latency_ms: { p50: 850, p95: 4_200, p99: null },
  final_within_10s: 0.875,
  stuck: 1,
  conflicts: 0,
  ...overrides,
});

/** How many are stuck now, as the stuck list's page tells it. */
const stuck = (count: number, more = false) => ({ count, more });

test('When stats arrive, then the figures read as people read them', () => {
  const figures = Object.fromEntries(
    overviewFigures(stats(), stuck(1)).map((f) => [f.key, f.value]),
  );
  expect(figures).toMatchObject({
    'delivery-rate': '57.1 %',
    total: '8',
    'final-within-10s': '87.5 %',
    'latency-p50': '850 ms',
    'latency-p95': '4.2 s',
    'latency-p99': '—',
    stuck: '1',
  });
  expect(overviewFigures(stats({ delivery_rate: null }), stuck(1))[0]!.value).toBe('—');
});

test('When messages went stuck, then the Stuck tile counts the stuck list (all stuck now), not the stats window, and says so', () => {
  // The default schedule flags a message stuck 24 h after its last event: it has left the
  // 24-hour window by then, so the window's count (stats.stuck) is 0 while 3 are stuck.
  const tile = (s: Stats, now: Parameters<typeof overviewFigures>[1]) =>
    overviewFigures(s, now).find((f) => f.key === 'stuck')!;
  expect(tile(stats({ stuck: 0 }), stuck(3))).toEqual({
    key: 'stuck',
    label: 'Stuck',
    value: '3',
    hint: 'Reconciliation gave up on these; not limited to the window.',
  });
  // A full page with more behind it: at least that many.
  expect(tile(stats({ stuck: 0 }), stuck(100, true)).value).toBe('100+');
  // The stuck list not answered yet: no figure rather than the window's.
  expect(tile(stats({ stuck: 2 }), undefined).value).toBe('—');
  const page = (n: number, next: string | null) => ({
    data: Array.from({ length: n }, () => ({}) as Message),
    next_cursor: next,
  });
  expect(stuckNow(page(7, null))).toEqual({ count: 7, more: false });
  expect(stuckNow(page(100, 'abc'))).toEqual({ count: 100, more: true });
});

test('When statuses are listed, then they follow a message’s path, with the outcomes always shown', () => {
  const rows = statusRows(stats({ by_status: { delivered: 0, sent: 3, failed: 0, queued: 1 } }));
  expect(rows).toEqual([
    { status: 'queued', count: 1 },
    { status: 'sent', count: 3 },
    { status: 'delivered', count: 0 },
    { status: 'failed', count: 0 },
  ]);
});

test('When errors are listed, then each has its reason (or says the code is unknown) and its share', () => {
  expect(errorRows(stats())).toEqual([
    {
      api: 'cxml',
      code: '30003',
      reason: 'Destination handset unreachable',
      count: 2,
      share: '25.0 %',
    },
    { api: 'native', code: 'new_code', reason: 'unknown code', count: 1, share: '12.5 %' },
  ]);
});

test('When the series is drawn, then undelivered and failed are one line and the summary counts them', () => {
  const series = [
    { start: '2026-01-01T10:00:00.000Z', total: 3, delivered: 2, undelivered: 1, failed: 0 },
    { start: '2026-01-01T10:01:00.000Z', total: 5, delivered: 3, undelivered: 1, failed: 1 },
  ];
  const data = throughput(stats({ series }));
  expect(data.times).toEqual([
    Date.parse(series[0]!.start) / 1000,
    Date.parse(series[1]!.start) / 1000,
  ]);
  expect(data.failed).toEqual([1, 2]);
  expect(data.summary).toBe('8 messages in the last hour, 3 not delivered; busiest minute 5.');
});

const entry = (seq: number, status: string, extra: Partial<HistoryEntry> = {}): HistoryEntry => ({
  seq,
  status,
  raw_status: status,
  error_code: null,
  error_reason: null,
  error_message: null,
  source: 'callback',
  provider_timestamp: null,
  received_at: `2026-01-01T10:00:0${seq}.000Z`,
  ...extra,
});

test('When a history has a late sent and two different final statuses, then they are marked', () => {
  const message = {
    id: 'SM1',
    conflict: true,
    history: [
      entry(1, 'queued', { source: 'proxy' }),
      entry(2, 'delivered'),
      entry(3, 'sent'),
      entry(4, 'undelivered', {
        error_code: '30003',
        error_reason: 'Unreachable',
        source: 'reconcile',
      }),
      entry(5, 'sending', { raw_status: 'initiated' }),
    ],
  } as Message;
  const entries = timeline(message);
  expect(entries.map((e) => [e.status, e.source, e.late, e.conflicting])).toEqual([
    ['queued', 'proxy', false, false],
    ['delivered', 'callback', false, true],
    ['sent', 'callback', true, false],
    ['undelivered', 'reconcile', false, true],
    ['sending', 'callback', true, false],
  ]);
  expect(entries[3]!.error).toBe('30003 Unreachable');
  expect(entries[4]!.raw).toBe('initiated');
  expect(entries[0]!.time).toBe('2026-01-01 10:00:01 UTC');
});

test('When an error has a message but no code (SignalWire sends some so), then the message is the error shown; with a code, the code and its reason', () => {
  const message = {
    id: 'SM2',
    error_code: null,
    error_reason: null,
    error_message: 'Carrier rejected: spam',
    history: [
      entry(1, 'sent'),
      entry(2, 'undelivered', { error_message: 'Carrier rejected: spam' }),
      entry(3, 'failed', { error_code: '30007', error_reason: 'Filtered', error_message: 'spam' }),
    ],
  } as Message;
  expect(errorSummary(message)).toBe('Carrier rejected: spam');
  expect(timeline(message).map((e) => e.error)).toEqual([
    null,
    'Carrier rejected: spam',
    '30007 Filtered — spam',
  ]);
  expect(errorSummary({ error_code: '30007', error_reason: 'Filtered', error_message: 'x' })).toBe(
    '30007 Filtered',
  );
  expect(errorSummary({ error_code: '30007', error_reason: null, error_message: null })).toBe(
    '30007',
  );
  expect(errorSummary({ error_code: null, error_reason: null, error_message: null })).toBeNull();
});

test('When the windows are computed within one minute, then they are the same (so ETags can match)', () => {
  const a = windows(Date.parse('2026-01-01T10:00:05Z'));
  const b = windows(Date.parse('2026-01-01T10:00:55Z'));
  expect(a).toEqual(b);
  expect(a.hour).toEqual({
    created_since: '2026-01-01T09:01:00.000Z',
    created_until: '2026-01-01T10:01:00.000Z',
    bucket: 'minute',
  });
  expect(a.day.created_since).toBe('2025-12-31T10:01:00.000Z');
});

test('When a message link is made and read back, then it names the same id; anything else names none', () => {
  for (const id of ['SM123', 'a b/c?d#e', '0a418059-7161-4799-9719-d1edaa92604b']) {
    expect(messageFromHash(messageHash(id))).toBe(id);
  }
  for (const hash of ['', '#', '#message=', '#message=%E0%A4%A', '#other=SM1', '#message=a&b=c']) {
    expect(messageFromHash(hash)).toBeNull();
  }
});

test('When the page retries, then it says whether the service answered (503, 429) or not, and when it asks again', () => {
  expect(retryingText(undefined, 1_500)).toBe('Connection lost, retrying in 2 s…');
  expect(retryingText(502, 0)).toBe('Connection lost, retrying…');
  expect(retryingText(503, 3_000)).toBe('Service busy or database unavailable, retrying in 3 s…');
  expect(retryingText(429, 59_001)).toBe('Too many requests, retrying in 60 s…');
  expect(retryingText(500, -20)).toBe('Service error (HTTP 500), retrying…');
  expect(lookupRetryingText(503, 2_000)).toBe(
    'Service busy or database unavailable, retrying the lookup in 2 s…',
  );
  expect(lookupGaveUpText('SM1', 429, 4)).toBe(
    'Could not look up SM1: too many requests after 4 tries. Try again later.',
  );
});

test('When new figures come, then a screen reader is told the summary once, then only a rate that moved a point or more and new stuck messages or conflicts', () => {
  // The window counts no stuck message (stats.stuck 0, as under the default schedule): the
  // stuck messages are the stuck list's.
  const first = stats({ total: 1_000, delivery_rate: 0.95, stuck: 0, conflicts: 0 });
  expect(statsNews(undefined, first, stuck(1))).toBe('1,000 messages, delivery rate 95.0 %.');
  const told = toldAfter(undefined, first, stuck(1), true);
  expect(told).toEqual({ deliveryRate: 0.95, stuck: 1, conflicts: 0 });
  // More messages, the rate within a point: the counts alone are not news.
  expect(statsNews(told, stats({ total: 1_400, delivery_rate: 0.955 }), stuck(1))).toBeNull();
  expect(statsNews(told, stats({ delivery_rate: 0.94 }), stuck(1))).toBe(
    'Delivery rate down to 94.0 %.',
  );
  expect(statsNews(told, stats({ delivery_rate: 0.95, conflicts: 1 }), stuck(3))).toBe(
    '2 new stuck messages; 1 new conflict.',
  );
  // The window's stuck count is not the source: it rising says nothing.
  expect(statsNews(told, stats({ delivery_rate: 0.95, stuck: 5 }), stuck(1))).toBeNull();
  // A full page with more behind it: at least that many new.
  expect(statsNews(told, stats({ delivery_rate: 0.95 }), stuck(100, true))).toBe(
    '99 or more new stuck messages.',
  );
  // Fewer stuck messages (one resolved) is no news, but the new base: one more from there is.
  const fewer = toldAfter(told, stats({ delivery_rate: 0.95 }), stuck(0), false);
  expect(fewer).toEqual({ deliveryRate: 0.95, stuck: 0, conflicts: 0 });
  expect(statsNews(fewer, stats({ delivery_rate: 0.95 }), stuck(1))).toBe('1 new stuck message.');
  // The stuck list not answered this time: the base stays, and nothing is said of it.
  expect(toldAfter(fewer, stats({ delivery_rate: 0.95 }), undefined, false)).toEqual(fewer);
  expect(statsNews(fewer, stats({ delivery_rate: 0.95 }), undefined)).toBeNull();
  // Not answered when the summary was said: its first count is the base, not news.
  const unknown = toldAfter(undefined, first, undefined, true);
  expect(unknown.stuck).toBeNull();
  expect(statsNews(unknown, first, stuck(4))).toBeNull();
  expect(toldAfter(unknown, first, stuck(4), false).stuck).toBe(4);
  // A rate that drifts half a point at a time is said once it has moved a point in all.
  const drifted = toldAfter(told, stats({ delivery_rate: 0.945 }), stuck(1), false);
  expect(statsNews(drifted, stats({ delivery_rate: 0.94 }), stuck(1))).toBe(
    'Delivery rate down to 94.0 %.',
  );
});

test('When the page shows when it was updated, then it says the service’s time, and “Not updated since” once out of date', () => {
  const at = Date.parse('2026-01-01T09:04:38.600Z');
  expect(updatedText(at, false)).toBe('Updated 09:04:38 UTC');
  expect(updatedText(at, true)).toBe('Not updated since 09:04:38 UTC');
});

test('When a looked-up message is shown, then a screen reader hears its state once, then only its new events', () => {
  const message = {
    id: 'SM1',
    status: 'sent',
    history: [entry(1, 'queued', { source: 'proxy' }), entry(2, 'sent')],
  } as Message;
  expect(lookupNews(message)).toBe('SM1: sent, 2 events in its history.');
  const known = new Set([1, 2]);
  expect(lookupNews(message, known)).toBeNull();
  const later = {
    ...message,
    status: 'delivered',
    history: [...message.history!, entry(3, 'delivered')],
  } as Message;
  expect(lookupNews(later, known)).toBe('SM1: new event, delivered via callback.');
});
