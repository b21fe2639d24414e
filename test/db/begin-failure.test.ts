import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { Client } from 'pg';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { recordEvents } from '../../src/messages/record-events';
import { cxmlFields } from '../helpers/callbacks';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * A transaction's BEGIN travels with its first statement (src/db/kysely-pool.ts), as two
 * messages. A BEGIN can fail before it runs — a cancel, or a statement_timeout that fired at
 * the very end of the connection's previous statement, is delivered on it — and the statement
 * behind it then runs on its own: were it to write, it would commit alone. For the write path
 * that stored an acknowledged callback's event without its fold: the message kept its old
 * status for good, its relay job was never written, and SignalWire's retry was a duplicate.
 *
 * Here the next BEGIN message fails before its BEGIN runs: an error in front of it in the same
 * simple-protocol message (PostgreSQL skips the rest of a message after an error).
 */

let database: TestDatabase;
let failNextBegin = false;
// For each BEGIN message sent: whether it had been answered when the next statement was sent.
let begin: { answered: boolean } | null = null;
const answeredBeforeNext: boolean[] = [];

beforeAll(async () => {
  // One connection: the failed BEGIN's connection is the one the retry uses.
  database = await createTestDatabase(1);
  const original = Client.prototype.query as (this: Client, ...args: unknown[]) => unknown;
  jest.spyOn(Client.prototype, 'query').mockImplementation(function (
    this: Client,
    ...args: unknown[]
  ) {
    const [text] = args;
    const isBegin = typeof text === 'string' && /^(begin|start transaction)/.test(text);
    if (begin !== null) {
      answeredBeforeNext.push(begin.answered);
      begin = null;
    }
    if (failNextBegin && isBegin) {
      failNextBegin = false;
      args[0] = `SELECT 1/0; ${text}`;
    }
    const result = original.apply(this, args);
    if (isBegin) {
      const sent = { answered: false };
      begin = sent;
      const answered = () => void (sent.answered = true);
      (result as Promise<unknown>).then(answered, answered);
    }
    return result as never;
  } as typeof Client.prototype.query);
});
afterAll(async () => {
  jest.restoreAllMocks();
  await database?.destroy();
});

const callback = (messageSid: string, status: string) =>
  normalizeCxmlCallback(cxmlFields({ MessageSid: messageSid, MessageStatus: status }), {
    receivedAt: new Date(),
    storeBody: false,
  });

test('When the BEGIN in front of a batch fails, then the batch writes nothing, and its retry stores the event and moves the message', async () => {
  const id = randomUUID();
  expect(await recordEvents(database.db, [callback(id, 'sent')])).toEqual(['recorded']);

  failNextBegin = true;
  await expect(recordEvents(database.db, [callback(id, 'delivered')])).rejects.toMatchObject({
    code: '22012',
  });
  const history = await sql<{ status: string }>`
    SELECT status FROM status_events WHERE message_id = ${id} ORDER BY seq`.execute(database.db);
  expect(history.rows.map((row) => row.status)).toEqual(['sent']);

  // SignalWire's retry (the first attempt was not acknowledged).
  expect(await recordEvents(database.db, [callback(id, 'delivered')])).toEqual(['recorded']);
  const message = await sql<{ status: string }>`
    SELECT status FROM messages WHERE id = ${id}`.execute(database.db);
  expect(message.rows).toEqual([{ status: 'delivered' }]);
});

test('When the BEGIN in front of any other transaction’s first write fails, then that write is not committed either', async () => {
  await sql`CREATE TABLE IF NOT EXISTS begin_failure (id int)`.execute(database.db);
  failNextBegin = true;
  await expect(
    database.db.transaction().execute(async (trx) => {
      await sql`INSERT INTO begin_failure VALUES (1)`.execute(trx);
      await sql`INSERT INTO begin_failure VALUES (2)`.execute(trx);
    }),
  ).rejects.toMatchObject({ code: '22012' });
  const { rows } = await sql<{ id: number }>`SELECT id FROM begin_failure`.execute(database.db);
  expect(rows).toEqual([]);
});

test('A batch’s statement travels with its BEGIN, while another transaction’s first write waits for the BEGIN’s answer', async () => {
  answeredBeforeNext.length = 0;
  await recordEvents(database.db, [callback(randomUUID(), 'sent')]);
  // One round trip saved on every batch of callbacks: the guard in RECORD_BATCH allows it.
  expect(answeredBeforeNext).toEqual([false]);

  await sql`CREATE TABLE IF NOT EXISTS begin_failure (id int)`.execute(database.db);
  answeredBeforeNext.length = 0;
  await database.db.transaction().execute(async (trx) => {
    await sql`INSERT INTO begin_failure VALUES (3)`.execute(trx);
  });
  expect(answeredBeforeNext).toEqual([true]);
});
