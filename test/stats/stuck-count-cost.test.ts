import { sql } from 'kysely';
import request from 'supertest';
import { countStuck } from '../../src/stats/stats.repository';
import { explainFirst, rowsRead } from '../helpers/explain';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * GET /v1/stats counts the stuck messages first seen in its window (countStuck). The only index
 * on stuck messages (messages_stuck_idx, 0004) is keyed on last_event_at, and the created index
 * holds every message: whichever the planner takes, the count reads either every stuck message
 * ever kept (they accumulate: a stuck message waits for an event that never comes) or every
 * message of the window — on every stats request, which the status page polls. Migration 0015
 * adds messages_stuck_created_idx (stuck messages by created_at) for it.
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

test('When 20 000 stuck messages were first seen days ago and 20 000 messages in the last hour, then the stats of the last hour read a handful of rows to count its stuck messages, not one of those sets', async () => {
  const db = t.deps.db;
  const now = Date.now();
  // Stuck messages from days ago (a backlog the sweep gave up on) …
  await sql`
    INSERT INTO messages (id, api, status, raw_status, status_rank, status_received_at,
                          created_at, last_event_at, stuck)
    SELECT 'old-' || g, 'cxml', 'sent', 'sent', 30, c, c, c, true
    FROM generate_series(1, 20000) g,
         LATERAL (SELECT to_timestamp(${Math.floor(now / 1000)}::bigint - 86400 * 3 - g) AS c) x`.execute(
    db,
  );
  // … and the last hour's traffic, three of them stuck.
  await sql`
    INSERT INTO messages (id, api, status, raw_status, status_rank, status_received_at,
                          created_at, last_event_at, stuck)
    SELECT 'new-' || g, 'cxml', 'delivered', 'delivered', 50, c, c, c, g <= 3
    FROM generate_series(1, 20000) g,
         LATERAL (SELECT to_timestamp(${Math.floor(now / 1000)}::bigint - (g % 3000)) AS c) x`.execute(
    db,
  );
  await sql`ANALYZE messages`.execute(db);

  const since = now - 3_600_000;
  // What the route answers is right …
  const res = await request(t.internalApp)
    .get(
      `/v1/stats?created_since=${new Date(since).toISOString()}&created_until=${new Date(now + 1000).toISOString()}`,
    )
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .expect(200);
  expect(res.body.stuck).toBe(3);
  // … but how much it reads for it:
  const plan = await explainFirst(t.database.url, (db) => countStuck(db, since, now + 1000, {}), [
    { count: '0' },
  ]);
  // A partial index on created_at WHERE stuck reads the 3 (checked: Bitmap Index Scan, 3 rows).
  expect(rowsRead(plan)).toBeLessThan(100);

  // Filtered by API the same: the filter is applied to the window's few stuck messages.
  const filtered = await request(t.internalApp)
    .get(
      `/v1/stats?created_since=${new Date(since).toISOString()}&created_until=${new Date(now + 1000).toISOString()}&api=cxml`,
    )
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .expect(200);
  expect(filtered.body.stuck).toBe(3);
  for (const apis of [['cxml'], ['native'], ['cxml', 'native']] as const) {
    const byApi = await explainFirst(
      t.database.url,
      (db) => countStuck(db, since, now + 1000, { apis }),
      [{ count: '0' }],
    );
    expect(rowsRead(byApi)).toBeLessThan(100);
  }
});
