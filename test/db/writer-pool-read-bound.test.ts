import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { isDatabaseUnavailable } from '../../src/db/database-unavailable';
import { ANSWER_MARGIN_MS, readWithin, withinStatementTimeout } from '../../src/db/read-timeout';
import { createFreezer } from '../helpers/freezer';
import type { Freezer } from '../helpers/freezer';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * DATABASE_URL's pool has no query_timeout: a COMMIT of the write path that may still succeed
 * must never be taken for failed. The query API's reads on it carry a bound of their own
 * (readWithin: the statement timeout and ANSWER_MARGIN_MS, db/kysely-pool.ts answerWithin), for
 * a primary that stops answering on open connections — and only they, only until their
 * connection is released: a write on the same connection afterwards waits as long as it takes.
 */
jest.setTimeout(60_000);

// The reads' statement timeout here; their bound on the client's side is this and the margin.
const READ_TIMEOUT_MS = 200;

let database: TestDatabase;
let freezer: Freezer;
let handle: DatabaseHandle;
beforeAll(async () => {
  database = await createTestDatabase(1);
  freezer = createFreezer();
  // One connection: every transaction below runs on the one the read used before it.
  handle = createDb(await freezer.relay(database.url), 1);
});
afterAll(async () => {
  await freezer.close();
  await handle.db.destroy().catch(() => undefined);
  await database.destroy();
});

const backendPid = async (): Promise<number> =>
  (await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(handle.db)).rows[0]!.pid;

test('When a write runs longer than a read’s client-side bound on the connection a read used, then it is not cut short: the bound is the read’s, gone at its release', async () => {
  const readOn = await readWithin(handle.db, READ_TIMEOUT_MS, async (trx) => {
    const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx);
    return rows[0]!.pid;
  });
  const slow = `${(READ_TIMEOUT_MS + ANSWER_MARGIN_MS + 1_000) / 1000}`;
  const started = Date.now();
  // As the write path's bounded writes (relays, redactions, send intents, the sweep): a
  // statement timeout the server enforces, far longer than the read's bound.
  const writtenOn = await withinStatementTimeout(handle.db, 30_000, async (trx) => {
    await sql`SELECT pg_sleep(${slow}::float8)`.execute(trx);
    const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx);
    return rows[0]!.pid;
  });
  expect(Date.now() - started).toBeGreaterThan(READ_TIMEOUT_MS + ANSWER_MARGIN_MS);
  expect(writtenOn).toBe(readOn);
  // And a plain transaction, as the group commit's, the same.
  const committed = await handle.db
    .transaction()
    .execute(async (trx) => sql`SELECT pg_sleep(${slow}::float8)`.execute(trx));
  expect(committed.rows).toHaveLength(1);
});

test('When the primary stops answering on an open connection, then a read fails as the database unavailable after its statement timeout and the margin, and its connection is closed, not handed out again', async () => {
  const before = await backendPid();
  // Only the open connection goes silent; a new one reaches the server.
  freezer.freezeOpen();
  const started = Date.now();
  const failed = await readWithin(handle.db, READ_TIMEOUT_MS, (trx) =>
    sql`SELECT 1`.execute(trx),
  ).catch((error: unknown) => error);
  const waited = Date.now() - started;
  expect(failed).toEqual(expect.objectContaining({ message: 'Query read timeout' }));
  expect(isDatabaseUnavailable(failed)).toBe(true);
  expect(waited).toBeGreaterThanOrEqual(READ_TIMEOUT_MS + ANSWER_MARGIN_MS - 50);
  expect(waited).toBeLessThan(READ_TIMEOUT_MS + ANSWER_MARGIN_MS + 5_000);
  // The pool's one connection was closed: the next read gets a fresh session at once.
  expect(await backendPid()).not.toBe(before);
});
