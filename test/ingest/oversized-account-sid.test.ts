import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type request from 'supertest';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import type { Spool } from '../../src/ingest/spool';
import { recordEvents } from '../../src/messages/record-events';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { eventually, gate } from '../helpers/eventually';

/**
 * messages.project_id is a key of the btree index messages_sweep_due_idx (migration 0014,
 * partial: messages not yet final), whose entries PostgreSQL caps at about 2.7 kB. A signed
 * callback whose AccountSid was a few KB of incompressible text passed validation and was
 * refused by PostgreSQL at write time (54000): its batch failed and every neighbour, other
 * senders' callbacks, was committed again one by one; while spooling it was acknowledged 200
 * and dead-lettered at replay. AccountSid / project_id are bounded like To, From and ErrorCode
 * (src/messages/status-event.ts MAX_INDEXED_LENGTH), so it is refused before the database.
 */

interface Harness {
  t: TestApp;
  recorder: GroupCommitRecorder;
  spool: Spool;
  spoolDir: string;
  hold?: Promise<void>;
  outage: boolean;
  batches: number[];
}

const hugeAccountSid = () => randomBytes(3000).toString('base64url'); // ~4000 chars, incompressible

async function stored(t: TestApp, id: string): Promise<number> {
  const row = await t.database.db
    .selectFrom('status_events')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('message_id', '=', id)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

let h: Harness;
beforeAll(async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-oversized-account-sid-'));

  const spool = await openSpool({ dir, logger: createLogger('silent') });
  h = await harnessWith(spool, dir);
});
afterAll(async () => {
  await h.t.close();
  await rm(h.spoolDir, { recursive: true, force: true });
});

async function harnessWith(spool: Spool, dir: string): Promise<Harness> {
  const pending = { spool, spoolDir: dir } as Partial<Harness>;
  const made = await (async () => {
    const h2 = { batches: [], outage: false, ...pending } as unknown as Harness;
    h2.t = await createTestApp(
      {},
      {
        recorder: (deps) =>
          (h2.recorder = createGroupCommitRecorder({
            db: deps.db,
            logger: deps.logger,
            spool: h2.spool,
            batchMax: 50,
            batchWaitMs: 5,
            queueMax: 1000,
            maxInFlight: 1,
            probeIntervalMs: 100,
            write: async (db, events, options) => {
              h2.batches.push(events.length);
              const held = h2.hold;
              h2.hold = undefined;
              if (held) await held;
              if (h2.outage)
                throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
              return recordEvents(db, events, options);
            },
          })),
      },
    );
    return h2;
  })();
  return made;
}

function send(fields: Record<string, string>): Promise<request.Response> {
  return postCxml(h.t.publicApp, fields).then((res) => res);
}

test('When a signed callback for a non-final message carries a 4 KB AccountSid, then it is refused by validation (4xx naming the field) before it reaches PostgreSQL, and its batch neighbours are not forced one by one', async () => {
  const held = gate();
  h.hold = held.wait;
  const fallbacks = h.recorder.stats().fallbacks;
  const first = send(cxmlFields());
  await eventually(() => h.batches.length >= 1, 'first commit started');
  const goodIds = Array.from({ length: 5 }, () => randomUUID());
  const poisonId = randomUUID();
  const good = Promise.all(
    goodIds.map((id) => send(cxmlFields({ MessageSid: id, MessageStatus: 'sent' }))),
  );
  const poison = await send(
    cxmlFields({ MessageSid: poisonId, MessageStatus: 'sent', AccountSid: hugeAccountSid() }),
  );
  // Refused by validation, while the commit before it is still held: it never joined a batch.
  expect({
    status: poison.status,
    namesTheField: JSON.stringify(poison.body).includes('AccountSid'),
  }).toEqual({ status: 400, namesTheField: true });
  await eventually(() => h.recorder.stats().queued === 5, 'batch queued');
  held.open();
  expect((await first).status).toBe(200);
  const responses = await good;
  expect(responses.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
  for (const id of goodIds) expect(await stored(h.t, id)).toBe(1);
  expect(await stored(h.t, poisonId)).toBe(0);
  // No neighbour was committed alone.
  expect(h.recorder.stats().fallbacks - fallbacks).toBe(0);
});

test('When the same oversized-AccountSid callback arrives while the service is spooling, then it is still refused 4xx rather than acknowledged 200 and dead-lettered at replay', async () => {
  const poisonId = randomUUID();
  const goodId = randomUUID();
  h.outage = true;
  const during = await Promise.all([
    send(cxmlFields({ MessageSid: goodId, MessageStatus: 'sent' })),
  ]);
  expect(during[0]!.status).toBe(200); // spooled
  expect(h.recorder.mode()).not.toBe('direct');
  const poison = await send(
    cxmlFields({ MessageSid: poisonId, MessageStatus: 'sent', AccountSid: hugeAccountSid() }),
  );
  h.outage = false;
  await eventually(() => h.recorder.mode() === 'direct', 'spool replayed', 20_000);
  expect(await stored(h.t, goodId)).toBe(1);
  const deadLetters = h.recorder.status().spool.dead_letters;
  // A clear 4xx in every mode (as an oversized From/To/ErrorCode gets), never acknowledged
  // to SignalWire and then refused by PostgreSQL at replay.
  expect({ status: poison.status, deadLetters, stored: await stored(h.t, poisonId) }).toEqual({
    status: 400,
    deadLetters: 0,
    stored: 0,
  });
}, 30_000);

test('When an oversized AccountSid comes for a message already stored, then it is answered 400 and the message is left as it was', async () => {
  const id = randomUUID();
  expect((await send(cxmlFields({ MessageSid: id, MessageStatus: 'queued' }))).status).toBe(200);
  const res = await send(
    cxmlFields({ MessageSid: id, MessageStatus: 'sent', AccountSid: hugeAccountSid() }),
  );
  const message = await h.t.database.db
    .selectFrom('messages')
    .select(['status'])
    .where('id', '=', id)
    .executeTakeFirstOrThrow();
  expect({ status: res.status, stored: await stored(h.t, id), message: message.status }).toEqual({
    status: 400,
    stored: 1,
    message: 'queued',
  });
});
