import { sql } from 'kysely';
import { Registry } from 'prom-client';
import { createLogger } from '../../src/logger';
import { createRetention } from '../../src/retention/retention';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * A retention round's edges: what it says when a step fails after others removed rows, and a
 * RETENTION_DAYS so large that its horizon lies before any representable time.
 */

const DAY = 86_400_000;
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});
afterAll(async () => {
  await database?.destroy();
});

async function populate(prefix: string, count: number, at: Date) {
  await sql`
    INSERT INTO messages (id, api, status, raw_status, status_rank, status_received_at,
      created_at, updated_at, last_event_at)
    SELECT ${prefix} || '-' || i, 'cxml', 'delivered', 'delivered', 50, ${at}, ${at}, ${at},
      ${at}::timestamptz + i * interval '1 second'
    FROM generate_series(1, ${count}) i`.execute(database.db);
  await sql`
    INSERT INTO relay_jobs (message_id, url, host, method, state, delivered_at)
    SELECT ${prefix} || '-' || i, 'https://app.example.com/cb', 'https://app.example.com', 'POST',
      'delivered', ${at}
    FROM generate_series(1, ${count}) i`.execute(database.db);
}

function capture() {
  const lines: Array<{ msg: string; removed?: unknown }> = [];
  const logger = createLogger('info', {
    write: (line: string) => void lines.push(JSON.parse(line)),
  });
  return { lines, logger };
}

test('When a step fails after earlier steps of the round removed messages, then the log still says what was removed, as the metric does', async () => {
  await populate('failing', 5, new Date(Date.now() - 40 * DAY));
  // The third message (in the steps' order) cannot be removed: the round's second step fails.
  await sql`CREATE FUNCTION test_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF OLD.id = 'failing-3' THEN RAISE EXCEPTION 'test: refused'; END IF;
              RETURN OLD;
            END $$`.execute(database.db);
  await sql`CREATE TRIGGER test_refuse_delete BEFORE DELETE ON messages
            FOR EACH ROW EXECUTE FUNCTION test_refuse_delete()`.execute(database.db);
  const registry = new Registry();
  const { lines, logger } = capture();
  const retention = createRetention({
    db: database.db,
    logger,
    registry,
    options: { retentionDays: 30, batch: 2, pauseMs: 0 },
  })!;
  try {
    await expect(retention.runOnce()).rejects.toThrow('test: refused');
  } finally {
    await sql`DROP TRIGGER test_refuse_delete ON messages`.execute(database.db);
  }

  const metric = await registry.getSingleMetricAsString('sw_status_retention_removed_total');
  expect(metric).toContain('sw_status_retention_removed_total{table="messages"} 2');
  expect(lines).toContainEqual(
    expect.objectContaining({
      msg: 'retention: removed expired history',
      removed: { messages: 2, status_events: 0, relay_jobs: 2 },
    }),
  );
  // The next round goes on where it stopped.
  expect((await retention.runOnce()).messages).toBe(3);
});

test('When RETENTION_DAYS reaches back before any representable time, then a round removes no message, fails nothing, and RELAY_KEEP_DELIVERED_DAYS still applies', async () => {
  await populate('ancient', 3, new Date(Date.now() - 400 * DAY));
  for (const retentionDays of [3_000_000, 100_000_000]) {
    const { lines, logger } = capture();
    const retention = createRetention({
      db: database.db,
      logger,
      registry: new Registry(),
      options: { retentionDays, relayKeepDeliveredDays: 7, pauseMs: 0 },
    })!;
    const removed = await retention.runOnce();
    expect(removed.messages).toBe(0);
    expect(lines.filter((line) => line.msg.includes('failed'))).toEqual([]);
  }
  const { rows } = await sql<{ messages: number; jobs: number }>`
    SELECT (SELECT count(*)::int FROM messages WHERE id LIKE 'ancient-%') AS messages,
           (SELECT count(*)::int FROM relay_jobs WHERE message_id LIKE 'ancient-%') AS jobs`.execute(
    database.db,
  );
  expect(rows[0]).toEqual({ messages: 3, jobs: 0 });
});
