import fsPromises from 'node:fs/promises';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { DEAD_LETTER_FILE, openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import type { StatusEvent } from '../../src/messages/status-event';
import { cxmlFields } from '../helpers/callbacks';

/**
 * What the spool makes durable before an append resolves (and a callback is answered 200),
 * and what it finds of an earlier release's files. No database: the spool alone.
 */

const logger = createLogger('silent');

function event(overrides: Record<string, string> = {}): StatusEvent {
  return normalizeCxmlCallback(cxmlFields(overrides), { receivedAt: new Date(), storeBody: false });
}

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-durability-'));
});
afterEach(async () => {
  jest.restoreAllMocks();
  await rm(root, { recursive: true, force: true });
});

/** Directories fsync'd through fs/promises from now on (a handle opened on them, then sync). */
function watchDirectorySyncs(): string[] {
  const synced: string[] = [];
  const open = fsPromises.open.bind(fsPromises);
  jest.spyOn(fsPromises, 'open').mockImplementation(async (...args: Parameters<typeof open>) => {
    const handle: FileHandle = await open(...args);
    const file = path.resolve(String(args[0]));
    if ((await stat(file)).isDirectory()) {
      const sync = handle.sync.bind(handle);
      handle.sync = async () => {
        await sync();
        synced.push(file);
      };
    }
    return handle;
  });
  return synced;
}

test('When SPOOL_DIR does not exist yet, then the directories created for it are fsync’d in their parents before an append is acknowledged', async () => {
  const dir = path.join(root, 'volume', 'sw-status', 'spool');
  const synced = watchDirectorySyncs();

  const spool = await openSpool({ dir, logger });
  await spool.append([event()]);

  // A new directory's entry lives in its parent: until the parent is synced, a power loss can
  // take the directory — and the acknowledged segment in it — away.
  expect(synced).toEqual(
    expect.arrayContaining([
      root,
      path.join(root, 'volume'),
      path.join(root, 'volume', 'sw-status'),
      dir,
    ]),
  );
  await spool.close();
});

test('When SPOOL_DIR already exists, then opening it fsyncs no parent directory', async () => {
  const dir = path.join(root, 'spool');
  await fsPromises.mkdir(dir);
  const synced = watchDirectorySyncs();

  const spool = await openSpool({ dir, logger });
  await spool.append([event()]);

  expect(synced.filter((file) => file !== dir)).toEqual([]);
  await spool.close();
});

test('When a spool directory holds the dead letters of the release that named them rejected.jsonl, then they are counted, kept and requeued', async () => {
  const dir = path.join(root, 'spool');
  await fsPromises.mkdir(dir);
  const refused = event({ MessageStatus: 'failed' });
  // The first release's dead-letter file (src/ingest/spool.ts of 51efaa6): same records.
  await writeFile(
    path.join(dir, 'rejected.jsonl'),
    `${JSON.stringify({ rejected_at: new Date().toISOString(), reason: '22P02 invalid', event: refused })}\n`,
  );

  const spool = await openSpool({ dir, logger });
  expect(spool.deadLetters()).toBe(1);
  expect(await readdir(dir)).not.toContain('rejected.jsonl');
  expect(await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8')).toContain(refused.messageId);

  expect(await spool.requeueDeadLetters()).toEqual({ requeued: 1, kept: 0 });
  const replayed: StatusEvent[] = [];
  await spool.replay(async (events) => {
    replayed.push(...events);
  }, 10);
  expect(replayed.map((e) => e.messageId)).toEqual([refused.messageId]);
  await spool.close();
});

test('When both dead-letter files exist, then the old one’s records join the current one’s', async () => {
  const dir = path.join(root, 'spool');
  await fsPromises.mkdir(dir);
  const record = (e: StatusEvent) =>
    `${JSON.stringify({ rejected_at: new Date().toISOString(), reason: 'r', event: e })}\n`;
  const older = event();
  const newer = event();
  await writeFile(path.join(dir, 'rejected.jsonl'), record(older));
  await writeFile(path.join(dir, DEAD_LETTER_FILE), record(newer));

  const spool = await openSpool({ dir, logger });
  expect(spool.deadLetters()).toBe(2);
  const text = await readFile(path.join(dir, DEAD_LETTER_FILE), 'utf8');
  expect(text).toContain(older.messageId);
  expect(text).toContain(newer.messageId);
  expect(await readdir(dir)).not.toContain('rejected.jsonl');
  await spool.close();
});

test('When the disk is full, then each refused append leaves no empty segment behind', async () => {
  const dir = path.join(root, 'spool');
  const spool = await openSpool({ dir, logger });
  const open = fsPromises.open.bind(fsPromises);
  jest.spyOn(fsPromises, 'open').mockImplementation(async (...args: Parameters<typeof open>) => {
    const handle: FileHandle = await open(...args);
    if (path.basename(String(args[0])).startsWith('spool-')) {
      handle.write = () =>
        Promise.reject(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }));
    }
    return handle;
  });

  for (let i = 0; i < 5; i++) {
    await expect(spool.append([event()])).rejects.toMatchObject({ code: 'ENOSPC' });
  }

  expect(spool.failing()).toBe(true);
  // Nothing reached a file: no segment to keep, list or replay (a full disk would otherwise
  // collect one empty file per refused callback).
  expect((await readdir(dir)).filter((name) => name.startsWith('spool-'))).toEqual([]);
  expect(spool.isEmpty()).toBe(true);
  await spool.close();
});

test('When the directory sync after a replayed segment’s removal fails, then the next replay goes on with the rest instead of failing on the removed file forever', async () => {
  const dir = path.join(root, 'spool');
  const spool = await openSpool({ dir, logger, segmentMaxEvents: 1 });
  const first = event();
  const second = event();
  await spool.append([first]);
  await spool.append([second]);

  // The next directory sync fails once (an I/O error), after the first segment was removed.
  const open = fsPromises.open.bind(fsPromises);
  let failOnce = true;
  jest.spyOn(fsPromises, 'open').mockImplementation(async (...args: Parameters<typeof open>) => {
    const handle: FileHandle = await open(...args);
    if (failOnce && path.resolve(String(args[0])) === path.resolve(dir)) {
      failOnce = false;
      handle.sync = () => Promise.reject(Object.assign(new Error('I/O error'), { code: 'EIO' }));
    }
    return handle;
  });
  const committed: string[] = [];
  const commit = async (events: readonly StatusEvent[]) => {
    committed.push(...events.map((e) => e.messageId));
  };
  await expect(spool.replay(commit, 10)).rejects.toMatchObject({ code: 'EIO' });

  // Later: the replay finishes what is left (the removed segment was not listed again).
  await spool.replay(commit, 10);
  expect(committed).toEqual([first.messageId, second.messageId]);
  expect(spool.isEmpty()).toBe(true);
  await spool.close();
});
