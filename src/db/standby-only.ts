import type { PostgresPool, PostgresPoolClient } from 'kysely';

/**
 * DATABASE_READ_URL's pool, which hands out connections only while the server is a standby.
 *
 * The change feed, lists and stats read from a streaming hot standby (DESIGN §13). Once that
 * standby is promoted — a failover that chose another node, a replica split off by hand — it
 * no longer follows the primary: its reads still answer, from a history that stopped at the
 * promotion, so the feed gave empty pages for ever and lists and stats froze, all with a 200
 * and nothing in the logs. Reads are answered 503 instead (db/database-unavailable.ts counts
 * this error as the database being unavailable), which a dashboard shows and an alert on 5xx
 * sees, until DATABASE_READ_URL leads to a standby again.
 *
 * A connection is checked when it is handed out, at most once every `checkEveryMs` per pool: a
 * promotion ends no session, so a connection opened before it would otherwise be trusted for
 * its whole life.
 */
export const NOT_A_STANDBY =
  'DATABASE_READ_URL does not lead to a standby (pg_is_in_recovery() is false): it no longer follows the primary';

export function standbyOnly(
  pool: PostgresPool,
  { checkEveryMs = 5_000, clock = Date.now }: { checkEveryMs?: number; clock?: () => number } = {},
): PostgresPool {
  let checkedAt = -Infinity;
  let standby = true;
  return {
    async connect(): Promise<PostgresPoolClient> {
      const client = await pool.connect();
      const now = clock();
      if (now - checkedAt >= checkEveryMs) {
        try {
          const { rows } = await client.query<{ standby: boolean }>(
            'SELECT pg_is_in_recovery() AS standby',
            [],
          );
          standby = rows[0]?.standby === true;
          checkedAt = now;
        } catch (error) {
          client.release();
          throw error;
        }
      }
      if (!standby) {
        client.release();
        throw new Error(NOT_A_STANDBY);
      }
      return client;
    },
    end: () => pool.end(),
  };
}
