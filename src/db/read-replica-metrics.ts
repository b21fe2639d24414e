import { sql } from 'kysely';
import { Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import type { Db } from './database';
import { withTimeout } from './with-timeout';

export const READ_REPLICA_LAG_METRIC = 'sw_status_read_replica_lag_seconds';

/**
 * How long a scrape waits for the read that brings the reader's check about: far above a
 * check's few milliseconds, well below Prometheus's scrape timeout (10 s, servicemonitor.yaml),
 * so a standby that stops answering does not hold /metrics and every other series with it.
 */
const LAG_READ_WAIT_MS = 1_500;

/**
 * sw_status_read_replica_lag_seconds, with DATABASE_READ_URL only: how far behind the primary
 * the standby that lists, stats, the feed and the status page read from is — the seconds since
 * the primary had written what it has yet to replay (db/standby-only.ts). Lists and the feed
 * serve a standby's data with a 200 until it is MAX_REPLICA_LAG_MS behind (then 503): this is
 * where an operator sees dashboards going stale before reads are refused.
 *
 * The reader's own checks measure it; a scrape brings one about (one `SELECT 1` through the
 * reader's pool: each connection is checked at most every few seconds), so the gauge does not
 * freeze while nobody reads. Until the first check it reads 0.
 */
export function registerReadReplicaMetrics(
  registry: Registry,
  { readDb, lagSeconds }: { readDb: Db; lagSeconds: () => number | undefined },
): void {
  // One per registry: a second internal app on the same metrics (a test) reuses the first.
  if (registry.getSingleMetric(READ_REPLICA_LAG_METRIC)) return;
  // The read a scrape is waiting for; one at a time, as the feed's lag query (feed-metrics.ts).
  let reading: Promise<unknown> | undefined;
  new Gauge({
    name: READ_REPLICA_LAG_METRIC,
    help: 'Seconds since the primary had written what the DATABASE_READ_URL standby has yet to replay (0: caught up)',
    registers: [registry],
    async collect() {
      reading ??= sql`SELECT 1`
        .execute(readDb)
        // Refused or unreachable: the check before the refusal measured the lag all the same.
        .catch(() => undefined)
        .finally(() => {
          reading = undefined;
        });
      await withTimeout(reading, LAG_READ_WAIT_MS).catch(() => undefined);
      const lag = lagSeconds();
      if (lag !== undefined) this.set(lag);
    },
  });
}
