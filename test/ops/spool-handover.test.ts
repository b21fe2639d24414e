import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { eventually } from '../helpers/eventually';
import { createTcpSwitch } from '../ingest/support/tcp-switch';
import type { TcpSwitch } from '../ingest/support/tcp-switch';
import { freePort, postSignedCallback, serviceEnv, startService } from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * The spool across real processes, as on a persistent volume: callbacks acknowledged onto the
 * spool while PostgreSQL is unreachable survive the process that took them, whether it stops
 * (SIGTERM: it replays until its grace period is spent, then says what is left) or crashes
 * (SIGKILL), and are replayed exactly once by the next process on the directory — while a
 * second process on a directory still in use is refused.
 */

let database: TestDatabase;
let tcp: TcpSwitch;
let viaSwitch: string;
let spoolDir: string;
const services: ServiceProcess[] = [];

beforeAll(async () => {
  database = await createTestDatabase(2);
  tcp = await createTcpSwitch();
  viaSwitch = tcp.relay(database.url);
});
afterAll(async () => {
  await tcp.close();
  await database.destroy();
});
beforeEach(async () => {
  spoolDir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-handover-'));
  await tcp.restore().catch(() => undefined); // listening already
});
afterEach(async () => {
  await Promise.all(services.splice(0).map((service) => service.kill()));
  await rm(spoolDir, { recursive: true, force: true });
});

interface Running {
  service: ServiceProcess;
  publicPort: number;
  internalPort: number;
}

/** The service on `databaseUrl` and this test's spool directory. */
async function launch(databaseUrl: string, env: Record<string, string> = {}): Promise<Running> {
  const publicPort = await freePort();
  const internalPort = await freePort();
  const service = startService(
    serviceEnv(databaseUrl, {
      PORT: String(publicPort),
      INTERNAL_PORT: String(internalPort),
      SPOOL_DIR: spoolDir,
      SHUTDOWN_DELAY_MS: '0',
      SHUTDOWN_DRAIN_MS: '500',
      ...env,
    }),
  );
  services.push(service);
  return { service, publicPort, internalPort };
}

async function listening(running: Running): Promise<Running> {
  await running.service.waitForLog('sw-status listening', 30_000);
  return running;
}

function readiness(port: number): Promise<{ spool?: { depth: number } }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/readyz', agent: false }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve(JSON.parse(text) as { spool?: { depth: number } }));
      })
      .on('error', reject);
  });
}

/** A running service with `count` callbacks acknowledged onto its spool (database cut). */
async function spooling(count: number, env: Record<string, string> = {}) {
  const running = await listening(await launch(viaSwitch, env));
  await tcp.cut();
  const ids = Array.from({ length: count }, () => randomUUID());
  const answers = await Promise.all(
    ids.map(async (id) => (await postSignedCallback(running.publicPort, id)).status),
  );
  expect(answers).toEqual(ids.map(() => 200));
  expect((await readiness(running.publicPort)).spool?.depth).toBe(count);
  return { running, ids };
}

async function storedSources(ids: readonly string[]): Promise<string[]> {
  const rows = await database.db
    .selectFrom('status_events')
    .select('source')
    .where('message_id', 'in', ids)
    .execute();
  return rows.map((row) => row.source);
}

const segments = async () => (await readdir(spoolDir)).filter((name) => name.startsWith('spool-'));

test('When a process stops with a spool it cannot replay, then a second process is refused the directory while it runs, it says what is left within its grace period, and the next process replays it exactly once', async () => {
  const { running: first, ids } = await spooling(12, { SHUTDOWN_GRACE_MS: '3000' });

  // A second process on the same directory, while the first runs: refused, naming the first.
  const second = await launch(database.url);
  const refused = await second.service.exited;
  expect(refused.code).toBe(1);
  expect(second.service.stderr()).toContain(
    `SPOOL_DIR ${spoolDir} is in use by sw-status pid ${first.service.child.pid}`,
  );
  expect(second.service.stderr()).not.toMatch(/^\s+at /m);

  // SIGTERM with the database still unreachable: the process keeps trying until its grace
  // period is spent, then says at warn level what is left and where, and exits 0.
  first.service.child.kill('SIGTERM');
  const stopped = await first.service.exited;
  expect(stopped).toEqual({ code: 0, signal: null });
  const warning = first.service
    .stdout()
    .split('\n')
    .find((line) => line.includes('stopping with events in the spool'));
  expect(JSON.parse(warning!)).toEqual(
    expect.objectContaining({ level: 40, depth: 12, dir: spoolDir, dead_letters: 0 }),
  );
  expect(await storedSources(ids)).toEqual([]);
  expect(await segments()).not.toEqual([]);

  // The next process on the directory (the pod that mounts the volume) replays it.
  const next = await listening(await launch(database.url));
  expect(next.service.stdout()).toContain('spool holds events from an earlier run');
  await eventually(async () => (await storedSources(ids)).length === 12, 'the spool replayed');
  expect(await storedSources(ids)).toEqual(ids.map(() => 'replay'));
  await eventually(async () => (await segments()).length === 0, 'the segments deleted');
  // A segment's events leave the depth once its deletion is synced to the directory.
  await eventually(
    async () => (await readiness(next.publicPort)).spool?.depth === 0,
    'the depth back to 0',
  );
  next.service.child.kill('SIGTERM');
  expect((await next.service.exited).code).toBe(0);
}, 90_000);

test('When the process holding a spool is killed, then the next one takes the directory at once and replays it', async () => {
  const { running: crashed, ids } = await spooling(8);
  await crashed.service.kill(); // SIGKILL: no clean-up at all
  await tcp.restore();

  const next = await listening(await launch(database.url));
  await eventually(async () => (await storedSources(ids)).length === 8, 'the spool replayed');
  expect(await storedSources(ids)).toEqual(ids.map(() => 'replay'));
  next.service.child.kill('SIGTERM');
  expect((await next.service.exited).code).toBe(0);
}, 90_000);

test('When the database returns during the shutdown, then the process replays its spool before it exits', async () => {
  const { running, ids } = await spooling(10, { SHUTDOWN_GRACE_MS: '30000' });
  running.service.child.kill('SIGTERM');
  await running.service.waitForLog('closing listeners, draining requests', 10_000);
  await tcp.restore();

  const stopped = await running.service.exited;
  expect(stopped).toEqual({ code: 0, signal: null });
  expect(running.service.stdout()).not.toContain('stopping with events in the spool');
  expect(running.service.stdout()).toContain('"msg":"stopped"');
  expect(await storedSources(ids)).toEqual(ids.map(() => 'replay'));
  expect(await segments()).toEqual([]);
}, 90_000);
