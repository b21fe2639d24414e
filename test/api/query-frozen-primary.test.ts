import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createFreezer } from '../helpers/freezer';
import type { Freezer } from '../helpers/freezer';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * Without DATABASE_READ_URL (the default) the query API reads on DATABASE_URL's pool, which has
 * no query_timeout: a client-side timeout there would make the write path take for failed a
 * COMMIT that may still succeed. The reads' 5 s statement timeout is the server's to enforce,
 * and a primary that stops answering on open connections (a partition, a frozen VM) enforces
 * nothing: each read waited for TCP keepalive (30 s and the OS's ~11 min), the dashboard got
 * no answer at all. DESIGN §6: while the database is unreachable the query API answers 503 +
 * Retry-After. The reads now carry a client-side bound of their own (db/kysely-pool.ts
 * answerWithin): the statement timeout and a margin, 7 s.
 */
jest.setTimeout(60_000);

let database: TestDatabase;
let freezer: Freezer;
let t: TestApp;
beforeAll(async () => {
  database = await createTestDatabase(1);
  freezer = createFreezer();
  const url = await freezer.relay(database.url);
  // A quarter of the pool for the reads (app.ts): four turns, one for each read below, so that
  // none of them is refused by the read gate's own wait limit instead.
  t = await createTestApp({ DATABASE_POOL_MAX: '16' }, { database: { ...database, url } });
});
afterAll(async () => {
  await freezer.close();
  await t.close().catch(() => undefined);
  await database.destroy();
});

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

test('When the primary stops answering on open connections, then lists, a message, the stats, the relays and the feed answer 503 + Retry-After as the database unavailable, within the read timeout and a margin', async () => {
  const sid = `SM${randomUUID().replace(/-/g, '')}`;
  expect((await postCxml(t.publicApp, cxmlFields({ MessageSid: sid }))).status).toBe(200);
  // The pool warm: connections open and idle, as in steady production (a new connection to
  // the frozen server would fail on its own 2 s connect timeout, whatever the reads carry).
  await Promise.all(Array.from({ length: 8 }, () => sql`SELECT pg_sleep(0.2)`.execute(t.deps.db)));
  expect((await get('/v1/messages?limit=1')).status).toBe(200);

  freezer.freeze();
  const started = Date.now();
  const outcome = async (path: string): Promise<string> => {
    try {
      const res = await get(path).timeout({ response: 20_000 });
      const body = res.body as { error?: { message?: string } };
      return `${res.status} ${body.error?.message} Retry-After: ${res.headers['retry-after']}`;
    } catch (error) {
      return (error as { timeout?: number }).timeout ? 'no answer within 20 s' : String(error);
    }
  };
  const outcomes = await Promise.all([
    outcome('/v1/messages?limit=5'),
    outcome(`/v1/messages/${sid}`),
    outcome('/v1/stats'),
    outcome('/v1/relays'),
    outcome('/v1/events?limit=1&wait=0'),
    outcome('/v1/events?after=now&wait=0'),
  ]);
  const unavailable = '503 The database is unavailable; retry later Retry-After: 2';
  expect(outcomes).toEqual(Array.from({ length: 6 }, () => unavailable));
  // 7 s (READ_STATEMENT_TIMEOUT_MS + ANSWER_MARGIN_MS), and room for a loaded machine.
  expect(Date.now() - started).toBeLessThan(15_000);
});
