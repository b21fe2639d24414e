import fsPromises from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { DEAD_LETTER_FILE, isSpoolDiskFailure, openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import type { StatusEvent } from '../../src/messages/status-event';
import { cxmlFields } from '../helpers/callbacks';
import { eventually } from '../helpers/eventually';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { spooledRecorder } from './support/spooled-recorder';

/**
 * The replay tells the spool disk's failures from the database's (isSpoolDiskFailure), so that
 * `/readyz` does not say `"database": "unreachable"` and the log does not send an operator after
 * the database when it is the spool's volume that refuses. A dead letter is written from within
 * the replay's `commit`, whose errors are otherwise the database's: every file-system error of
 * that step — creating the dead-letter file (a new inode, refused on a full volume), reading
 * the keys it holds, writing the record — is the disk's, not only the write's.
 */

const logger = createLogger('silent');

function event(): StatusEvent {
  return normalizeCxmlCallback(cxmlFields(), { receivedAt: new Date(), storeBody: false });
}

let root: string;
let dir: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'sw-status-dead-letter-disk-'));
  dir = path.join(root, 'spool');
});
afterEach(async () => {
  jest.restoreAllMocks();
  await rm(root, { recursive: true, force: true });
});

function errno(code: string, syscall: string, file: string): Error {
  return Object.assign(new Error(`${code}: ${syscall} '${file}'`), { code, syscall, path: file });
}

/** Opening the dead-letter file for appending is refused: a full volume, no inode for it. */
function deadLetterFileCannotBeCreated(): void {
  const open = fsPromises.open.bind(fsPromises);
  jest.spyOn(fsPromises, 'open').mockImplementation((async (
    ...args: Parameters<typeof open>
  ): Promise<FileHandle> => {
    const [file, flags] = args;
    if (path.basename(String(file)) === DEAD_LETTER_FILE && flags === 'a+') {
      throw errno('ENOSPC', 'open', String(file));
    }
    return open(...args);
  }) as typeof fsPromises.open);
}

/** The volume is full (the dead-letter file cannot be created) until `file` is removed. */
function fullUntilGone(file: string): void {
  const open = fsPromises.open.bind(fsPromises);
  jest.spyOn(fsPromises, 'open').mockImplementation((async (
    ...args: Parameters<typeof open>
  ): Promise<FileHandle> => {
    const [target, flags] = args;
    if (path.basename(String(target)) === DEAD_LETTER_FILE && flags === 'a+') {
      const full = await fsPromises.stat(file).then(
        () => true,
        () => false,
      );
      if (full) throw errno('ENOSPC', 'open', String(target));
    }
    return open(...args);
  }) as typeof fsPromises.open);
}

/** Reading the dead-letter file fails (a bad block under it). */
function deadLetterFileUnreadable(): void {
  const open = fsPromises.open.bind(fsPromises);
  jest.spyOn(fsPromises, 'open').mockImplementation(async (...args: Parameters<typeof open>) => {
    const handle: FileHandle = await open(...args);
    if (path.basename(String(args[0])) === DEAD_LETTER_FILE) {
      handle.read = (async () => {
        throw errno('EIO', 'read', String(args[0]));
      }) as FileHandle['read'];
    }
    return handle;
  });
}

/** What `promise` rejects with. */
function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('resolved');
    },
    (error: unknown) => error,
  );
}

test('When the dead-letter file cannot be created, then the dead letter fails as the spool disk’s failure, not the database’s', async () => {
  const spool = await openSpool({ dir, logger });
  try {
    deadLetterFileCannotBeCreated();
    const error = await rejection(spool.deadLetter(event(), '23514 check'));
    expect(error).toMatchObject({ code: 'ENOSPC' });
    expect(isSpoolDiskFailure(error)).toBe(true);
  } finally {
    await spool.close();
  }
});

test('When the dead-letter file cannot be read for the keys it holds, then the dead letter fails as the spool disk’s failure, not the database’s', async () => {
  const earlier = await openSpool({ dir, logger });
  await earlier.deadLetter(event(), '23514 check');
  await earlier.close();
  // The keys are read at a process's first dead letter.
  const spool = await openSpool({ dir, logger });
  try {
    deadLetterFileUnreadable();
    const error = await rejection(spool.deadLetter(event(), '23514 check'));
    expect(error).toMatchObject({ code: 'EIO' });
    expect(isSpoolDiskFailure(error)).toBe(true);
  } finally {
    await spool.close();
  }
});

