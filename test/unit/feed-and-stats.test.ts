import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { FEED_START, comparePositions, feedCursors } from '../../src/feed/feed-cursor';
import { parseInstant } from '../../src/http/query-params';
import { latencyBucket, latencyBucketValue } from '../../src/messages/rollup';
import { planWindow, summarize } from '../../src/stats/stats-summary';
import type { Range } from '../../src/stats/stats-summary';

describe('parseInstant', () => {
  test('When a date or a date-time comes with or without offset, then it is the right instant (UTC unless told)', () => {
    expect(parseInstant('2026-11-30')?.toISOString()).toBe('2026-11-30T00:00:00.000Z');
    expect(parseInstant('2026-11-30T08:15')?.toISOString()).toBe('2026-11-30T08:15:00.000Z');
    expect(parseInstant('2026-11-30 08:15:07.25')?.toISOString()).toBe('2026-11-30T08:15:07.250Z');
    expect(parseInstant('2026-11-30T08:15:00+01:00')?.toISOString()).toBe(
      '2026-11-30T07:15:00.000Z',
    );
    expect(parseInstant('2026-11-30T08:15:00-0530')?.toISOString()).toBe(
      '2026-11-30T13:45:00.000Z',
    );
    expect(parseInstant('2026-11-30T08:15:00z')?.toISOString()).toBe('2026-11-30T08:15:00.000Z');
  });

  test('When the text is not a real day or time, then it is refused', () => {
    for (const text of [
      '2026-02-30',
      '2026-13-01',
      '2026-11-30T24:00',
      '2026-11-30T08:60',
      '30/11/2026',
      '',
      '2026-11-30T08:15+25:00',
      'now',
    ]) {
      expect(parseInstant(text)).toBeNull();
    }
  });

  test('When any instant is written as ISO 8601, then it reads back the same', () => {
    fc.assert(
      fc.property(
        fc.date({ min: new Date('1971-01-01'), max: new Date('2999-12-31'), noInvalidDate: true }),
        (date) => {
          expect(parseInstant(date.toISOString())?.getTime()).toBe(date.getTime());
        },
      ),
    );
  });
});

describe('feed cursors', () => {
  const cursors = feedCursors(['first-secret-0123456789', 'older-secret-0123456789']);

  test('When a position is encoded, then it decodes back; an older secret still verifies', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.nat({ max: 2 ** 52 }),
        (tx, seq) => {
          const position = { tx: tx.toString(), seq };
          expect(cursors.decode(cursors.encode(position))).toEqual(position);
        },
      ),
    );
    const byOlder = feedCursors(['older-secret-0123456789']).encode({ tx: '42', seq: 7 });
    expect(cursors.decode(byOlder)).toEqual({ tx: '42', seq: 7 });
  });

  test('When a removal mark beyond the position is encoded, then it decodes back with it; one not beyond it leaves the short form earlier versions read', () => {
    const position = fc.record({
      tx: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
      seq: fc.nat({ max: 2 ** 52 }),
    });
    fc.assert(
      fc.property(position, position, (at, removedSeen) => {
        const decoded = cursors.decode(cursors.encode(at, removedSeen));
        if (comparePositions(removedSeen, at) > 0) expect(decoded).toEqual({ ...at, removedSeen });
        else expect(decoded).toEqual(at);
      }),
    );
    // The short form is exactly the one every earlier version issued and reads.
    const at = { tx: '42', seq: 7 };
    expect(cursors.encode(at, { tx: '41', seq: 9 })).toBe(cursors.encode(at));
  });

  test('When a signed cursor payload is neither two nor four numbers, then it is refused', () => {
    const payloads = ['1.2.3', '1.2.3.4.5', '1.2.x.4', '1.2..4'];
    for (const payload of payloads) {
      const mac = createHmac(
        'sha256',
        createHmac('sha256', 'first-secret-0123456789')
          .update('sw-status change feed cursor v1')
          .digest(),
      )
        .update(payload)
        .digest()
        .subarray(0, 16);
      const forged = `${Buffer.from(payload).toString('base64url')}.${mac.toString('base64url')}`;
      expect(() => cursors.decode(forged)).toThrow(/not one this API issued/);
    }
  });

  test('When a cursor is altered or made up, then it is refused', () => {
    const good = cursors.encode({ tx: '1000', seq: 5 });
    fc.assert(
      fc.property(fc.string({ maxLength: 120 }), (text) => {
        if (text === good) return;
        expect(() => cursors.decode(text)).toThrow(/not one this API issued/);
      }),
    );
    const other = feedCursors(['another-deployment-secret']).encode({ tx: '1000', seq: 5 });
    expect(() => cursors.decode(other)).toThrow(/not one this API issued/);
  });

  test('When positions are compared, then transaction ids order first, as 64-bit numbers', () => {
    expect(comparePositions({ tx: '9', seq: 99 }, { tx: '10', seq: 1 })).toBe(-1);
    expect(
      comparePositions(
        { tx: '18446744073709551615', seq: 0 },
        { tx: '18446744073709551614', seq: 9 },
      ),
    ).toBe(1);
    expect(comparePositions(FEED_START, { tx: '0', seq: 0 })).toBe(0);
  });
});

