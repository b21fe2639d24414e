import { sql } from 'kysely';
import request from 'supertest';
import type { Db } from '../../../src/db/database';
import type { Api } from '../../../src/messages/statuses';
import { TEST_API_TOKEN } from '../../helpers/test-app';
import type { TestApp } from '../../helpers/test-app';

/**
 * The exact counts of GET /v1/stats, and the same counts from a scan of `messages`: what the
 * rollups, the deltas not yet folded and the edge messages must add up to for any window. Plus
 * the seeded randomness of the tests that draw their workload, so that a failure can be replayed.
 */

/** The counts of a stats answer that are exact (not the latency percentiles, an estimate). */
export interface ExactCounts {
  total: number;
  /** Non-zero counts only, as a scan finds them. */
  by_status: Record<string, number>;
  conflicts: number;
  /** Messages final within 10 s: the answer's share times its total. */
  final: number;
  /** `"<api> <error code>"` → messages. */
  by_error: Record<string, number>;
}

export interface StatsBody {
  total: number;
  by_status: Record<string, number>;
  conflicts: number;
  final_within_10s: number | null;
  by_error: Array<{ api: string; error_code: string; count: number }>;
  series?: Array<{ start: string; total: number }>;
}

/** GET /v1/stats for [since, until); `extra` is more of the query string (`&bucket=hour`). */
export async function getStats(
  t: TestApp,
  since: Date,
  until: Date,
  extra = '',
): Promise<StatsBody> {
  const res = await request(t.internalApp)
    .get(
      `/v1/stats?created_since=${since.toISOString()}&created_until=${until.toISOString()}${extra}`,
    )
    .auth(TEST_API_TOKEN, { type: 'bearer' });
  if (res.status !== 200) throw new Error(`stats ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body as StatsBody;
}

export function exactCounts(body: StatsBody): ExactCounts {
  return {
    total: body.total,
    by_status: Object.fromEntries(Object.entries(body.by_status).filter(([, n]) => n !== 0)),
    conflicts: body.conflicts,
    final: body.final_within_10s === null ? 0 : Math.round(body.final_within_10s * body.total),
    by_error: Object.fromEntries(body.by_error.map((e) => [`${e.api} ${e.error_code}`, e.count])),
  };
}

/**
 * The same counts from a scan of `messages` first seen in [since, until) (of one API if given),
 * all in SQL: a second, independent computation, not the service's summary again.
 */
export async function scanCounts(
  db: Db,
  since: Date,
  until: Date,
  api?: Api,
): Promise<ExactCounts> {
  const { rows } = await sql<ExactCounts>`
    WITH w AS (
      SELECT * FROM messages
      WHERE created_at >= ${since} AND created_at < ${until}
        ${api === undefined ? sql`` : sql`AND api = ${api}`}
    )
    SELECT
      (SELECT count(*) FROM w)::int AS total,
      (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM
        (SELECT status, count(*)::int AS n FROM w GROUP BY 1) s) AS by_status,
      (SELECT count(*) FILTER (WHERE conflict) FROM w)::int AS conflicts,
      (SELECT count(*) FILTER (WHERE first_terminal_at <= created_at + interval '10 seconds')
        FROM w)::int AS final,
      (SELECT coalesce(jsonb_object_agg(api || ' ' || error_code, n), '{}') FROM
        (SELECT api, error_code, count(*)::int AS n FROM w
         WHERE error_code IS NOT NULL GROUP BY 1, 2) e) AS by_error`.execute(db);
  return rows[0]!;
}

/**
 * The seed of a test's random draws: `STATS_SEED=<n>` replays the run a failure names (the
 * data and the windows; the interleaving of concurrent work is the scheduler's), else a fixed
 * one, so that every run draws the same.
 */
export const STATS_SEED = seedFrom(process.env.STATS_SEED);

function seedFrom(value: string | undefined): number {
  if (value === undefined || value === '') return 20270314;
  if (!/^\d+$/.test(value)) throw new Error(`STATS_SEED must be a whole number, not ${value}`);
  return Number(value);
}

/** mulberry32: a small, fast 32-bit PRNG, plenty for choosing test data. Values in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4_294_967_296;
  };
}
