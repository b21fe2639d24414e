import fsPromises from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { DEAD_LETTER_FILE, openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import type { StatusEvent } from '../../src/messages/status-event';
import { cxmlFields } from '../helpers/callbacks';

/**
 * The first release named its dead-letter file `rejected.jsonl`; opening the spool copies it
 * into `dead-letters.jsonl`, and that copy needs free blocks. On a volume the old release
 * filled during an outage, then upgraded, every start failed on ENOSPC: the spool never opened,
 * so it never drained, and draining is what frees the space (README, "One process per
 * SPOOL_DIR"). The adoption is best effort: a failed copy is cut off again, `rejected.jsonl`
 * stays (counted), the spool opens, and a later open or requeue adopts it — each record once.
 */

const logger = createLogger('silent');

function event(): StatusEvent {
  return normalizeCxmlCallback(cxmlFields(), { receivedAt: new Date(), storeBody: false });
}

/** A dead-letter record as the first release wrote it (same fields as today's). */
function record(e: StatusEvent): string {
  return `${JSON.stringify({ rejected_at: new Date().toISOString(), reason: '23514 check', event: e })}\n`;
}

const LEGACY = 'rejected.jsonl';

let dir: string;
beforeEach(async () => {
  dir = path.join(await mkdtemp(path.join(os.tmpdir(), 'sw-status-legacy-full-')), 'spool');
  await mkdir(dir);
});
afterEach(async () => {
  jest.restoreAllMocks();
  await rm(path.dirname(dir), { recursive: true, force: true });
});

const enospc = (): Error =>
  Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });

/**
 * The volume is full: writes of new data are refused — the lock record's (writeFile) and the
 * dead-letter file's; with `marker`, only the dead-letter writes holding it.
 */
function diskFull(marker?: string): void {
  jest.spyOn(fsPromises, 'writeFile').mockImplementation(() => Promise.reject(enospc()));
  const open = fsPromises.open.bind(fsPromises);
  jest.spyOn(fsPromises, 'open').mockImplementation(async (...args: Parameters<typeof open>) => {
    const handle: FileHandle = await open(...args);
    if (path.basename(String(args[0])) === DEAD_LETTER_FILE) {
      const write = handle.write.bind(handle) as (...a: unknown[]) => Promise<unknown>;
      handle.write = (async (...a: unknown[]) => {
        const data = a[0];
        if (marker === undefined || (Buffer.isBuffer(data) && data.includes(marker))) {
          throw enospc();
        }
        return write(...a);
      }) as FileHandle['write'];
    }
    return handle;
  });
}

async function deadLetterIds(): Promise<string[]> {
  const text = await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => (JSON.parse(line) as { event: StatusEvent }).event.messageId);
}

test('When the spool volume is full and holds the first release’s rejected.jsonl, then the spool still opens, its events are replayed, and the old dead letters stay where they were, counted', async () => {
  const first = await openSpool({ dir, logger });
  await first.append([event(), event(), event()]);
  await first.close();
  const old = record(event());
  await writeFile(path.join(dir, LEGACY), old);
  diskFull();

  const second = await openSpool({ dir, logger });
  try {
    expect(second.depth()).toBe(3);
    let replayed = 0;
    await second.replay(async (events) => {
      replayed += events.length;
    }, 100);
    expect(replayed).toBe(3);
    expect(second.deadLetters()).toBe(1);
  } finally {
    await second.close();
  }
  expect(await readFile(path.join(dir, LEGACY), 'utf8')).toBe(old);
  expect(await deadLetterIds()).toEqual([]);
});

test('When the copy of rejected.jsonl fails part-way, then what it wrote is cut off, and the next open adopts every record once', async () => {
  const current = event();
  await writeFile(path.join(dir, DEAD_LETTER_FILE), record(current));
  const olds = [event(), event(), event()];
  await writeFile(path.join(dir, LEGACY), olds.map(record).join(''));
  // The first old record is copied, the second refused.
  diskFull(olds[1]!.messageId);

  const full = await openSpool({ dir, logger });
  expect(full.deadLetters()).toBe(4);
  await full.close();
  expect(await deadLetterIds()).toEqual([current.messageId]);
  expect(await readdir(dir)).toContain(LEGACY);

  jest.restoreAllMocks(); // room again
  const later = await openSpool({ dir, logger });
  expect(later.deadLetters()).toBe(4);
  await later.close();
  expect(await deadLetterIds()).toEqual([current, ...olds].map((e) => e.messageId));
  expect(await readdir(dir)).not.toContain(LEGACY);
});

/**
 * Removing rejected.jsonl fails with `code`: on a full copy-on-write volume (btrfs, ZFS) even
 * an unlink needs free blocks (ENOSPC).
 */
function removalFails(code: string): void {
  const unlink = fsPromises.unlink.bind(fsPromises);
  jest.spyOn(fsPromises, 'unlink').mockImplementation(async (file) => {
    if (path.basename(String(file)) === LEGACY) {
      throw Object.assign(new Error(`${code}: unlink '${String(file)}'`), { code });
    }
    return unlink(file);
  });
}

