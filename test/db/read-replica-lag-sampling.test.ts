import { Kysely, PostgresDialect } from 'kysely';
import type { PostgresPool, PostgresPoolClient } from 'kysely';
import { Registry } from 'prom-client';
import {
  READ_REPLICA_LAG_METRIC,
  registerReadReplicaMetrics,
} from '../../src/db/read-replica-metrics';
import { MAX_REPLICA_LAG_MS, standbyOnly } from '../../src/db/standby-only';
import type { Database } from '../../src/db/database';

/**
 * sw_status_read_replica_lag_seconds with the production defaults (a reader check at most every
 * 5 s per connection, Prometheus scraping every 30 s: k8s/components/monitoring/servicemonitor.yaml)
 * on a service whose reader has no traffic but the scrapes. The primary's WAL position is
 * sampled only at checks; the gauge must not be the age of the first sample past the standby's
 * position, which is short by up to a whole sampling interval (a standby 45 s behind read 30 at
 * every scrape, and SwStatusReadReplicaLagging, `> 30` for 5m, never fired between 30 and 60 s).
 *
 * The PostgreSQL servers are simulated at the pool boundary (a primary writing 1 kB/ms, a
 * standby replaying with a fixed delay); everything above the pool is the service's own code.
 */

const lsnText = (bytes: number): string => {
  const high = Math.floor(bytes / 2 ** 32);
  const low = bytes % 2 ** 32;
  return `${high.toString(16).toUpperCase()}/${low.toString(16).toUpperCase()}`;
};
const lsnValue = (lsn: string): number => {
  const [high, low] = lsn.split('/');
  return parseInt(high!, 16) * 2 ** 32 + parseInt(low!, 16);
};

test('When the standby stays 45 s behind a primary that writes all the time and only scrapes read, then the lag gauge reads about 45 s', async () => {
  const delayMs = 45_000;
  let now = 1_000_000; // the monotonic clock standbyOnly is given (ms)
  const start = now;
  const primaryLsn = (at: number): number => 0x1000000 + (at - start + 600_000) * 1_000;
  const identity = { cluster: '7', database: 'sw_status', databaseOid: '16384' };

  const fakePool: PostgresPool = {
    async connect(): Promise<PostgresPoolClient> {
      return {
        async query(sqlText: string, parameters: readonly unknown[]) {
          if (sqlText.includes('pg_is_in_recovery')) {
            const replayed = lsnText(primaryLsn(now - delayMs));
            const must = parameters[0] as string | null;
            return {
              command: 'SELECT',
              rowCount: 1,
              rows: [
                {
                  standby: true,
                  started: 'standby-start',
                  ...identity,
                  caughtUp: must === null || lsnValue(replayed) >= lsnValue(must),
                  replayed,
                  user: 'reader',
                  unreadable: [],
                },
              ],
            };
          }
          return { command: 'SELECT', rowCount: 1, rows: [{ '?column?': 1 }] };
        },
        release: () => undefined,
      } as unknown as PostgresPoolClient;
    },
    end: async () => undefined,
  };

  let lag: number | undefined;
  const pool = standbyOnly(fakePool, {
    writerState: async () => ({
      ...identity,
      started: 'primary-start',
      lsn: lsnText(primaryLsn(now)),
    }),
    clock: () => now,
    onLag: (seconds) => {
      lag = seconds;
    },
  });
  const readDb = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const registry = new Registry();
  registerReadReplicaMetrics(registry, { readDb: readDb as never, lagSeconds: () => lag });

  const scrape = async (): Promise<number> => {
    const text = await registry.metrics();
    const line = text.split('\n').find((l) => l.startsWith(`${READ_REPLICA_LAG_METRIC} `))!;
    return Number(line.split(' ')[1]);
  };

  // Ten minutes of scrapes every 30 s, nothing else reading from the replica.
  const scraped: number[] = [];
  for (let i = 0; i < 20; i++) {
    scraped.push(await scrape());
    now += 30_000;
  }
  expect(delayMs).toBeLessThan(MAX_REPLICA_LAG_MS); // reads are still served meanwhile
  const lastFive = scraped.slice(-10); // the alert's `for: 5m`
  // The standby is 45 s behind the whole time: the gauge should say so (within a check's 5 s).
  expect(Math.min(...lastFive)).toBeGreaterThan(40);
  await readDb.destroy();
});
