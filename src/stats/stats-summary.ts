import { errorReason } from '../messages/error-reasons';
import { latencyBucketValue } from '../messages/rollup';
import { CANONICAL_STATUSES } from '../messages/statuses';
import type { Api } from '../messages/statuses';

/**
 * The pure half of GET /v1/stats: which stored counts answer a window, and what they add up to.
 *
 * Counts are kept per minute (and per hour) in which messages were first seen. A window with
 * arbitrary edges is answered from the hour rollups for its whole hours, the minute rollups for
 * its other whole minutes, the deltas not yet folded into either, and — for the part-minutes
 * at its two edges — the messages themselves. Every piece is exact, and none overlaps another:
 * the total is exactly what a scan of `messages` over the window gives.
 */

export type Bucket = 'minute' | 'hour' | 'day';

export type Range = readonly [from: number, to: number];

export interface StatsPlan {
  /** Read from the hour rollups (stats_hour_counts, stats_hour_latency). */
  hours: Range | null;
  /** Read from the minute rollups (stats_minute_counts, stats_minute_latency). */
  minutes: Range[];
  /** Whole minutes of the window: the deltas to add. */
  deltas: Range | null;
  /** Part-minutes at the edges: counted from `messages`. */
  edges: Range[];
}

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

const ceilTo = (t: number, unit: number) => Math.ceil(t / unit) * unit;
const floorTo = (t: number, unit: number) => Math.floor(t / unit) * unit;
const nonEmpty = (ranges: Range[]): Range[] => ranges.filter(([from, to]) => from < to);

/** How to answer [since, until): hour rollups only where the series is not per minute. */
export function planWindow(since: number, until: number, bucket?: Bucket): StatsPlan {
  const firstMinute = ceilTo(since, MINUTE);
  const lastMinute = floorTo(until, MINUTE);
  if (firstMinute >= lastMinute) {
    return { hours: null, minutes: [], deltas: null, edges: [[since, until]] };
  }
  const edges = nonEmpty([
    [since, firstMinute],
    [lastMinute, until],
  ]);
  const firstHour = ceilTo(firstMinute, HOUR);
  const lastHour = floorTo(lastMinute, HOUR);
  if (bucket === 'minute' || firstHour >= lastHour) {
    return {
      hours: null,
      minutes: [[firstMinute, lastMinute]],
      deltas: [firstMinute, lastMinute],
      edges,
    };
  }
  return {
    hours: [firstHour, lastHour],
    minutes: nonEmpty([
      [firstMinute, firstHour],
      [lastHour, lastMinute],
    ]),
    deltas: [firstMinute, lastMinute],
    edges,
  };
}

/** Counts under one key: what the rollups, the deltas and the edge messages all yield. */
export interface CountRow {
  api: string;
  status: string;
  /** '' when none. */
  errorCode: string;
  /** -1 when not final (or unknown). */
  latencyBucket: number;
  messages: number;
  conflicts: number;
  finalWithin10s: number;
}

/** Final messages per latency bucket (≥ 0): the histogram the percentiles are read from. */
export interface LatencyRow {
  latencyBucket: number;
  messages: number;
}

/** Counts per series bucket start (epoch ms) and status. */
export interface SeriesRow {
  start: number;
  status: string;
  messages: number;
}

export interface StatsDto {
  created_since: string;
  created_until: string;
  total: number;
  by_status: Record<string, number>;
  delivery_rate: number | null;
  by_error: Array<{ api: string; error_code: string; error_reason: string | null; count: number }>;
  latency_ms: { p50: number | null; p95: number | null; p99: number | null };
  final_within_10s: number | null;
  stuck: number;
  conflicts: number;
  series?: Array<{
    start: string;
    total: number;
    delivered: number;
    undelivered: number;
    failed: number;
  }>;
}

type Outcome = 'delivered' | 'undelivered' | 'failed';

/**
 * The outcome a current status counts as in the rate and the series, or null: `read` is
 * delivered — SignalWire's native API reports a read receipt after the delivery, and a
 * message's current status then ranks above `delivered`; counting only `delivered` would make
 * the rate fall as recipients read their messages.
 */
function outcomeOf(status: string): Outcome | null {
  if (status === 'read') return 'delivered';
  return status === 'delivered' || status === 'undelivered' || status === 'failed' ? status : null;
}

const BUCKET_MS: Record<Bucket, number> = { minute: MINUTE, hour: HOUR, day: DAY };
/** A series longer than this is refused (400): ask for a coarser bucket. */
export const MAX_SERIES_POINTS = 2_000;

export function seriesPoints(since: number, until: number, bucket: Bucket): number {
  const unit = BUCKET_MS[bucket];
  return (ceilTo(until, unit) - floorTo(since, unit)) / unit;
}

