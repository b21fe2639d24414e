import { createHmac } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, TEST_TOKEN_SECRET, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';

/**
 * A validly signed cursor for a position this database never reached — another deployment's
 * sharing CALLBACK_TOKEN_SECRET, or one kept from before the database was restored from a
 * logical dump (transaction ids restart lower) — used to get empty pages until the cluster's
 * ids caught up with it, and its consumer missed every event meanwhile. It is refused as a
 * cursor retention overtook is (410 cursor_expired: read the state anew, follow from now),
 * while every cursor this database issued keeps working. (A standby's snapshot trails the
 * primary's: test/feed/cursor-beyond-standby.test.ts.)
 */

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

/**
 * A cursor minted apart from src/feed/feed-cursor.ts, in the signed format pods of earlier
 * versions issue (`base64url(tx.seq).mac`): the format is unchanged, so a rolling upgrade
 * keeps every consumer's cursor.
 */
function cursorFor(tx: bigint, seq: number): string {
  const key = createHmac('sha256', TEST_TOKEN_SECRET).update('sw-status change feed cursor v1');
  const payload = `${tx}.${seq}`;
  const mac = createHmac('sha256', key.digest()).update(payload).digest().subarray(0, 16);
  return `${Buffer.from(payload).toString('base64url')}.${mac.toString('base64url')}`;
}

/** The first transaction id the cluster has not issued yet: no cursor of its own lies beyond. */
async function notYetIssued(): Promise<bigint> {
  const { rows } = await sql<{ xmax: string }>`
    SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xmax`.execute(t.database.db);
  return BigInt(rows[0]!.xmax);
}

test('When a validly signed cursor lies beyond every position this database has reached, then the feed answers 410 cursor_expired at once, long-poll or not', async () => {
  // Another cluster that has run longer: its transaction ids are a million ahead of this one's.
  const foreign = cursorFor((await notYetIssued()) + 1_000_000n, 7);

  const res = await get(`/v1/events?after=${foreign}`).expect(410);
  expect(res.body.error.code).toBe('cursor_expired');
  expect(res.body.error.message).toMatch(/after=now/);

  // A long-poll is refused before it waits, not with an empty page at the end of the wait.
  const started = Date.now();
  const polled = await get(`/v1/events?after=${foreign}&wait=10&status=failed`).expect(410);
  expect(polled.body.error.code).toBe('cursor_expired');
  expect(Date.now() - started).toBeLessThan(5_000);
});

test('When a cursor stands at the very end this database has reached, then it is followed and gives what commits later', async () => {
  // The highest position this cluster can have issued (what after=now gives when no
  // transaction is open), minted as an earlier version's pod would.
  let cursor = cursorFor(await notYetIssued(), 0);
  const event = statusEvent('delivered');
  await recordEvents(t.database.db, [event], { onCommitted: t.feedSignal.committed });

  // Another test file's open transaction can hold the event back a moment: follow until it comes.
  const seen: string[] = [];
  const deadline = Date.now() + 20_000;
  while (!seen.includes(event.messageId) && Date.now() < deadline) {
    const res = await get(`/v1/events?after=${cursor}&wait=2`).expect(200);
    seen.push(...(res.body.data as Array<{ message_id: string }>).map((e) => e.message_id));
    cursor = res.body.next_cursor as string;
  }
  expect(seen).toEqual([event.messageId]);
});
