import request from 'supertest';
import type { Express } from 'express';
import { createInternalApp } from '../../src/app';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { createMetrics } from '../../src/metrics/metrics';
import { createFreezer } from '../helpers/freezer';
import type { Freezer } from '../helpers/freezer';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { sample } from './scrape';

/**
 * PostgreSQL stops answering on connections that are already open (a network partition, a
 * frozen VM, a storage stall): exactly the outage the spool exists for, and the one whose
 * spool depth the alerts must see. Prometheus gives a scrape 10 s (servicemonitor.yaml
 * scrapeTimeout); /metrics answers within it whatever the database does, because the one
 * series read from the database (sw_status_feed_lag_seconds, src/feed/feed-metrics.ts) waits
 * for it only briefly.
 */

/** GET /metrics, given up on after Prometheus's scrape timeout. */
async function scrapeWithin(app: Express, ms: number) {
  const started = Date.now();
  const answer = await request(app)
    .get('/metrics')
    .timeout(ms)
    .then(
      (res) => ({ status: res.status, text: res.text }),
      (error: Error) => ({ status: 0, text: error.message }),
    );
  return { ...answer, ms: Date.now() - started };
}

const SCRAPE_TIMEOUT_MS = 10_000;

let t: TestApp;
let freezer: Freezer;
let handle: DatabaseHandle;
beforeAll(async () => {
  t = await createTestApp();
  freezer = createFreezer();
  handle = createDb(await freezer.relay(t.database.url), 4);
});
afterAll(async () => {
  // Closing the relay ends the connections the silent database held, and the queries on them.
  await freezer.close();
  await handle.db.destroy().catch(() => undefined);
  await t.close();
});

test('When PostgreSQL stops answering on open connections, then /metrics still answers within the scrape timeout with the spool depth, and the lag query holds one connection at most', async () => {
  // A replica in service: its pool holds open, idle connections.
  await Promise.all([1, 2].map(() => handle.pool.query('select pg_sleep(0.05)')));
  const metrics = createMetrics({ pool: handle.pool, spoolDepth: () => 42 });
  const app = createInternalApp({ ...t.deps, db: handle.db, metrics });
  const before = await scrapeWithin(app, SCRAPE_TIMEOUT_MS);
  // Other test files' transactions on the same cluster can make it more than 0.
  const lag = sample(before.text, 'sw_status_feed_lag_seconds');
  expect(lag).toBeGreaterThanOrEqual(0);

  freezer.freeze();
  for (let scrape = 1; scrape <= 2; scrape++) {
    const { status, text, ms } = await scrapeWithin(app, SCRAPE_TIMEOUT_MS);
    expect({ scrape, status, within: ms < SCRAPE_TIMEOUT_MS }).toEqual({
      scrape,
      status: 200,
      within: true,
    });
    expect(sample(text, 'sw_status_spool_depth')).toBe(42);
    // Not measured now: the last value stays.
    expect(sample(text, 'sw_status_feed_lag_seconds')).toBe(lag);
  }
  // The second scrape waited for the first one's query again instead of sending another.
  expect(handle.pool.totalCount - handle.pool.idleCount).toBe(1);
}, 30_000);
