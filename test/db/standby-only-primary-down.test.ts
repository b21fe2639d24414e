import type { PostgresPool, PostgresPoolClient } from 'kysely';
import { standbyOnly } from '../../src/db/standby-only';
import type { WriterState } from '../../src/db/standby-only';
import { withTimeout } from '../../src/db/with-timeout';

/**
 * The standby check asks DATABASE_URL's server who it is and how far it has written. While the
 * primary does not answer — an outage of the primary, exactly when a replica's reads matter —
 * a standby it already knows keeps being read from, judged by what the primary said last, and
 * without waiting for the primary's answer (one that hangs would hold every check, and every
 * read behind it, for the ask's deadline); only a reader never checked against the primary is
 * refused with the primary's error. (test/db/read-replica-*.test.ts cover the check against
 * real servers.)
 */

const PRIMARY: WriterState = {
  cluster: '7312345678901234567',
  database: 'sw_status',
  databaseOid: '16384',
  started: '2026-12-05 08:00:00+00',
  lsn: '0/3000000',
};

/** A pool whose one server is a standby of PRIMARY that has replayed all it was sent. */
function standbyPool(): PostgresPool {
  const client = {
    query: async () => ({
      rows: [
        {
          standby: true,
          started: '2026-12-05 08:01:00+00',
          cluster: PRIMARY.cluster,
          database: PRIMARY.database,
          databaseOid: PRIMARY.databaseOid,
          caughtUp: true,
          user: 'sw_status_reader',
          unreadable: [],
        },
      ],
    }),
    release: () => undefined,
  } as unknown as PostgresPoolClient;
  return { connect: async () => client, end: async () => undefined };
}

test('When the primary stops answering after the standby was checked, then the standby is still read from', async () => {
  let now = 0;
  let primaryUp = true;
  const pool = standbyOnly(standbyPool(), {
    writerState: async () => {
      if (!primaryUp) throw new Error('connect ECONNREFUSED (DATABASE_URL)');
      return PRIMARY;
    },
    checkEveryMs: 1_000,
    maxLagMs: 5_000,
    clock: () => now,
  });
  await expect(pool.connect()).resolves.toBeDefined();

  primaryUp = false;
  for (const later of [2_000, 10_000, 60_000]) {
    now = later;
    await expect(pool.connect()).resolves.toBeDefined();
  }
});

test('When the primary does not answer the very first check, then the reader is refused with its error', async () => {
  const pool = standbyOnly(standbyPool(), {
    writerState: async () => {
      throw new Error('connect ECONNREFUSED (DATABASE_URL)');
    },
  });
  await expect(pool.connect()).rejects.toThrow('ECONNREFUSED');
});

test('When the primary stops answering without refusing (a partition) after the standby was checked, then checks of the standby do not wait for it', async () => {
  const WRITER_DEADLINE_MS = 600; // stands for READER_QUERY_TIMEOUT_MS (7 s)
  let now = 0;
  let primaryUp = true;
  const pool = standbyOnly(standbyPool(), {
    // As database.ts builds it: the writer's query, bounded by withTimeout.
    writerState: () =>
      withTimeout(
        primaryUp ? Promise.resolve(PRIMARY) : new Promise<WriterState>(() => undefined),
        WRITER_DEADLINE_MS,
        'DATABASE_URL: no answer',
      ),
    checkEveryMs: 1_000,
    clock: () => now,
  });
  await pool.connect();

  primaryUp = false;
  const waited: number[] = [];
  for (const later of [2_000, 4_000, 6_000]) {
    now = later;
    const started = Date.now();
    await pool.connect();
    waited.push(Date.now() - started);
  }
  expect(Math.max(...waited)).toBeLessThan(WRITER_DEADLINE_MS / 2);
});
