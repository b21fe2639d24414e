import type { PostgresPool, PostgresPoolClient } from 'kysely';
import { standbyOnly } from '../../src/db/standby-only';
import type { WriterState } from '../../src/db/standby-only';

/**
 * DATABASE_READ_URL's lag check (src/db/standby-only.ts) times its samples of the primary's WAL
 * position on the monotonic clock. On the wall clock, with the replica's clock stepped back
 * (NTP makestep, a VM resumed), every sample taken before the step lay "in the future": the
 * primary was not asked again and no sample was old enough, so no lag was judged — a standby
 * that stopped replaying kept serving lists, stats, the feed and the status page stale for as
 * long as the step, instead of answering 503 after MAX_REPLICA_LAG_MS.
 *
 * Shaped like test/db/standby-only-primary-down.test.ts (a fake pool: a real standby whose
 * replay stops is out of reach here). Both clocks are mocked: the wall clock (Date.now) steps
 * back an hour, the monotonic one (performance.now) never does.
 */

const PRIMARY = {
  cluster: '7312345678901234567',
  database: 'sw_status',
  databaseOid: '16384',
  started: '2026-12-05 08:00:00+00',
};

/** LSNs as numbers for the fake: '0/N'. */
const lsnNumber = (lsn: string) => parseInt(lsn.split('/')[1]!, 16);

let primaryLsn = 0x3000000;
const standbyReplayed = 0x3000000; // replication stopped here

function standbyPool(): PostgresPool {
  const client = {
    query: async (_sql: string, params: unknown[]) => {
      const mustHave = params[0] as string | null;
      return {
        rows: [
          {
            standby: true,
            started: '2026-12-05 08:01:00+00',
            cluster: PRIMARY.cluster,
            database: PRIMARY.database,
            databaseOid: PRIMARY.databaseOid,
            caughtUp: mustHave === null || standbyReplayed >= lsnNumber(mustHave),
            user: 'sw_status_reader',
            unreadable: [],
          },
        ],
      };
    },
    release: () => undefined,
  } as unknown as PostgresPoolClient;
  return { connect: async () => client, end: async () => undefined };
}

afterEach(() => jest.restoreAllMocks());

/**
 * A standby that replays everything, then nothing more for 30 s while the primary goes on
 * writing (5 s lag bound), the wall clock stepped back `stepMs` after the first check; what
 * the check says then.
 */
async function standbyStopsReplaying(stepMs: number): Promise<void> {
  primaryLsn = 0x3000000;
  const wall0 = Date.now();
  const mono0 = performance.now();
  let elapsed = 0; // real time passing, as both clocks see it
  let stepped = 0; // the wall clock's step back
  jest.spyOn(Date, 'now').mockImplementation(() => wall0 + elapsed - stepped);
  jest.spyOn(performance, 'now').mockImplementation(() => mono0 + elapsed);

  const pool = standbyOnly(standbyPool(), {
    writerState: async (): Promise<WriterState> => ({
      ...PRIMARY,
      lsn: `0/${primaryLsn.toString(16).toUpperCase()}`,
    }),
    checkEveryMs: 1_000,
    maxLagMs: 5_000,
  });
  await expect(pool.connect()).resolves.toBeDefined(); // caught up: everything replayed

  stepped = stepMs;
  // The primary goes on writing; the standby replays nothing more.
  for (let s = 1; s <= 30; s++) {
    elapsed = s * 1_000;
    primaryLsn += 0x100000;
    await pool.connect().catch(() => undefined);
  }
  elapsed = 31_000;
  await pool.connect();
}

test('When the replica’s wall clock steps back an hour and the standby then stops replaying, then its reads are still refused once it lags MAX_REPLICA_LAG_MS', async () => {
  // NTP steps the wall clock back an hour: 30 s behind with a 5 s bound, refused all the same.
  await expect(standbyStopsReplaying(3_600_000)).rejects.toThrow(/not replayed/);
});

test('When the clock does not step, then the same standby stopping without a clock step is refused', async () => {
  await expect(standbyStopsReplaying(0)).rejects.toThrow(/not replayed/);
});
