import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { Client } from 'pg';
import request from 'supertest';
import type { DatabaseHandle } from '../../src/db/database';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { TEST_API_TOKEN } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import type { DisposablePostgres } from '../ingest/support/disposable-postgres';
import { eventually } from '../helpers/eventually';
import type { HotStandby } from './support/hot-standby';
import { startReplicaStack } from './support/replica-stack';
import type { ReplicaStack } from './support/replica-stack';

/**
 * DATABASE_READ_URL against a real hot standby (test/db/support/hot-standby.ts) streaming from
 * the test's own primary: callbacks are written to the primary, a message is read back from
 * the primary right after its write, while lists, stats and the change feed come from the
 * standby — shown by pausing the standby's replay. And the feed read from the standby, followed
 * while writers commit concurrently (some holding their transaction open), never skips an
 * event: it only lags, and ends with exactly the primary's events.
 */

let primary: DisposablePostgres;
let standby: HotStandby;
let writer: DatabaseHandle;
let t: TestApp;

let stack: ReplicaStack | undefined;
beforeAll(async () => {
  // The feed test below pages as fast as the machine allows for four seconds; on a fast machine
  // that is more than the query API's default 1 200 requests a minute per token, and a 429 here
  // would say nothing about the replica.
  stack = await startReplicaStack({
    env: { RATE_LIMIT_QUERY_PER_MINUTE: '1000000' },
    writerPool: 8,
  });
  ({ primary, standby, writer, t } = stack);
}, 120_000);

afterAll(async () => {
  await stack?.close();
});

const get = (path: string) =>
  request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

test('With DATABASE_READ_URL, callbacks are written to the primary and a message reads back from it at once, while lists, stats and the feed come from the standby', async () => {
  await standby.caughtUp();
  const before = await get('/v1/stats');
  expect(before.status).toBe(200);
  await standby.pauseReplay();
  try {
    const sid = `SM${randomUUID().replace(/-/g, '')}`;
    const res = await postCxml(t.publicApp, cxmlFields({ MessageSid: sid, MessageStatus: 'sent' }));
    expect(res.status).toBe(200);

    // On the primary at once.
    const one = await get(`/v1/messages/${sid}`);
    expect(one.status).toBe(200);
    expect(one.body.status).toBe('sent');
    // The standby has not replayed it: the list, the feed and the stats do not have it yet.
    const list = await get('/v1/messages?limit=100');
    expect(list.status).toBe(200);
    expect(list.body.data.map((m: { id: string }) => m.id)).not.toContain(sid);
    const feed = await get('/v1/events?limit=1000');
    expect(feed.body.data.map((e: { message_id: string }) => e.message_id)).not.toContain(sid);
    expect((await get('/v1/stats')).body.total).toBe(before.body.total);

    await standby.resumeReplay();
    await eventually(async () => {
      const after = await get('/v1/messages?limit=100');
      return after.body.data.some((m: { id: string }) => m.id === sid);
    }, 'the standby to replay the callback');
    const feedAfter = await get('/v1/events?limit=1000');
    expect(feedAfter.body.data.map((e: { message_id: string }) => e.message_id)).toContain(sid);
    expect((await get('/v1/stats')).body.total).toBe(before.body.total + 1);
  } finally {
    await standby.resumeReplay();
  }
});

test('The feed read from the standby while writers commit on the primary never skips an event: it lags, and ends with exactly the primary’s events', async () => {
  let writing = true;
  const failures: unknown[] = [];
  // Writers: batches of new events through the write path, on several connections at once.
  const writers = Array.from({ length: 4 }, async (_, w) => {
    for (let i = 0; writing; i++) {
      const id = `feed-${w}-${i}`;
      try {
        await recordEvents(writer.db, [
          statusEvent('queued', { messageId: id }),
          statusEvent('sent', { messageId: id }),
        ]);
      } catch (error) {
        failures.push(error);
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  });
  // And transactions that take their seq, then stay open while later ones commit.
  const slow = (async () => {
    const client = new Client({ connectionString: primary.url });
    await client.connect();
    try {
      for (let i = 0; writing; i++) {
        await client.query('BEGIN');
        await client.query(
          `INSERT INTO status_events (message_id, api, status, raw_status, source, received_at,
             dedupe_key, raw, message_status)
           VALUES ($1::text, 'cxml', 'sent', 'sent', 'callback', now(),
             sha256(convert_to($1::text, 'UTF8')), '{}', 'sent')`,
          [`slow-${i}`],
        );
        await new Promise((resolve) => setTimeout(resolve, 150));
        await client.query('COMMIT');
      }
    } finally {
      await client.end();
    }
  })();

  // The consumer follows the standby's feed from the start, page after page.
  const seen: number[] = [];
  let cursor: string | undefined;
  const page = async () => {
    const res = await get(`/v1/events?limit=200${cursor ? `&after=${cursor}` : ''}`);
    expect(res.status).toBe(200);
    seen.push(...(res.body.data as Array<{ seq: number }>).map((e) => e.seq));
    cursor = res.body.next_cursor as string;
  };
  const started = Date.now();
  try {
    while (Date.now() - started < 4_000) await page();
  } finally {
    // Even when a page fails: writers left running would outlive the test and see the
    // databases stopped under them.
    writing = false;
    await Promise.all([...writers, slow]);
  }
  expect(failures).toEqual([]);

  const { rows } = await sql<{ seq: number }>`SELECT seq FROM status_events ORDER BY seq`.execute(
    writer.db,
  );
  const all = rows.map((row) => Number(row.seq));
  await standby.caughtUp();
  await eventually(async () => {
    await page();
    return seen.length >= all.length;
  }, 'the standby feed to reach the primary’s last event');
  expect(new Set(seen).size).toBe(seen.length);
  expect([...seen].sort((a, b) => a - b)).toEqual(all);
});
