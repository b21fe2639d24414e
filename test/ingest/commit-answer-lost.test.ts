import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Express } from 'express';
import { createPublicApp } from '../../src/app';
import { createDb } from '../../src/db/database';
import type { DatabaseHandle } from '../../src/db/database';
import type { Lifecycle } from '../../src/http/health.routes';
import { createGroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import type { GroupCommitRecorder } from '../../src/ingest/group-commit-recorder';
import { openSpool } from '../../src/ingest/spool';
import { createLogger } from '../../src/logger';
import { cxmlFields, postCxml } from '../helpers/callbacks';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { testConfig } from '../helpers/test-app';
import { eventually } from '../helpers/eventually';

/**
 * The worst moment of a write: the COMMIT has left for PostgreSQL, which carries it out, and
 * its answer never comes back — the connection is reset, or goes silent. The service cannot
 * know whether the batch was stored; it must acknowledge only once the events are durable
 * (spooled), and the replay must find them stored and add nothing.
 */

/** A relay to PostgreSQL that, once armed, lets the next COMMIT through and loses its answer. */
interface CommitTrap {
  url: string;
  /** `reset`: the connection is reset once the COMMIT is through; `silence`: no answer ever. */
  arm(mode: 'reset' | 'silence'): void;
  /** Whether an armed trap has caught a COMMIT. */
  sprung(): boolean;
  close(): Promise<void>;
}

async function createCommitTrap(targetUrl: string): Promise<CommitTrap> {
  const target = new URL(targetUrl);
  let armed: 'reset' | 'silence' | null = null;
  let caught = false;
  const sockets = new Set<Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 5432), target.hostname);
    let silenced = false;
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk);
      // A COMMIT travels as a simple query or a Parse naming it; nothing else here says it.
      if (armed === null || !/\bcommit\b/i.test(chunk.toString('latin1'))) return;
      const mode = armed;
      armed = null;
      caught = true;
      silenced = true;
      // Time for the server to receive and carry out the COMMIT, then the client's side goes.
      if (mode === 'reset') setTimeout(() => client.resetAndDestroy(), 200);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!silenced) client.write(chunk);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(targetUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as AddressInfo).port);
  return {
    url: url.toString(),
    arm(mode) {
      caught = false;
      armed = mode;
    },
    sprung: () => caught,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

let database: TestDatabase;
let trap: CommitTrap;
let handle: DatabaseHandle;
let spoolDir: string;
let recorder: GroupCommitRecorder;
let app: Express;

beforeAll(async () => {
  database = await createTestDatabase(2);
  trap = await createCommitTrap(database.url);
  handle = createDb(trap.url, 4);
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-commit-lost-'));
  const logger = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent');
  const config = testConfig({ SPOOL_DIR: spoolDir });
  recorder = createGroupCommitRecorder({
    db: handle.db,
    logger,
    spool: await openSpool({ dir: spoolDir, logger }),
    batchMax: 50,
    batchWaitMs: 5,
    queueMax: 1000,
    maxInFlight: 1,
    probeIntervalMs: 100,
    commitTimeoutMs: 1_000,
  });
  const lifecycle: Lifecycle = { draining: false, ingest: recorder };
  app = createPublicApp({ config, logger, db: handle.db, recorder, lifecycle });
});

afterAll(async () => {
  await recorder?.drain();
  await trap?.close();
  await handle?.db.destroy().catch(() => undefined);
  await database?.destroy();
  if (spoolDir) await rm(spoolDir, { recursive: true, force: true });
});

async function historyOf(id: string) {
  return database.db
    .selectFrom('status_events')
    .select(['raw_status', 'source'])
    .where('message_id', '=', id)
    .orderBy('seq')
    .execute();
}

async function statusOf(id: string) {
  const row = await database.db
    .selectFrom('messages')
    .select('status')
    .where('id', '=', id)
    .executeTakeFirst();
  return row?.status;
}

describe.each(['reset', 'silence'] as const)('COMMIT answer lost (%s)', (mode) => {
  test(`When the connection ${mode === 'reset' ? 'is reset' : 'goes silent'} after COMMIT was sent, then the callbacks are acknowledged once durable, and each is stored exactly once with the status right`, async () => {
    const sid = randomUUID();
    // Stored before the fault: the message exists, so the batch moves it (SAVE_FOLD + COMMIT).
    expect(
      (await postCxml(app, cxmlFields({ MessageSid: sid, MessageStatus: 'sent' }))).status,
    ).toBe(200);

    const spooledBefore = recorder.stats().spooled;
    trap.arm(mode);
    const other = randomUUID();
    const answers = await Promise.all([
      postCxml(app, cxmlFields({ MessageSid: sid, MessageStatus: 'delivered' })),
      postCxml(app, cxmlFields({ MessageSid: other, MessageStatus: 'queued' })),
    ]);
    expect(trap.sprung()).toBe(true);
    expect(answers.map((res) => res.status)).toEqual([200, 200]);
    // Acknowledged through the spool: whether the COMMIT took effect was unknown.
    expect(recorder.stats().spooled - spooledBefore).toBe(2);

    // A late `queued` for the message while the spool holds its `delivered`.
    expect(
      (await postCxml(app, cxmlFields({ MessageSid: sid, MessageStatus: 'queued' }))).status,
    ).toBe(200);

    await eventually(() => recorder.mode() === 'direct', 'the spool replayed', 20_000);
    expect((await historyOf(sid)).map((row) => row.raw_status).sort()).toEqual([
      'delivered',
      'queued',
      'sent',
    ]);
    // The COMMIT did take effect: the replay found `delivered` stored and added nothing.
    expect((await historyOf(sid)).find((row) => row.raw_status === 'delivered')?.source).toBe(
      'callback',
    );
    // (Whether `other` shared that batch or was spooled behind it depends on timing.)
    expect((await historyOf(other)).map((row) => row.raw_status)).toEqual(['queued']);
    expect(await statusOf(sid)).toBe('delivered');
    expect(await statusOf(other)).toBe('queued');
  }, 30_000);
});
