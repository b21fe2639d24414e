import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import type { RecordOutcome } from '../../src/messages/record-events';
import { statusEvent } from '../factories';
import { eventually } from '../helpers/eventually';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';

/**
 * One dropped connection under steady traffic. Callbacks arrive during every replay pass, and
 * each used to join the spool behind the replayed ones: the spool was never empty at the end
 * of a pass, so the replica spooled every callback (an fsync and a replay transaction each)
 * for as long as traffic went on, with PostgreSQL healthy. A short tail is now replayed once
 * more while new batches wait for it, and the recorder writes to the database directly again.
 */

jest.setTimeout(60_000);

// A replay transaction slower than the gap between callbacks: without the catch-up, every
// pass sees arrivals (the spool is never empty at its end), whatever the machine's speed.
const REPLAY_WRITE_MS = 40;
const CALLBACK_EVERY_MS = 5;
const MESSAGES = 10;
const COMMIT_TIMEOUT_MS = 3_000;

const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
let database: TestDatabase;
const cleanups: Array<() => Promise<void>> = [];

beforeAll(async () => {
  database = await createTestDatabase(6);
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  await database?.destroy();
});

interface Harness {
  recorder: GroupCommitRecorder;
  /** The next direct write loses its connection. */
  dropNextWrite(): void;
  /** Replay transactions begun so far. */
  replayWrites(): number;
  /** Callbacks sent so far, one every CALLBACK_EVERY_MS to MESSAGES messages in turn. */
  sent(): number;
  stopSending(): void;
  drain(): Promise<void>;
  /** What every callback sent was answered. */
  answers(): Promise<RecordOutcome[]>;
  /** The callbacks stored: each once, each message's in the order they were sent. */
  expectStoredOnceInOrder(): Promise<Array<{ index: number; source: string }>>;
}

/**
 * A recorder on its own spool whose replay transactions each take REPLAY_WRITE_MS (and then
 * whatever `replayWrite`, given their number from 1, adds or throws), fed a steady stream.
 */
async function harness(
  replayWrite: (write: number) => Promise<void> = async () => undefined,
  tuning: { catchUpWaitMs?: number } = {},
): Promise<Harness> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-catch-up-'));
  let drop = false;
  let replayWrites = 0;
  let drained = false;
  const recorder = createGroupCommitRecorder({
    db: database.db,
    logger,
    spool: await openSpool({ dir, logger }),
    batchMax: 50,
    batchWaitMs: 2,
    queueMax: 1_000,
    maxInFlight: 2,
    probeIntervalMs: 50,
    replayChunk: 100,
    commitTimeoutMs: COMMIT_TIMEOUT_MS,
    ...tuning,
    async write(db, events, options) {
      if (events.some((event) => event.source === 'replay')) {
        const number = ++replayWrites;
        await new Promise((resolve) => setTimeout(resolve, REPLAY_WRITE_MS));
        await replayWrite(number);
      } else if (drop) {
        drop = false;
        throw new Error('Connection terminated unexpectedly');
      }
      return recordEvents(db, events, options);
    },
  });
  recorder.start();
  const messageIds = Array.from({ length: MESSAGES }, () => statusEvent('sent').messageId);
  const answers: Array<Promise<RecordOutcome>> = [];
  const sender = setInterval(() => {
    const index = answers.length;
    const event = statusEvent('sent', {
      messageId: messageIds[index % MESSAGES]!,
      errorCode: `${index}`,
    });
    answers.push(recorder.record(event));
  }, CALLBACK_EVERY_MS);
  cleanups.push(async () => {
    clearInterval(sender);
    await Promise.allSettled(answers);
    if (!drained) await recorder.drain();
    await rm(dir, { recursive: true, force: true });
  });
  return {
    recorder,
    dropNextWrite: () => {
      drop = true;
    },
    replayWrites: () => replayWrites,
    sent: () => answers.length,
    stopSending: () => clearInterval(sender),
    drain: () => {
      drained = true;
      return recorder.drain();
    },
    answers: () => Promise.all(answers),
    async expectStoredOnceInOrder() {
      const { rows } = await database.pool.query<{
        message_id: string;
        error_code: string;
        source: string;
      }>(
        'SELECT message_id, error_code, source FROM status_events WHERE message_id = ANY($1) ORDER BY seq',
        [messageIds],
      );
      const stored = rows.map((row) => ({ ...row, index: Number(row.error_code) }));
      expect(stored.map((row) => row.index).sort((a, b) => a - b)).toEqual(
        answers.map((_, index) => index),
      );
      for (const id of messageIds) {
        const order = stored.filter((row) => row.message_id === id).map((row) => row.index);
        expect(order).toEqual([...order].sort((a, b) => a - b));
      }
      return stored;
    },
  };
}

