import { Gauge } from 'prom-client';
import type { Registry } from 'prom-client';
import { sql } from 'kysely';
import type { Db } from '../db/database';
import type { FeedSignal } from './feed-signal';

/**
 * The change feed's health on the service's registry, read on scrape:
 * - sw_status_feed_lag_seconds: age of the oldest open transaction that has written anything
 *   (it holds the feed's horizon: events committed after it started are delivered only once it
 *   ends; see src/feed/feed.repository.ts). 0 when none. Prepared transactions count too. To
 *   see other roles' sessions the database user needs pg_read_all_stats (pg_monitor).
 * - sw_status_feed_listener_up: 1 while other replicas' commit hints are received.
 * - sw_status_clock_offset_seconds: this replica's clock minus the database's, read by the same
 *   query (one statement, one connection at most per scrape). Each replica stamps the
 *   callbacks it receives with its own clock, and those times decide conflicts between
 *   outcomes without a provider timestamp and measure latency in the stats: replicas whose
 *   clocks disagree by seconds skew both (NTP keeps them within milliseconds; a node without
 *   it drifts). The database's clock is the one every replica can be compared with; the
 *   answer's arrival stands for the moment it was read (off by the trip back, not by any wait
 *   for a connection).
 */
export function registerFeedMetrics(
  registry: Registry,
  { db, signal }: { db: Db; signal: FeedSignal },
): void {
  // One set per registry: a second internal app on the same metrics (a test) reuses the first.
  if (registry.getSingleMetric('sw_status_feed_lag_seconds')) return;
  // The query a scrape is waiting for, until it is answered or fails.
  let asking: Promise<DatabaseReading | undefined> | undefined;
  // One query at a time, shared by both gauges of a scrape: while one is stuck on a database
  // that stopped answering, the next scrape waits for that one again instead of sending
  // another, so through an outage these gauges hold at most one pool client — until the
  // database answers or TCP gives up on the connection (keepalive: src/db/database.ts).
  const reading = (): Promise<DatabaseReading | undefined> => {
    asking ??= readDatabase(db).finally(() => {
      asking = undefined;
    });
    return within(asking, LAG_QUERY_WAIT_MS);
  };
  new Gauge({
    name: 'sw_status_feed_lag_seconds',
    help: 'Age of the oldest open writing transaction on the cluster: how far the change feed can be held back',
    registers: [registry],
    async collect() {
      const read = await reading();
      // Database unreachable or not answering: the gauge keeps its last value; readiness
      // reports the outage.
      if (read !== undefined) this.set(read.lagSeconds);
    },
  });
  new Gauge({
    name: 'sw_status_clock_offset_seconds',
    help: "This replica's clock minus the database's, in seconds: replicas stamp receive times with their own clocks",
    registers: [registry],
    async collect() {
      const read = await reading();
      if (read !== undefined) this.set(read.clockOffsetSeconds);
    },
  });
  new Gauge({
    name: 'sw_status_feed_listener_up',
    help: "1 while this replica receives other replicas' commit hints (LISTEN), else 0",
    registers: [registry],
    collect() {
      this.set(signal.listening() ? 1 : 0);
    },
  });
}

/**
 * How long a scrape waits for the lag query. The scrape answers only once every collect has:
 * a database that stops answering on open connections (a partition, a frozen VM, a storage
 * stall) must not hold /metrics past Prometheus's scrape timeout (10 s, servicemonitor.yaml)
 * and take the spool depth and every other series with it, in the very outage they are for.
 * Far above the query's usual few milliseconds.
 */
const LAG_QUERY_WAIT_MS = 1_500;

interface DatabaseReading {
  lagSeconds: number;
  clockOffsetSeconds: number;
}

/** The feed's lag and this replica's clock offset; undefined when the database could not say. */
async function readDatabase(db: Db): Promise<DatabaseReading | undefined> {
  try {
    const { rows } = await sql<{ seconds: number | null; clock_ms: number }>`
      SELECT extract(epoch FROM now() - least(
               (SELECT min(xact_start) FROM pg_stat_activity
                 WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()),
               (SELECT min(prepared) FROM pg_prepared_xacts)))::float8 AS seconds,
             extract(epoch FROM clock_timestamp())::float8 * 1000 AS clock_ms`.execute(db);
    const answeredAt = Date.now();
    return {
      lagSeconds: Math.max(0, rows[0]?.seconds ?? 0),
      clockOffsetSeconds: (answeredAt - rows[0]!.clock_ms) / 1000,
    };
  } catch {
    return undefined;
  }
}

/** What `promise` gives within `ms`; undefined after that (the promise goes on). */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(resolve, ms, undefined);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
