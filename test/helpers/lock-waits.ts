import { Client } from 'pg';

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
