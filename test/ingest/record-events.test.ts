import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { applyEvent } from '../../src/messages/projection';
import type { MessageState } from '../../src/messages/projection';
import { recordEvents } from '../../src/messages/record-events';
import { recordBatch } from '../../src/messages/record-events.repository';
import { dedupeKey } from '../../src/messages/status-event';
import type { StatusTransition } from '../../src/messages/record-events';
import { findMessageWithHistory } from '../../src/messages/messages.repository';
import type { Db } from '../../src/db/database';
import type { StatusEvent } from '../../src/messages/status-event';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * The write path against a real PostgreSQL: batches of every shape, text that JSON and
 * PostgreSQL treat specially, concurrent writers, and the prepared, pipelined statements.
 */

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase(4);
});
afterAll(() => database.destroy());

let clock = Date.parse('2026-11-20T10:00:00Z');
function event(messageId: string, rawStatus: string, overrides: Partial<StatusEvent> = {}) {
  clock += 1000;
  return statusEvent(rawStatus, { messageId, receivedAt: new Date(clock), ...overrides });
}

/** The stored `messages` row, undefined when there is none. */
async function findMessage(db: Db, id: string) {
  return (await findMessageWithHistory(db, id))?.message;
}

/** The stored message, as the projection would make it from the stored history. */
async function expectProjectionOfHistory(messageId: string): Promise<void> {
  const row = await findMessage(database.db, messageId);
  const { rows: history } = await sql<{ raw_status: string; received_at: Date }>`
    SELECT raw_status, received_at FROM status_events WHERE message_id = ${messageId} ORDER BY seq`.execute(
    database.db,
  );
  expect(row).toBeDefined();
  expect(history.length).toBeGreaterThan(0);
  const folded = history.reduce<MessageState | null>(
    (state, h) =>
      applyEvent(state, statusEvent(h.raw_status, { messageId, receivedAt: h.received_at })),
    null,
  )!;
  expect(row).toMatchObject({
    status: folded.status,
    status_received_at: folded.statusReceivedAt,
    created_at: folded.createdAt,
    last_event_at: folded.lastEventAt,
  });
}

describe('recordEvents', () => {
  test('When a batch mixes new messages, stored messages and duplicates, then each event gets its outcome and each message its state', async () => {
    const stored = randomUUID();
    const fresh = randomUUID();
    const queued = event(stored, 'queued', {
      source: 'proxy',
      send: { ref: 'r1', kind: 'sms', clientStatusCallback: null, body: null },
    });
    expect(await recordEvents(database.db, [queued])).toEqual(['recorded']);

    const sent = event(stored, 'sent');
    const delivered = event(stored, 'delivered');
    const freshSent = event(fresh, 'sent');
    const outcomes = await recordEvents(database.db, [
      sent,
      { ...queued }, // stored before: a duplicate
      freshSent,
      delivered,
      { ...sent }, // earlier in this batch: a duplicate
      event(fresh, 'failed', { errorCode: '30008' }),
    ]);
    expect(outcomes).toEqual([
      'recorded',
      'duplicate',
      'recorded',
      'recorded',
      'duplicate',
      'recorded',
    ]);
    expect(await findMessage(database.db, stored)).toMatchObject({
      status: 'delivered',
      sent_via_proxy: true,
      ref: 'r1',
      created_at: queued.receivedAt,
      last_event_at: delivered.receivedAt,
    });
    expect(await findMessage(database.db, fresh)).toMatchObject({
      status: 'failed',
      error_code: '30008',
      created_at: freshSent.receivedAt,
    });
    const { history } = (await findMessageWithHistory(database.db, stored))!;
    expect(history.map((h) => h.raw_status)).toEqual(['queued', 'sent', 'delivered']);
  });

  test('When a message gets several events in one batch, then every status change is reported once, after the commit', async () => {
    const id = randomUUID();
    const transitions: StatusTransition[] = [];
    await recordEvents(
      database.db,
      [event(id, 'queued'), event(id, 'sent'), event(id, 'delivered'), event(id, 'sent')],
      { onTransition: (t) => transitions.push(t) },
    );
    expect(transitions.map((t) => `${t.from}→${t.to}`)).toEqual(['queued→sent', 'sent→delivered']);
    expect(transitions.every((t) => t.seconds === 1)).toBe(true);
  });

  test('When only duplicates arrive, then nothing is written and the message keeps its row', async () => {
    const id = randomUUID();
    const events = [event(id, 'queued'), event(id, 'sent')];
    await recordEvents(database.db, events);
    const before = await findMessage(database.db, id);
    expect(
      await recordEvents(
        database.db,
        events.map((e) => ({ ...e })),
      ),
    ).toEqual(['duplicate', 'duplicate']);
    expect(await findMessage(database.db, id)).toEqual(before);
  });

  test('When text holds quotes, backslashes, escapes, emoji and a lone surrogate, then it is stored as given (the lone surrogate as U+FFFD)', async () => {
    const id = randomUUID();
    const tricky = `quote " backslash \\ \\u0041 tab\t newline\n é 😀 \\ud800 end`;
    await recordEvents(database.db, [
      event(id, 'undelivered', {
        errorCode: '30003',
        errorMessage: tricky,
        to: '+1555\ud83d',
        raw: { Body: tricky, 'key "with" \\ quotes': ['a', '\ud800'] },
      }),
    ]);
    const message = await findMessage(database.db, id);
    expect(message!.error_message).toBe(tricky);
    expect(message!.to).toBe('+1555\ufffd');
    const { rows } = await sql<{ raw: unknown }>`
      SELECT raw FROM status_events WHERE message_id = ${id}`.execute(database.db);
    expect(rows[0]!.raw).toEqual({ Body: tricky, 'key "with" \\ quotes': ['a', '\ufffd'] });
  });

  test('When many writers record events of the same new messages at once, then each message ends in the state of its whole history', async () => {
    const ids = Array.from({ length: 5 }, () => randomUUID());
    const statuses = ['queued', 'sent', 'delivered', 'read', 'undelivered'];
    const batches = statuses.flatMap((status) =>
      ids.map((id) => [event(id, status), event(ids[(ids.indexOf(id) + 1) % ids.length]!, status)]),
    );
    await Promise.all(batches.map((batch) => recordEvents(database.db, batch)));
    for (const id of ids) {
      expect((await findMessageWithHistory(database.db, id))!.history).toHaveLength(
        statuses.length,
      );
      await expectProjectionOfHistory(id);
    }
  });
});

