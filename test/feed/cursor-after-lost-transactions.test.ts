import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { Client } from 'pg';
import request from 'supertest';
import { FEED_RESET, feedCursors } from '../../src/feed/feed-cursor';
import { REMOVAL_STEPS_LOCK } from '../../src/db/removal-steps';
import { checkFeedEpoch } from '../../src/feed/feed-epoch';
import { rebaseTransactionIds } from '../../src/db/transaction-id-rebase';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import { removeExpiredMessages } from '../../src/retention/retention.repository';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, TEST_TOKEN_SECRET, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * A cursor issued by a primary whose last transactions were lost (an asynchronous standby
 * promoted), or by this database before a point-in-time recovery or a restore, lies beyond the
 * new cluster's transaction ids. The route refuses it (410) — but only while it is beyond. The
 * new primary soon reissues the lost ids to new transactions; from then on the same cursor was
 * accepted and every event committed with an id in the gap stepped over. The feed reset
 * (src/feed/feed-epoch.ts): the primary notes the database it runs on (system identifier,
 * timeline, database oid) and, finding it changed, records a removal step beyond every event,
 * which refuses every cursor issued before it.
 *
 * The epoch change is simulated by changing the noted row: "the database we are on now is not
 * the one the row was noted on", as after a promotion (another timeline) or a restore.
 */

let t: TestApp;
let c: Client;
const logger = createLogger('silent');
const warn = jest.spyOn(logger, 'warn');
beforeAll(async () => {
  t = await createTestApp();
  c = new Client({ connectionString: t.database.url });
  await c.connect();
});
afterAll(async () => {
  await c?.end().catch(() => undefined);
  await t?.close();
});
beforeEach(() => warn.mockClear());

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });
const cursors = feedCursors([TEST_TOKEN_SECRET]);
const check = () => checkFeedEpoch(t.database.db, logger);
const ids = (answer: request.Response) =>
  (answer.body.data as Array<{ message_id: string }>).map((event) => event.message_id);

/** A cursor at the feed's end now, as a consumer following it holds. */
async function cursorNow(): Promise<string> {
  const answer = await get('/v1/events?after=now');
  expect(answer.status).toBe(200);
  return answer.body.next_cursor as string;
}

/** Inserts one event through another session; its id. */
async function insertEvent(prefix: string): Promise<{ id: string; tx: string }> {
  const id = `${prefix}-${randomUUID()}`;
  const inserted = await c.query<{ tx: string }>(
    `INSERT INTO status_events (message_id, api, status, raw_status, source, received_at,
       dedupe_key, raw, message_status)
     VALUES ($1, 'cxml', 'delivered', 'delivered', 'callback', now(),
       decode(md5(random()::text), 'hex'), '{}', 'delivered') RETURNING tx::text AS tx`,
    [id],
  );
  return { id, tx: inserted.rows[0]!.tx };
}

/** Follows `cursor` until `id` comes (other sessions on the cluster can hold the horizon back). */
async function followUntil(cursor: string, id: string): Promise<string[]> {
  const seen: string[] = [];
  let next = cursor;
  const deadline = Date.now() + 10_000;
  while (!seen.includes(id) && Date.now() < deadline) {
    const page = await get(`/v1/events?wait=1&after=${next}`);
    expect(page.status).toBe(200);
    seen.push(...ids(page));
    next = page.body.next_cursor as string;
  }
  return seen;
}

async function steps(): Promise<string[]> {
  const { rows } = await sql<{ row: string }>`
    SELECT step || ':' || removed_tx || '/' || removed_seq AS row
    FROM sw_status_feed_removals ORDER BY step`.execute(t.database.db);
  return rows.map((row) => row.row);
}

async function expectExpired(cursor: string): Promise<void> {
  const answer = await get(`/v1/events?after=${cursor}`);
  expect([answer.status, answer.body.error?.code]).toEqual([410, 'cursor_expired']);
}

const RESET_ROW = `${FEED_RESET.tx}/${FEED_RESET.seq}`;

