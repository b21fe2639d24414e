import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import { createTestDatabase } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { sentMessage } from '../reconcile/support';
import { freePort, serviceEnv, startService } from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * SIGTERM while the reconciliation sweep writes what a lookup found to a message whose row
 * another session holds (an operator's SELECT … FOR UPDATE left open). The shutdown stops the
 * sweep before the recorder drains (main.ts beforeDrain): the write used to wait for as long
 * as the row was held, the stop with it, and the process left at the grace-period backstop
 * without draining the recorder or replaying the spool. Now the drain runs and the process
 * exits 0 well within the grace period.
 */

jest.setTimeout(60_000);

const PROJECT = 'p-shutdown-held';
const GRACE_MS = 15_000;
const SPOOL_DIR = path.join(os.tmpdir(), `sw-status-sweep-held-${randomUUID()}`);

let database: TestDatabase;
let signalwire: Server | undefined;
let operator: Client | undefined;
let service: ServiceProcess | undefined;

beforeAll(async () => {
  database = await createTestDatabase(2);
});
afterAll(async () => {
  await service?.kill();
  await operator?.query('ROLLBACK').catch(() => undefined);
  await operator?.end().catch(() => undefined);
  await new Promise((resolve) => (signalwire ? signalwire.close(resolve) : resolve(undefined)));
  await database.destroy();
  await rm(SPOOL_DIR, { recursive: true, force: true });
});

test('When SIGTERM arrives while the sweep’s write waits on a message row another session holds, then the recorder still drains and the process exits 0 before the grace period ends', async () => {
  const id = await sentMessage(database.db, { projectId: PROJECT, api: 'cxml' });
  // SignalWire, as the sweep reaches it: the operator's session takes the row while it answers.
  let looked!: () => void;
  const lookedUp = new Promise<void>((resolve) => (looked = resolve));
  signalwire = createServer((req, res) => {
    void (async () => {
      if (!operator && req.url?.includes(id)) {
        operator = new Client({ connectionString: database.url });
        operator.on('error', () => undefined);
        await operator.connect();
        await operator.query('BEGIN');
        await operator.query('SELECT 1 FROM messages WHERE id = $1 FOR UPDATE', [id]);
        looked();
      }
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"status":404}');
    })();
  });
  await new Promise<void>((resolve) => signalwire!.listen(0, '127.0.0.1', resolve));
  const { port: signalwirePort } = signalwire.address() as AddressInfo;

  service = startService(
    serviceEnv(database.url, {
      PORT: String(await freePort()),
      INTERNAL_PORT: String(await freePort()),
      SPOOL_DIR,
      SIGNALWIRE_SPACE_URL: `http://127.0.0.1:${signalwirePort}`,
      SIGNALWIRE_CREDENTIALS: `${PROJECT}:PTheld`,
      // Due at once (its last event is a minute old), the next step far off.
      RECONCILE_SCHEDULE: '100ms,1h',
      SHUTDOWN_DRAIN_MS: '500',
      SHUTDOWN_GRACE_MS: String(GRACE_MS),
    }),
  );
  await service.waitForLog('sw-status listening', 30_000);
  await lookedUp;
  // The sweep's write of the 404 is now waiting for the row.
  await new Promise((resolve) => setTimeout(resolve, 300));

  const signalled = Date.now();
  service.child.kill('SIGTERM');
  const { code, signal } = await service.exited;
  const ms = Date.now() - signalled;

  const out = service.stdout();
  expect({ code, signal }).toEqual({ code: 0, signal: null });
  expect(out).toContain('"msg":"ingest drained"');
  expect(out).toContain('"msg":"stopped"');
  expect(out).not.toContain('shutdown grace period spent');
  expect(ms).toBeLessThan(GRACE_MS - 5_000);
});
