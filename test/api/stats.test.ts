import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { sql } from 'kysely';
import request from 'supertest';
import { errorReason } from '../../src/messages/error-reasons';
import { recordEvents } from '../../src/messages/record-events';
import type { StatusEvent } from '../../src/messages/status-event';
import { CANONICAL_STATUSES, rankOf } from '../../src/messages/statuses';
import type { Api } from '../../src/messages/statuses';
import { foldDeltas, rebuildRollups } from '../../src/stats/stats.repository';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

const HOUR = 3_600_000;
const ERRORS: Record<Api, string[]> = {
  cxml: ['30003', '30007', '30008', '99999'],
  native: ['carrier_violation', 'unreachable_destination_handset', '30005'],
};

/** A message's story: the events SignalWire (and the proxy) would send, in sending order. */
const messageStory = fc.record({
  api: fc.constantFrom<Api>('cxml', 'native'),
  firstSeenMs: fc.integer({ min: 0, max: 3 * HOUR }),
  steps: fc.array(
    fc.record({
      status: fc.constantFrom(
        'queued',
        'sent',
        'delivered',
        'undelivered',
        'failed',
        'read',
        'sending',
      ),
      afterMs: fc.integer({ min: 0, max: 40_000 }),
      withError: fc.boolean(),
      errorIndex: fc.nat(),
    }),
    { minLength: 1, maxLength: 5 },
  ),
  // Recorded late (a spool replay) or in another order than received.
  shuffle: fc.boolean(),
  duplicate: fc.boolean(),
});

function eventsOf(story: StoryValue, base: number) {
  const id = randomUUID();
  let at = base + story.firstSeenMs;
  const events: StatusEvent[] = story.steps.map((step, index) => {
    at += step.afterMs;
    const failing = step.status === 'undelivered' || step.status === 'failed';
    const codes = ERRORS[story.api];
    return statusEvent(step.status, {
      messageId: id,
      api: story.api,
      source: index === 0 && step.status === 'queued' ? 'proxy' : 'callback',
      receivedAt: new Date(at),
      providerTimestamp: new Date(at - 100),
      errorCode: failing && step.withError ? codes[step.errorIndex % codes.length]! : null,
    });
  });
  if (story.shuffle && events.length > 1) events.push(events.shift()!);
  if (story.duplicate) events.push({ ...events[0]!, receivedAt: new Date(at + 1000) });
  return events;
}
type StoryValue = typeof messageStory extends fc.Arbitrary<infer V> ? V : never;

/** Records the events in batches of random size, some at once, folding deltas now and then. */
async function recordWorkload(events: StatusEvent[], random: () => number) {
  let index = 0;
  while (index < events.length) {
    const batches: StatusEvent[][] = [];
    for (let k = 0; k < 3 && index < events.length; k++) {
      const size = 1 + Math.floor(random() * 12);
      batches.push(events.slice(index, index + size));
      index += size;
    }
    await Promise.all(batches.map((batch) => recordEvents(t.database.db, batch)));
    if (random() < 0.3) await foldDeltas(t.database.db);
  }
}

interface Expected {
  total: number;
  by_status: Record<string, number>;
  by_error: Array<{ api: string; error_code: string; error_reason: string | null; count: number }>;
  conflicts: number;
  final_within_10s: number | null;
  delivery_rate: number | null;
  latencies: number[];
  series?: Array<{
    start: string;
    total: number;
    delivered: number;
    undelivered: number;
    failed: number;
  }>;
}

/**
 * The truth, from a scan of the tables: messages first seen in the window — the receive time
 * of a message's first event in the feed's order — with their current status, error code and
 * conflict flag, and the time of the first event that made them final.
 */
