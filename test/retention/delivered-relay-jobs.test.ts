import { sql } from 'kysely';
import {
  deliveredBefore,
  removeDeliveredRelayJobs,
} from '../../src/retention/retention.repository';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * RELAY_KEEP_DELIVERED_DAYS: every minute, on every replica, a round asks for the delivered
 * relay jobs older than the horizon. Without an index holding delivery times it read the whole
 * table to find none (78 ms at 300 000 jobs); migration 0011 gives it one.
 */

const DAY = 86_400_000;
const RECENT = 100_000;
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase(2);
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, state, delivered_at)
    SELECT 'recent-' || i, 'https://app.example.com/cb', 'https://app.example.com', 'POST',
      'delivered', now() - (i % 1000) * interval '1 second'
    FROM generate_series(1, ${RECENT}) i`.execute(database.db);
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, state, delivered_at)
    SELECT 'old-' || i, 'https://app.example.com/cb', 'https://app.example.com', 'POST',
      'delivered', now() - interval '40 days'
    FROM generate_series(1, 30) i`.execute(database.db);
  await sql`ANALYZE relay_jobs`.execute(database.db);
}, 60_000);
afterAll(async () => {
  await database?.destroy();
});

test('When many delivered relay jobs are recent, then a cleanup round reads the delivered-time index, not the table, and removes only the old ones', async () => {
  const horizon = new Date(Date.now() - 30 * DAY);
  const explained = await sql<{ 'QUERY PLAN': unknown }>`EXPLAIN (FORMAT JSON) ${deliveredBefore(
    horizon,
    500,
  )}`.execute(database.db);
  const plan = JSON.stringify(explained.rows[0]!['QUERY PLAN']);
  expect(plan).not.toContain('"Seq Scan"');
  expect(plan).toContain('relay_jobs_delivered_idx');

  expect(await removeDeliveredRelayJobs(database.db, horizon, 500)).toBe(30);
  const { rows } = await sql<{ left: number }>`
    SELECT count(*)::int AS left FROM relay_jobs`.execute(database.db);
  expect(rows[0]!.left).toBe(RECENT);
});
