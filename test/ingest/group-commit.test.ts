import { randomUUID } from 'node:crypto';
import type request from 'supertest';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { recordEvents } from '../../src/messages/record-events';
import type { StatusEvent } from '../../src/messages/status-event';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { eventually, gate } from '../helpers/eventually';

/**
 * Group commit through the real public app and a real PostgreSQL. A gate holds the first
 * batch's commit open so that the callbacks behind it are known to queue up: batching is then
 * deterministic instead of depending on how fast the requests happen to arrive.
 */

const BATCH_MAX = 20;

interface Harness {
  t: TestApp;
  recorder: GroupCommitRecorder;
  /** Sizes of the batches handed to the database, in order. */
  batches: number[];
  /** When set, the next write waits for it (once). */
  hold?: Promise<void>;
  /** Events with this message id make their whole transaction fail, like a poisoned row. */
  poison?: string;
}

async function harness(queueMax = 1000, queueMaxBytes?: number): Promise<Harness> {
  const h = { batches: [] } as unknown as Harness;
  h.t = await createTestApp(
    {},
    {
      recorder: (deps) =>
        (h.recorder = createGroupCommitRecorder({
          db: deps.db,
          logger: deps.logger,
          batchMax: BATCH_MAX,
          batchWaitMs: 5,
          queueMax,
          queueMaxBytes,
          maxInFlight: 1,
          write: async (db, events, options) => {
            h.batches.push(events.length);
            const held = h.hold;
            h.hold = undefined;
            if (held) await held;
            if (events.some((event: StatusEvent) => event.messageId === h.poison)) {
              // What PostgreSQL says about e.g. a NUL character inside a jsonb value.
              throw Object.assign(new Error('unsupported Unicode escape sequence'), {
                code: '22P05',
              });
            }
            return recordEvents(db, events, options);
          },
        })),
    },
  );
  return h;
}

/** Sends at once (a supertest request only starts when something awaits it). */
function send(h: Harness, fields = cxmlFields()): Promise<request.Response> {
  return postCxml(h.t.publicApp, fields).then((res) => res);
}

async function historyCount(t: TestApp, ids: readonly string[]): Promise<number> {
  const row = await t.database.db
    .selectFrom('status_events')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('message_id', 'in', ids)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

describe('group commit', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness();
  });
  afterAll(() => h.t.close());

  test('When 60 callbacks arrive together, then they are committed in a few transactions of at most INGEST_BATCH_MAX and every one is stored', async () => {
    const held = gate();
    h.hold = held.wait;
    h.batches.length = 0;
    const before = h.recorder.stats().transactions;
    const ids = Array.from({ length: 60 }, () => randomUUID());

    const responses = Promise.all(ids.map((id) => send(h, cxmlFields({ MessageSid: id }))));
    await eventually(() => (h.batches[0] ?? 0) + h.recorder.stats().queued === 60, 'all 60 queued');
    held.open();

    expect((await responses).map((res) => res.status)).toEqual(ids.map(() => 200));
    const transactions = h.recorder.stats().transactions - before;
    expect(transactions).toBe(h.batches.length);
    // The held batch plus ceil(rest / 20) full ones: far fewer commits than callbacks.
    expect(transactions).toBeLessThanOrEqual(1 + Math.ceil((60 - h.batches[0]!) / BATCH_MAX));
    expect(Math.max(...h.batches)).toBeLessThanOrEqual(BATCH_MAX);
    expect(await historyCount(h.t, ids)).toBe(60);
  });

  test('When a batch has not committed yet, then none of its callbacks is acknowledged', async () => {
    const held = gate();
    h.hold = held.wait;
    h.batches.length = 0;
    const answered: number[] = [];
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    const responses = Promise.all(
      ids.map((id) =>
        send(h, cxmlFields({ MessageSid: id })).then((res) => {
          answered.push(res.status);
          return res;
        }),
      ),
    );
    await eventually(() => h.batches.length > 0, 'the first commit started');
    await eventually(
      () => h.batches[0]! + h.recorder.stats().queued === ids.length,
      'all callbacks waiting',
    );

    expect(answered).toEqual([]);
    expect(await historyCount(h.t, ids)).toBe(0);
    held.open();
    expect((await responses).map((res) => res.status)).toEqual([200, 200, 200]);
    expect(await historyCount(h.t, ids)).toBe(3);
  });

  test('When one event of a batch is refused by the database, then its neighbours are still stored and only it fails', async () => {
    const held = gate();
    h.hold = held.wait;
    h.batches.length = 0;
    const ids = Array.from({ length: 8 }, () => randomUUID());
    h.poison = ids[3];
    const fallbacks = h.recorder.stats().fallbacks;

    // The first callback holds the commit; the other seven queue up into one batch.
    const first = send(h);
    await eventually(() => h.batches.length === 1, 'the first commit started');
    const responses = Promise.all(ids.map((id) => send(h, cxmlFields({ MessageSid: id }))));
    await eventually(() => h.recorder.stats().queued === ids.length, 'the batch queued');
    held.open();

    expect((await first).status).toBe(200);
    const statuses = (await responses).map((res) => res.status);
    // A value PostgreSQL refuses (22P05) would be refused on every retry: a 400, not a 503.
    expect(statuses).toEqual(ids.map((id) => (id === h.poison ? 400 : 200)));
    expect(h.recorder.stats().fallbacks).toBe(fallbacks + 1);
    expect(await historyCount(h.t, ids)).toBe(7);
    h.poison = undefined;
  });

  test('When the same callback arrives twice in one batch, then it is stored once and both are acknowledged', async () => {
    const held = gate();
    h.hold = held.wait;
    h.batches.length = 0;
    const fields = cxmlFields();
    const first = send(h);
    await eventually(() => h.batches.length === 1, 'the first commit started');
    const responses = Promise.all([send(h, fields), send(h, fields)]);
    await eventually(() => h.recorder.stats().queued === 2, 'both copies queued');
    held.open();

    expect((await first).status).toBe(200);
    expect((await responses).map((res) => res.status)).toEqual([200, 200]);
    expect(await historyCount(h.t, [fields.MessageSid!])).toBe(1);
  });
});