test('When one write loses its connection while callbacks keep arriving, then the recorder writes to the database directly again within a few replay passes, and every acknowledged callback is stored once, in arrival order', async () => {
  const h = await harness();
  await eventually(() => h.sent() >= 20, 'callbacks written directly');
  h.dropNextWrite();
  await eventually(() => h.recorder.mode() !== 'direct', 'the dropped write spooled');
  await eventually(() => h.replayWrites() > 0, 'the replay started');
  await eventually(() => h.recorder.mode() === 'direct', 'direct writes again', 5_000);
  // A short tail, then one last pass: not one pass per callback arriving meanwhile.
  expect(h.replayWrites()).toBeLessThanOrEqual(10);
  const sentWhenDirect = h.sent();
  await eventually(() => h.sent() >= sentWhenDirect + 40, 'more callbacks');
  h.stopSending();

  expect(new Set(await h.answers())).toEqual(new Set(['recorded']));
  expect(h.recorder.mode()).toBe('direct');
  const stored = await h.expectStoredOnceInOrder();
  // What arrived once the recorder was direct again went straight to PostgreSQL.
  const later = stored.filter((row) => row.index >= sentWhenDirect);
  expect(later.length).toBeGreaterThanOrEqual(40);
  expect(later.every((row) => row.source === 'callback')).toBe(true);
});

test('When the connection is lost again while callbacks wait for the replay’s last pass, then they are spooled behind it, and every acknowledged callback is stored once, in arrival order', async () => {
  // The second replay transaction (the last pass over the short tail the first left) waits
  // long enough for callbacks to queue up behind it, then loses its connection.
  let spooledAtFailure: number | undefined;
  const h = await harness(async (write) => {
    if (write !== 2) return;
    await new Promise((resolve) => setTimeout(resolve, 300));
    spooledAtFailure = h.recorder.stats().spooled;
    throw new Error('Connection terminated unexpectedly');
  });
  await eventually(() => h.sent() >= 20, 'callbacks written directly');
  h.dropNextWrite();
  await eventually(() => spooledAtFailure !== undefined, 'the last pass failed');
  await eventually(() => h.recorder.mode() === 'direct', 'direct writes again', 10_000);
  // The callbacks that waited for the failed pass were spooled, not lost nor written ahead.
  expect(h.recorder.stats().spooled).toBeGreaterThan(spooledAtFailure!);
  const sentWhenDirect = h.sent();
  await eventually(() => h.sent() >= sentWhenDirect + 20, 'more callbacks');
  h.stopSending();

  expect(new Set(await h.answers())).toEqual(new Set(['recorded']));
  await h.expectStoredOnceInOrder();
});

