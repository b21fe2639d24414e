import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { mintCallbackToken } from '../../src/callbacks/callback-token';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import { decodeSpoolLine, encodeSpoolLine } from '../../src/ingest/spool-codec';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import { createMetrics } from '../../src/metrics/metrics';
import type { StatusEvent } from '../../src/messages/status-event';
import { statusEvent } from '../factories';
import { nativeFields } from '../helpers/callbacks';
import { TEST_TOKEN_SECRET, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';
import { createTcpSwitch } from './support/tcp-switch';
import type { TcpSwitch } from './support/tcp-switch';

/**
 * Token binding is checked with the write, in recordEvents' transaction (DESIGN §2: "atomic
 * with the write … a callback spooled during an outage is checked the same way when it is
 * replayed"), so it holds for every path into the store: one request, a group-commit batch,
 * its one-by-one fallback and the spool's replay.
 */

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');

function callback(messageId: string, rawStatus: string, token?: { ref: string; legacy?: boolean }) {
  return statusEvent(rawStatus, {
    messageId,
    api: 'native',
    ...(token && { tokenRef: token.ref, ...(token.legacy && { tokenLegacy: true }) }),
  });
}

function proxySend(messageId: string, ref: string): StatusEvent {
  return statusEvent('queued', {
    messageId,
    api: 'native',
    source: 'proxy',
    send: { ref, kind: 'sms', clientStatusCallback: null, body: null },
  });
}

describe('recordEvents checks each token against the rows it locks', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(4);
  });
  afterAll(() => database.destroy());

  async function stored(id: string) {
    const message = await database.db
      .selectFrom('messages')
      .select(['ref', 'status'])
      .where('id', '=', id)
      .executeTakeFirst();
    const events = await database.db
      .selectFrom('status_events')
      .select('raw_status')
      .where('message_id', '=', id)
      .orderBy('seq')
      .execute();
    return { message, history: events.map((e) => e.raw_status) };
  }

  test('When one batch holds two events for an unknown message with different refs, then the first binds it and the second is refused', async () => {
    const id = randomUUID();
    const outcomes = await recordEvents(database.db, [
      callback(id, 'sent', { ref: 'refA' }),
      callback(id, 'delivered', { ref: 'refB' }),
    ]);
    expect(outcomes).toEqual(['recorded', 'refused_token']);
    expect(await stored(id)).toEqual({
      message: { ref: 'refA', status: 'sent' },
      history: ['sent'],
    });
  });

  test('When a batch holds a refused event, then its neighbours are recorded as if it were not there', async () => {
    const bound = randomUUID();
    await recordEvents(database.db, [proxySend(bound, 'owner')]);
    const before = randomUUID();
    const after = randomUUID();
    const outcomes = await recordEvents(database.db, [
      callback(before, 'sent'),
      callback(bound, 'failed', { ref: 'intruder' }),
      callback(bound, 'delivered', { ref: 'owner' }),
      callback(after, 'sent', { ref: 'fresh' }),
    ]);
    expect(outcomes).toEqual(['recorded', 'refused_token', 'recorded', 'recorded']);
    expect(await stored(bound)).toEqual({
      message: { ref: 'owner', status: 'delivered' },
      history: ['queued', 'delivered'],
    });
    expect((await stored(after)).message).toEqual({ ref: 'fresh', status: 'sent' });
  });

  test('When a refused event and a valid copy of it share a batch, then the copy is recorded, not dropped as its duplicate', async () => {
    const id = randomUUID();
    await recordEvents(database.db, [proxySend(id, 'owner')]);
    const wrong = callback(id, 'delivered', { ref: 'intruder' });
    const right = { ...wrong, tokenRef: 'owner' };
    expect(await recordEvents(database.db, [wrong, right])).toEqual(['refused_token', 'recorded']);
    expect((await stored(id)).history).toEqual(['queued', 'delivered']);
  });

  test('When a message exists without a ref, then a token event is refused even as a duplicate', async () => {
    const id = randomUUID();
    const signed = callback(id, 'sent');
    await recordEvents(database.db, [signed]);
    expect(await recordEvents(database.db, [{ ...signed, tokenRef: 'any' }])).toEqual([
      'refused_token',
    ]);
  });

  test('When the proxy’s record and a callback of its send share a batch, in either order, then both are recorded', async () => {
    for (const order of ['proxy first', 'callback first']) {
      const id = randomUUID();
      const events = [proxySend(id, 'r1'), callback(id, 'sent', { ref: 'r1' })];
      if (order === 'callback first') events.reverse();
      expect(await recordEvents(database.db, events)).toEqual(['recorded', 'recorded']);
      expect((await stored(id)).message?.ref).toBe('r1');
    }
  });

  test('When a legacy token names an unknown message, then it is refused; for its own send, accepted', async () => {
    const unknown = randomUUID();
    expect(
      await recordEvents(database.db, [callback(unknown, 'sent', { ref: 'old', legacy: true })]),
    ).toEqual(['refused_token']);
    expect((await stored(unknown)).message).toBeUndefined();

    const own = randomUUID();
    expect(
      await recordEvents(database.db, [
        proxySend(own, 'old'),
        callback(own, 'sent', { ref: 'old', legacy: true }),
      ]),
    ).toEqual(['recorded', 'recorded']);
  });

  test('When many writers bind one unknown message with different refs at once, then exactly one ref wins and only its events are stored', async () => {
    const id = randomUUID();
    const refs = ['r0', 'r1', 'r2', 'r3', 'r4', 'r5'];
    const results = await Promise.all(
      refs.map((ref, index) =>
        recordEvents(database.db, [{ ...callback(id, 'sent', { ref }), errorCode: String(index) }]),
      ),
    );
    const winners = refs.filter((_, index) => results[index]![0] === 'recorded');
    expect(winners).toHaveLength(1);
    expect(await stored(id)).toMatchObject({ message: { ref: winners[0] }, history: ['sent'] });
  });

  test('When no event is refused, then the batch is one transaction; a refusal costs one more', async () => {
    // The common path costs no extra statement: only a refusal rolls back and records again.
    const transactions = jest.spyOn(database.db, 'transaction');
    try {
      const plain = Array.from({ length: 20 }, () => callback(randomUUID(), 'sent'));
      const tokened = Array.from({ length: 5 }, (_, i) =>
        callback(randomUUID(), 'sent', { ref: `t${i}` }),
      );
      const outcomes = await recordEvents(database.db, [...plain, ...tokened]);
      expect(outcomes.every((outcome) => outcome === 'recorded')).toBe(true);
      expect(transactions).toHaveBeenCalledTimes(1);

      const id = randomUUID();
      await recordEvents(database.db, [
        callback(id, 'sent', { ref: 'a' }),
        callback(id, 'delivered', { ref: 'b' }),
      ]);
      expect(transactions).toHaveBeenCalledTimes(3);
    } finally {
      transactions.mockRestore();
    }
  });
});

