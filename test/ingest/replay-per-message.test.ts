import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Client } from 'pg';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { DEAD_LETTER_FILE, openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { recordEvents } from '../../src/messages/record-events';
import type { StatusEvent } from '../../src/messages/status-event';
import { statusEvent } from '../factories';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';
import { spooledRecorder } from './support/spooled-recorder';
import { holdRowLock } from '../helpers/lock-waits';
import { failTransientlyWhileListed } from './support/transient-failure';

/**
 * A row lock on one message held for long (an operator's session left open after
 * `SELECT … FOR UPDATE`) while the spool holds events of that message and of others, in
 * several chunks and segments. The replay keeps order per message, not across the spool: the
 * locked message's events wait (in their order) for a later pass, the others are stored
 * meanwhile, and a segment is deleted only once every event in it is stored — so nothing is
 * lost, and nothing is stored twice.
 */

jest.setTimeout(60_000);

const COMMIT_TIMEOUT_MS = 300;
const LOCK_TIMEOUT_MS = 500;
const REPLAY_TIMEOUT_MS = 2_000;

let database: TestDatabase;
let service: DatabaseHandle;
let recorder: GroupCommitRecorder;
let spoolDir: string;
let operator: Client | undefined;

beforeAll(async () => {
  database = await createTestDatabase(2);
  service = createDb(database.url, 6, { lockTimeoutMs: LOCK_TIMEOUT_MS });
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-per-message-spool-'));
  recorder = await startRecorder(spoolDir);
});

/** A recorder on `dir` as the service runs one, with its time limits shortened. */
function startRecorder(dir: string): Promise<GroupCommitRecorder> {
  // Small segments and chunks: the locked message's events fall in several of each.
  return spooledRecorder(
    service.db,
    dir,
    {
      replayChunk: 2,
      batchWaitMs: 20,
      maxInFlight: 1,
      commitTimeoutMs: COMMIT_TIMEOUT_MS,
      replayTimeoutMs: REPLAY_TIMEOUT_MS,
    },
    { segmentMaxEvents: 2 },
  );
}

afterEach(async () => {
  await operator?.end().catch(() => undefined);
  operator = undefined;
});

afterAll(async () => {
  await recorder?.drain();
  await service?.db.destroy();
  await database?.destroy();
  if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
});

async function lock(id: string): Promise<void> {
  operator = await holdRowLock(database.url, id);
}

/** Waits (up to 15 s) until each of `events`' messages has exactly one stored event. */
async function eachStoredOnce(events: readonly StatusEvent[], what: string): Promise<void> {
  await eventually(
    async () =>
      (await Promise.all(events.map((event) => history(event.messageId)))).every(
        (rows) => rows.length === 1,
      ),
    what,
    15_000,
  );
}

async function history(id: string): Promise<string[]> {
  const { rows } = await database.pool.query<{ raw_status: string }>(
    'SELECT raw_status FROM status_events WHERE message_id = $1 ORDER BY seq',
    [id],
  );
  return rows.map((row) => row.raw_status);
}

test('When one message’s row is locked for long, then the spooled events of other messages after it are stored meanwhile, and the locked message’s events follow in their order once it is released, each once', async () => {
  const locked = statusEvent('queued');
  expect(await recorder.record(locked)).toBe('recorded');

  operator = await holdRowLock(database.url, locked.messageId);

  // The locked message's first event cannot commit in time: spooled; from then on every
  // callback joins the spool behind it, the locked message's later events among others'.
  const id = locked.messageId;
  const events = [
    statusEvent('sent', { messageId: id }),
    statusEvent('sent'),
    statusEvent('sent'),
    statusEvent('delivered', { messageId: id }),
    statusEvent('sent'),
    statusEvent('sent'),
    statusEvent('sent'),
  ];
  for (const event of events) expect(await recorder.record(event)).toBe('recorded');
  const others = events.filter((event) => event.messageId !== id);

  // Every other message is stored while the lock is held.
  await eachStoredOnce(others, 'the other messages’ spooled events stored while the lock is held');
  expect(await history(id)).toEqual(['queued']);
  expect(recorder.status().spool.retrying).toBe('55P03');

  // Released: the locked message's events are stored in arrival order, the spool empties.
  await operator.query('ROLLBACK');
  await eventually(() => recorder.mode() === 'direct', 'writing directly again', 15_000);
  expect(await history(id)).toEqual(['queued', 'sent', 'delivered']);
  for (const event of others) expect(await history(event.messageId)).toEqual(['sent']);
  expect(recorder.status().spool.depth).toBe(0);
  expect((await readdir(spoolDir)).filter((name) => name.startsWith('spool-'))).toEqual([]);
});

test('When a segment kept for a locked message also holds an event refused for good, then that event is dead-lettered once, not at every pass', async () => {
  const locked = statusEvent('queued');
  expect(await recorder.record(locked)).toBe('recorded');
  const poisoned = statusEvent('sent');
  // What "can never be stored" looks like to PostgreSQL: a constraint the value violates.
  await database.pool.query(
    `ALTER TABLE status_events ADD CONSTRAINT test_refuses CHECK (message_id <> '${poisoned.messageId}')`,
  );
  operator = await holdRowLock(database.url, locked.messageId);
  try {
    // One segment (two events): the locked message's event keeps it for pass after pass.
    const later = statusEvent('sent');
    for (const event of [statusEvent('sent', { messageId: locked.messageId }), poisoned, later]) {
      expect(await recorder.record(event)).toBe('recorded');
    }
    await eventually(
      async () => (await history(later.messageId)).length === 1,
      'the event after the kept segment stored',
      15_000,
    );
    // Several passes over the kept segment (a lock wait and a backoff each).
    const retries = recorder.stats().replayRetries;
    await eventually(
      () => recorder.stats().replayRetries >= retries + 3,
      'three more passes',
      15_000,
    );
    expect(recorder.status().spool.dead_letters).toBe(1);
  } finally {
    await operator.query('ROLLBACK');
  }
  await eventually(() => recorder.mode() === 'direct', 'writing directly again', 15_000);
  expect(await history(locked.messageId)).toEqual(['queued', 'sent']);
  expect(recorder.status().spool).toMatchObject({ depth: 0, dead_letters: 1 });
});

test('When the process stops while a segment is kept for a locked message, then the next process on the directory replays it: the locked event is stored, the others stay stored once', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-per-message-restart-'));
  try {
    const first = await startRecorder(dir);
    const locked = statusEvent('queued');
    expect(await first.record(locked)).toBe('recorded');
    await lock(locked.messageId);
    // One segment holds the locked message's event and another's; a second segment a third's.
    const events = [
      statusEvent('sent', { messageId: locked.messageId }),
      statusEvent('sent'),
      statusEvent('sent'),
    ];
    for (const event of events) expect(await first.record(event)).toBe('recorded');
    const others = events.slice(1);
    await eachStoredOnce(others, 'the other messages stored while the lock is held');
    await first.drain(); // the deadline now: the kept segment stays on disk
    expect((await readdir(dir)).filter((name) => name.startsWith('spool-'))).toHaveLength(1);

    const second = await startRecorder(dir);
    try {
      await operator!.query('ROLLBACK');
      await eventually(() => second.mode() === 'direct', 'the next process replayed it', 15_000);
      expect(await history(locked.messageId)).toEqual(['queued', 'sent']);
      for (const event of others) expect(await history(event.messageId)).toEqual(['sent']);
      expect(second.stats()).toMatchObject({ deadLettered: 0 });
    } finally {
      await second.drain();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('When a replayed event’s own transaction fails transiently for a while (a statement timeout), then its message’s later events in the chunk wait for it: stored after it, not before', async () => {
  // A statement timeout's 57014 for the event tagged 'slow' until the tag is deleted.
  await failTransientlyWhileListed(database, 'test_slow');
  await database.pool.query(`INSERT INTO test_slow VALUES ('slow')`);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-per-message-transient-'));
  try {
    const queued = statusEvent('queued');
    await recordEvents(service.db, [queued]);
    const id = queued.messageId;
    // One chunk (replayChunk 2) left by an earlier process: the message's two next events.
    const earlier = await openSpool({ dir, logger: createLogger('silent') });
    await earlier.append([
      statusEvent('sent', { messageId: id, errorCode: 'slow' }),
      statusEvent('delivered', { messageId: id }),
    ]);
    await earlier.close();

    const replaying = await startRecorder(dir);
    try {
      // The chunk failed twice and was tried event by event, the slow one failing again.
      await eventually(() => replaying.stats().replayRetries >= 3, 'retries', 15_000);
      await database.pool.query('DELETE FROM test_slow');
      await eventually(() => replaying.mode() === 'direct', 'the spool replayed', 15_000);
      expect(await history(id)).toEqual(['queued', 'sent', 'delivered']);
    } finally {
      await replaying.drain();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
    await database.pool.query(
      'DROP TRIGGER test_slow ON status_events; DROP TABLE test_slow; DROP FUNCTION test_slow()',
    );
  }
});

test('When the process stops while a segment is kept for a locked message and holds a dead letter, then the next process, replaying the segment whole, does not dead-letter that event again', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-per-message-dead-letter-'));
  try {
    const locked = statusEvent('queued');
    await recordEvents(service.db, [locked]);
    const poisoned = statusEvent('sent');
    // One segment (segmentMaxEvents 2) left by an earlier process: the locked message's next
    // event, and an event PostgreSQL refuses for good.
    const earlier = await openSpool({ dir, logger: createLogger('silent') });
    await earlier.append([statusEvent('sent', { messageId: locked.messageId }), poisoned]);
    await earlier.close();
    await database.pool.query(
      `ALTER TABLE status_events ADD CONSTRAINT test_refuses_kept CHECK (message_id <> '${poisoned.messageId}')`,
    );
    await lock(locked.messageId);

    const first = await startRecorder(dir);
    await eventually(() => first.status().spool.dead_letters === 1, 'dead-lettered', 15_000);
    await first.drain(); // the segment is kept: its locked event is not stored yet
    expect((await readdir(dir)).filter((name) => name.startsWith('spool-'))).toHaveLength(1);

    await operator!.query('ROLLBACK');
    const second = await startRecorder(dir);
    try {
      await eventually(() => second.mode() === 'direct', 'the next process replayed it', 15_000);
      expect(await history(locked.messageId)).toEqual(['queued', 'sent']);
      expect(second.status().spool.dead_letters).toBe(1);
    } finally {
      await second.drain();
    }
    const records = (await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8')).trim().split('\n');
    expect(records).toHaveLength(1);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await database.pool.query('ALTER TABLE status_events DROP CONSTRAINT test_refuses_kept');
  }
});