async function scan(
  since: number,
  until: number,
  api?: Api,
  bucket?: 'minute' | 'hour',
): Promise<Expected> {
  const { rows } = await sql<{
    id: string;
    api: Api;
    status: string;
    error_code: string | null;
    conflict: boolean;
    first_seen: Date;
    first_final: Date | null;
  }>`
    SELECT m.id, m.api, m.status, m.error_code, m.conflict,
      (SELECT received_at FROM status_events e WHERE e.message_id = m.id
        ORDER BY tx, seq LIMIT 1) AS first_seen,
      (SELECT received_at FROM status_events e WHERE e.message_id = m.id
        AND e.status IN (${sql.join(CANONICAL_STATUSES.filter((s) => rankOf(s) >= 50))})
        ORDER BY tx, seq LIMIT 1) AS first_final
    FROM messages m`.execute(t.database.db);
  const inWindow = rows.filter(
    (row) =>
      row.first_seen.getTime() >= since &&
      row.first_seen.getTime() < until &&
      (api === undefined || row.api === api),
  );
  const byStatus = Object.fromEntries(CANONICAL_STATUSES.map((s) => [s, 0]));
  const byError = new Map<
    string,
    { api: string; error_code: string; error_reason: string | null; count: number }
  >();
  const latencies: number[] = [];
  let finalWithin10s = 0;
  for (const row of inWindow) {
    byStatus[row.status]! += 1;
    if (row.error_code) {
      const key = `${row.api} ${row.error_code}`;
      const entry = byError.get(key) ?? {
        api: row.api,
        error_code: row.error_code,
        error_reason: errorReason(row.api, row.error_code),
        count: 0,
      };
      entry.count++;
      byError.set(key, entry);
    }
    if (row.first_final) {
      const latency = Math.max(0, row.first_final.getTime() - row.first_seen.getTime());
      latencies.push(latency);
      if (latency <= 10_000) finalWithin10s++;
    }
  }
  // A read message (a native read receipt after the delivery) counts as delivered.
  const delivered = byStatus.delivered! + (byStatus.read ?? 0);
  const ended = delivered + byStatus.undelivered! + byStatus.failed!;
  const expected: Expected = {
    total: inWindow.length,
    by_status: byStatus,
    by_error: [...byError.values()].sort(
      (a, b) =>
        b.count - a.count || a.api.localeCompare(b.api) || a.error_code.localeCompare(b.error_code),
    ),
    conflicts: inWindow.filter((row) => row.conflict).length,
    final_within_10s: inWindow.length === 0 ? null : finalWithin10s / inWindow.length,
    delivery_rate: ended === 0 ? null : delivered / ended,
    latencies: latencies.sort((a, b) => a - b),
  };
  if (bucket) {
    const unit = bucket === 'minute' ? 60_000 : HOUR;
    const series = new Map<
      number,
      { total: number; delivered: number; undelivered: number; failed: number }
    >();
    for (let start = Math.floor(since / unit) * unit; start < until; start += unit) {
      series.set(start, { total: 0, delivered: 0, undelivered: 0, failed: 0 });
    }
    for (const row of inWindow) {
      const point = series.get(Math.floor(row.first_seen.getTime() / unit) * unit)!;
      point.total++;
      const outcome = row.status === 'read' ? 'delivered' : row.status;
      if (outcome === 'delivered' || outcome === 'undelivered' || outcome === 'failed') {
        point[outcome]++;
      }
    }
    expected.series = [...series.entries()].map(([start, point]) => ({
      start: new Date(start).toISOString(),
      ...point,
    }));
  }
  return expected;
}

function nearestRank(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.ceil(p * sorted.length) - 1]!;
}

function expectWithin5Percent(actual: number | null, exact: number | null) {
  if (exact === null) return expect(actual).toBeNull();
  expect(actual).not.toBeNull();
  expect(Math.abs(actual! - exact)).toBeLessThanOrEqual(exact * 0.05 + 0.05);
}

async function expectStatsEqualScan(query: {
  since: number;
  until: number;
  api?: Api;
  bucket?: 'minute' | 'hour';
}) {
  const params = new URLSearchParams({
    created_since: new Date(query.since).toISOString(),
    created_until: new Date(query.until).toISOString(),
    ...(query.api && { api: query.api }),
    ...(query.bucket && { bucket: query.bucket }),
  });
  const res = await get(`/v1/stats?${params}`).expect(200);
  const expected = await scan(query.since, query.until, query.api, query.bucket);
  const { latencies, ...counts } = expected;
  expect(res.body).toMatchObject({
    ...counts,
    stuck: 0,
    created_since: new Date(query.since).toISOString(),
    created_until: new Date(query.until).toISOString(),
  });
  if (!query.bucket) expect(res.body).not.toHaveProperty('series');
  for (const [key, p] of [
    ['p50', 0.5],
    ['p95', 0.95],
    ['p99', 0.99],
  ] as const) {
    expectWithin5Percent(res.body.latency_ms[key], nearestRank(latencies, p));
  }
}

