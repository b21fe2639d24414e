import type { PostgresPool, PostgresPoolClient } from 'kysely';

/**
 * DATABASE_READ_URL's pool, which hands out connections only to a server that reads what the
 * primary has: a standby, or the primary itself (DATABASE_READ_URL naming DATABASE_URL's
 * server, or an address that moved to the new primary after a failover).
 *
 * The change feed, lists and stats read from a streaming hot standby (DESIGN §13). Once that
 * standby is promoted and split off — a failover that chose another node, a replica promoted
 * by hand — it no longer follows the primary: its reads still answer, from a history that
 * stopped at the promotion, so the feed gave empty pages for ever and lists and stats froze,
 * all with a 200 and nothing in the logs. Reads are answered 503 instead
 * (db/database-unavailable.ts counts this error as the database being unavailable), which a
 * dashboard shows and an alert on 5xx sees, until DATABASE_READ_URL leads to a standby again.
 *
 * Each connection is checked when it is handed out, at most once every `checkEveryMs`: a
 * promotion ends no session, and behind one URL there may be several servers. (Behind
 * PgBouncer in transaction mode a check and the read that follows may still meet different
 * servers.) A server that is not in recovery is the primary itself when it started at the same
 * moment as DATABASE_URL's (`pg_postmaster_start_time()`).
 */
export const NOT_A_STANDBY =
  "DATABASE_READ_URL leads to a server that is neither a standby nor DATABASE_URL's: a promoted replica no longer follows the primary";

interface ServerState {
  standby: boolean;
  started: string;
}

export function standbyOnly(
  pool: PostgresPool,
  {
    writerStarted,
    checkEveryMs = 5_000,
    clock = Date.now,
  }: {
    /** DATABASE_URL's server's pg_postmaster_start_time(), as text. */
    writerStarted: () => Promise<string>;
    checkEveryMs?: number;
    clock?: () => number;
  },
): PostgresPool {
  const checkedAt = new WeakMap<PostgresPoolClient, number>();

  const follows = async (client: PostgresPoolClient): Promise<boolean> => {
    const { rows } = await client.query<ServerState>(
      'SELECT pg_is_in_recovery() AS standby, pg_postmaster_start_time()::text AS started',
      [],
    );
    const server = rows[0];
    if (server === undefined) return false;
    return server.standby || server.started === (await writerStarted());
  };

  return {
    async connect(): Promise<PostgresPoolClient> {
      const client = await pool.connect();
      const now = clock();
      if (now - (checkedAt.get(client) ?? -Infinity) < checkEveryMs) return client;
      let ok: boolean;
      try {
        ok = await follows(client);
      } catch (error) {
        client.release();
        throw error;
      }
      if (!ok) {
        client.release();
        throw new Error(NOT_A_STANDBY);
      }
      checkedAt.set(client, now);
      return client;
    },
    end: () => pool.end(),
  };
}
