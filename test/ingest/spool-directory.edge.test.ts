import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
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
import { TEST_API_TOKEN, createTestApp } from '../helpers/test-app';
import type { TestApp } from '../helpers/test-app';
import { eventually } from '../helpers/eventually';
import { createTcpSwitch } from './support/tcp-switch';
import type { TcpSwitch } from './support/tcp-switch';

/**
 * The spool's directory taken away while a segment is open in it (an operator clearing what
 * looks like stale files, a tmp cleaner, a volume swapped under the pod). The open segment's
 * file handle still takes writes and syncs — into a file no directory holds any more, which
 * no replay or restart will ever read. Such a write is not durable: the callback gets a 503
 * (SignalWire retries it), never a 200.
 */

const logger = createLogger('silent');

function event(): StatusEvent {
  return normalizeCxmlCallback(cxmlFields(), { receivedAt: new Date(), storeBody: false });
}

let root: string;
beforeEach(async () => {
  root = await mkdtemp(path.join(os.tmpdir(), 'sw-status-spool-directory-edge-'));
});
afterEach(() => rm(root, { recursive: true, force: true }));

/**
 * An app whose recorder spools into `dir` and reaches PostgreSQL through a switch: the database
 * cut, a callback acknowledged from an open segment, then the directory removed. `refused` is
 * the answer to the callback after that.
 */
async function directoryRemovedDuringAnOutage(dir: string) {
  const spool: Spool = await openSpool({ dir, logger, probeIntervalMs: 20 });
  const tcp: TcpSwitch = await createTcpSwitch();
  let viaSwitch: DatabaseHandle | undefined;
  let recorder: GroupCommitRecorder | undefined;
  const t: TestApp = await createTestApp(
    {},
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
        });
        deps.lifecycle.ingest = recorder;
        return recorder;
      },
    },
  );
  const close = async (): Promise<void> => {
    await tcp.restore();
    await t.close();
    await viaSwitch?.db.destroy();
    await tcp.close();
  };
  try {
    await tcp.cut();
    // The outage has begun: this callback is in an open segment, fsync'd, acknowledged.
    expect((await postCxml(t.publicApp, cxmlFields())).status).toBe(200);
    expect(recorder!.mode()).toBe('spooling');
    await rm(dir, { recursive: true, force: true });
    const refused = await postCxml(t.publicApp, cxmlFields());
    return { t, tcp, recorder: recorder!, refused, close };
  } catch (error) {
    await close();
    throw error;
  }
}

test('When the spool directory is removed while a segment is open in it, then the next callback during the outage is refused with 503, not acknowledged into a deleted file; once it is back, the replica is ready again without a callback to try it', async () => {
  const dir = path.join(root, 'spool');
  const { t, recorder, refused, close } = await directoryRemovedDuringAnOutage(dir);
  try {
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBeDefined();

    // And it says so: not ready (the LB sends callbacks to a replica that can keep them).
    const ready = await request(t.publicApp).get('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.spool).toEqual(expect.objectContaining({ state: 'failing' }));

    // Out of the load balancer it gets no callbacks whose writes could say the spool works
    // again: its own probe says so, and the database is still out.
    await mkdir(dir, { recursive: true });
    await eventually(
      async () => (await request(t.publicApp).get('/readyz')).status === 200,
      'ready again once the spool directory is back',
    );
    expect(recorder.mode()).toBe('spooling');
    expect((await postCxml(t.publicApp, cxmlFields())).status).toBe(200);
  } finally {
    await close();
  }
});

test('When the spool directory is removed during an outage and never comes back, then once the database does the replay finishes and callbacks are written straight to it again', async () => {
  const dir = path.join(root, 'spool');
  // The acknowledged callback's segment went with the directory: it is lost (and logged as
  // such), but nothing more may be: the replica must not stay in its outage mode for good.
  const { t, tcp, recorder, refused, close } = await directoryRemovedDuringAnOutage(dir);
  try {
    expect(refused.status).toBe(503);

    await tcp.restore();
    await eventually(() => recorder.mode() === 'direct', 'writing straight to PostgreSQL again');
    const fields = cxmlFields();
    expect((await postCxml(t.publicApp, fields)).status).toBe(200);
    const stored = await request(t.internalApp)
      .get(`/v1/messages/${fields.MessageSid}`)
      .auth(TEST_API_TOKEN, { type: 'bearer' });
    expect(stored.status).toBe(200);
  } finally {
    await close();
  }
});

test('When a closed segment is removed by someone else before it is replayed, then the replay says its events are lost and goes on with the rest', async () => {
  const dir = path.join(root, 'spool');
  const lines: string[] = [];
  const spool = await openSpool({
    dir,
    logger: createLogger('info', { write: (line: string) => void lines.push(line) }),
    segmentMaxEvents: 1,
  });
  const [first, second] = [event(), event()];
  await spool.append([first!]);
  await spool.append([second!]);
  const [removed] = (await readdir(dir)).filter((name) => name.startsWith('spool-')).sort();
  await rm(path.join(dir, removed!));

  const replayed: string[] = [];
  await spool.replay(async (events) => {
    replayed.push(...events.map((e) => e.messageId));
  }, 10);
  expect(replayed).toEqual([second!.messageId]);
  expect(spool.isEmpty()).toBe(true);
  const said = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  expect(said).toContainEqual(
    expect.objectContaining({
      level: 50,
      file: path.join(dir, removed!),
      events: 1,
      msg: 'spool segment removed before it was replayed: its events are lost',
    }),
  );
  await spool.close();
});

test('When the spool makes its directory, then only SPOOL_DIR itself is private (0700): the directories above it are made as any other', async () => {
  // `.data/spool` in a new checkout: `.data` also holds the embedded PostgreSQL's data
  // directory, which the `postgres` user (the server's, under root) must be able to enter.
  const previous = process.umask(0o022);
  try {
    const dir = path.join(root, '.data', 'spool');
    const spool = await openSpool({ dir, logger });
    try {
      expect((await stat(dir)).mode & 0o777).toBe(0o700);
      expect((await stat(path.join(root, '.data'))).mode & 0o777).toBe(0o755);
    } finally {
      await spool.close();
    }
  } finally {
    process.umask(previous);
  }
});
