// Edge cases of src/messages/rollup.ts: a message's stats contribution, the per-batch sums and
// the bucket floors the SQL rebuild uses. Only latencyBucket/latencyBucketValue had a unit test
// (test/unit/feed-and-stats.test.ts): 85 of 98 mutants had no unit coverage, and
// latencyBucket(0) was -Infinity with a mutant no test noticed. StrykerJS, 2026-12-07. Pure, no
// database.
import {
  FINAL_WITHIN_MS,
  contributionOf,
  contributionOfRow,
  deltaRow,
  latencyBucket,
  latencyBucketFloors,
  latencyMs,
  minuteOf,
  rollupSums,
} from '../../src/messages/rollup';
import type { RollupFacts } from '../../src/messages/rollup';
import type { MessageState } from '../../src/messages/projection';

const T0 = Date.UTC(2026, 0, 2, 3, 4, 5, 678); // 03:04:05.678
const MINUTE = Date.UTC(2026, 0, 2, 3, 4);

function facts(over: Partial<RollupFacts> = {}): RollupFacts {
  return {
    createdAt: new Date(T0),
    firstTerminalAt: null,
    api: 'cxml',
    status: 'sent',
    errorCode: null,
    conflict: false,
    ...over,
  };
}

/** contributionOf reads only the facts; move() takes whole states. */
const state = (over: Partial<RollupFacts> = {}) => facts(over) as unknown as MessageState;

