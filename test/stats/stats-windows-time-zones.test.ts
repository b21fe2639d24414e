import { randomUUID } from 'node:crypto';
import { recordEvents } from '../../src/messages/record-events';
import { MAX_SERIES_POINTS, seriesPoints } from '../../src/stats/stats-summary';
import { foldDeltas } from '../../src/stats/stats.repository';
import { statusEvent } from '../factories';
import { startOnNonUtcDatabase } from '../helpers/non-utc-app';
import type { TestApp } from '../helpers/test-app';
import { exactCounts, getStats, scanCounts } from './support/messages-oracle';
import type { ExactCounts } from './support/messages-oracle';

/**
 * GET /v1/stats on a database whose TimeZone is not UTC (a self-hosted PostgreSQL takes the
 * host's), for windows around the instants where a bucketing slip would show: New York's DST
 * switches, a leap day, the epoch, and windows spanning millennia. Asia/Kathmandu is UTC+05:45,
 * so its hours and days start 15 minutes off UTC's: rollups or series cut in the session's zone
 * instead of UTC would count messages in the wrong bucket, before and after the deltas are
 * folded. Every series also adds up to the window's total.
 */

jest.setTimeout(60_000);
const ZONE = 'Asia/Kathmandu';
let t: TestApp;
let close: () => Promise<void>;
beforeAll(async () => {
  ({ t, close } = await startOnNonUtcDatabase(ZONE));
});
afterAll(async () => {
  await close?.();
});

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIMES = [
  // New York springs forward at 2027-03-14 07:00Z and falls back at 2027-11-07 06:00Z.
  '2027-03-14T06:59:59.999Z',
  '2027-03-14T07:00:00.000Z',
  '2027-03-14T07:30:30.500Z',
  '2027-11-07T05:30:00.000Z',
  '2027-11-07T06:30:00.000Z',
  '2028-02-29T23:59:59.999Z',
  '2028-03-01T00:00:00.000Z',
  '1970-01-01T00:00:00.000Z',
  '1969-12-31T23:59:59.999Z',
].map((s) => Date.parse(s));
/** Windows around each instant, as [from, to) offsets from it. */
const AROUND: Array<[number, number]> = [
  [-1, 1],
  [-HOUR, HOUR],
  [-DAY, DAY],
  [-30_000, 90_000],
  [0, MINUTE],
  [-MINUTE + 1, 1],
];

test(`When a ${ZONE} database holds messages around DST switches, a leap day and the epoch, then the stats of windows around them equal a scan, folded or not`, async () => {
  await recordEvents(
    t.database.db,
    TIMES.flatMap((at, i) => {
      const messageId = randomUUID();
      return [
        statusEvent('sent', { messageId, receivedAt: new Date(at) }),
        statusEvent(i % 3 ? 'delivered' : 'failed', {
          messageId,
          // Final within 10 s or not.
          receivedAt: new Date(at + (i % 2 ? 3_000 : 30_000)),
          errorCode: i % 3 ? null : '30007',
        }),
      ];
    }),
  );
  const windows = TIMES.flatMap((at) =>
    AROUND.map(([from, to]): [number, number] => [at + from, at + to]),
  );
  windows.push([Date.parse('0001-01-01T00:00:00Z'), Date.parse('9999-12-31T00:00:00Z')]);
  windows.push([Date.parse('1960-01-01T00:00:00Z'), Date.parse('2030-01-01T00:00:00Z')]);

  // Folding changes the rollups, not the messages: one scan per window serves both phases.
  const scans = new Map<[number, number], ExactCounts>();
  for (const window of windows) {
    scans.set(window, await scanCounts(t.database.db, new Date(window[0]), new Date(window[1])));
  }

  for (const phase of ['unfolded', 'folded']) {
    for (const window of windows) {
      const [a, b] = window;
      const since = new Date(a);
      const until = new Date(b);
      // A series with more points is refused (400 too_many_buckets).
      const buckets = ([undefined, 'hour', 'day', 'minute'] as const).filter(
        (bucket) => !bucket || seriesPoints(a, b, bucket) <= MAX_SERIES_POINTS,
      );
      const queries = buckets.map((bucket) => (bucket ? `&bucket=${bucket}` : ''));
      const bodies = await Promise.all(queries.map((query) => getStats(t, since, until, query)));
      queries.forEach((query, i) => {
        const body = bodies[i]!;
        const context = { phase, since, until, query };
        expect({ ...context, ...exactCounts(body) }).toEqual({ ...context, ...scans.get(window) });
        if (query) {
          const sum = body.series!.reduce((total, point) => total + point.total, 0);
          expect({ ...context, sum }).toEqual({ ...context, sum: body.total });
        }
      });
    }
    await foldDeltas(t.database.db);
  }
});