describe('back-pressure', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness(5);
  });
  afterAll(() => h.t.close());

  test('When INGEST_QUEUE_MAX callbacks are waiting, then the next one is refused at once with 503 and Retry-After', async () => {
    const held = gate();
    h.hold = held.wait;
    const waiting = Promise.all(Array.from({ length: 5 }, () => send(h)));
    await eventually(() => (h.batches[0] ?? 0) + h.recorder.stats().queued === 5, 'five waiting');

    const refused = await send(h);
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.body.error).toEqual(expect.objectContaining({ code: 'unavailable' }));
    expect(h.recorder.stats().refusedFull).toBe(1);

    held.open();
    expect((await waiting).map((res) => res.status)).toEqual([200, 200, 200, 200, 200]);
    // Room again once the queue drained.
    expect((await send(h)).status).toBe(200);
  });
});

describe('back-pressure in bytes', () => {
  let h: Harness;
  // Room for three callbacks carrying 60 kB of extra parameters, each counted about 141 kB:
  // the raw payload and the base64 copy of the body kept for the relay (src/ingest/event-size.ts).
  const QUEUE_MAX_BYTES = 450_000;
  beforeAll(async () => {
    h = await harness(1000, QUEUE_MAX_BYTES);
  });
  afterAll(() => h.t.close());

  const bulky = () => cxmlFields({ Padding: 'x'.repeat(60_000) });

  test('When the callbacks waiting hold INGEST_QUEUE_MAX_BYTES, then the next one is refused at once with 503 and Retry-After, though far fewer than INGEST_QUEUE_MAX wait', async () => {
    const held = gate();
    h.hold = held.wait;
    const waiting = Promise.all(Array.from({ length: 3 }, () => send(h, bulky())));
    await eventually(() => (h.batches[0] ?? 0) + h.recorder.stats().queued === 3, 'three waiting');

    const refused = await send(h, bulky());
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('1');
    expect(refused.body.error).toEqual(expect.objectContaining({ code: 'unavailable' }));
    expect(h.recorder.stats().refusedFull).toBe(1);
    // A small callback still fits beside them.
    const small = send(h);

    held.open();
    expect((await waiting).map((res) => res.status)).toEqual([200, 200, 200]);
    expect((await small).status).toBe(200);
    // The bytes were given back once the queue drained.
    expect((await send(h, bulky())).status).toBe(200);
  });
});
