import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { migrateToLatest } from '../../src/db/migrate';
import { createFastServer } from '../../src/http/fast-server';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { createDisposablePostgres } from '../ingest/support/disposable-postgres';
import type { DisposablePostgres } from '../ingest/support/disposable-postgres';
import { eventually } from '../ingest/support/eventually';

/**
 * Every commit wakes every waiting long-poll. Each used to read its page at once: with a few
 * hundred consumers, that many statements queued for the pool the callbacks' commits take
 * their connections from. Now a few reads run at once per process and consumers at the same
 * position share one (src/feed/feed-reads.ts).
 */

const CONSUMERS = 100;

let primary: DisposablePostgres;
let writer: DatabaseHandle;
let t: TestApp;
let reader: DatabaseHandle;
let server: Server;
let statements = 0;
let inUse = 0;
let mostInUse = 0;
beforeAll(async () => {
  // A PostgreSQL of its own: the feed reads below the oldest open transaction of the whole
  // cluster, and other test files' transactions on a shared one would hold the commit back and
  // send every long-poll into its own rechecks.
  primary = await createDisposablePostgres();
  writer = createDb(primary.url, 4);
  await migrateToLatest(writer.db);
  // The feed reads through a pool of its own (as with DATABASE_READ_URL): its statements and
  // its busiest moment are counted.
  reader = createDb(primary.url, 10);
  reader.pool.on('acquire', () => {
    statements += 1;
    mostInUse = Math.max(mostInUse, ++inUse);
  });
  reader.pool.on('release', () => (inUse -= 1));
  // Long-polls look on their own only every minute: every read counted below is the commit's.
  t = await createTestApp(
    {},
    {
      database: { ...writer, url: primary.url, destroy: async () => undefined },
      readDb: reader.db,
      feedPollMs: 60_000,
    },
  );
  await eventually(() => t.feedSignal.listening(), 'the feed signal listening');
  server = createFastServer(t.internalApp);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
}, 120_000);
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await t?.close();
  await reader?.db.destroy();
  await writer?.db.destroy();
  await primary?.destroy();
});

async function get(path: string) {
  const { port } = server.address() as AddressInfo;
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    headers: { authorization: `Bearer ${TEST_API_TOKEN}` },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

test('When a hundred long-polls wait at the end of the feed and an event commits, then they all get it from a few shared reads, not a read each', async () => {
  const end = await get('/v1/events?after=now');
  const cursor = end.body['next_cursor'] as string;
  const polls = Array.from({ length: CONSUMERS }, () =>
    get(`/v1/events?after=${encodeURIComponent(cursor)}&wait=20`),
  );
  // Every long-poll made its first look and waits: no read for a second.
  const settled = async () => {
    let last = -1;
    while (statements !== last) {
      last = statements;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  };
  await settled();
  statements = 0;
  mostInUse = 0;

  const id = randomUUID();
  await recordEvents(t.database.db, [statusEvent('sent', { messageId: id })], {
    onCommitted: t.feedSignal.committed,
  });
  const answers = await Promise.all(polls);

  for (const answer of answers) {
    expect(answer.status).toBe(200);
    expect((answer.body['data'] as Array<{ message_id: string }>).map((e) => e.message_id)).toEqual(
      [id],
    );
  }
  console.log(
    `${CONSUMERS} long-polls woken by one commit: ${statements} page reads, ${mostInUse} at once`,
  );
  // A quarter of DATABASE_POOL_MAX (10) at once, and the rest shared: before, one per consumer.
  expect(mostInUse).toBeLessThanOrEqual(2);
  expect(statements).toBeLessThan(10);
}, 60_000);
