import { sql } from 'kysely';
import type { Db } from '../../../src/db/database';

/** The wide rollups (0003) and the narrow ones derived from them (0009), per time unit. */
const UNITS = [
  { time: 'hour', wide: 'stats_hours', counts: 'stats_hour_counts', latency: 'stats_hour_latency' },
  {
    time: 'minute',
    wide: 'stats_minutes',
    counts: 'stats_minute_counts',
    latency: 'stats_minute_latency',
  },
] as const;

type Rows = Array<Record<string, unknown>>;

async function rows(db: Db, query: string): Promise<Rows> {
  return (await sql.raw<Record<string, unknown>>(query).execute(db)).rows;
}

/**
 * Expects each narrow rollup to hold exactly the projection of its wide table: the sums per
 * (time, api, status, error code), and per (time, api, latency bucket ≥ 0), without the keys
 * whose messages sum to zero (removed, as the fold removes them from the wide tables).
 * Returns how many narrow rows there are, so that a test can tell it compared something.
 */
export async function expectNarrowRollupsEqualWide(db: Db): Promise<number> {
  let narrowRows = 0;
  for (const { time, wide, counts, latency } of UNITS) {
    const countsNow = await rows(
      db,
      `SELECT ${time} AS t, api, status, error_code, messages, conflicts, final_within_10s
       FROM ${counts} ORDER BY 1, 2, 3, 4`,
    );
    expect(countsNow).toEqual(
      await rows(
        db,
        `SELECT ${time} AS t, api, status, error_code, sum(messages)::bigint AS messages,
                sum(conflicts)::bigint AS conflicts,
                sum(final_within_10s)::bigint AS final_within_10s
         FROM ${wide} GROUP BY 1, 2, 3, 4 HAVING sum(messages) <> 0 ORDER BY 1, 2, 3, 4`,
      ),
    );
    const latencyNow = await rows(
      db,
      `SELECT ${time} AS t, api, latency_bucket, messages FROM ${latency} ORDER BY 1, 2, 3`,
    );
    expect(latencyNow).toEqual(
      await rows(
        db,
        `SELECT ${time} AS t, api, latency_bucket, sum(messages)::bigint AS messages
         FROM ${wide} WHERE latency_bucket >= 0
         GROUP BY 1, 2, 3 HAVING sum(messages) <> 0 ORDER BY 1, 2, 3`,
      ),
    );
    // Implied by the equality above; said outright because it is the deletion rule.
    expect([...countsNow, ...latencyNow].filter((row) => Number(row.messages) === 0)).toEqual([]);
    narrowRows += countsNow.length + latencyNow.length;
  }
  return narrowRows;
}
