import { sql } from 'kysely';
import request from 'supertest';
import { generateEvents } from '../../scripts/generate-events';
import { listMessages } from '../../src/messages/messages.repository';
import type { ListOrder, MessageFilter } from '../../src/messages/messages.repository';
import { explainFirst, nodeTypes, rowsRead } from '../helpers/explain';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * DESIGN §4: "Indexes serve every query in §6 without a sequential scan at 10 million events."
 * On a store from scripts/generate-events.ts (the README's generator: 100 000 events over the
 * last 30 days, about 40 000 messages), a page of GET /v1/messages reads rows in proportion to
 * the page, not to the table: multi-value filters have no index in the activity order
 * (listMessages reads one index range per value), and a time window on the other key than the
 * order's bounds the order's key too. Read from EXPLAIN ANALYZE of the statement listMessages
 * sends; the page itself comes through the API.
 */

const EVENTS = 100_000;
const DAY = 86_400_000;
let t: TestApp;
let messages = 0;

beforeAll(async () => {
  t = await createTestApp();
  ({ messages } = await generateEvents(t.database.url, EVENTS));
  await sql`VACUUM ANALYZE messages`.execute(t.deps.db);
}, 300_000);
afterAll(async () => {
  await t?.close();
});

async function page(query: string): Promise<Array<Record<string, string>>> {
  const res = await request(t.internalApp)
    .get(`/v1/messages?${query}`)
    .auth(TEST_API_TOKEN, { type: 'bearer' })
    .expect(200);
  return res.body.data;
}

async function read(filter: MessageFilter, order: ListOrder, limit = 51): Promise<number> {
  return rowsRead(
    await explainFirst(t.database.url, (db) => listMessages(db, filter, limit, { order })),
  );
}

test('When a page asks for final successes with error codes (none carries one), then it reads those codes’ index ranges, not every message', async () => {
  expect(await page('status=delivered,read&error_code=30003,30005&limit=50')).toEqual([]);
  expect(
    await read({ statuses: ['delivered', 'read'], errorCodes: ['30003', '30005'] }, 'activity'),
  ).toBeLessThan(messages / 10);
});

test('When order=created asks for one day 25 days ago by last activity, then the page reads nothing first seen after that day', async () => {
  const since = new Date(Date.now() - 26 * DAY);
  const until = new Date(Date.now() - 25 * DAY);
  const rows = await page(
    `order=created&since=${since.toISOString()}&until=${until.toISOString()}&limit=50`,
  );
  expect(rows).toHaveLength(50);
  // A message's last activity is never before its first sighting, so nothing first seen after
  // `until` can be on the page. What the planner reads depends on its estimates (an ordered
  // walk of messages_created_idx from `until`, or bitmaps of the day's activity and of what was
  // first seen before `until`), but never the 25 days after the window: the walk without the
  // bound read every one of them.
  const { count } = await t.deps.db
    .selectFrom('messages')
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .where('created_at', '<', until)
    .executeTakeFirstOrThrow();
  const after = messages - Number(count);
  expect(after).toBeGreaterThan(messages / 2);
  expect(await read({ since, until }, 'created')).toBeLessThan(after / 2);
});

test('When nothing failed for three weeks, then the status page’s "recent failures" (status=failed,undelivered&limit=10) reads ten failures per status, not three weeks of messages', async () => {
  // An incident long ago, nothing failed since: the failures are all older than 20 days.
  await sql`UPDATE messages SET status = 'delivered', raw_status = 'delivered', error_code = NULL
            WHERE status IN ('failed', 'undelivered')
              AND last_event_at > now() - interval '20 days'`.execute(t.deps.db);
  await sql`VACUUM ANALYZE messages`.execute(t.deps.db);

  const rows = await page('status=failed,undelivered&limit=10');
  expect(rows).toHaveLength(10);
  for (const row of rows) expect(['failed', 'undelivered']).toContain(row.status);

  const plan = await explainFirst(t.database.url, (db) =>
    listMessages(db, { statuses: ['failed', 'undelivered'] }, 11),
  );
  expect(rowsRead(plan)).toBeLessThanOrEqual(2 * 11);
  // Merged in order from one index range per status, not sorted from every failure kept.
  expect(nodeTypes(plan)).toContain('Merge Append');
  expect(nodeTypes(plan)).not.toContain('Sort');
});
