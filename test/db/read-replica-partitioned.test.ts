import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { createReaderDb } from '../../src/db/database';
import { isDatabaseUnavailable } from '../../src/db/database-unavailable';
import { readWithin } from '../../src/db/read-timeout';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { TEST_API_TOKEN } from '../helpers/test-app';
import { startReplicaStack } from './support/replica-stack';
import type { ReplicaStack } from './support/replica-stack';

/**
 * DATABASE_READ_URL's standby stops answering (a network partition, a hung host, a VM frozen by
 * its hypervisor) while the reader pool holds connections to it. The reads' 5 s statement
 * timeout is enforced by the server — the part not answering — so without a deadline of the
 * client's own lists and the feed waited for ever; and as lists and GET /v1/messages/:id shared
 * one read gate, two hung lists took every turn from the single-message read the primary
 * serves (DESIGN §13: a caller reads back its own write). DESIGN §6: while the database is
 * unreachable the query API answers 503 + Retry-After. The reader pool now gives up on an
 * answer after READER_QUERY_TIMEOUT_MS (db/database.ts), closes that connection, and the
 * primary's reads have their own turns (app.ts).
 */
jest.setTimeout(120_000);

let stack: ReplicaStack | undefined;
beforeAll(async () => {
  stack = await startReplicaStack({ partitionable: true });
}, 120_000);
afterAll(async () => {
  await stack?.close();
});

const get = (path: string) =>
  request(stack!.t.internalApp).get(path).auth(TEST_API_TOKEN, { type: 'bearer' });

test('When a read waits past the reader pool’s query timeout, then it fails as the database unavailable and its connection is closed, not handed out again', async () => {
  const { primary, writer } = stack!;
  const reader = createReaderDb(primary.url, 1, writer.db, { queryTimeoutMs: 300 });
  const pid = async () =>
    (await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(reader.db)).rows[0]!.pid;
  try {
    const before = await pid();
    // In a transaction, as the query API reads (readWithin): the caller sees the timeout, not
    // a ROLLBACK that failed on the dead connection.
    const failed = await readWithin(reader.db, 5_000, (trx) =>
      sql`SELECT pg_sleep(2)`.execute(trx),
    ).catch((error: unknown) => error);
    expect(failed).toEqual(expect.objectContaining({ message: 'Query read timeout' }));
    expect(isDatabaseUnavailable(failed)).toBe(true);
    // The pool's one connection was closed: the next read gets a fresh session at once.
    expect(await pid()).not.toBe(before);
  } finally {
    await reader.db.destroy();
  }
});

test('When the read replica stops answering, then lists and the feed answer 503 + Retry-After within the read timeout and a margin, and GET /v1/messages/:id (the primary) still answers 200', async () => {
  const { t, standby, proxy } = stack!;
  const sid = `SM${randomUUID().replace(/-/g, '')}`;
  expect((await postCxml(t.publicApp, cxmlFields({ MessageSid: sid }))).status).toBe(200);
  await standby.caughtUp();
  // The reader pool warm: connections open and checked, as in steady production.
  await Promise.all([get('/v1/messages'), get('/v1/messages'), get('/v1/events?limit=1')]);

  proxy!.freeze();
  const outcome = async (path: string): Promise<string> => {
    try {
      const res = await get(path).timeout({ response: 15_000 });
      return `${res.status} Retry-After: ${res.headers['retry-after']}`;
    } catch (error) {
      return (error as { timeout?: number }).timeout ? 'no answer within 15 s' : String(error);
    }
  };
  const [list1, list2, feed, ownMessage] = await Promise.all([
    outcome('/v1/messages?limit=5'),
    outcome('/v1/messages?limit=6'),
    outcome('/v1/events?limit=1&wait=0'),
    // The caller's own message, read from the primary, a moment later.
    new Promise((resolve) => setTimeout(resolve, 300)).then(() => outcome(`/v1/messages/${sid}`)),
  ]);
  expect({ list1, list2, feed, ownMessage }).toEqual({
    list1: expect.stringMatching(/^503 Retry-After: \d+$/),
    list2: expect.stringMatching(/^503 Retry-After: \d+$/),
    feed: expect.stringMatching(/^503 Retry-After: \d+$/),
    ownMessage: '200 Retry-After: undefined',
  });
});
