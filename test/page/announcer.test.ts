import { ANNOUNCE_EVERY_MS, createStatsAnnouncer } from '../../src/page/client/announcer';
import type { Stats } from '../../src/page/client/wire';

/** What the page's polite live region is told as figures come, and how often. */

const stats = (overrides: Partial<Stats> = {}): Stats => ({
  created_since: '2026-01-01T00:00:00.000Z',
  created_until: '2026-01-02T00:00:00.000Z',
  total: 100,
  by_status: { delivered: 95, failed: 5 },
  delivery_rate: 0.95,
  by_error: [],
  latency_ms: { p50: null, p95: null, p99: null },
  final_within_10s: null,
  stuck: 0,
  conflicts: 0,
  ...overrides,
});

test('When the counts change with every refresh, then the region is told the summary once and nothing more', () => {
  let now = 0;
  const said: string[] = [];
  const announcer = createStatsAnnouncer(
    (text) => said.push(text),
    () => now,
  );
  announcer.stats(stats(), { count: 0, more: false });
  // A busy service: a refresh every 5 s for five minutes, the counts moving each time.
  for (let second = 5; second <= 300; second += 5) {
    now = second * 1_000;
    announcer.stats(stats({ total: 100 + second }), { count: 0, more: false });
  }
  expect(said).toEqual(['100 messages, delivery rate 95.0 %.']);
});

test('When news comes within a minute of the last, then it is said once the minute is up, and once', () => {
  let now = 0;
  const said: string[] = [];
  const announcer = createStatsAnnouncer(
    (text) => said.push(text),
    () => now,
  );
  announcer.stats(stats(), { count: 0, more: false });
  now = 20_000;
  announcer.stats(stats(), { count: 2, more: false });
  now = 50_000;
  announcer.stats(stats(), { count: 2, more: false });
  expect(said).toEqual(['100 messages, delivery rate 95.0 %.']);
  // The next refresh after the minute, with the same figures (a 304): the news is said now.
  now = ANNOUNCE_EVERY_MS + 10_000;
  announcer.stats(stats(), { count: 2, more: false });
  expect(said.slice(1)).toEqual(['2 new stuck messages.']);
  now = 5 * ANNOUNCE_EVERY_MS;
  announcer.stats(stats(), { count: 2, more: false });
  expect(said).toHaveLength(2);
});
