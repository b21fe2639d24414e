import { sql } from 'kysely';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { IDLE_IN_TRANSACTION_TIMEOUT_MS } from '../../src/db/kysely-pool';
import { classifyWriteFailure } from '../../src/db/write-failure';
import { recordEvents } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * A replica frozen in the middle of a transaction (SIGSTOP, a paused VM, a node gone without
 * closing its sockets) kept its row locks and its transaction id until PostgreSQL noticed, hours
 * later with default keepalives: the other replicas' callbacks for those messages went to the
 * spool and the change feed stopped for every consumer. Every transaction the service opens now
 * carries SET LOCAL idle_in_transaction_session_timeout (src/db/kysely-pool.ts).
 */

let database: TestDatabase;
const handles: DatabaseHandle[] = [];

beforeAll(async () => {
  database = await createTestDatabase(2);
});
afterAll(async () => {
  await Promise.all(handles.map((handle) => handle.db.destroy()));
  await database?.destroy();
});

function service(idleInTransactionTimeoutMs?: number): DatabaseHandle {
  const handle = createDb(
    database.url,
    2,
    idleInTransactionTimeoutMs === undefined ? {} : { idleInTransactionTimeoutMs },
  );
  handles.push(handle);
  return handle;
}

const setting = sql<{ value: string }>`
  SELECT current_setting('idle_in_transaction_session_timeout') AS value`;

test('When the service opens a transaction, plain or with an isolation level, then it is bounded while it waits for the service; the session outside it is not', async () => {
  const { db } = service();
  const expected = `${IDLE_IN_TRANSACTION_TIMEOUT_MS / 1000}s`;
  const plain = await db.transaction().execute(async (trx) => (await setting.execute(trx)).rows);
  const repeatable = await db
    .transaction()
    .setIsolationLevel('repeatable read')
    .execute(async (trx) => {
      const level = await sql<{
        level: string;
      }>`SELECT current_setting('transaction_isolation') AS level`.execute(trx);
      return [(await setting.execute(trx)).rows[0], level.rows[0]];
    });
  expect(plain).toEqual([{ value: expected }]);
  expect(repeatable).toEqual([{ value: expected }, { level: 'repeatable read' }]);
  expect((await setting.execute(db)).rows).toEqual([{ value: '0' }]);
});

test('When a replica freezes holding a message’s row lock in a write, then another replica’s write of that message commits once the bound has passed, and the frozen pool serves again afterwards', async () => {
  // A bound with room for a loaded machine's stalls between the transaction's own statements
  // (a stall past it before the lock is taken would end the transaction early).
  const frozen = service(2_000);
  const other = service();
  const event = statusEvent('sent');
  await recordEvents(other.db, [event]);

  // The frozen replica: its transaction locked the message's row, then nothing more came.
  let resume!: () => void;
  const thawed = new Promise<void>((resolve) => (resume = resolve));
  let lockTaken!: () => void;
  const locked = new Promise<void>((resolve) => (lockTaken = resolve));
  const stuck = frozen.db
    .transaction()
    .execute(async (trx) => {
      await sql`SELECT 1 FROM messages WHERE id = ${event.messageId} FOR UPDATE`.execute(trx);
      lockTaken();
      await thawed;
      await sql`SELECT 1`.execute(trx);
    })
    .then(
      () => 'committed',
      (error: unknown) => error,
    );
  await locked;

  const began = Date.now();
  await recordEvents(other.db, [statusEvent('delivered', { messageId: event.messageId })]);
  const waitedMs = Date.now() - began;
  expect(waitedMs).toBeGreaterThanOrEqual(1_000);
  expect(waitedMs).toBeLessThan(20_000);
  const { rows } = await sql<{ status: string }>`
    SELECT status FROM messages WHERE id = ${event.messageId}`.execute(other.db);
  expect(rows).toEqual([{ status: 'delivered' }]);

  // Thawed: its transaction is gone (PostgreSQL ended the session, 25P03), which its write
  // path takes for an outage (retried or spooled, never dropped), and its pool works again.
  resume();
  const error = await stuck;
  expect(error).toBeInstanceOf(Error);
  expect(classifyWriteFailure(error)).toBe('unavailable');
  expect((await sql<{ one: number }>`SELECT 1 AS one`.execute(frozen.db)).rows).toEqual([
    { one: 1 },
  ]);
}, 30_000);

test('When a transaction works without pause for longer than the bound, then nothing ends it: the bound counts only waits for the service', async () => {
  // The bound has room for the client's own pauses between statements on a loaded machine (a
  // 500 ms bound ended this transaction in CI, the client stalled between its statements); the
  // statement runs past it.
  const { db } = service(3_000);
  const result = await db.transaction().execute(async (trx) => {
    await sql`SELECT pg_sleep(4)`.execute(trx);
    return (await sql<{ one: number }>`SELECT 1 AS one`.execute(trx)).rows;
  });
  expect(result).toEqual([{ one: 1 }]);
});