/**
 * The histogram is `latency` plus the latency buckets of `counts`: the rollups keep it apart
 * (their counts carry -1), the edge messages carry their own.
 */
export function summarize(
  window: { since: number; until: number; bucket?: Bucket; stuck: number },
  counts: readonly CountRow[],
  series: readonly SeriesRow[],
  latency: readonly LatencyRow[],
): StatsDto {
  const byStatus: Record<string, number> = Object.fromEntries(
    CANONICAL_STATUSES.map((status) => [status, 0]),
  );
  const byError = new Map<string, { api: string; error_code: string; count: number }>();
  const histogram = new Map<number, number>();
  let total = 0;
  let conflicts = 0;
  let finalWithin10s = 0;
  for (const row of counts) {
    total += row.messages;
    conflicts += row.conflicts;
    finalWithin10s += row.finalWithin10s;
    byStatus[row.status] = (byStatus[row.status] ?? 0) + row.messages;
    if (row.errorCode !== '') {
      const key = `${row.api} ${row.errorCode}`;
      const entry = byError.get(key) ?? { api: row.api, error_code: row.errorCode, count: 0 };
      entry.count += row.messages;
      byError.set(key, entry);
    }
    if (row.latencyBucket >= 0) {
      histogram.set(row.latencyBucket, (histogram.get(row.latencyBucket) ?? 0) + row.messages);
    }
  }
  for (const row of latency) {
    histogram.set(row.latencyBucket, (histogram.get(row.latencyBucket) ?? 0) + row.messages);
  }
  const outcomes: Record<Outcome, number> = { delivered: 0, undelivered: 0, failed: 0 };
  for (const [status, count] of Object.entries(byStatus)) {
    const outcome = outcomeOf(status);
    if (outcome !== null) outcomes[outcome] += count;
  }
  const delivered = outcomes.delivered;
  const ended = delivered + outcomes.undelivered + outcomes.failed;
  const dto: StatsDto = {
    created_since: new Date(window.since).toISOString(),
    created_until: new Date(window.until).toISOString(),
    total,
    by_status: byStatus,
    delivery_rate: ended === 0 ? null : delivered / ended,
    by_error: [...byError.values()]
      .filter((entry) => entry.count > 0)
      .sort(
        (a, b) =>
          b.count - a.count ||
          a.api.localeCompare(b.api) ||
          a.error_code.localeCompare(b.error_code),
      )
      .map((entry) => ({
        api: entry.api,
        error_code: entry.error_code,
        error_reason: errorReason(entry.api as Api, entry.error_code),
        count: entry.count,
      })),
    latency_ms: percentiles(histogram),
    final_within_10s: total === 0 ? null : finalWithin10s / total,
    stuck: window.stuck,
    conflicts,
  };
  if (window.bucket) dto.series = fillSeries(window.since, window.until, window.bucket, series);
  return dto;
}

/**
 * Nearest-rank percentiles from the latency histogram: the value of the bucket holding the
 * ⌈p·n⌉-th smallest latency, within 4 % of that latency (src/messages/rollup.ts).
 */
function percentiles(histogram: ReadonlyMap<number, number>): StatsDto['latency_ms'] {
  const buckets = [...histogram.entries()].filter(([, n]) => n > 0).sort(([a], [b]) => a - b);
  const n = buckets.reduce((sum, [, count]) => sum + count, 0);
  const at = (p: number): number | null => {
    if (n === 0) return null;
    const rank = Math.ceil(p * n);
    let seen = 0;
    for (const [bucket, count] of buckets) {
      seen += count;
      if (seen >= rank) return Math.round(latencyBucketValue(bucket) * 10) / 10;
    }
    return null;
  };
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

/** One point per bucket from the one holding `since` to the one holding `until` (exclusive). */
function fillSeries(
  since: number,
  until: number,
  bucket: Bucket,
  rows: readonly SeriesRow[],
): NonNullable<StatsDto['series']> {
  const unit = BUCKET_MS[bucket];
  const points = new Map<
    number,
    { total: number; delivered: number; undelivered: number; failed: number }
  >();
  for (let start = floorTo(since, unit); start < until; start += unit) {
    points.set(start, { total: 0, delivered: 0, undelivered: 0, failed: 0 });
  }
  for (const row of rows) {
    const point = points.get(floorTo(row.start, unit));
    if (!point) continue;
    point.total += row.messages;
    const outcome = outcomeOf(row.status);
    if (outcome !== null) point[outcome] += row.messages;
  }
  return [...points.entries()].map(([start, point]) => ({
    start: new Date(start).toISOString(),
    ...point,
  }));
}