test('When the epoch is checked the first time and then again unchanged, then it is noted and the feed is never reset', async () => {
  const cursor = await cursorNow();
  expect(await check()).toBe('noted');
  const { rows } = await sql<{ n: number }>`
    SELECT count(*)::int AS n FROM sw_status_feed_epoch`.execute(t.database.db);
  expect(rows[0]!.n).toBe(1);
  expect(await check()).toBe('unchanged');
  expect(await check()).toBe('unchanged');
  expect(await steps()).toEqual([]);
  expect(warn).not.toHaveBeenCalled();

  const event = await insertEvent('unchanged');
  expect(await followUntil(cursor, event.id)).toContain(event.id);
});

test('When a cursor from before lost transactions comes back once the ids caught up, then after the feed reset it is refused, and a cursor issued after the reset skips nothing', async () => {
  await check(); // noted, if the test runs alone
  const { rows } = await c.query<{ xmax: string }>(
    'SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax',
  );
  // What the old primary had handed out: its horizon, GAP transactions past what survived.
  const lostHorizon = BigInt(rows[0]!.xmax) + 3_000n;
  const cursor = cursors.encode({ tx: String(lostHorizon), seq: 0 });
  // A consumer that was caught up on the surviving history: a cursor this database issued.
  const caughtUp = await cursorNow();

  // Right after the failover: refused, as documented.
  await expectExpired(cursor);

  // The new primary goes on: an event committed after the failover...
  const gap = await insertEvent('after-failover');
  expect(BigInt(gap.tx)).toBeLessThan(lostHorizon);
  // ...and more transactions (a busy primary issues thousands a minute).
  for (;;) {
    const now = await c.query<{ xmax: string }>(
      'SELECT pg_current_xact_id()::text, pg_snapshot_xmax(pg_current_snapshot())::text AS xmax',
    );
    if (BigInt(now.rows[0]!.xmax) > lostHorizon) break;
  }

  // The primary's check finds another timeline than the one noted (a promotion).
  await sql`UPDATE sw_status_feed_epoch SET timeline = timeline - 1`.execute(t.database.db);
  expect(await check()).toBe('reset');
  expect(warn).toHaveBeenCalledTimes(1);
  expect(warn.mock.calls[0]![1]).toMatch(/timeline .* failover.*410 cursor_expired/s);
  expect(await check()).toBe('unchanged');
  expect(warn).toHaveBeenCalledTimes(1);
  expect((await steps()).at(-1)).toMatch(new RegExp(`^\\d+:${RESET_ROW}$`));

  // The consumer comes back with its cursor: refused, whatever the counter has reached. So is
  // every other cursor issued before the reset.
  await expectExpired(cursor);
  await expectExpired(caughtUp);

  // A cursor issued after the reset carries the reset's step, and follows without a gap.
  const fresh = await cursorNow();
  expect(cursors.decode(fresh).removalStep).toBeGreaterThan(0);
  const later = await insertEvent('after-reset');
  expect(await followUntil(fresh, later.id)).toContain(later.id);
  // And from the start, the event committed in the gap is there.
  const history = await get('/v1/events?limit=1000');
  expect(history.status).toBe(200);
  expect(ids(history)).toContain(gap.id);
}, 120_000);

