import { sql } from 'kysely';
import { appendFile, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { DEAD_LETTER_FILE, openSpool } from '../../src/ingest/spool';
import { encodeSpoolLine } from '../../src/ingest/spool-codec';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import type { StatusEvent } from '../../src/messages/status-event';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { eventually } from '../helpers/eventually';
import { switchedSpool } from './support/switched-spool';
import type { SwitchedSpool } from './support/switched-spool';

/**
 * The outage spool. The recorder reaches this file's database through a TCP relay the test
 * cuts: PostgreSQL itself keeps running (other files share it), but the recorder sees refused
 * and reset connections, as in a real outage. test/ingest/outage.test.ts stops a real server.
 */

const logger = createLogger('silent');

function send(h: SwitchedSpool, fields: Record<string, string>): Promise<request.Response> {
  return postCxml(h.t.publicApp, fields).then((res) => res);
}

async function history(h: SwitchedSpool, ids: readonly string[]) {
  return h.t.database.db
    .selectFrom('status_events')
    .select(['seq', 'message_id', 'raw_status', 'source', sql<string>`tx::text`.as('tx')])
    .where('message_id', 'in', ids)
    .execute();
}

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.startsWith('spool-'));
}

function event(overrides: Record<string, string> = {}): StatusEvent {
  return normalizeCxmlCallback(cxmlFields(overrides), { receivedAt: new Date(), storeBody: false });
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-test-'));
});
afterEach(() => rm(dir, { recursive: true, force: true }));

test('When the database is unreachable, then callbacks are acknowledged from the spool and replayed exactly once when it returns', async () => {
  const h = await switchedSpool(dir);
  try {
    const before = cxmlFields({ MessageStatus: 'sent' });
    expect((await send(h, before)).status).toBe(200);

    await h.tcp.cut();
    const during = Array.from({ length: 30 }, (_, i) =>
      cxmlFields({
        MessageSid: before.MessageSid!,
        MessageStatus: i === 0 ? 'delivered' : 'sent',
        ErrorCode: String(i),
      }),
    );
    const answers = await Promise.all(during.map((fields) => send(h, fields)));
    expect(answers.map((res) => res.status)).toEqual(during.map(() => 200));
    // SignalWire retries and duplicates: the same callbacks again, still during the outage.
    expect((await send(h, during[0]!)).status).toBe(200);
    expect(h.recorder.mode()).toBe('spooling');
    expect(h.spool.depth()).toBe(31);
    expect(await history(h, [before.MessageSid!])).toHaveLength(1);

    const ready = await request(h.t.publicApp).get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({
      status: 'ready',
      database: 'unreachable',
      spool: { state: 'spooling', depth: 31, dead_letters: 0 },
    });

    await h.tcp.restore();
    await eventually(() => h.recorder.mode() === 'direct', 'the spool replayed');
    const rows = await history(h, [before.MessageSid!]);
    expect(rows).toHaveLength(31);
    expect(rows.filter((row) => row.source === 'replay')).toHaveLength(30);
    expect(h.spool.depth()).toBe(0);
    expect(await segmentFiles(dir)).toEqual([]);
    // The highest rank reached during the outage is the current status.
    const message = await h.t.database.db
      .selectFrom('messages')
      .select('status')
      .where('id', '=', before.MessageSid!)
      .executeTakeFirstOrThrow();
    expect(message.status).toBe('delivered');
    // Back to direct writes.
    expect((await send(h, cxmlFields())).status).toBe(200);
    expect(h.recorder.stats().committed).toBe(2);
  } finally {
    await h.close();
  }
});

test('When a spool file is left by a crashed process, then the next process replays it at start-up without duplicating what was already committed', async () => {
  // The "crashed" process: spooled five events, committed two of them, died before deleting.
  const events = Array.from({ length: 5 }, () => event());
  const previous = await openSpool({ dir, logger });
  await previous.append(events);
  await previous.close();
  const [segment] = await segmentFiles(dir);
  // A write torn by the crash: never acknowledged, so never replayed.
  await appendFile(path.join(dir, segment!), '{"v":1,"event":{"messageId":"torn');

  const h = await switchedSpool(dir);
  try {
    await recordEvents(h.t.database.db, events.slice(0, 2));
    expect(h.spool.depth()).toBe(5);
    h.recorder.start();
    expect(h.recorder.mode()).toBe('replaying');

    await eventually(() => h.recorder.mode() === 'direct', 'the spool replayed');
    const rows = await history(
      h,
      events.map((e) => e.messageId),
    );
    expect(rows.map((row) => row.message_id).sort()).toEqual(events.map((e) => e.messageId).sort());
    expect(rows.filter((row) => row.source === 'replay')).toHaveLength(3);
    expect(await segmentFiles(dir)).toEqual([]);
    // Nothing but this process's hold on the directory.
    expect((await readdir(dir)).filter((name) => !name.startsWith('.lock'))).toEqual([]);
  } finally {
    await h.close();
  }
});

