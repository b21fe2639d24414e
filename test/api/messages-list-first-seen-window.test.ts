import request from 'supertest';
import { listMessages } from '../../src/messages/messages.repository';
import type { MessageFilter } from '../../src/messages/messages.repository';
import { explainEach, rowsRead } from '../helpers/explain';
import { DAY, MINUTE, insertMinuteStore } from '../helpers/minute-store';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * A first-seen window (`created_since`/`created_until`) in the default activity order
 * (messages.repository.ts readsWindowFirst). DESIGN §4: indexes serve every §6 query without
 * reading the whole table. A store shaped as real ones are: a message a minute over ~140 days,
 * and one in a thousand with activity long after its first sighting (a late receipt, a
 * lookup) — so walking the activity order to a day long ago passes every later message, where
 * reading that day's messages and sorting them reads the day. Rows read come from EXPLAIN
 * ANALYZE of every statement listMessages sends; pages come through the API.
 */

jest.setTimeout(90_000);
const MESSAGES = 200_000;
const BASE = Date.UTC(2026, 6, 1);
const END = BASE + MESSAGES * MINUTE;
let t: TestApp;

beforeAll(async () => {
  t = await createTestApp();
  await insertMinuteStore(t.deps.db, { messages: MESSAGES, base: BASE });
}, 120_000);
afterAll(() => t?.close());

/** Rows of `messages` read by all the statements of one page, and how many statements. */
async function cost(filter: MessageFilter) {
  const plans = await explainEach(t.database.url, (db) =>
    listMessages(db, filter, 51, { order: 'activity' }),
  );
  return { rows: plans.reduce((sum, plan) => sum + rowsRead(plan), 0), statements: plans.length };
}

/** Every page of the list through the API, following next_cursor. */
async function walk(query: string): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const res = await request(t.internalApp)
      .get(`/v1/messages?${query}&limit=500${cursor ? `&cursor=${cursor}` : ''}`)
      .auth(TEST_API_TOKEN, { type: 'bearer' })
      .expect(200);
    ids.push(...(res.body.data as Array<{ id: string }>).map((m) => m.id));
    cursor = res.body.next_cursor as string | null;
  } while (cursor);
  return ids;
}

/** The window's messages in activity order, by a plain query of the whole table. */
async function expected(since: Date, until: Date): Promise<string[]> {
  const rows = await t.deps.db
    .selectFrom('messages')
    .select('id')
    .where('created_at', '>=', since)
    .where('created_at', '<', until)
    .orderBy('last_event_at', 'desc')
    .orderBy('id', 'desc')
    .execute();
  return rows.map((row) => row.id);
}

test('When a dashboard lists the messages first seen on a day long ago, in the default order, then a page reads about that day, not every later message', async () => {
  const since = new Date(BASE);
  const until = new Date(BASE + DAY);
  // It walked messages_activity_idx from the newest activity down to the window: ~199 000 rows.
  expect((await cost({ createdSince: since, createdUntil: until })).rows).toBeLessThan(
    MESSAGES / 20,
  );
  const ids = await walk(
    `created_since=${since.toISOString()}&created_until=${until.toISOString()}`,
  );
  expect(ids).toHaveLength(1_439);
  expect(ids).toEqual(await expected(since, until));
});

test('When the window is the last day, then the page reads about that day too', async () => {
  const since = new Date(END - DAY);
  const until = new Date(END + MINUTE);
  // Nothing was active after the window: PostgreSQL's own plan (the day's messages, from
  // both indexes), after the two counts.
  const { rows } = await cost({ createdSince: since, createdUntil: until });
  expect(rows).toBeLessThan(MESSAGES / 20);
  expect(
    await walk(`created_since=${since.toISOString()}&created_until=${until.toISOString()}`),
  ).toEqual(await expected(since, until));
});

test('When the window is open (no created_until), then the page is one statement, as before', async () => {
  const { rows, statements } = await cost({ createdSince: new Date(END - DAY) });
  expect(statements).toBe(1);
  expect(rows).toBeLessThan(MESSAGES / 20);
});
