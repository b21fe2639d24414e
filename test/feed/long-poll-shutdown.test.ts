import { Client } from 'pg';
import request from 'supertest';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { listen } from '../proxy/support';

/**
 * A long-poll whose announced commit is not visible yet — an older writing transaction,
 * anywhere on the cluster, holds the feed's horizon — looks again on a timer instead of on
 * every commit. That timer must end like the commit wait does: on shutdown (main.ts closes the
 * feed signal so that long-polls answer now and their clients move to a replica that stays,
 * within SHUTDOWN_DRAIN_MS) and when the client goes away.
 */

let owner: TestApp;
let t: TestApp;
let reader: DatabaseHandle;
let blocker: Client;
let server: { url: string; close(): Promise<void> };
let statements = 0;
beforeAll(async () => {
  owner = await createTestApp();
  // The feed reads through a pool of its own: its looks are counted.
  reader = createDb(owner.database.url, 2);
  reader.pool.on('acquire', () => (statements += 1));
  t = await createTestApp({}, { database: owner.database, readDb: reader.db });
  server = await listen(t.internalApp);
  blocker = new Client({ connectionString: owner.database.url });
  await blocker.connect();
});
afterAll(async () => {
  await blocker.query('ROLLBACK').catch(() => undefined);
  await blocker.end();
  await server.close();
  await t.close();
  await reader.db.destroy();
  await owner.close();
});

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The feed's cursor past every event this database holds. Not `after=now` alone: the horizon
 * is the cluster's, and another test file's transaction open on the shared PostgreSQL can hold
 * it below an event an earlier test committed here — that event would then be delivered to
 * the long-poll under test as soon as the other transaction ends.
 */
async function cursorPastEveryEvent(): Promise<string> {
  const { count } = await owner.database.db
    .selectFrom('status_events')
    .select((eb) => eb.fn.countAll<string>().as('count'))
    .executeTakeFirstOrThrow();
  let read = 0;
  let cursor: string | undefined;
  do {
    const path = cursor === undefined ? '/v1/events?wait=1' : `/v1/events?after=${cursor}&wait=1`;
    const { body } = await get(path).expect(200);
    read += (body.data as unknown[]).length;
    cursor = body.next_cursor as string;
  } while (read < Number(count));
  return cursor;
}

/**
 * Holds the horizon with an open writing transaction, then announces a commit behind it:
 * a long-poll open from the end of the feed switches to its timer.
 */
async function holdHorizonAndCommit(): Promise<void> {
  await blocker.query('BEGIN');
  await blocker.query('SELECT pg_current_xact_id()');
  await recordEvents(owner.database.db, [statusEvent('sent')], {
    onCommitted: t.feedSignal.committed,
  });
}

test('When the client of a long-poll held back by an open transaction goes away, then the server stops looking', async () => {
  try {
    const end = (await get('/v1/events?after=now').expect(200)).body.next_cursor as string;
    // Over a socket of its own, which the client closes.
    const client = new AbortController();
    const gone = fetch(`${server.url}/v1/events?after=${end}&wait=20`, {
      headers: { Authorization: `Bearer ${TEST_API_TOKEN}` },
      signal: client.signal,
    }).then(
      () => 'answered',
      () => 'gone',
    );
    await sleep(300);
    await holdHorizonAndCommit();
    // Long enough for the timer's looks to be a second apart (25 ms, 50 ms, … 1 s).
    await sleep(2_500);
    expect(statements).toBeGreaterThan(3);
    // Right as a look starts, so that the next one is a second away: none may follow.
    await new Promise((resolve) => reader.pool.once('acquire', resolve));
    statements = 0;
    client.abort();
    expect(await gone).toBe('gone');
    await sleep(2_000);
    expect(statements).toBe(0);
  } finally {
    await blocker.query('ROLLBACK');
  }
}, 30_000);

// Last: it closes the app's feed signal.
test('When the feed signal closes (shutdown) during a long-poll held back by an open transaction, then the long-poll answers at once', async () => {
  try {
    // The first test's event may still be held back by another test file's transaction.
    const end = await cursorPastEveryEvent();
    const poll = get(`/v1/events?after=${end}&wait=20`).then((res) => res);
    await sleep(300);
    await holdHorizonAndCommit();
    await sleep(500);

    // Shutdown begins: main.ts's onDraining closes the signal.
    const closedAt = Date.now();
    await t.feedSignal.close();
    const res = await poll;
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual([]);
    // Not the rest of the 20 s wait; generous for a shared machine.
    expect(Date.now() - closedAt).toBeLessThan(3_000);
  } finally {
    await blocker.query('ROLLBACK');
  }
}, 30_000);