test('When callbacks keep arriving during the replay, then they wait behind the spool and everything is stored once', async () => {
  const h = await switchedSpool(dir);
  try {
    await h.tcp.cut();
    const early = Array.from({ length: 40 }, () => cxmlFields());
    expect(
      (await Promise.all(early.map((f) => send(h, f)))).every((res) => res.status === 200),
    ).toBe(true);

    await h.tcp.restore();
    const late = Array.from({ length: 40 }, () => cxmlFields());
    const lateAnswers = await Promise.all(late.map((f) => send(h, f)));
    expect(lateAnswers.every((res) => res.status === 200)).toBe(true);

    await eventually(() => h.recorder.mode() === 'direct', 'the spool replayed');
    const ids = [...early, ...late].map((f) => f.MessageSid!);
    const rows = await history(h, ids);
    expect(rows.map((row) => row.message_id).sort()).toEqual([...ids].sort());
    // Arrival order survives the outage: no late event is committed before an early one. (Events
    // that share a transaction are written in message-id order, each message's in arrival
    // order: record-events.repository.ts inLockOrder.)
    const txOf = (fields: Array<Record<string, string>>) =>
      rows
        .filter((row) => fields.some((f) => f.MessageSid === row.message_id))
        .map((row) => BigInt(row.tx));
    const lastEarly = txOf(early).reduce((a, b) => (a > b ? a : b));
    const firstLate = txOf(late).reduce((a, b) => (a < b ? a : b));
    expect(lastEarly <= firstLate).toBe(true);
  } finally {
    await h.close();
  }
});

test('When neither the database nor the spool can keep a callback, then it is refused with 503 and Retry-After and readiness fails', async () => {
  const h = await switchedSpool(dir);
  try {
    await h.tcp.cut();
    // The disk goes away under the spool.
    await rm(dir, { recursive: true, force: true });
    const res = await send(h, cxmlFields());
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBeDefined();
    expect(res.body.error.code).toBe('unavailable');

    const ready = await request(h.t.publicApp).get('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body).toEqual(
      expect.objectContaining({
        database: 'unreachable',
        spool: expect.objectContaining({ state: 'failing' }),
      }),
    );
  } finally {
    await h.tcp.restore();
    await h.close();
  }
});