describe('latency buckets', () => {
  test('When a latency is put in a bucket, then the bucket stands for it within 4 %', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30 * 86_400_000 }), (ms) => {
        const value = latencyBucketValue(latencyBucket(ms));
        expect(Math.abs(value - ms) / ms).toBeLessThanOrEqual(0.04);
      }),
    );
    expect(latencyBucketValue(latencyBucket(0))).toBe(0);
  });
});

describe('planWindow', () => {
  const MINUTE = 60_000;
  const HOUR = 3_600_000;
  test('When a window has any edges, then its pieces cover it exactly, without overlap, on whole minutes and hours', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10 * 86_400_000 }),
        fc.integer({ min: 1, max: 3 * 86_400_000 }),
        fc.constantFrom(undefined, 'minute' as const, 'hour' as const),
        (since, length, bucket) => {
          const until = since + length;
          const plan = planWindow(since, until, bucket);
          const pieces: Range[] = [
            ...plan.edges,
            ...plan.minutes,
            ...(plan.hours ? [plan.hours] : []),
          ];
          pieces.sort((a, b) => a[0] - b[0]);
          let at = since;
          for (const [from, to] of pieces) {
            expect(from).toBe(at);
            expect(to).toBeGreaterThan(from);
            at = to;
          }
          expect(at).toBe(until);
          for (const [from, to] of plan.minutes)
            expect([from % MINUTE, to % MINUTE]).toEqual([0, 0]);
          if (plan.hours) expect([plan.hours[0] % HOUR, plan.hours[1] % HOUR]).toEqual([0, 0]);
          if (bucket === 'minute') expect(plan.hours).toBeNull();
          // An edge is read from the messages themselves: less than a minute on each side of
          // the whole minutes — or, in a window holding no whole minute (one that starts off a
          // minute and lasts one minute or less, say), the whole window, under two minutes.
          const edgeBound = plan.minutes.length > 0 || plan.hours ? MINUTE : 2 * MINUTE;
          for (const [from, to] of plan.edges) expect(to - from).toBeLessThan(edgeBound);
        },
      ),
      // A window one minute long starting off a minute: it holds no whole minute.
      { examples: [[1, 60_000, undefined]] },
    );
  });
});

describe('summarize', () => {
  const row = (status: string, latencyBucket: number, messages: number) => ({
    api: 'cxml',
    status,
    errorCode: '',
    latencyBucket,
    messages,
    conflicts: 0,
    finalWithin10s: 0,
  });
  test('When the rollups give their latency histogram apart and the edge messages carry their own buckets, then the percentiles come from both and the counts once', () => {
    const window = { since: 0, until: 3_600_000, stuck: 0 };
    const rollupCounts = [row('delivered', -1, 8), row('sent', -1, 2)];
    const edgeCounts = [row('delivered', 30, 1), row('delivered', 90, 1)];
    const rollupLatency = [{ latencyBucket: 10, messages: 8 }];
    const stats = summarize(window, [...rollupCounts, ...edgeCounts], [], rollupLatency);
    expect(stats.total).toBe(12);
    expect(stats.by_status).toMatchObject({ delivered: 10, sent: 2 });
    // 10 latencies: eight in bucket 10, then 30, then 90.
    expect(stats.latency_ms).toEqual({
      p50: Math.round(latencyBucketValue(10) * 10) / 10,
      p95: Math.round(latencyBucketValue(90) * 10) / 10,
      p99: Math.round(latencyBucketValue(90) * 10) / 10,
    });
  });
});
