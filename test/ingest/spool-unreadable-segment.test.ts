import fsPromises from 'node:fs/promises';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import type { StatusEvent } from '../../src/messages/status-event';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { eventually } from '../helpers/eventually';
import { switchedSpool } from './support/switched-spool';

/**
 * A spool segment the file system will not read: a bad block under it (EIO), or a directory
 * that took its name. That is a disk problem, not the database's: the segment is set aside as
 * `unreadable-<its name>` for an operator, counted with the dead letters (readiness, metric),
 * and the replay — and the service — go on with everything else.
 */

const logger = createLogger('silent');

function event(): StatusEvent {
  return normalizeCxmlCallback(cxmlFields(), { receivedAt: new Date(), storeBody: false });
}

function segmentName(id: number): string {
  return `spool-${String(id).padStart(20, '0')}.jsonl`;
}

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-unreadable-'));
});
afterEach(async () => {
  jest.restoreAllMocks();
  await rm(dir, { recursive: true, force: true });
});

/** Reading `file` fails with EIO from now on (a bad block under it). */
function badBlockUnder(file: string): void {
  const open = fsPromises.open.bind(fsPromises);
  jest.spyOn(fsPromises, 'open').mockImplementation(async (...args: Parameters<typeof open>) => {
    const handle: FileHandle = await open(...args);
    if (path.resolve(String(args[0])) === file) {
      handle.read = (async () => {
        throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO', errno: -5 });
      }) as FileHandle['read'];
    }
    return handle;
  });
}

test('When a spooled segment cannot be read (EIO), then it is set aside and counted as a dead letter, and callbacks acknowledged after the database is back reach PostgreSQL', async () => {
  const h = await switchedSpool(dir);
  try {
    await h.tcp.cut();
    for (let i = 0; i < 3; i++)
      expect((await postCxml(h.t.publicApp, cxmlFields())).status).toBe(200);
    expect(h.recorder.mode()).toBe('spooling');
    const [segment] = (await readdir(dir)).filter((name) => name.startsWith('spool-'));
    // The outage's segment is sealed by the first replay pass; its blocks go bad meanwhile.
    badBlockUnder(path.join(dir, segment!));
    await h.tcp.restore();

    const after = cxmlFields();
    await eventually(
      async () => h.recorder.mode() === 'direct',
      'the replay goes past the unreadable segment',
      10_000,
    );
    expect((await postCxml(h.t.publicApp, after)).status).toBe(200);
    const stored = await h.t.database.db
      .selectFrom('status_events')
      .select('message_id')
      .where('message_id', '=', after.MessageSid!)
      .execute();
    expect(stored).toHaveLength(1);

    // The disk, not the database: readiness says the database is fine and counts the segment.
    const ready = await request(h.t.publicApp).get('/readyz');
    expect(ready.body).toMatchObject({
      status: 'ready',
      database: 'ok',
      spool: { state: 'idle', depth: 0, dead_letters: 1 },
    });
    // Its events stay on disk for an operator, under a name no replay takes.
    expect(await readdir(dir)).toContain(`unreadable-${segment!}`);
  } finally {
    await h.tcp.restore();
    await h.close();
  }
});

test('When the first of two segments cannot be read, then the replay sets it aside and replays the second', async () => {
  const spool = await openSpool({ dir, logger, segmentMaxEvents: 2 });
  const events = [event(), event(), event(), event()];
  await spool.append(events.slice(0, 2));
  await spool.append(events.slice(2));
  // Its blocks go bad while it is open: found at the replay, not at start-up.
  badBlockUnder(path.join(dir, segmentName(1)));
  const replayed: StatusEvent[] = [];
  await spool.replay(async (chunk) => {
    replayed.push(...chunk);
  }, 10);
  expect(replayed.map((e) => e.messageId)).toEqual(events.slice(2).map((e) => e.messageId));
  expect(spool.isEmpty()).toBe(true);
  expect(spool.deadLetters()).toBe(1);
  expect((await readdir(dir)).filter((name) => /spool-/.test(name))).toEqual([
    `unreadable-${segmentName(1)}`,
  ]);
  await spool.close();
});