test('When the database refuses a replayed event for good, then it is dead-lettered and the rest of the spool is replayed', async () => {
  const events = Array.from({ length: 4 }, () => event());
  const poisoned = events[1]!.messageId;
  const previous = await openSpool({ dir, logger });
  await previous.append(events);
  await previous.close();

  const h = await switchedSpool(dir, async (db, batch, options) => {
    if (batch.some((e) => e.messageId === poisoned)) {
      throw Object.assign(new Error('unsupported Unicode escape sequence'), { code: '22P05' });
    }
    return recordEvents(db, batch, options);
  });
  try {
    h.recorder.start();
    await eventually(() => h.recorder.mode() === 'direct', 'the spool replayed');
    const rows = await history(
      h,
      events.map((e) => e.messageId),
    );
    expect(rows).toHaveLength(3);
    expect(rows.map((row) => row.message_id)).not.toContain(poisoned);
    const deadLetters = (await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8'))
      .trim()
      .split('\n');
    expect(deadLetters).toHaveLength(1);
    expect(JSON.parse(deadLetters[0]!).event.messageId).toBe(poisoned);
  } finally {
    await h.close();
  }
});

test('When appends arrive while a write is being synced, then they share the next write and all are durable in order', async () => {
  const spool = await openSpool({ dir, logger, segmentMaxEvents: 10 });
  const events = Array.from({ length: 25 }, (_, i) => event({ ErrorCode: String(i) }));
  await Promise.all(events.map((e) => spool.append([e])));
  expect(spool.depth()).toBe(25);
  await spool.close();

  const replayed: StatusEvent[] = [];
  const reopened = await openSpool({ dir, logger });
  expect(reopened.depth()).toBe(25);
  await reopened.replay(async (chunk) => {
    replayed.push(...chunk);
  }, 4);
  expect(replayed.map((e) => e.errorCode)).toEqual(events.map((e) => e.errorCode));
  expect(replayed[0]!.receivedAt).toEqual(events[0]!.receivedAt);
  expect(reopened.isEmpty()).toBe(true);
  expect(await segmentFiles(dir)).toEqual([]);
});

test('When a replay commit fails, then its segment stays for the next attempt', async () => {
  const spool = await openSpool({ dir, logger });
  await spool.append([event(), event()]);
  const lost = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  await expect(
    spool.replay(async () => {
      throw lost;
    }, 10),
  ).rejects.toBe(lost);
  expect(spool.depth()).toBe(2);
  expect(await segmentFiles(dir)).toHaveLength(1);
  expect(await spool.replay(async () => undefined, 10)).toBe(2);
  expect(spool.isEmpty()).toBe(true);
});

test('When a replay commit fails partway through a segment, then the segment stays whole and its unreadable line is dead-lettered once, after the rest is committed', async () => {
  const events = Array.from({ length: 6 }, () => event());
  const lines = events.map(encodeSpoolLine);
  lines.splice(3, 0, 'not a spool line\n');
  await writeFile(path.join(dir, `spool-${'1'.padStart(20, '0')}.jsonl`), lines.join(''));
  const spool = await openSpool({ dir, logger });
  expect(spool.depth()).toBe(7);

  const lost = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  let chunks = 0;
  await expect(
    spool.replay(async () => {
      if (++chunks === 2) throw lost;
    }, 2),
  ).rejects.toBe(lost);
  expect(await segmentFiles(dir)).toHaveLength(1);
  expect(spool.deadLetters()).toBe(0);

  const replayed: string[] = [];
  expect(
    await spool.replay(async (chunk) => {
      replayed.push(...chunk.map((e) => e.messageId));
    }, 2),
  ).toBe(6);
  expect(replayed).toEqual(events.map((e) => e.messageId));
  expect(await segmentFiles(dir)).toEqual([]);
  expect(spool.isEmpty()).toBe(true);
  const deadLetters = (await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8')).trim().split('\n');
  expect(deadLetters.map((record) => JSON.parse(record))).toEqual([
    expect.objectContaining({ reason: 'unreadable spool line', line: 'not a spool line' }),
  ]);
  await spool.close();
});

test('When a replay seals the spool while a write is under way and another append waits for it, then the pass replays that append too', async () => {
  // "Everything appended so far": the waiting append went to the next segment, after the seal,
  // and the catch-up's last pass (group-commit-recorder.ts) ended with the spool not empty.
  const spool = await openSpool({ dir, logger });
  const [first, second] = [event(), event()];
  const appended = [spool.append([first]), spool.append([second])];
  const replayed: string[] = [];
  expect(
    await spool.replay(async (chunk) => {
      replayed.push(...chunk.map((e) => e.messageId));
    }, 10),
  ).toBe(2);
  await Promise.all(appended);
  expect(replayed).toEqual([first.messageId, second.messageId]);
  expect(spool.isEmpty()).toBe(true);
  await spool.close();
});

test('When a replay seals the open segment, then the spool never looks empty while it holds events', async () => {
  // The drain waits "until the spool is empty": a moment of false emptiness (the open
  // segment between being closed and being listed) ended a shutdown's replay early.
  const spool = await openSpool({ dir, logger });
  await spool.append([event(), event(), event()]);
  const seen: boolean[] = [];
  let done = false;
  const replaying = spool
    .replay(async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }, 1)
    .finally(() => {
      done = true;
    });
  while (!done) {
    seen.push(spool.isEmpty());
    await new Promise((resolve) => setImmediate(resolve));
  }
  await replaying;
  expect(seen.length).toBeGreaterThan(3);
  expect(seen.filter((empty) => empty)).toEqual([]);
  expect(spool.isEmpty()).toBe(true);
  await spool.close();
});
