import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import request from 'supertest';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * Two real sessions; the one with the LOWER transaction id (and lower seq) commits LAST. A
 * consumer reading in between must not step over it, on a plain page, on a long-poll, and
 * through a sparse filter.
 */

let t: TestApp;
let a: Client;
let b: Client;
beforeAll(async () => {
  t = await createTestApp();
  a = new Client({ connectionString: t.database.url });
  b = new Client({ connectionString: t.database.url });
  await a.connect();
  await b.connect();
});
afterAll(async () => {
  await a?.end().catch(() => undefined);
  await b?.end().catch(() => undefined);
  await t?.close();
});

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

async function insert(
  c: Client,
  status = 'sent',
): Promise<{ seq: number; tx: string; id: string }> {
  const id = `rev-${randomUUID()}`;
  const { rows } = await c.query<{ seq: string; tx: string }>(
    `INSERT INTO status_events (message_id, api, status, raw_status, source, received_at,
       dedupe_key, raw, message_status)
     VALUES ($1, 'cxml', $2, $2, 'callback', now(), decode(md5(random()::text), 'hex'), '{}', $2)
     RETURNING seq, tx::text AS tx`,
    [id, status],
  );
  return { seq: Number(rows[0]!.seq), tx: rows[0]!.tx, id };
}

/**
 * Follows the feed until the page is empty and every id of `until` was seen (or 20 s: the
 * horizon is cluster-wide, and other sessions on a shared test cluster hold it back a while).
 */
async function follow(
  cursor: string | undefined,
  query = '',
  until: string[] = [],
): Promise<{ seen: string[]; cursor: string }> {
  const seen: string[] = [];
  const deadline = Date.now() + 20_000;
  for (;;) {
    const res = await get(`/v1/events?limit=2&wait=0.5${query}${cursor ? `&after=${cursor}` : ''}`);
    expect(res.status).toBe(200);
    seen.push(...(res.body.data as Array<{ message_id: string }>).map((e) => e.message_id));
    cursor = res.body.next_cursor as string;
    const done = until.every((id) => seen.includes(id));
    if (res.body.data.length === 0 && (done || Date.now() > deadline)) return { seen, cursor };
  }
}

test('When the lower transaction commits after the higher one, then a consumer following the cursor sees both', async () => {
  let { cursor } = await follow(undefined);
  await a.query('BEGIN');
  const low = await insert(a);
  await b.query('BEGIN');
  const high = await insert(b);
  expect(BigInt(low.tx) < BigInt(high.tx)).toBe(true);
  expect(low.seq < high.seq).toBe(true);
  await b.query('COMMIT');

  const first = await follow(cursor);
  cursor = first.cursor;
  await a.query('COMMIT');
  const second = await follow(cursor, '', [low.id, high.id]);
  const seen = [...first.seen, ...second.seen];
  expect(seen.filter((id) => id === low.id || id === high.id).sort()).toEqual(
    [low.id, high.id].sort(),
  );
  // In the feed's order: the lower transaction first.
  expect(seen.indexOf(low.id)).toBeLessThan(seen.indexOf(high.id));
});

test('When a long-poll waits while the lower transaction is still open, then it answers with both once it commits', async () => {
  const { cursor } = await follow(undefined);
  await a.query('BEGIN');
  const low = await insert(a, 'delivered');
  await b.query('BEGIN');
  const high = await insert(b, 'delivered');
  await b.query('COMMIT');
  const poll = get(`/v1/events?wait=10&status=delivered&after=${cursor}`).then((r) => r);
  await new Promise((r) => setTimeout(r, 700));
  await a.query('COMMIT');
  const res = await poll;
  expect(res.status).toBe(200);
  const ids = (res.body.data as Array<{ message_id: string }>).map((e) => e.message_id);
  const rest = await follow(
    res.body.next_cursor as string,
    '&status=delivered',
    [low.id, high.id].filter((x) => !ids.includes(x)),
  );
  expect([...ids, ...rest.seen].sort()).toEqual([low.id, high.id].sort());
});

test('When after=now is asked while a lower transaction is open, then its event still comes once it commits', async () => {
  await a.query('BEGIN');
  const low = await insert(a);
  const now = await get('/v1/events?after=now');
  expect(now.status).toBe(200);
  await a.query('COMMIT');
  const { seen } = await follow(now.body.next_cursor as string, '', [low.id]);
  expect(seen).toContain(low.id);
});