describe('GET /v1/stats', () => {
  test('When a randomised workload has been recorded (late, out-of-order and duplicate events, error codes, conflicts), then the stats of any window equal a scan of the tables', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(messageStory, { minLength: 20, maxLength: 60 }),
        fc.array(
          fc.record({
            from: fc.integer({ min: -10 * 60_000, max: 4 * HOUR }),
            length: fc.integer({ min: 1, max: 5 * HOUR }),
            api: fc.option(fc.constantFrom<Api>('cxml', 'native'), { nil: undefined }),
            bucket: fc.option(fc.constantFrom<'minute' | 'hour'>('minute', 'hour'), {
              nil: undefined,
            }),
          }),
          { minLength: 3, maxLength: 6 },
        ),
        fc.boolean(),
        async (stories, windows, foldAtEnd) => {
          // Each run has a day of its own, so runs never count each other's messages.
          const base = Date.parse('2026-01-01T00:00:00Z') + run++ * 24 * HOUR + 1234;
          const events = stories.flatMap((story) => eventsOf(story, base));
          let seed = run;
          const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
          await recordWorkload(events, random);
          if (foldAtEnd) await foldDeltas(t.database.db);
          for (const window of windows) {
            await expectStatsEqualScan({
              since: base + window.from,
              until: base + window.from + window.length,
              api: window.api,
              bucket: window.bucket,
            });
          }
        },
      ),
      { numRuns: 8, endOnFailure: true },
    );
  }, 120_000);

  test('When the rollups are rebuilt from the messages, then the stats do not change', async () => {
    const since = Date.parse('2026-01-01T00:00:00Z');
    const until = since + 10 * 24 * HOUR;
    const query = `/v1/stats?created_since=${new Date(since).toISOString()}&created_until=${new Date(until).toISOString()}`;
    const before = await get(query).expect(200);
    expect(before.body.total).toBeGreaterThan(0);
    await rebuildRollups(t.database.db);
    const after = await get(query).expect(200);
    expect(after.body).toEqual(before.body);
  });

  test('When no window is given, then it is the last 24 hours', async () => {
    const recent = statusEvent('delivered', { receivedAt: new Date(Date.now() - HOUR) });
    await recordEvents(t.database.db, [recent]);
    const res = await get('/v1/stats').expect(200);
    expect(res.body.total).toBeGreaterThanOrEqual(1);
    const span = Date.parse(res.body.created_until) - Date.parse(res.body.created_since);
    expect(span).toBe(24 * HOUR);
  });

  test('When created_since carries a +hh:mm offset left unencoded, then it is read as that offset', async () => {
    const res = await get(
      '/v1/stats?created_since=2026-11-30T09:15:00+01:00&created_until=2026-12-01T00:00:00Z',
    ).expect(200);
    expect(res.body.created_since).toBe('2026-11-30T08:15:00.000Z');
  });

  test.each([
    ['the default window', '/v1/stats'],
    ['an hourly series over the default window', '/v1/stats?bucket=hour'],
    [
      'a window open at its end (created_since only)',
      `/v1/stats?created_since=${new Date(Date.now() - 60_000).toISOString()}`,
    ],
  ])(
    'When %s is asked again with its ETag and nothing changed, then the answer is 304, though its end (now) moved',
    async (_what, path) => {
      const first = await get(path).expect(200);
      await new Promise((resolve) => setTimeout(resolve, 5)); // a later "now"
      await get(path).set('If-None-Match', first.headers.etag!).expect(304);
    },
  );

  test('When a message arrives in a window open at its end, then revalidating gets the new counts, not a 304', async () => {
    const path = `/v1/stats?created_since=${new Date(Date.now() - 60_000).toISOString()}`;
    const first = await get(path).expect(200);
    await recordEvents(t.database.db, [statusEvent('delivered')]);
    const again = await get(path).set('If-None-Match', first.headers.etag!).expect(200);
    expect(again.body.total).toBe(first.body.total + 1);
  });

  test('When the same stats are asked again with their ETag, then the answer is 304', async () => {
    const query = '/v1/stats?created_since=2026-01-01&created_until=2026-01-02T00:00:00Z';
    const first = await get(query).expect(200);
    expect(first.headers.etag).toBeDefined();
    await get(query).set('If-None-Match', first.headers.etag!).expect(304);
  });

  test('When a fetch client revalidates (it adds Cache-Control: no-cache), then it still gets 304', async () => {
    // The fetch standard adds `Cache-Control: no-cache` and `Pragma: no-cache` to every request
    // carrying If-None-Match; an origin server evaluates the condition all the same.
    const query = '/v1/stats?created_since=2026-01-01&created_until=2026-01-03T00:00:00Z';
    const first = await get(query).expect(200);
    const etag = first.headers.etag!;
    const revalidate = (ifNoneMatch: string) =>
      get(query)
        .set('If-None-Match', ifNoneMatch)
        .set('Cache-Control', 'no-cache')
        .set('Pragma', 'no-cache');
    await revalidate(etag).expect(304);
    await revalidate(`"other", ${etag.slice(2)}`).expect(304);
    await revalidate('*').expect(304);
    await revalidate('W/"other"').expect(200);
  });

  test('When the window is empty, then counts are zero and rates are null', async () => {
    const res = await get(
      '/v1/stats?created_since=2001-01-01&created_until=2001-01-02&bucket=day',
    ).expect(200);
    expect(res.body).toMatchObject({
      total: 0,
      delivery_rate: null,
      final_within_10s: null,
      latency_ms: { p50: null, p95: null, p99: null },
      by_error: [],
      series: [
        { start: '2001-01-01T00:00:00.000Z', total: 0, delivered: 0, undelivered: 0, failed: 0 },
      ],
    });
  });

  test('When the window or the bucket is invalid, then the answer is a 400', async () => {
    await get('/v1/stats?created_since=2026-02-30').expect(400);
    await get('/v1/stats?created_since=2026-11-30&created_until=2026-11-29').expect(400);
    await get('/v1/stats?created_since=2026-01-01&created_until=2026-12-01&bucket=minute').expect(
      400,
    );
    await get('/v1/stats?bucket=week').expect(400);
  });
});