test('When rejected.jsonl was copied but not removed (a crash, a failed removal), then the next open does not copy its records twice', async () => {
  const olds = [event(), event()];
  // A torn last record too: a crash in the first release's write.
  const torn = '{"rejected_at":"2026-01-01T00:00:00.000Z","rea';
  const legacy = olds.map(record).join('') + torn;
  await writeFile(path.join(dir, LEGACY), legacy);
  removalFails('ENOSPC');

  const first = await openSpool({ dir, logger });
  // Counted once: in the dead-letter file, not again as rejected.jsonl's.
  expect(first.deadLetters()).toBe(3);
  await first.close();
  const copied = await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8');
  // The torn record is a line of its own, not the start of the next record.
  expect(copied).toBe(`${legacy}\n`);
  expect(await readdir(dir)).toContain(LEGACY);

  jest.restoreAllMocks();
  const second = await openSpool({ dir, logger });
  expect(second.deadLetters()).toBe(3);
  await second.close();
  expect(await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8')).toBe(copied);
  expect(await readdir(dir)).not.toContain(LEGACY);
});

test('When the old dead letters could not be adopted at the open, then a requeue once there is room adopts and requeues them', async () => {
  const old = event();
  await writeFile(path.join(dir, LEGACY), record(old));
  diskFull(old.messageId);
  const spool = await openSpool({ dir, logger });
  try {
    expect(spool.deadLetters()).toBe(1);
    jest.restoreAllMocks(); // the spool drained: room again

    expect(await spool.requeueDeadLetters()).toEqual({ requeued: 1, kept: 0 });
    expect(spool.deadLetters()).toBe(0);
    expect(await readdir(dir)).not.toContain(LEGACY);
    const replayed: StatusEvent[] = [];
    await spool.replay(async (events) => {
      replayed.push(...events);
    }, 10);
    expect(replayed.map((e) => e.messageId)).toEqual([old.messageId]);
  } finally {
    await spool.close();
  }
});

test('When a copy of rejected.jsonl was cut short by a crash part-way through a record, then the next open copies that record whole, and counts each record once', async () => {
  const olds = [event(), event()];
  const legacy = olds.map(record).join('');
  await writeFile(path.join(dir, LEGACY), legacy);
  // What a process killed while copying the second record leaves: the first whole, the start
  // of the second. Kept, it became a dead letter of its own, unreadable and counted for good.
  const [line1, line2] = legacy.split('\n');
  await writeFile(path.join(dir, DEAD_LETTER_FILE), `${line1}\n${line2!.slice(0, 40)}`);

  const spool = await openSpool({ dir, logger });
  try {
    expect(spool.deadLetters()).toBe(2);
    expect(await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8')).toBe(legacy);
    expect(await spool.requeueDeadLetters()).toEqual({ requeued: 2, kept: 0 });
  } finally {
    await spool.close();
  }
});

test('When the dead-letter file ends in an unfinished record that is not part of rejected.jsonl, then it stays a line of its own and the old records follow it', async () => {
  const current = `${JSON.stringify({ rejected_at: '2026-01-01T00:00:00.000Z', reason: '22P02', event: event() })}\n`;
  // Torn by a crash in a dead letter's own write: no record of rejected.jsonl begins so.
  const tornOwn = current.slice(0, 60);
  const old = record(event());
  await writeFile(path.join(dir, DEAD_LETTER_FILE), `${current}${tornOwn}`);
  await writeFile(path.join(dir, LEGACY), old);

  const spool = await openSpool({ dir, logger });
  expect(spool.deadLetters()).toBe(3);
  await spool.close();
  expect(await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8')).toBe(
    `${current}${tornOwn}\n${old}`,
  );
});

test('When rejected.jsonl was copied but its removal keeps failing, then a requeue is refused, naming it, rather than requeue records its next adoption would bring back', async () => {
  const olds = [event(), event()];
  await writeFile(path.join(dir, LEGACY), olds.map(record).join(''));
  removalFails('ENOSPC');

  const first = await openSpool({ dir, logger });
  try {
    expect(first.deadLetters()).toBe(2);
    await expect(first.requeueDeadLetters()).rejects.toThrow(
      /rejected\.jsonl .*could not be removed/,
    );
    expect(first.deadLetters()).toBe(2);
    expect(first.isEmpty()).toBe(true);
  } finally {
    await first.close();
  }
  jest.restoreAllMocks();

  // Once it can be removed: requeued once, and nothing comes back at the next start.
  const second = await openSpool({ dir, logger });
  try {
    expect(await readdir(dir)).not.toContain(LEGACY);
    expect(await second.requeueDeadLetters()).toEqual({ requeued: 2, kept: 0 });
    await second.replay(async () => undefined, 10);
    expect(second.deadLetters()).toBe(0);
  } finally {
    await second.close();
  }
  const third = await openSpool({ dir, logger });
  expect(third.deadLetters()).toBe(0);
  await third.close();
});

test('When rejected.jsonl cannot be read for another reason than a full volume (EACCES), then the spool does not open rather than count its records as no dead letters', async () => {
  await writeFile(path.join(dir, LEGACY), [event(), event()].map(record).join(''));
  const open = fsPromises.open.bind(fsPromises);
  jest.spyOn(fsPromises, 'open').mockImplementation(async (...args: Parameters<typeof open>) => {
    if (path.basename(String(args[0])) === LEGACY) {
      throw Object.assign(new Error('EACCES: permission denied, open'), { code: 'EACCES' });
    }
    return open(...args);
  });
  await expect(openSpool({ dir, logger })).rejects.toMatchObject({ code: 'EACCES' });
});
