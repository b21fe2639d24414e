import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { nativeFields, postNative } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { withGroupCommit } from '../helpers/replicas';

/**
 * SignalWire's retries of the same callbacks reach several replicas at once, and each replica's
 * group commit batches them in the order they came. Inserting an event waits for another
 * transaction that inserted the same one and has not committed, holding the events inserted
 * before it: two batches with the same events in opposite orders used to deadlock (found by a
 * cross-replica review). PostgreSQL breaks a deadlock only after `deadlock_timeout` (1 s), by
 * failing one batch, which is retried — a second's delay on every acknowledgement in it, and a
 * chain of them runs into the commit timeout. RECORD_BATCH now inserts in message-id order
 * (record-events.repository.ts inLockOrder).
 *
 * The overlap is widened as it happens in production: a third replica's batch holds one of the
 * events while it waits for a message row another transaction holds.
 */

let a: TestApp;
let b: TestApp;
let c: TestApp;

const groupCommit = () => withGroupCommit({ batchWaitMs: 30 });

beforeAll(async () => {
  a = await createTestApp({}, groupCommit());
  b = await createTestApp({}, { ...groupCommit(), database: a.database });
  c = await createTestApp({}, { ...groupCommit(), database: a.database });
});
afterAll(async () => {
  await c.close();
  await b.close();
  await a.close();
});

/** This database's deadlocks so far, as PostgreSQL counts them. */
async function deadlocks(): Promise<number> {
  const client = new Client({ connectionString: a.database.url });
  await client.connect();
  try {
    await client.query('SELECT pg_stat_force_next_flush()');
    await client.query('SELECT pg_stat_clear_snapshot()');
    const { rows } = await client.query<{ deadlocks: string }>(
      'SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()',
    );
    return Number(rows[0]!.deadlocks);
  } finally {
    await client.end();
  }
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('When the same 40 callbacks reach two replicas in opposite orders while a third replica holds one of them, then every one is answered 200, stored once, and no batch deadlocks', async () => {
  const before = await deadlocks();
  const answers: number[] = [];
  const ids: string[] = [];
  for (let round = 0; round < 5; round++) {
    const events = Array.from({ length: 40 }, () =>
      nativeFields({ id: randomUUID(), status: 'sent', timestamp: '2026-11-01T10:00:00Z' }),
    );
    ids.push(...events.map(({ id }) => id as string));
    const middle = events[20]!;
    // The middle message exists (its queued callback came earlier) and another transaction
    // holds its row for a moment: replica C's batch inserts the middle event and waits there.
    const queued = { ...middle, status: 'queued', timestamp: '2026-11-01T09:59:59Z' };
    expect((await postNative(a.publicApp, queued)).status).toBe(200);
    const holder = new Client({ connectionString: a.database.url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM messages WHERE id = $1 FOR UPDATE', [middle.id]);
      // supertest sends on then(): started now, answered after the lock.
      const onC = postNative(c.publicApp, middle).then(({ status }) => status);
      await pause(150);
      const both = Promise.all([
        ...events.map((fields) => postNative(a.publicApp, fields)),
        ...[...events].reverse().map((fields) => postNative(b.publicApp, fields)),
      ]);
      await pause(300);
      await holder.query('COMMIT');
      answers.push(await onC, ...(await both).map(({ status }) => status));
    } finally {
      await holder.end();
    }
  }

  expect(answers.filter((status) => status !== 200)).toEqual([]);
  expect(answers).toHaveLength(5 * 81);
  const stored = await a.deps.db
    .selectFrom('status_events')
    .select(({ fn }) => fn.countAll<string>().as('events'))
    .where('message_id', 'in', ids)
    .where('status', '=', 'sent')
    .executeTakeFirstOrThrow();
  expect(Number(stored.events)).toBe(ids.length);
  expect((await deadlocks()) - before).toBe(0);
}, 120_000);
