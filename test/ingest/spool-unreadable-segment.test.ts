import fsPromises from 'node:fs/promises';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import request from 'supertest';
import { normalizeCxmlCallback } from '../../src/callbacks/normalize';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import type { Spool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import type { StatusEvent } from '../../src/messages/status-event';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { eventually } from '../helpers/eventually';
import { createTcpSwitch } from './support/tcp-switch';
import type { TcpSwitch } from './support/tcp-switch';

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

interface Harness {
  t: TestApp;
  tcp: TcpSwitch;
  viaSwitch: DatabaseHandle;
  spool: Spool;
  recorder: GroupCommitRecorder;
  close(): Promise<void>;
}

/** An app whose recorder spools into `dir` and reaches PostgreSQL through a switch. */
async function harness(): Promise<Harness> {
  const h = {} as Harness;
  h.spool = await openSpool({ dir, logger });
  h.tcp = await createTcpSwitch();
  h.t = await createTestApp(
    {},
    {
      recorder: (deps, database) => {
        h.viaSwitch = createDb(h.tcp.relay(database.url), 4);
        h.recorder = createGroupCommitRecorder({
          db: h.viaSwitch.db,
          logger: deps.logger,
          spool: h.spool,
          batchMax: 50,
          batchWaitMs: 2,
          queueMax: 1000,
          maxInFlight: 2,
          probeIntervalMs: 50,
          replayChunk: 7,
        });
        deps.lifecycle.ingest = h.recorder;
        return h.recorder;
      },
    },
  );
  h.close = async () => {
    await h.t.close();
    await h.viaSwitch.db.destroy();
    await h.tcp.close();
  };
  return h;
}

test('When a spooled segment cannot be read (EIO), then it is set aside and counted as a dead letter, and callbacks acknowledged after the database is back reach PostgreSQL', async () => {
  const h = await harness();
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
