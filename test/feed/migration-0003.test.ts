import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { createDb, withDatabase } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrate';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { migratedBefore } from '../helpers/migrations';
import { asAdmin } from '../helpers/test-database';

/**
 * Migration 0003 on a store that already holds messages and events (written by the previous
 * version, straight into 0001's tables): the feed serves the old events first, in seq order,
 * with their message status folded on read; the stats count the old messages; new writes work.
 */

const adminUrl = () => process.env.SW_TEST_ADMIN_URL!;
const name = `sw_status_test_upgrade_${randomBytes(4).toString('hex')}`;
let handle: DatabaseHandle;
let t: TestApp;
const old = { id: randomUUID(), at: new Date('2026-11-29T10:00:00Z') };

beforeAll(async () => {
  await asAdmin(`CREATE DATABASE ${name}`);
  const url = withDatabase(adminUrl(), name);
  handle = createDb(url, 4);
  await migratedBefore(handle.db, '0003'); // 0001 only: there is no 0002

  // What the previous version stored: a message that was sent, then delivered.
  await sql`
    INSERT INTO messages (id, api, status, raw_status, status_rank, status_received_at,
      created_at, updated_at, last_event_at)
    VALUES (${old.id}, 'cxml', 'delivered', 'delivered', 50, ${old.at}, ${old.at}, ${old.at},
      ${old.at})`.execute(handle.db);
  for (const [status, offset] of [
    ['sent', 0],
    ['delivered', 4000],
  ] as const) {
    await sql`
      INSERT INTO status_events (message_id, api, status, raw_status, source, received_at,
        dedupe_key, raw)
      VALUES (${old.id}, 'cxml', ${status}, ${status}, 'callback',
        ${new Date(old.at.getTime() + offset)}, ${randomBytes(32)}, '{}')`.execute(handle.db);
  }

  await migrateToLatest(handle.db);
  t = await createTestApp({}, { database: { ...handle, url, destroy: async () => undefined } });
});

afterAll(async () => {
  await t?.close();
  await handle?.db.destroy();
  await asAdmin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
});

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

test('When 0003 runs on a populated store, then old events come first in the feed with their message status, old messages count in the stats, and new writes work', async () => {
  const stored = await sql<{ tx: string; message_status: string | null }>`
    SELECT tx::text AS tx, message_status FROM status_events ORDER BY seq`.execute(handle.db);
  expect(stored.rows).toEqual([
    { tx: '0', message_status: null },
    { tx: '0', message_status: null },
  ]);

  const fresh = statusEvent('sent');
  await recordEvents(handle.db, [fresh]);
  // The horizon is the cluster's: another test file's transaction may hold the new event back
  // for a moment, so follow the feed until it comes.
  const seen: Array<{ message_id: string; message_status: string }> = [];
  let cursor: string | undefined;
  const deadline = Date.now() + 20_000;
  while (seen.length < 3 && Date.now() < deadline) {
    const page = await get(`/v1/events?limit=10&wait=2${cursor ? `&after=${cursor}` : ''}`).expect(
      200,
    );
    seen.push(...page.body.data);
    cursor = page.body.next_cursor;
  }
  expect(seen.map((e) => [e.message_id, e.message_status])).toEqual([
    [old.id, 'sent'],
    [old.id, 'delivered'],
    [fresh.messageId, 'sent'],
  ]);

  const stats = await get('/v1/stats?created_since=2026-11-29&created_until=2026-11-30').expect(
    200,
  );
  expect(stats.body).toMatchObject({
    total: 1,
    by_status: expect.objectContaining({ delivered: 1 }),
    delivery_rate: 1,
    // Its time to a final status was not recorded before 0003.
    latency_ms: { p50: null, p95: null, p99: null },
  });

  // An old message that moves is counted once, in its new state.
  await recordEvents(handle.db, [statusEvent('read', { messageId: old.id })]);
  const after = await get('/v1/stats?created_since=2026-11-29&created_until=2026-11-30').expect(
    200,
  );
  expect(after.body.total).toBe(1);
  expect(after.body.by_status).toMatchObject({ delivered: 0, read: 1 });
});
