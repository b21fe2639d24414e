import { sql } from 'kysely';
import { Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import type { Db } from '../db/database';
import { withTimeout } from '../db/with-timeout';

/**
 * sw_status_clock_offset_seconds: this replica's clock minus the database's, read on scrape.
 * Each replica stamps the callbacks it receives with its own clock, and those times decide
 * conflicts between outcomes without a provider timestamp and measure a message's latency in
 * the stats: replicas whose clocks disagree by seconds skew both (NTP keeps them within
 * milliseconds; a node without it drifts). The database's clock is the one every replica can
 * be compared with. The answer's arrival stands for the moment PostgreSQL read its clock: off
 * by the answer's trip back, milliseconds, not by time spent waiting for a connection.
 */
export function registerClockOffsetMetric(registry: Registry, db: Db): void {
  if (registry.getSingleMetric(NAME)) return;
  // One query at a time, as for the feed's lag (feed/feed-metrics.ts): a database that stopped
  // answering holds at most one connection for this gauge.
  let asking: Promise<number> | undefined;
  new Gauge({
    name: NAME,
    help: "This replica's clock minus the database's, in seconds: replicas stamp receive times with their own clocks",
    registers: [registry],
    async collect() {
      asking ??= readOffset(db).finally(() => {
        asking = undefined;
      });
      try {
        this.set(await withTimeout(asking, QUERY_WAIT_MS));
      } catch {
        // Not answered: the gauge keeps its last value; readiness reports the outage.
      }
    },
  });
}

const NAME = 'sw_status_clock_offset_seconds';

/** Within Prometheus's scrape timeout with room for the other series (feed-metrics.ts). */
const QUERY_WAIT_MS = 1_500;

async function readOffset(db: Db): Promise<number> {
  const { rows } = await sql<{ ms: number }>`
    SELECT extract(epoch FROM clock_timestamp())::float8 * 1000 AS ms`.execute(db);
  const answeredAt = Date.now();
  return (answeredAt - rows[0]!.ms) / 1000;
}