test('When native messages were delivered and then read, then the delivery rate and the series count them as delivered', async () => {
  // SignalWire's native API reports `read` after `delivered` (SIGNALWIRE.md statuses), and the
  // message's current status becomes `read`: the rate must not fall as recipients read.
  const base = Date.parse('2002-03-04T05:00:00Z');
  const events: StatusEvent[] = [];
  for (let m = 0; m < 10; m++) {
    const messageId = randomUUID();
    const at = (ms: number) => new Date(base + m * 100 + ms);
    events.push(statusEvent('queued', { messageId, api: 'native', receivedAt: at(0) }));
    events.push(statusEvent('sent', { messageId, api: 'native', receivedAt: at(500) }));
    if (m < 9) {
      events.push(statusEvent('delivered', { messageId, api: 'native', receivedAt: at(1_000) }));
      events.push(statusEvent('read', { messageId, api: 'native', receivedAt: at(5_000) }));
    } else {
      events.push(statusEvent('failed', { messageId, api: 'native', receivedAt: at(1_000) }));
    }
  }
  await recordEvents(t.database.db, events);
  const res = await get(
    '/v1/stats?created_since=2002-03-04T04:00:00Z&created_until=2002-03-04T06:00:00Z&bucket=hour',
  ).expect(200);
  expect(res.body.total).toBe(10);
  // by_status stays per current status.
  expect(res.body.by_status).toMatchObject({ read: 9, delivered: 0, failed: 1 });
  expect(res.body.delivery_rate).toBeCloseTo(0.9);
  const sum = (key: 'delivered' | 'failed') =>
    res.body.series.reduce((n: number, point: Record<string, number>) => n + point[key]!, 0);
  expect(sum('delivered')).toBe(9);
  expect(sum('failed')).toBe(1);
});
