import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { sql } from 'kysely';
import request from 'supertest';
import { recordEvents } from '../../src/messages/record-events';
import { foldDeltas } from '../../src/stats/stats.repository';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

// The series of GET /v1/stats for windows that start and end anywhere (not on a bucket's
// edge), over days: each point counts the messages first seen in its bucket AND the window,
// as a scan of `messages` does, whether its counts come from the hour or minute rollups, the
// deltas not yet folded, or the edge messages.

let t: TestApp;
const BASE = Date.parse('2026-08-01T00:00:00Z');
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const UNIT = { minute: MINUTE, hour: HOUR, day: DAY } as const;

beforeAll(async () => {
  t = await createTestApp();
  // Three days of messages at random instants; half folded into the rollups, half still deltas.
  const random = fc.sample(
    fc.record({
      at: fc.integer({ min: 0, max: 3 * DAY }),
      status: fc.constantFrom('sent', 'delivered', 'undelivered', 'failed'),
    }),
    { numRuns: 600, seed: 7 },
  );
  const events = random.map(({ at, status }) =>
    statusEvent(status, { messageId: randomUUID(), receivedAt: new Date(BASE + at) }),
  );
  for (let i = 0; i < events.length; i += 50) {
    await recordEvents(t.database.db, events.slice(i, i + 50));
    if (i === 300) await foldDeltas(t.database.db);
  }
});
afterAll(() => t.close());

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

async function scanSeries(since: number, until: number, bucket: keyof typeof UNIT) {
  const unit = UNIT[bucket];
  const { rows } = await sql<{ created_at: Date; status: string }>`
    SELECT created_at, status FROM messages
    WHERE created_at >= ${new Date(since)} AND created_at < ${new Date(until)}`.execute(
    t.database.db,
  );
  const points = new Map<
    number,
    { total: number; delivered: number; undelivered: number; failed: number }
  >();
  for (let start = Math.floor(since / unit) * unit; start < until; start += unit) {
    points.set(start, { total: 0, delivered: 0, undelivered: 0, failed: 0 });
  }
  for (const row of rows) {
    const point = points.get(Math.floor(row.created_at.getTime() / unit) * unit)!;
    point.total += 1;
    if (row.status === 'delivered' || row.status === 'undelivered' || row.status === 'failed') {
      point[row.status] += 1;
    }
  }
  return [...points].map(([start, point]) => ({ start: new Date(start).toISOString(), ...point }));
}

test('When a window starts and ends off a bucket edge, then every point of its series equals a scan', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom<keyof typeof UNIT>('minute', 'hour', 'day'),
      fc.integer({ min: -HOUR, max: 3 * DAY }),
      fc.integer({ min: 1, max: 3 * DAY }),
      async (bucket, from, length) => {
        const span = bucket === 'minute' ? Math.min(length, 30 * HOUR) : length;
        const since = BASE + from;
        const until = since + span;
        const params = new URLSearchParams({
          created_since: new Date(since).toISOString(),
          created_until: new Date(until).toISOString(),
          bucket,
        });
        const res = await get(`/v1/stats?${params}`).expect(200);
        const expected = await scanSeries(since, until, bucket);
        expect(res.body.series).toEqual(expected);
        expect(res.body.total).toBe(expected.reduce((sum, point) => sum + point.total, 0));
      },
    ),
    { numRuns: 40 },
  );
}, 60_000);