describe('with PostgreSQL', () => {
  let database: TestDatabase;
  beforeEach(async () => {
    database = await createTestDatabase(4);
  });
  afterEach(async () => {
    await database.destroy();
  });

  /** PostgreSQL answers, and refuses this event for good: it is to be dead-lettered. */
  async function refusedForGood(spooled: StatusEvent): Promise<void> {
    await sql
      .raw(
        `ALTER TABLE status_events ADD CONSTRAINT refuses_one CHECK (message_id <> '${spooled.messageId}')`,
      )
      .execute(database.db);
  }

  /** A recorder on the spool, replaying it into the database. */
  function replaying(spool: { segmentMaxEvents?: number } = {}) {
    return spooledRecorder(
      database.db,
      dir,
      { commitTimeoutMs: 3_000, replayTimeoutMs: 10_000, maxInFlight: 2, batchWaitMs: 5 },
      spool,
    );
  }

  test('When the dead-letter file cannot be created on a full spool volume, then readiness does not report the database unreachable', async () => {
    const neighbour = event();
    const poisoned = event();
    const earlier = await openSpool({ dir, logger });
    await earlier.append([neighbour, poisoned]);
    await earlier.close();
    await refusedForGood(poisoned);
    deadLetterFileCannotBeCreated();

    const recorder = await replaying();
    try {
      // The replay got as far as the dead letter (its neighbour is stored); the event waits in
      // its segment for room, and readiness says so: the spool's volume, not the database.
      await eventually(async () => {
        const rows = await database.db
          .selectFrom('status_events')
          .select('message_id')
          .where('message_id', '=', neighbour.messageId)
          .execute();
        return rows.length === 1 && recorder.status().spool.retrying === 'ENOSPC';
      }, 'the replay waiting for room for the dead letter');
      expect(recorder.status()).toMatchObject({
        database: 'ok',
        spool: { state: 'replaying', retrying: 'ENOSPC' },
      });
    } finally {
      await recorder.drain();
    }
  }, 60_000);

  test('When a full spool volume has no room for a dead letter, then the replay goes on past it, the later segments are stored and removed, and the dead letter is written once that frees room', async () => {
    const poisoned = event();
    const neighbour = event();
    const later = event();
    const earlier = await openSpool({ dir, logger, segmentMaxEvents: 2 });
    await earlier.append([poisoned, neighbour]);
    await earlier.append([later]);
    await earlier.close();
    const segments = (await fsPromises.readdir(dir)).filter((name) => name.startsWith('spool-'));
    expect(segments).toHaveLength(2);
    const laterSegment = path.join(dir, segments.sort().at(-1)!);
    await refusedForGood(poisoned);
    // The volume is full until the later segment's removal frees room. Before, the replay
    // stopped at the dead letter, every pass again: nothing was removed, room never came back,
    // and every callback was refused (503) with the database up.
    fullUntilGone(laterSegment);

    const recorder = await replaying({ segmentMaxEvents: 2 });
    try {
      await eventually(
        () => recorder.mode() === 'direct',
        'the spool replayed to its end, the dead letter written',
      );
      const stored = await database.db
        .selectFrom('status_events')
        .select('message_id')
        .where('message_id', 'in', [poisoned.messageId, neighbour.messageId, later.messageId])
        .execute();
      expect(stored.map((row) => row.message_id).sort()).toEqual(
        [neighbour.messageId, later.messageId].sort(),
      );
      const deadLetters = await fsPromises.readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8');
      expect(deadLetters.trim().split('\n')).toHaveLength(1);
      expect(deadLetters).toContain(poisoned.messageId);
      expect((await fsPromises.readdir(dir)).filter((name) => name.startsWith('spool-'))).toEqual(
        [],
      );
      // Live callbacks are stored again.
      expect(await recorder.record(event())).toBe('recorded');
    } finally {
      await recorder.drain();
    }
  }, 60_000);

  test('When the oldest segment holds an unreadable line and the full volume has no room for its dead letter, then the later segments are still replayed (freeing the room) and the spool empties', async () => {
    const first = event();
    const later = event();
    const earlier = await openSpool({ dir, logger, segmentMaxEvents: 1 });
    await earlier.append([first]);
    await earlier.append([later]);
    await earlier.close();
    const segments = (await fsPromises.readdir(dir))
      .filter((name) => name.startsWith('spool-'))
      .sort();
    expect(segments).toHaveLength(2);
    // A record torn by a crash in the oldest segment: a dead letter of its own.
    await fsPromises.appendFile(path.join(dir, segments[0]!), '{"torn by a crash\n');
    fullUntilGone(path.join(dir, segments[1]!));

    const recorder = await replaying({ segmentMaxEvents: 1 });
    try {
      await eventually(() => recorder.mode() === 'direct', 'the spool replayed to its end');
      const stored = await database.db
        .selectFrom('status_events')
        .select('message_id')
        .where('message_id', 'in', [first.messageId, later.messageId])
        .execute();
      expect(stored).toHaveLength(2);
      const deadLetters = await fsPromises.readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8');
      expect(deadLetters.trim().split('\n')).toHaveLength(1);
    } finally {
      await recorder.drain();
    }
  }, 60_000);

  test('When a dead letter has no room and its message has later spooled events, then readiness says the replay waits for room (ENOSPC), never for a lock', async () => {
    const poisoned = normalizeCxmlCallback(cxmlFields({ MessageStatus: 'sent' }), {
      receivedAt: new Date(),
      storeBody: false,
    });
    const poisonedLater = normalizeCxmlCallback(
      cxmlFields({ MessageSid: poisoned.messageId, MessageStatus: 'delivered' }),
      { receivedAt: new Date(), storeBody: false },
    );
    const earlier = await openSpool({ dir, logger });
    await earlier.append([poisoned, poisonedLater, event()]);
    await earlier.close();
    await refusedForGood(poisoned);
    deadLetterFileCannotBeCreated();

    const recorder = await replaying();
    try {
      await eventually(
        () => recorder.status().spool.retrying !== undefined,
        'the replay to wait for something',
      );
      // Then through a few more passes (the replay's backoff starts at 100 ms).
      const seen = new Set<string>();
      for (const until = Date.now() + 1_500; Date.now() < until;) {
        const retrying = recorder.status().spool.retrying;
        if (retrying) seen.add(retrying);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      expect(recorder.status().spool).toMatchObject({ state: 'replaying', retrying: 'ENOSPC' });
      expect([...seen]).toEqual(['ENOSPC']);
    } finally {
      await recorder.drain();
    }
  }, 60_000);
});
