import { randomBytes } from 'node:crypto';
import request from 'supertest';
import { createReaderDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { createTestApp, TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { asAdmin, createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * A DATABASE_READ_URL user granted SELECT on exactly the tables the replica's reads use (README
 * lists them) is served: the reader's check asks for those (READ_TABLES), not the wide
 * stats_minutes/stats_hours no read uses since migration 0009 — listed at first, every list,
 * stats and feed read of such a replica was 503 (found by the diff review).
 */
let primary: TestDatabase;
let reader: DatabaseHandle | undefined;
let t: TestApp | undefined;
const role = `sw_status_rv_${randomBytes(4).toString('hex')}`;
const password = `pw-${randomBytes(8).toString('hex')}`;

beforeAll(async () => {
  primary = await createTestDatabase(4);
  await asAdmin(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  // Exactly what the replica's reads read (lists, the relays list, stats, the change feed).
  await primary.pool.query(
    `GRANT SELECT ON messages, status_events, relay_jobs, sw_status_feed_removals,
       sw_status_retention, stats_deltas, stats_minute_counts, stats_minute_latency,
       stats_hour_counts, stats_hour_latency TO ${role}`,
  );
  const parsed = new URL(primary.url);
  parsed.username = role;
  parsed.password = password;
  reader = createReaderDb(parsed.toString(), 2, primary.db, { maxLagMs: 0, checkEveryMs: 0 });
  t = await createTestApp(
    {},
    { database: { ...primary, destroy: async () => undefined }, readDb: reader.db },
  );
}, 60_000);

afterAll(async () => {
  await t?.close();
  await reader?.db.destroy();
  await primary.pool.query(`DROP OWNED BY ${role}`);
  await primary?.destroy();
  await asAdmin(`DROP ROLE IF EXISTS ${role}`);
});

const get = (path: string) =>
  request(t!.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

test('When DATABASE_READ_URL’s user may SELECT every table the replica’s reads read (not the wide stats_minutes/stats_hours no read uses), then lists, relays, stats and the feed are served', async () => {
  const answers = {
    list: (await get('/v1/messages?limit=10')).status,
    relays: (await get('/v1/relays')).status,
    stats: (await get('/v1/stats')).status,
    feed: (await get('/v1/events?limit=1')).status,
  };
  expect(answers).toEqual({ list: 200, relays: 200, stats: 200, feed: 200 });
});
