import type { MessageState } from './projection';
import type { Api } from './statuses';

/**
 * What one message adds to the stats rollups (db/migrations/0003, GET /v1/stats): a count of 1
 * under the key (minute first seen, api, status, error code, latency bucket). The write path
 * appends, per batch, the net change of these contributions — −1 under a message's old key, +1
 * under its new one — so the rollups always equal a scan of `messages`.
 */
export interface RollupKey {
  /** The minute the message was first seen, epoch ms. */
  minute: number;
  api: string;
  status: string;
  /** '' when the message has no error code. */
  errorCode: string;
  /** -1 while the message is not final (or its latency is unknown); see latencyBucket. */
  latencyBucket: number;
}

export interface RollupDelta extends RollupKey {
  messages: number;
  conflicts: number;
  finalWithin10s: number;
}

const MINUTE_MS = 60_000;

/**
 * Latency buckets grow by 8 % each: the geometric middle of a bucket is within 4 % of any
 * value in it, so a percentile read from the buckets is within 4 % of the exact one (DESIGN §6
 * asks for 5 %). Bucket 0 holds 0 ms exactly; bucket k ≥ 1 holds [1.08^(k-1), 1.08^k) ms;
 * a week is bucket 246.
 */
export const LATENCY_GROWTH = 1.08;
const LOG_GROWTH = Math.log(LATENCY_GROWTH);
/** A message final within this many ms counts in `final_within_10s`. */
export const FINAL_WITHIN_MS = 10_000;

export function latencyBucket(ms: number): number {
  if (ms < 1) return 0;
  return 1 + Math.floor(Math.log(ms) / LOG_GROWTH);
}

/**
 * The least whole number of milliseconds in each bucket 1, 2, … up to the bucket of
 * Number.MAX_SAFE_INTEGER, found by bisection on latencyBucket itself: for whole milliseconds
 * `ms`, the number of floors ≤ ms is latencyBucket(ms) (several small buckets hold no whole
 * millisecond and share a floor). PostgreSQL's width_bucket(ms, floors) counts exactly that, so
 * SQL that buckets latencies (the stats rebuild) agrees with this code at every edge. Found
 * when first asked, not at import: only the rebuild needs them, not every process's start.
 */
export function latencyBucketFloors(): readonly number[] {
  bucketFloors ??= findBucketFloors();
  return bucketFloors;
}

let bucketFloors: readonly number[] | undefined;

function findBucketFloors(): number[] {
  const floors: number[] = [];
  const last = latencyBucket(Number.MAX_SAFE_INTEGER);
  for (let bucket = 1; bucket <= last; bucket++) {
    let low = 1;
    let high = Number.MAX_SAFE_INTEGER;
    while (low < high) {
      // Not (low + high) / 2: past 2^53 the sum is not exact, and the bisection would stall.
      const middle = low + Math.floor((high - low) / 2);
      if (latencyBucket(middle) >= bucket) high = middle;
      else low = middle + 1;
    }
    floors.push(low);
  }
  return floors;
}

/** The value a bucket stands for: 0, or the geometric middle of its range. */
export function latencyBucketValue(bucket: number): number {
  if (bucket <= 0) return 0;
  return Math.pow(LATENCY_GROWTH, bucket - 0.5);
}

/** What a message's contribution depends on. */
export type RollupFacts = Pick<
  MessageState,
  'createdAt' | 'firstTerminalAt' | 'api' | 'status' | 'errorCode' | 'conflict'
>;

/**
 * First seen → first final status, in ms; null while not final. A message first seen through
 * an event older than the one that made it final cannot have a negative latency: 0.
 */
export function latencyMs(state: RollupFacts): number | null {
  if (!state.firstTerminalAt) return null;
  return Math.max(0, state.firstTerminalAt.getTime() - state.createdAt.getTime());
}

export function minuteOf(date: Date): number {
  return Math.floor(date.getTime() / MINUTE_MS) * MINUTE_MS;
}

/** The contribution of one message in this state. */
export function contributionOf(state: RollupFacts): RollupDelta {
  const latency = latencyMs(state);
  return {
    minute: minuteOf(state.createdAt),
    api: state.api,
    status: state.status,
    errorCode: state.errorCode ?? '',
    latencyBucket: latency === null ? -1 : latencyBucket(latency),
    messages: 1,
    conflicts: state.conflict ? 1 : 0,
    finalWithin10s: latency !== null && latency <= FINAL_WITHIN_MS ? 1 : 0,
  };
}

/** A `messages` row's columns that decide its contribution. */
export interface StoredRollupFacts {
  created_at: Date;
  first_terminal_at: Date | null;
  api: Api;
  status: string;
  error_code: string | null;
  conflict: boolean;
}

/** The contribution of a stored message (the rebuild's and retention's view of it). */
export function contributionOfRow(message: StoredRollupFacts): RollupDelta {
  return contributionOf({
    createdAt: message.created_at,
    firstTerminalAt: message.first_terminal_at,
    api: message.api,
    status: message.status,
    errorCode: message.error_code,
    conflict: message.conflict,
  });
}

/** A delta as a `stats_deltas` row: snake_case, `minute` in epoch milliseconds. */
export function deltaRow(delta: RollupDelta) {
  return {
    minute: delta.minute,
    api: delta.api,
    status: delta.status,
    error_code: delta.errorCode,
    latency_bucket: delta.latencyBucket,
    messages: delta.messages,
    conflicts: delta.conflicts,
    final_within_10s: delta.finalWithin10s,
  };
}

/** Sums of contributions per key, for one batch's deltas. */
export interface RollupSums {
  add(delta: RollupDelta, sign?: 1 | -1): void;
  /** A message moved from one state to another: −old, +new (nothing when the keys agree). */
  move(from: MessageState, to: MessageState): void;
  /** The sums that are not zero. */
  nonZero(): RollupDelta[];
}

export function rollupSums(): RollupSums {
  const sums = new Map<string, RollupDelta>();
  const add = (delta: RollupDelta, sign: 1 | -1 = 1): void => {
    const key = `${delta.minute}|${delta.api}|${delta.status}|${delta.errorCode}|${delta.latencyBucket}`;
    const sum = sums.get(key);
    if (sum) {
      sum.messages += sign * delta.messages;
      sum.conflicts += sign * delta.conflicts;
      sum.finalWithin10s += sign * delta.finalWithin10s;
    } else {
      sums.set(key, {
        ...delta,
        messages: sign * delta.messages,
        conflicts: sign * delta.conflicts,
        finalWithin10s: sign * delta.finalWithin10s,
      });
    }
  };
  return {
    add,
    move(from, to) {
      add(contributionOf(from), -1);
      add(contributionOf(to), 1);
    },
    nonZero: () =>
      [...sums.values()].filter(
        (sum) => sum.messages !== 0 || sum.conflicts !== 0 || sum.finalWithin10s !== 0,
      ),
  };
}
