import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { Client } from 'pg';
import { createReaderDb } from '../../src/db/database';
import { NOT_A_STANDBY } from '../../src/db/standby-only';
import request from 'supertest';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { eventually } from '../helpers/eventually';
import { startReplicaStack } from './support/replica-stack';
import type { ReplicaStack } from './support/replica-stack';

/**
 * DATABASE_READ_URL's standby promoted (a failover that chose another node, a replica split off
 * by hand): it answers reads still, from a history that stopped at the promotion. The feed
 * read from it gave empty pages for ever, and lists and stats froze, all with a 200. Reads
 * that go to it are answered 503 instead, once the service has checked (at most every 5 s),
 * while callbacks keep being stored on the primary.
 */

jest.setTimeout(120_000);

let stack: ReplicaStack | undefined;
beforeAll(async () => {
  stack = await startReplicaStack();
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

test('When DATABASE_READ_URL names the primary’s own server, then it is read from: it has what the primary has', async () => {
  const { primary, writer } = stack!;
  const reader = createReaderDb(primary.url, 1, writer.db);
  try {
    const { rows } = await sql<{ one: number }>`SELECT 1 AS one`.execute(reader.db);
    expect(rows).toEqual([{ one: 1 }]);
  } finally {
    await reader.db.destroy();
  }
});

test('When the read replica is promoted, then the feed, lists and stats read from it answer 503 instead of a history that stopped', async () => {
  const { t, standby } = stack!;
  const get = (path: string) =>
    request(t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });
  const sid = `SM${randomUUID().replace(/-/g, '')}`;
  expect((await postCxml(t.publicApp, cxmlFields({ MessageSid: sid }))).status).toBe(200);
  await standby.caughtUp();
  const before = await get('/v1/events?limit=1000');
  expect(before.status).toBe(200);
  expect(before.body.data.map((event: { message_id: string }) => event.message_id)).toContain(sid);

  const client = new Client({ connectionString: standby.url });
  await client.connect();
  try {
    await client.query('SELECT pg_promote(true, 30)');
  } finally {
    await client.end();
  }
  const later = `SM${randomUUID().replace(/-/g, '')}`;
  expect((await postCxml(t.publicApp, cxmlFields({ MessageSid: later }))).status).toBe(200);

  await eventually(
    async () => (await get(`/v1/events?after=${before.body.next_cursor}`)).status === 503,
    'the feed answers 503',
    15_000,
  );
  const feed = await get(`/v1/events?after=${before.body.next_cursor}`);
  expect(feed.headers['retry-after']).toBeDefined();
  expect((await get('/v1/messages')).status).toBe(503);
  expect((await get('/v1/stats')).status).toBe(503);
  // A reader opened afresh on the promoted server says why.
  const fresh = createReaderDb(standby.url, 1, stack!.writer.db);
  try {
    await expect(sql`SELECT 1`.execute(fresh.db)).rejects.toThrow(NOT_A_STANDBY);
  } finally {
    await fresh.db.destroy();
  }
  // The primary still answers what must see the caller's own write.
  expect((await get(`/v1/messages/${later}`)).status).toBe(200);
});