describe('stats rollup contributions (edge cases)', () => {
  test('When a latency is 0 ms, then it is bucket 0 (as width_bucket counts it)', () => {
    expect(latencyBucket(0)).toBe(0);
    expect(latencyBucket(1)).toBe(1);
  });

  test('When a message is not final, then it has no latency and is not final within 10 s', () => {
    expect(latencyMs(facts())).toBeNull();
    expect(contributionOf(facts())).toEqual({
      minute: MINUTE,
      api: 'cxml',
      status: 'sent',
      errorCode: '',
      latencyBucket: -1,
      messages: 1,
      conflicts: 0,
      finalWithin10s: 0,
    });
  });

  test('When a message is final, then its latency is first seen → first final, never negative', () => {
    expect(latencyMs(facts({ firstTerminalAt: new Date(T0 + 2_500) }))).toBe(2_500);
    expect(latencyMs(facts({ firstTerminalAt: new Date(T0 - 2_500) }))).toBe(0);
    expect(latencyMs(facts({ firstTerminalAt: new Date(T0) }))).toBe(0);
  });

  test('When a message is final within 10 s (10 s included), then it counts in final_within_10s; later, not', () => {
    const at = (ms: number) =>
      contributionOf(facts({ status: 'delivered', firstTerminalAt: new Date(T0 + ms) }));
    expect(at(0)).toMatchObject({ latencyBucket: 0, finalWithin10s: 1 });
    expect(at(FINAL_WITHIN_MS)).toMatchObject({
      latencyBucket: latencyBucket(FINAL_WITHIN_MS),
      finalWithin10s: 1,
    });
    expect(at(FINAL_WITHIN_MS + 1).finalWithin10s).toBe(0);
    expect(at(FINAL_WITHIN_MS + 1).latencyBucket).toBeGreaterThan(0);
  });

  test('When a message has an error code or a conflict, then its key and counts carry them', () => {
    expect(
      contributionOf(
        facts({ status: 'failed', errorCode: '30008', conflict: true, api: 'native' }),
      ),
    ).toMatchObject({ api: 'native', status: 'failed', errorCode: '30008', conflicts: 1 });
  });

  test('When a message is first seen at any instant of a minute, then its minute is that minute (UTC)', () => {
    expect(minuteOf(new Date(MINUTE))).toBe(MINUTE);
    expect(minuteOf(new Date(MINUTE + 59_999))).toBe(MINUTE);
    expect(minuteOf(new Date(MINUTE + 60_000))).toBe(MINUTE + 60_000);
  });

  test('When a stored row is read, then its contribution and its delta row are the same as the state’s', () => {
    const row = {
      created_at: new Date(T0),
      first_terminal_at: new Date(T0 + 12_000),
      api: 'native' as const,
      status: 'undelivered',
      error_code: '30003',
      conflict: true,
    };
    const delta = contributionOfRow(row);
    expect(delta).toEqual(
      contributionOf(
        facts({
          api: 'native',
          status: 'undelivered',
          errorCode: '30003',
          conflict: true,
          firstTerminalAt: new Date(T0 + 12_000),
        }),
      ),
    );
    expect(deltaRow(delta)).toEqual({
      minute: MINUTE,
      api: 'native',
      status: 'undelivered',
      error_code: '30003',
      latency_bucket: latencyBucket(12_000),
      messages: 1,
      conflicts: 1,
      final_within_10s: 0,
    });
  });

  test('When a batch moves messages, then the sums are −1 under the old key and +1 under the new, and zeros are dropped', () => {
    const sums = rollupSums();
    const queued = state({ status: 'queued' });
    const sent = state({ status: 'sent' });
    const delivered = state({
      status: 'delivered',
      firstTerminalAt: new Date(T0 + 1_000),
      conflict: true,
    });
    sums.add(contributionOf(queued)); // first seen
    sums.move(queued, sent);
    sums.move(sent, delivered);
    expect(sums.nonZero()).toEqual([
      { ...contributionOf(delivered), messages: 1, conflicts: 1, finalWithin10s: 1 },
    ]);
    // Two messages under one key add up; a removal (sign −1) takes them back.
    sums.add(contributionOf(delivered));
    expect(sums.nonZero()).toEqual([
      { ...contributionOf(delivered), messages: 2, conflicts: 2, finalWithin10s: 2 },
    ]);
    sums.add(contributionOf(delivered), -1);
    sums.add(contributionOf(delivered), -1);
    expect(sums.nonZero()).toEqual([]);
  });

  test('When only the conflicts or the final-within-10s count is left, then the sum is not zero', () => {
    const conflictOnly = rollupSums();
    const a = contributionOf(facts({ conflict: true }));
    conflictOnly.add(a);
    conflictOnly.add({ ...a, conflicts: 0 }, -1);
    expect(conflictOnly.nonZero()).toEqual([
      { ...a, messages: 0, conflicts: 1, finalWithin10s: 0 },
    ]);

    const finalOnly = rollupSums();
    const b = contributionOf(facts({ status: 'delivered', firstTerminalAt: new Date(T0) }));
    finalOnly.add(b);
    finalOnly.add({ ...b, finalWithin10s: 0 }, -1);
    expect(finalOnly.nonZero()).toEqual([{ ...b, messages: 0, conflicts: 0, finalWithin10s: 1 }]);
  });

  test('When a message is neither final nor in conflict, then its count alone is a non-zero sum', () => {
    const sums = rollupSums();
    sums.add(contributionOf(facts({ status: 'queued' })));
    expect(sums.nonZero()).toEqual([contributionOf(facts({ status: 'queued' }))]);
  });

  test('When a move keeps the key, then nothing is written', () => {
    const sums = rollupSums();
    sums.move(state(), state());
    expect(sums.nonZero()).toEqual([]);
  });

  test('When the SQL rebuild buckets by the floors, then width_bucket agrees with latencyBucket at every edge', () => {
    const floors = latencyBucketFloors();
    expect(latencyBucketFloors()).toBe(floors); // found once
    expect(floors.length).toBe(latencyBucket(Number.MAX_SAFE_INTEGER));
    expect(floors[0]).toBe(1);
    // width_bucket(ms, floors) = the number of floors ≤ ms.
    const widthBucket = (ms: number) => floors.filter((f) => f <= ms).length;
    for (let k = 0; k < floors.length; k++) {
      const f = floors[k]!;
      expect(latencyBucket(f)).toBeGreaterThanOrEqual(k + 1);
      expect(widthBucket(f)).toBe(latencyBucket(f));
      expect(widthBucket(f - 1)).toBe(latencyBucket(f - 1));
      if (k > 0) expect(f).toBeGreaterThanOrEqual(floors[k - 1]!);
    }
    for (const ms of [0, 1, 2, 13, 999, 10_000, 86_400_000, 604_800_000]) {
      expect(widthBucket(ms)).toBe(latencyBucket(ms));
    }
  });
});
