import { randomUUID } from 'node:crypto';
import { nativeFields, postNative } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { withGroupCommit } from '../helpers/replicas';

/**
 * Two replicas on one database, each with production's group-commit recorder, receiving a
 * burst of distinct callbacks for the SAME message at once (the applied_tx ordering race:
 * RECORD_BATCH returns no row when a later transaction got there first, and the batch is
 * retried under a new id).
 */

let a: TestApp;
let b: TestApp;

const groupCommit = () => withGroupCommit();

beforeAll(async () => {
  a = await createTestApp({}, groupCommit());
  b = await createTestApp({}, { ...groupCommit(), database: a.database });
});
afterAll(async () => {
  await b.close();
  await a.close();
});

/**
 * A callback posted as SignalWire would: tried again when answered 503 (a commit past its
 * deadline on a loaded machine is answered so, by design), at most five times. The status of
 * the last attempt.
 */
async function acknowledged(app: TestApp, fields: Record<string, unknown>): Promise<number> {
  let status = 0;
  for (let attempt = 0; attempt < 5; attempt++) {
    status = (await postNative(app.publicApp, fields)).status;
    if (status !== 503) break;
  }
  return status;
}

test('When two replicas receive 200 distinct callbacks for one message at once, then each is acknowledged and stored once: no ordering retry livelocks or loses one', async () => {
  const id = randomUUID();
  const bodies = Array.from({ length: 200 }, (_, n) =>
    nativeFields({
      id,
      status: n % 2 ? 'sent' : 'delivered',
      timestamp: new Date(Date.UTC(2026, 10, 1, 10, 0, 0) + n * 1000).toISOString(),
    }),
  );
  const statuses = await Promise.all(
    bodies.map((fields, n) => acknowledged(n % 2 ? a : b, fields)),
  );
  const counts = statuses.reduce<Record<number, number>>(
    (acc, s) => ({ ...acc, [s]: (acc[s] ?? 0) + 1 }),
    {},
  );
  const row = await a.database.db
    .selectFrom('status_events')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('message_id', '=', id)
    .executeTakeFirstOrThrow();
  expect({ counts, stored: Number(row.n) }).toEqual({ counts: { 200: 200 }, stored: 200 });
}, 60_000);

function shuffle<T>(items: T[]): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [items[i], items[j]] = [items[j]!, items[i]!];
  }
  return items;
}

test('When each of 300 callbacks (30 messages) reaches BOTH replicas at once in different orders, then every copy is answered 200 and each event is stored once', async () => {
  const ids = Array.from({ length: 30 }, () => randomUUID());
  const events = ids.flatMap((id) =>
    Array.from({ length: 10 }, (_, n) =>
      nativeFields({
        id,
        status: ['queued', 'sent', 'delivered'][n % 3],
        timestamp: new Date(Date.UTC(2026, 10, 1, 10, 0, 0) + n * 1000).toISOString(),
      }),
    ),
  );
  const responses = await Promise.all([
    ...shuffle([...events]).map((f) => acknowledged(a, f)),
    ...shuffle([...events]).map((f) => acknowledged(b, f)),
  ]);
  const counts = responses.reduce<Record<number, number>>(
    (acc, s) => ({ ...acc, [s]: (acc[s] ?? 0) + 1 }),
    {},
  );
  const row = await a.database.db
    .selectFrom('status_events')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('message_id', 'in', ids)
    .executeTakeFirstOrThrow();
  expect({ counts, stored: Number(row.n) }).toEqual({ counts: { 200: 600 }, stored: 300 });
}, 60_000);
