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
  new Gauge({
    name: 'sw_status_feed_lag_seconds',
    help: 'Age of the oldest open writing transaction on the cluster: how far the change feed can be held back',
    registers: [registry],
    async collect() {
      try {
        const { rows } = await sql<{ seconds: number | null }>`
          SELECT extract(epoch FROM now() - least(
                   (SELECT min(xact_start) FROM pg_stat_activity
                     WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()),
                   (SELECT min(prepared) FROM pg_prepared_xacts)))::float8 AS seconds`.execute(db);
        this.set(Math.max(0, rows[0]?.seconds ?? 0));
      } catch {
        // Database unreachable: the gauge keeps its last value; readiness reports the outage.
      }
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