describe('the group-commit recorder answers each event of a batch for itself', () => {
  let database: TestDatabase;
  let recorder: GroupCommitRecorder;
  beforeAll(async () => {
    database = await createTestDatabase(4);
    recorder = createGroupCommitRecorder({
      db: database.db,
      logger,
      batchMax: 100,
      batchWaitMs: 50,
      queueMax: 1000,
      maxInFlight: 1,
    });
  });
  afterAll(async () => {
    await recorder.drain();
    await database.destroy();
  });

  test('When good and refused token events are committed together, then each gets its own outcome', async () => {
    const bound = randomUUID();
    await recorder.record(proxySend(bound, 'owner'));
    const events = Array.from({ length: 30 }, (_, i) =>
      i % 3 === 1
        ? { ...callback(bound, 'sent', { ref: `intruder${i}` }), errorCode: String(i) }
        : callback(randomUUID(), 'sent', { ref: `own${i}` }),
    );
    const batchesBefore = recorder.stats().batches;
    const outcomes = await Promise.all(events.map((event) => recorder.record(event)));
    expect(outcomes).toEqual(events.map((_, i) => (i % 3 === 1 ? 'refused_token' : 'recorded')));
    // They went in few batches, so refused events had neighbours.
    expect(recorder.stats().batches - batchesBefore).toBeLessThan(events.length);
  });
});

