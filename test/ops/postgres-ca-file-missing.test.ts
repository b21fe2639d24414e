import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { eventually } from '../helpers/eventually';
import { createTestDatabase, endSessions } from '../helpers/test-database';
import type { TestDatabase } from '../helpers/test-database';
import { launchProductionService, productionEnv, startService } from './service-process';
import type { ServiceProcess } from './service-process';

/**
 * README "PostgreSQL over TLS": the CA sits in an optional ConfigMap, named in DATABASE_URL
 * (sslrootcert=…) and read at each new connection. A missing CA keeps new pods unready with
 * the error's code in /readyz; a CA that stops working while pods run is an outage like a
 * database that is down. node-postgres reads the file in `new Client()`, synchronously: the
 * change feed's listening connection threw it as an unhandled rejection, and every pod exited.
 * sslmode=disable keeps the test on the plain test PostgreSQL: the file is read all the same.
 */

jest.setTimeout(90_000);

let dir: string;
let target: TestDatabase;
const running: ServiceProcess[] = [];
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sw-status-ca-missing-'));
  target = await createTestDatabase(2);
});
afterAll(async () => {
  await Promise.all(running.map((service) => service.kill()));
  await target?.destroy();
  await rm(dir, { recursive: true, force: true });
});

const withCa = (ca: string) => `${target.url}?sslmode=disable&sslrootcert=${ca}`;

/** `service` still running `ms` later (or how it ended), and what it wrote to stderr. */
async function outcomeWithin(service: ServiceProcess, ms: number) {
  const outcome = await Promise.race([
    service.exited,
    new Promise<'running'>((resolve) => setTimeout(() => resolve('running'), ms)),
  ]);
  return { outcome, stderr: service.stderr().slice(0, 400) };
}

test('When the CA file named in DATABASE_URL is missing at start (its optional ConfigMap not created), then the pod stays up and unready, /readyz naming ENOENT', async () => {
  const { port, env } = await productionEnv(
    withCa(path.join(dir, 'missing.crt')),
    path.join(dir, 'spool-a'),
  );
  const service = startService(env);
  running.push(service);
  await service.waitForLog('sw-status listening', 30_000);
  // The feed's first reconnection attempts come and go meanwhile.
  expect(await outcomeWithin(service, 3_000)).toEqual({ outcome: 'running', stderr: '' });
  const res = await fetch(`http://127.0.0.1:${port}/readyz`);
  expect(res.status).toBe(503);
  expect(await res.json()).toMatchObject({ reason: expect.stringContaining('(ENOENT)') });
});

test('When the CA file goes away while the service runs and the database restarts, then the service keeps running, callbacks are spooled, and stored once the file is back', async () => {
  const ca = path.join(dir, 'ca.crt');
  await writeFile(ca, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
  const { service, readyz, callback } = await launchProductionService(
    withCa(ca),
    path.join(dir, 'spool-b'),
    2_000,
  );
  running.push(service);
  await eventually(async () => (await readyz()).status === 200, 'ready', 20_000);
  await service.waitForLog("change feed: listening for other replicas' commits", 20_000);

  // The CA's ConfigMap deleted (or a rotation leaving no file a moment), then the database
  // restarts (a failover, a minor upgrade): every session ends.
  await rm(ca);
  await endSessions(target.url.split('/').pop()!);

  await service.waitForLog('change feed: cannot open the listening connection; retrying', 20_000);
  expect(await outcomeWithin(service, 3_000)).toEqual({ outcome: 'running', stderr: '' });

  // An outage like a database that is down: acknowledged and spooled, not refused (SignalWire
  // tries a callback three times) — the pool's new connections fail on the file as the feed's.
  const id = randomUUID();
  expect(await callback({ MessageSid: id })).toBe(200);
  await writeFile(ca, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
  await eventually(
    async () =>
      (await target.pool.query('SELECT 1 FROM messages WHERE id = $1', [id])).rowCount === 1,
    'the spooled callback stored',
    30_000,
  );
});