describe('what the change feed and the stats read', () => {
  async function stored(messageId: string) {
    const { rows } = await sql<{ status: string; message_status: string; seq: number }>`
      SELECT status, message_status, seq FROM status_events
      WHERE message_id = ${messageId} ORDER BY tx, seq`.execute(database.db);
    return rows.map((row) => [row.status, row.message_status]);
  }

  test('When events arrive out of order, then each event keeps its message status right after it', async () => {
    const id = randomUUID();
    await recordEvents(database.db, [event(id, 'queued'), event(id, 'delivered')]);
    await recordEvents(database.db, [event(id, 'sent')]);
    await recordEvents(database.db, [
      event(id, 'read'),
      event(id, 'undelivered', { errorCode: '30003' }),
    ]);
    expect(await stored(id)).toEqual([
      ['queued', 'queued'],
      ['delivered', 'delivered'],
      ['sent', 'delivered'],
      ['read', 'read'],
      ['undelivered', 'read'],
    ]);
  });

  test('When a transaction with a lower id reaches a message a later transaction has already changed, then the message is left out, for the batch to be retried under a new id', async () => {
    const id = randomUUID();
    await recordEvents(database.db, [event(id, 'queued')]);
    const delivered = event(id, 'delivered');
    await expect(
      database.db.transaction().execute(async (trx) => {
        // This transaction's id is taken now: lower than the next one's.
        await sql`SELECT pg_current_xact_id()`.execute(trx);
        await recordEvents(database.db, [event(id, 'sent')]);
        const batch = await recordBatch(
          trx,
          [{ event: delivered, key: dedupeKey(delivered).toString('hex'), messageStatus: 'x' }],
          [applyEvent(null, delivered)],
        );
        expect(batch.newKeys.size).toBe(1);
        expect(batch.created.has(id) || batch.existing.has(id)).toBe(false);
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    // Recorded normally, the same event folds after the later transaction's.
    await recordEvents(database.db, [delivered]);
    expect(await stored(id)).toEqual([
      ['queued', 'queued'],
      ['sent', 'sent'],
      ['delivered', 'delivered'],
    ]);
  });
});

describe('the write statements', () => {
  test('When events are recorded, then the statements are prepared once on the connection and reused', async () => {
    const single = await createTestDatabase(1);
    try {
      for (let i = 0; i < 3; i++) {
        const id = randomUUID();
        await recordEvents(single.db, [event(id, 'sent')]);
        await recordEvents(single.db, [event(id, 'delivered')]);
      }
      const { rows } = await sql<{ name: string }>`
        SELECT name FROM pg_prepared_statements ORDER BY name`.execute(single.db);
      expect(rows.map((row) => row.name)).toEqual([
        'sw_status_record_batch',
        'sw_status_save_fold',
      ]);
    } finally {
      await single.destroy();
    }
  });

  test('When the first statement of a transaction fails, then nothing of it is committed and the connection serves the next one', async () => {
    const single = await createTestDatabase(1);
    try {
      const id = randomUUID();
      await expect(
        single.db.transaction().execute(async (trx) => {
          await sql`INSERT INTO messages (id, api, status, raw_status, status_rank, status_received_at, last_event_at)
            VALUES (${id}, 'cxml', 'sent', 'sent', 30, now(), now())`.execute(trx);
          await sql`SELECT 1 / 0`.execute(trx);
        }),
      ).rejects.toMatchObject({ code: '22012' });
      await expect(
        single.db.transaction().execute((trx) => sql`SELECT 1 / 0`.execute(trx)),
      ).rejects.toMatchObject({ code: '22012' });
      expect(await findMessage(single.db, id)).toBeUndefined();
      expect(await recordEvents(single.db, [event(id, 'sent')])).toEqual(['recorded']);
      expect(await findMessage(single.db, id)).toMatchObject({ status: 'sent' });
    } finally {
      await single.destroy();
    }
  });

  test('When a transaction runs no statement, then it commits and rolls back without a round trip', async () => {
    await expect(database.db.transaction().execute(async () => 'nothing')).resolves.toBe('nothing');
    await expect(
      database.db.transaction().execute(async () => {
        throw new Error('before any statement');
      }),
    ).rejects.toThrow('before any statement');
    const { rows } = await sql<{ one: number }>`SELECT 1 AS one`.execute(database.db);
    expect(rows).toEqual([{ one: 1 }]);
  });
});
