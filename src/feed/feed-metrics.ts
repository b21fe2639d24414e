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
 */
export function registerFeedMetrics(
  registry: Registry,
  { db, signal }: { db: Db; signal: FeedSignal },
): void {
  // One set per registry: a second internal app on the same metrics (a test) reuses the first.
  if (registry.getSingleMetric('sw_status_feed_lag_seconds')) return;
  // The query a scrape is waiting for, until it is answered or fails.
  let lagQuery: Promise<number | undefined> | undefined;
  new Gauge({
    name: 'sw_status_feed_lag_seconds',
    help: 'Age of the oldest open writing transaction on the cluster: how far the change feed can be held back',
    registers: [registry],
    async collect() {
      // One query at a time: while one is stuck on a database that stopped answering, the
      // next scrape waits for that one again instead of sending another, so through an outage
      // this gauge holds at most one pool client — until the database answers or TCP gives up
      // on the connection (keepalive: src/db/database.ts).
      lagQuery ??= readLag(db).finally(() => {
        lagQuery = undefined;
      });
      const seconds = await within(lagQuery, LAG_QUERY_WAIT_MS);
      // Database unreachable or not answering: the gauge keeps its last value; readiness
      // reports the outage.
      if (seconds !== undefined) this.set(seconds);
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

/** The feed's lag in seconds; undefined when the database could not say. */
async function readLag(db: Db): Promise<number | undefined> {
  try {
    const { rows } = await sql<{ seconds: number | null }>`
      SELECT extract(epoch FROM now() - least(
               (SELECT min(xact_start) FROM pg_stat_activity
                 WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()),
               (SELECT min(prepared) FROM pg_prepared_xacts)))::float8 AS seconds`.execute(db);
    return Math.max(0, rows[0]?.seconds ?? 0);
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