test('When a segment cannot be read at start-up (EIO), then the spool opens all the same and counts it', async () => {
  const first = await openSpool({ dir, logger });
  await first.append([event()]);
  await first.close();
  badBlockUnder(path.join(dir, segmentName(1)));

  const spool = await openSpool({ dir, logger });
  expect(spool.depth()).toBe(0);
  expect(spool.isEmpty()).toBe(true);
  expect(spool.deadLetters()).toBe(1);
  await spool.close();
  jest.restoreAllMocks();

  // A restart still counts it, from its name alone.
  const again = await openSpool({ dir, logger });
  expect(again.deadLetters()).toBe(1);
  await again.close();
});

test('When a directory takes a segment’s name in SPOOL_DIR, then the spool still opens, sets it aside, counts it and spools new events', async () => {
  await mkdir(path.join(dir, segmentName(1)));

  const spool = await openSpool({ dir, logger });
  expect(spool.deadLetters()).toBe(1);
  expect((await stat(path.join(dir, `unreadable-${segmentName(1)}`))).isDirectory()).toBe(true);
  await spool.append([event()]);
  expect(spool.depth()).toBe(1);
  let replayed = 0;
  await spool.replay(async (chunk) => {
    replayed += chunk.length;
  }, 10);
  expect(replayed).toBe(1);
  expect(spool.isEmpty()).toBe(true);
  await spool.close();
});

test('When a directory takes the name of a segment after the spool opened, then the replay sets it aside and goes on', async () => {
  const spool = await openSpool({ dir, logger, segmentMaxEvents: 1 });
  const events = [event(), event()];
  await spool.append([events[0]!]);
  await spool.append([events[1]!]);
  // The first segment replaced by a directory of the same name.
  await rm(path.join(dir, segmentName(1)));
  await mkdir(path.join(dir, segmentName(1)));

  const replayed: StatusEvent[] = [];
  await spool.replay(async (chunk) => {
    replayed.push(...chunk);
  }, 10);
  expect(replayed.map((e) => e.messageId)).toEqual([events[1]!.messageId]);
  expect(spool.isEmpty()).toBe(true);
  expect(spool.deadLetters()).toBe(1);
  await spool.close();
});

// A segment that cannot be opened for a moment is not damaged: EMFILE and ENFILE (every file
// handle taken, as in a callback flood during an outage) fail the pass, and the next one
// replays it; setting it aside would strand acknowledged callbacks.

/** The next `times` opens of `file` fail with `code` (then it opens fine). */
function transientOpenFailure(file: string, code: string, times = 1): void {
  const open = fsPromises.open.bind(fsPromises);
  let left = times;
  jest.spyOn(fsPromises, 'open').mockImplementation(async (...args: Parameters<typeof open>) => {
    if (left > 0 && path.resolve(String(args[0])) === file) {
      left--;
      throw Object.assign(new Error(`${code}: transient, open '${file}'`), { code });
    }
    return open(...args);
  });
}

test.each(['EMFILE', 'ENFILE'])(
  'When opening a segment fails once with %s during a replay, then its acknowledged events are still replayed (not set aside)',
  async (code) => {
    const spool = await openSpool({ dir, logger });
    const events = [event(), event(), event()];
    await spool.append(events);
    transientOpenFailure(path.join(dir, segmentName(1)), code);

    const replayed: StatusEvent[] = [];
    const commit = async (chunk: StatusEvent[]): Promise<void> => {
      replayed.push(...chunk);
    };
    // A replay may fail on a transient error; the recorder calls it again until isEmpty().
    for (let pass = 0; pass < 3 && !spool.isEmpty(); pass++) {
      await spool.replay(commit, 10).catch(() => undefined);
    }
    await spool.replay(commit, 10).catch(() => undefined);

    expect(replayed.map((e) => e.messageId).sort()).toEqual(events.map((e) => e.messageId).sort());
    expect(await readdir(dir)).not.toContain(`unreadable-${segmentName(1)}`);
    expect(spool.deadLetters()).toBe(0);
    await spool.close();
  },
);

test('When counting a segment at start-up fails once with EMFILE, then its events are still replayed', async () => {
  const first = await openSpool({ dir, logger });
  const events = [event(), event()];
  await first.append(events);
  await first.close();
  transientOpenFailure(path.join(dir, segmentName(1)), 'EMFILE');

  const spool = await openSpool({ dir, logger }).catch(async () => {
    jest.restoreAllMocks();
    return openSpool({ dir, logger });
  });
  jest.restoreAllMocks();
  const replayed: StatusEvent[] = [];
  await spool.replay(async (chunk) => {
    replayed.push(...chunk);
  }, 10);
  expect(replayed).toHaveLength(2);
  expect(spool.deadLetters()).toBe(0);
  await spool.close();
});