describe('the one-by-one fallback checks tokens too', () => {
  let database: TestDatabase;
  beforeAll(async () => {
    database = await createTestDatabase(2);
  });
  afterAll(() => database.destroy());

  test('When a batch fails for a reason of its own and is recorded event by event, then a foreign token is still refused', async () => {
    // The first batch transaction fails (as a poisoned event would make it); the recorder
    // then records each event in its own transaction, through the same recordEvents.
    let failed = false;
    const write: typeof recordEvents = (db, events, options) => {
      if (!failed && events.length > 1) {
        failed = true;
        return Promise.reject(new Error('a poisoned batch'));
      }
      return recordEvents(db, events, options);
    };
    const recorder = createGroupCommitRecorder({
      db: database.db,
      logger,
      batchMax: 100,
      batchWaitMs: 50,
      queueMax: 1000,
      maxInFlight: 1,
      write,
    });
    try {
      const bound = randomUUID();
      await recorder.record(proxySend(bound, 'owner'));
      const outcomes = await Promise.all([
        recorder.record(callback(bound, 'sent', { ref: 'owner' })),
        recorder.record(callback(bound, 'failed', { ref: 'intruder' })),
        recorder.record(callback(randomUUID(), 'sent', { ref: 'fresh' })),
      ]);
      expect(failed).toBe(true);
      expect(recorder.stats().fallbacks).toBe(1);
      expect(outcomes).toEqual(['recorded', 'refused_token', 'recorded']);
    } finally {
      await recorder.drain();
    }
  });
});