test('When the service drains while callbacks wait for the replay’s last pass, then the drain ends and every acknowledged callback is stored once, in arrival order', async () => {
  let lastPassBegun!: () => void;
  const lastPass = new Promise<void>((resolve) => {
    lastPassBegun = resolve;
  });
  const h = await harness(
    async (write) => {
      if (write !== 2) return;
      lastPassBegun();
      // Shorter than the waiting batches give it.
      await new Promise((resolve) => setTimeout(resolve, 500));
    },
    { catchUpWaitMs: 1_500 },
  );
  await eventually(() => h.sent() >= 20, 'callbacks written directly');
  h.dropNextWrite();
  await lastPass;
  const sentAtLastPass = h.sent();
  await eventually(() => h.sent() >= sentAtLastPass + 10, 'callbacks waiting for the last pass');
  h.stopSending();
  expect(h.recorder.stats().inFlight).toBeGreaterThan(0);

  await h.drain();
  expect(new Set(await h.answers())).toEqual(new Set(['recorded']));
  expect(h.recorder.mode()).toBe('direct');
  const stored = await h.expectStoredOnceInOrder();
  // Those that waited for the last pass were written directly once it emptied the spool.
  const waited = stored.filter((row) => row.index >= sentAtLastPass + 2);
  expect(waited.length).toBeGreaterThanOrEqual(8);
  expect(waited.every((row) => row.source === 'callback')).toBe(true);
});

// A last pass that is slow (a database just back from a failover, a lock, the replay writer's
// backoff) is no catch-up: the batches that arrive during it must be spooled and acknowledged
// at once, as during the outage, not each wait out its limit — waiting batches hold their
// commit slots, and the queue filled and refused callbacks 503 (a first version of the
// catch-up; the shape of the defaults, queueMax ≈ 6 × maxInFlight × batchMax, scaled down).
test('When the replay’s last pass is slow while callbacks keep arriving, then they are spooled and acknowledged, not refused 503 for a full queue', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-catch-up-slow-'));
  let drop = false;
  let replayWrites = 0;
  const recorder = createGroupCommitRecorder({
    db: database.db,
    logger,
    spool: await openSpool({ dir, logger }),
    batchMax: 50,
    batchWaitMs: 2,
    queueMax: 600,
    maxInFlight: 2,
    probeIntervalMs: 50,
    replayChunk: 100,
    commitTimeoutMs: 3_000,
    async write(db, events, options) {
      if (events.some((event) => event.source === 'replay')) {
        const number = ++replayWrites;
        await new Promise((resolve) => setTimeout(resolve, 40));
        // The second replay transaction (the last pass over the first one's short tail) is
        // slow: 4 s, well within the replay's own timeout (60 s).
        if (number === 2) await new Promise((resolve) => setTimeout(resolve, 4_000));
      } else if (drop) {
        drop = false;
        throw new Error('Connection terminated unexpectedly');
      }
      return recordEvents(db, events, options);
    },
  });
  recorder.start();
  const messageIds = Array.from({ length: 20 }, () => statusEvent('sent').messageId);
  const answers: Array<Promise<RecordOutcome | string>> = [];
  const sender = setInterval(() => {
    for (let i = 0; i < 2; i++) {
      const index = answers.length;
      answers.push(
        recorder
          .record(
            statusEvent('sent', { messageId: messageIds[index % 20]!, errorCode: `${index}` }),
          )
          .catch(
            (error: { status?: number; message?: string }) =>
              `refused ${error.status} ${error.message}`,
          ),
      );
    }
  }, 4);
  try {
    await eventually(() => answers.length >= 40, 'callbacks written directly');
    drop = true;
    await eventually(() => replayWrites >= 2, 'the last pass began', 10_000);
    await new Promise((resolve) => setTimeout(resolve, 4_000));
  } finally {
    clearInterval(sender);
  }
  const settled = await Promise.all(answers);
  await recorder.drain({ deadline: performance.now() + 10_000 });
  await rm(dir, { recursive: true, force: true });
  const refused = settled.filter((answer) => answer !== 'recorded' && answer !== 'duplicate');
  expect({
    refused: refused.length,
    first: refused[0],
    refusedFull: recorder.stats().refusedFull,
  }).toEqual({
    refused: 0,
    first: undefined,
    refusedFull: 0,
  });
});
