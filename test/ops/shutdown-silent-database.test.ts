import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { eventually } from '../helpers/eventually';
import { createFreezer } from '../helpers/freezer';
import type { Freezer } from '../helpers/freezer';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { freePort, isListening, serviceEnv, startService } from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * SIGTERM while PostgreSQL has gone silent (a partition, a frozen VM, the old primary's address
 * after a failover: the peer neither answers nor closes). Readiness turns off, the listeners
 * close after SHUTDOWN_DELAY_MS and in-flight requests get SHUTDOWN_DRAIN_MS; only a database
 * step that hangs is left to the SHUTDOWN_GRACE_MS backstop (process/shutdown.ts). The change
 * feed's LISTEN connection, closed first, used to wait for the silent database for ever, so
 * the listeners stayed open and nothing was logged until the backstop.
 */

jest.setTimeout(90_000);

let database: TestDatabase;
let freezer: Freezer;
let service: ServiceProcess | undefined;
const SPOOL = path.join(os.tmpdir(), `sw-status-silent-${randomUUID()}`);

beforeAll(async () => {
  database = await createTestDatabase(1);
  freezer = createFreezer();
});
afterAll(async () => {
  await service?.kill();
  await freezer.close();
  await database.destroy();
  await rm(SPOOL, { recursive: true, force: true });
});

test('When SIGTERM arrives while PostgreSQL has gone silent, then readiness turns off and the listeners close after the delay and the drain, not only when the grace period is spent', async () => {
  const publicPort = await freePort();
  service = startService(
    serviceEnv(await freezer.relay(database.url), {
      PORT: String(publicPort),
      INTERNAL_PORT: String(await freePort()),
      SPOOL_DIR: SPOOL,
      SHUTDOWN_DELAY_MS: '0',
      SHUTDOWN_DRAIN_MS: '2000',
      SHUTDOWN_GRACE_MS: '60000',
    }),
  );
  await service.waitForLog('sw-status listening', 30_000);
  await eventually(
    async () => (await fetch(`http://127.0.0.1:${publicPort}/readyz`)).status === 200,
    'ready',
    20_000,
  );
  // The change feed's LISTEN connection is up (it wakes long-polls on other replicas' commits).
  await service.waitForLog("change feed: listening for other replicas' commits", 10_000);

  freezer.freeze();
  service.child.kill('SIGTERM');

  await service.waitForLog('closing listeners, draining requests', 20_000);
  await eventually(async () => !(await isListening(publicPort)), 'the public port closed', 20_000);
  expect(service.stdout()).toContain('"msg":"shutting down: readiness off"');
  // The grace period (60 s) is far off: the listeners did not wait for it.
  expect(service.stdout()).not.toContain('shutdown grace period spent');
  await service.kill();
});