describe('a callback spooled during an outage is checked when it is replayed', () => {
  let dir: string;
  let t: TestApp;
  let tcp: TcpSwitch;
  let viaSwitch: DatabaseHandle;
  let recorder: GroupCommitRecorder;
  const replayMetrics = createMetrics({ processMetrics: false });

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-token-spool-'));
    const spool = await openSpool({ dir, logger });
    tcp = await createTcpSwitch();
    t = await createTestApp(
      { RATE_LIMIT_PUBLIC_PER_MINUTE: '100000' },
      {
        recorder: (deps, database) => {
          viaSwitch = createDb(tcp.relay(database.url), 4);
          recorder = createGroupCommitRecorder({
            db: viaSwitch.db,
            logger: deps.logger,
            spool,
            batchMax: 50,
            batchWaitMs: 2,
            queueMax: 1000,
            maxInFlight: 2,
            probeIntervalMs: 50,
            onReplayRefused: replayMetrics.onSpoolReplayRefused,
          });
          deps.lifecycle.ingest = recorder;
          return recorder;
        },
      },
    );
  });
  afterAll(async () => {
    await t.close();
    await viaSwitch.db.destroy();
    await tcp.close();
    await rm(dir, { recursive: true, force: true });
  });

  const post = (token: string, fields: Record<string, unknown>) =>
    request(t.publicApp).post(`/callbacks/native/${token}`).send(fields);

  test('When token callbacks are acknowledged from the spool, then at replay the send’s own are stored and the others refused, counted, and not dead-lettered', async () => {
    const owner = mintCallbackToken([TEST_TOKEN_SECRET]);
    const intruder = mintCallbackToken([TEST_TOKEN_SECRET]);
    const fresh = mintCallbackToken([TEST_TOKEN_SECRET]);
    const bound = randomUUID();
    const unknown = randomUUID();
    const outsider = randomUUID();
    await post(owner.token, nativeFields({ id: bound, status: 'sent' })).expect(200);

    await tcp.cut();
    const during = [
      post(owner.token, nativeFields({ id: bound, status: 'delivered' })),
      post(intruder.token, nativeFields({ id: bound, status: 'failed', error_code: '1' })),
      post(fresh.token, nativeFields({ id: unknown, status: 'sent' })),
      post(intruder.token, nativeFields({ id: unknown, status: 'failed', error_code: '2' })),
    ];
    // The database cannot be asked during the outage: every one is acknowledged, durably.
    expect((await Promise.all(during)).map((res) => res.status)).toEqual([200, 200, 200, 200]);
    expect(recorder.mode()).toBe('spooling');
    // A spooled line keeps the token's ref, and replay reads it back (the previous release's
    // reader dropped it, so replayed callbacks were never checked).
    const segments = (await readdir(dir)).filter((name) => name.startsWith('spool-'));
    const spooled = (
      await Promise.all(segments.map((name) => readFile(path.join(dir, name), 'utf8')))
    ).join('');
    expect(spooled).toContain(`"tokenRef":"${intruder.ref}"`);
    expect(spooled).not.toContain(intruder.token);

    await tcp.restore();
    await eventually(() => recorder.mode() === 'direct', 'the spool replayed');
    const rows = await t.database.db
      .selectFrom('status_events')
      .select(['message_id', 'raw_status', 'source'])
      .where('message_id', 'in', [bound, unknown, outsider])
      .orderBy('seq')
      .execute();
    // Each message's history in arrival order (the order between messages is not one).
    expect(rows.filter((r) => r.message_id === bound).map((r) => r.raw_status)).toEqual([
      'sent',
      'delivered',
    ]);
    expect(rows.filter((r) => r.message_id !== bound).map((r) => r.raw_status)).toEqual(['sent']);
    const messages = await t.database.db
      .selectFrom('messages')
      .select(['id', 'ref', 'status'])
      .where('id', 'in', [bound, unknown])
      .orderBy('id')
      .execute();
    expect(Object.fromEntries(messages.map((m) => [m.id, [m.ref, m.status]]))).toEqual({
      [bound]: [owner.ref, 'delivered'],
      [unknown]: [fresh.ref, 'sent'],
    });
    expect(recorder.stats().replayRefused).toBe(2);
    expect(await replayMetrics.registry.metrics()).toMatch(
      /^sw_status_spool_replay_refused_total\{outcome="refused_token"\} 2$/m,
    );
    // Refused, not kept: no dead-letter file, no segment left (the instance lock's files stay).
    expect((await readdir(dir)).filter((name) => !name.startsWith('.lock'))).toEqual([]);
  });
});

describe('the spool line format', () => {
  test('When an event carries a token ref, legacy flag and verifying key, then its line keeps them', () => {
    const event = {
      ...callback(randomUUID(), 'sent', { ref: 'r1', legacy: true }),
      verifiedKeyIndex: 1,
    };
    expect(decodeSpoolLine(encodeSpoolLine(event).trimEnd())).toMatchObject({
      tokenRef: 'r1',
      tokenLegacy: true,
      verifiedKeyIndex: 1,
    });
  });

  test('When a line was written by the previous release, then it still decodes', () => {
    const line =
      '{"v":1,"event":{"messageId":"m1","api":"cxml","source":"callback","projectId":null,' +
      '"status":"sent","rawStatus":"sent","errorCode":null,"errorMessage":null,"from":null,' +
      '"to":null,"numSegments":null,"numMedia":null,"providerTimestamp":null,' +
      '"receivedAt":"2026-11-20T10:00:00.000Z","raw":{}}}';
    const event = decodeSpoolLine(line);
    expect(event).toMatchObject({ messageId: 'm1', status: 'sent' });
    expect(event).not.toHaveProperty('tokenRef');
  });
});