test('When the system identifier or the database changed (a restore), then the feed is reset again and the previous reset row is covered', async () => {
  await check();
  const before = await cursorNow();
  await sql`UPDATE sw_status_feed_epoch SET system_identifier = '1'`.execute(t.database.db);
  expect(await check()).toBe('reset');
  expect(warn.mock.calls[0]![1]).toMatch(/system identifier 1 → \d+ \(a restore/);
  expect(await steps()).toHaveLength(1);
  await expectExpired(before);

  const between = await cursorNow();
  await sql`UPDATE sw_status_feed_epoch SET database_oid = 1`.execute(t.database.db);
  expect(await check()).toBe('reset');
  expect(warn.mock.calls[1]![1]).toMatch(/database oid 1 → \d+ \(a restore into another/);
  await expectExpired(between);
  const after = await cursorNow();
  expect((await get(`/v1/events?after=${after}`)).status).toBe(200);
});

test('When retention removes events after a reset, then a cursor from before the reset is still refused and one from after it still followed', async () => {
  const DAY = 86_400_000;
  await recordEvents(t.database.db, [
    statusEvent('failed', { messageId: 'old-1', receivedAt: new Date(Date.now() - 40 * DAY) }),
  ]);
  await check();
  const beforeReset = await cursorNow();
  await sql`UPDATE sw_status_feed_epoch SET timeline = timeline + 1`.execute(t.database.db);
  expect(await check()).toBe('reset');
  // Past the event retention is about to remove (a transaction open elsewhere on the shared
  // test cluster can hold the end of the feed below it for a moment): a consumer that has it.
  const { rows: old } = await sql<{ tx: string }>`
    SELECT tx::text AS tx FROM status_events WHERE message_id = 'old-1'`.execute(t.database.db);
  let afterReset = await cursorNow();
  for (const deadline = Date.now() + 10_000; Date.now() < deadline;) {
    if (BigInt(cursors.decode(afterReset).tx) > BigInt(old[0]!.tx)) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
    afterReset = await cursorNow();
  }
  expect(BigInt(cursors.decode(afterReset).tx)).toBeGreaterThan(BigInt(old[0]!.tx));

  const removed = await removeExpiredMessages(t.database.db, new Date(Date.now() - 30 * DAY), 10);
  expect(removed.status_events).toBe(1);
  // Retention's step lies below the reset's: the reset's row stays, the new one beside it.
  const rows = await steps();
  expect(rows).toHaveLength(2);
  expect(rows[0]).toMatch(new RegExp(`:${RESET_ROW}$`));
  expect(rows[1]).not.toMatch(new RegExp(`:${RESET_ROW}$`));

  await expectExpired(beforeReset);
  const event = await insertEvent('after-retention');
  expect(await followUntil(afterReset, event.id)).toContain(event.id);
  await expectExpired(beforeReset);

  // A rebase (a restore into a cluster with lower ids) moves stored ids beyond xmax to 0, but
  // not the reset's: at 0 it would no longer refuse the cursors from before it.
  await sql`UPDATE status_events SET tx = (pg_snapshot_xmax(pg_current_snapshot())::text::bigint
    + 1000000)::text::xid8 WHERE message_id = ${event.id}`.execute(t.database.db);
  expect(await rebaseTransactionIds(t.database.db)).not.toBeNull();
  expect((await steps())[0]).toMatch(new RegExp(`:${RESET_ROW}$`));
  await expectExpired(beforeReset);
}, 60_000);

test('When the removal steps were rolled back with the database (a restore) and the feed is reset again, then the reset still refuses cursors carrying the lost steps', async () => {
  await check();
  // Two resets (two switchovers): cursors now carry the second one's step.
  await sql`UPDATE sw_status_feed_epoch SET timeline = timeline + 1`.execute(t.database.db);
  expect(await check()).toBe('reset');
  const first = (await steps()).at(-1)!;
  await sql`UPDATE sw_status_feed_epoch SET timeline = timeline + 1`.execute(t.database.db);
  expect(await check()).toBe('reset');
  const held = await cursorNow();
  expect(cursors.decode(held).removalStep).toBeGreaterThan(0);

  // Restored to before the second reset: the table holds the first one only. Numbered the
  // latest plus one, the next reset would take the very step `held` carries, and refuse it not.
  await sql`DELETE FROM sw_status_feed_removals`.execute(t.database.db);
  const [step, position] = first.split(':');
  const [tx, seq] = position!.split('/');
  await sql`INSERT INTO sw_status_feed_removals (step, removed_tx, removed_seq)
            VALUES (${Number(step)}, ${tx}::xid8, ${Number(seq)})`.execute(t.database.db);
  await sql`UPDATE sw_status_feed_epoch SET timeline = timeline - 1`.execute(t.database.db);
  expect(await check()).toBe('reset');

  await expectExpired(held);
  // A cursor issued after it follows as usual.
  const fresh = await cursorNow();
  const later = await insertEvent('after-rollback');
  expect(await followUntil(fresh, later.id)).toContain(later.id);
}, 60_000);

test('When retention holds the removal steps’ lock, then an unchanged check does not wait for it, and a changed one waits for it and resets', async () => {
  await check();
  await c.query('BEGIN');
  try {
    await c.query('SELECT pg_advisory_xact_lock($1)', [REMOVAL_STEPS_LOCK]);
    expect(await check()).toBe('unchanged');
    await sql`UPDATE sw_status_feed_epoch SET timeline = timeline + 1`.execute(t.database.db);
    // A try-lock lost this round to retention's batches (round after round with a backlog).
    const pending = check();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await c.query('COMMIT');
    expect(await pending).toBe('reset');
  } finally {
    await c.query('ROLLBACK').catch(() => undefined);
  }
}, 60_000);
