import { Client } from 'pg';
import type { Pool } from 'pg';

/**
 * An operator's session holding message `id`'s row locked: `SELECT … FOR UPDATE` in a
 * transaction left open, until the returned client rolls back, commits or ends.
 */
export async function holdRowLock(url: string, id: string): Promise<Client> {
  const client = new Client({ connectionString: url });
  client.on('error', () => undefined); // the database is dropped under it if a test fails
  await client.connect();
  await client.query('BEGIN');
  await client.query('SELECT 1 FROM messages WHERE id = $1 FOR UPDATE', [id]);
  return client;
}

/** The sessions of `pool`'s database waiting for a lock (a lock holder's own is idle). */
export async function sessionsWaitingForLocks(pool: Pool): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND wait_event_type = 'Lock'`,
  );
  return rows[0]!.n;
}
