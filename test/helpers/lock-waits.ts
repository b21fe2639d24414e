import { Client } from 'pg';

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

/** Backends of `url`'s database waiting for a lock now: the reads a test's lock holds. */
export async function backendsWaitingOnLock(url: string): Promise<number> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND wait_event_type = 'Lock'`,
    );
    return rows[0]!.n;
  } finally {
    await client.end();
  }
}
